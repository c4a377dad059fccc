"""Tests for colorot.ridge_map: the ridge map in numpy is the RidgeMGN, and its KL is the same."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from colorot.distributions import GaussianMixture
from colorot.metrics import kl_to_target
from colorot.models import RidgeMGN
from colorot.ridge_map import RidgeParameters, inverse_softplus, psd_sqrt, softplus


def random_parameters(seed: int, hidden: int) -> RidgeParameters:
    rng = np.random.default_rng(seed)
    state = {"V": rng.normal(size=(3, 3)), "b": rng.normal(size=3), "W": rng.normal(size=(hidden, 3)) * 10,
             "biases": rng.normal(size=hidden) * 5, "rho": rng.normal(size=hidden) * 4}
    return RidgeParameters(state, float(rng.uniform(1e-3, 0.1)))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 12))
def test_the_numpy_map_is_the_ridge_network(seed, hidden) -> None:
    parameters = random_parameters(seed, hidden)
    model = RidgeMGN.from_parameters(parameters).double()
    x = np.random.default_rng(seed + 1).uniform(-0.2, 1.2, (200, 3))
    with torch.no_grad():
        expected = [t.numpy() for t in model.forward_and_jacobian(torch.as_tensor(x))]
    # the module holds float32 parameters: compare with the parameters it holds
    held = RidgeParameters({k: v.double().numpy() for k, v in model.state_dict().items()}, parameters.eps)
    mapped, jac = held.forward_and_jacobian(x)
    np.testing.assert_allclose(mapped, expected[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(jac, expected[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(held.forward(x), mapped)
    assert np.allclose(jac, jac.transpose(0, 2, 1)) and np.linalg.eigvalsh(jac).min() >= parameters.eps * (1 - 1e-9)


def test_the_kl_of_the_parameters_is_the_kl_of_the_network() -> None:
    parameters = random_parameters(3, 8)
    parameters = RidgeParameters({k: v.astype(np.float32).astype(np.float64) for k, v in parameters.state.items()},
                                 parameters.eps)
    target = GaussianMixture(np.array([0.4, 0.6]), np.array([[0.2, 0.3, 0.4], [0.7, 0.5, 0.3]]),
                             np.stack([np.eye(3) * 0.02, np.diag([0.03, 0.01, 0.02])]))
    source = np.random.default_rng(0).integers(0, 256, (5000, 3)) / 255
    numpy_kl = kl_to_target(parameters, source, target, pixels=3000, seed=4)
    torch_kl = kl_to_target(RidgeMGN.from_parameters(parameters), source, target, pixels=3000, seed=4)
    assert abs(numpy_kl - torch_kl) < 1e-9


def test_the_helpers_invert_and_root() -> None:
    a = np.array([1e-6, 0.3, 2.0, 25.0])
    np.testing.assert_allclose(softplus(inverse_softplus(a)), a, rtol=1e-9)
    m = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 0.5]])
    np.testing.assert_allclose(psd_sqrt(m) @ psd_sqrt(m), m, atol=1e-12)
