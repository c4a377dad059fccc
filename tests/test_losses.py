"""Tests for colorot.losses against closed forms computed here.

For x ~ N(m, S) in d dimensions, T(x) = A x + b (A symmetric positive definite)
and q = N(μ, Σ), with δ = A m + b − μ:

    −E log q(T x) = ½ [tr(Σ⁻¹ A S Aᵀ) + δᵀ Σ⁻¹ δ + log det Σ + d log 2π]
    −E log det J_T = −log det A
    H(N(m, S))     = ½ [d log(2πe) + log det S]

so exact_kl − H = ½ [tr(Σ⁻¹ASAᵀ) + δᵀΣ⁻¹δ − d + log det Σ − log det(ASAᵀ)]
= KL(N(Am + b, ASAᵀ) ‖ N(μ, Σ)), the Gaussian KL of the pushed-forward source.

Samples with *exactly* mean m and (1/N) covariance S are built by whitening
random draws, so the sample averages inside the losses equal these
expectations up to float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from colorot.distributions import Gaussian, GaussianMixture
from colorot.losses import exact_kl, log_det_spd, moment_kl, sort_columns, transport_cost
from colorot.models import AffineMap

D = 3


def random_spd(rng: np.random.Generator, lo: float, hi: float, d: int = D) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * rng.uniform(lo, hi, size=d)) @ q.T


def sqrtm(m: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh(m)
    return (q * np.sqrt(w)) @ q.T


def with_exact_moments(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean is ``mean`` and (1/n) sample covariance is ``cov``, exactly."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(sqrtm(z.T @ z / n))  # whitened: sample covariance I
    return mean + z @ sqrtm(cov)


def gaussian_kl(m0, s0, m1, s1) -> float:
    """KL(N(m0, s0) ‖ N(m1, s1)), from the formula."""
    inv = np.linalg.inv(s1)
    diff = m1 - m0
    return 0.5 * (np.trace(inv @ s0) + diff @ inv @ diff - len(m0)
                  + np.linalg.slogdet(s1)[1] - np.linalg.slogdet(s0)[1])


# ----------------------------------------------------------------- log det
def test_log_det_spd_equals_torch_logdet(rng) -> None:
    mats = np.stack([random_spd(rng, 1e-3, 10.0) for _ in range(20)])
    jac = torch.as_tensor(mats)
    np.testing.assert_allclose(log_det_spd(jac).numpy(), torch.logdet(jac).numpy(), rtol=1e-10, atol=1e-12)


def test_log_det_spd_gives_nan_for_non_factorisable_matrices() -> None:
    good = torch.eye(3, dtype=torch.float64) * 2
    bad_nan = torch.full((3, 3), float("nan"), dtype=torch.float64)
    indefinite = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    out = log_det_spd(torch.stack([good, bad_nan, indefinite]))
    assert out[0].item() == pytest.approx(3 * math.log(2.0), rel=1e-14)
    assert torch.isnan(out[1:]).all()


@settings(max_examples=60, deadline=None)
@given(d=st.sampled_from([2, 3, 4]), seed=st.integers(0, 2**32 - 1), low=st.floats(1e-3, 1.0))
def test_log_det_spd_and_its_gradient_are_exact(d, seed, low) -> None:
    """log det J equals slogdet's, and its gradient, J⁻¹, gives the derivative along any symmetric
    direction S (a central difference of log det(J + hS), J's condition number up to 10⁴)."""
    rng = np.random.default_rng(seed)
    mats = np.stack([random_spd(rng, low, 10.0, d) for _ in range(4)])
    jac = torch.tensor(mats, requires_grad=True)
    value = log_det_spd(jac)
    np.testing.assert_allclose(value.detach().numpy(), np.linalg.slogdet(mats)[1], rtol=1e-10, atol=1e-10)
    weights = torch.as_tensor(rng.normal(size=4))
    (gradient,) = torch.autograd.grad((value * weights).sum(), jac)
    direction = rng.normal(size=(4, d, d))
    direction = direction + direction.transpose(0, 2, 1)
    h = 1e-6 * low
    central = (np.linalg.slogdet(mats + h * direction)[1] - np.linalg.slogdet(mats - h * direction)[1]) / (2 * h)
    np.testing.assert_allclose((gradient.numpy() * direction).sum((1, 2)), weights.numpy() * central,
                               rtol=1e-5, atol=1e-6)


def test_log_det_spd_of_float32_matrices_is_their_float64_value_rounded(rng) -> None:
    mats = torch.as_tensor(np.stack([random_spd(rng, 1e-3, 2.0) for _ in range(50)]), dtype=torch.float32)
    value = log_det_spd(mats)
    assert value.dtype == torch.float32
    np.testing.assert_allclose(value.numpy(), torch.logdet(mats.double()).numpy(), rtol=1e-6, atol=1e-6)


def test_log_det_spd_gives_nan_for_an_indefinite_matrix_with_a_positive_determinant() -> None:
    """Two negative eigenvalues: det > 0, but not positive definite (Sylvester's criterion)."""
    two_negative = torch.diag(torch.tensor([-1.0, -2.0, 3.0], dtype=torch.float64))
    assert torch.isnan(log_det_spd(two_negative[None])).all()


# ---------------------------------------------------------------- exact KL
def test_exact_kl_of_an_affine_map_is_the_gaussian_kl_plus_source_entropy(rng) -> None:
    m, s = rng.uniform(0, 1, D), random_spd(rng, 0.005, 0.05)
    mu, sigma = rng.uniform(0, 1, D), random_spd(rng, 0.002, 0.03)
    a, b = random_spd(rng, 0.2, 2.0), rng.normal(0, 0.3, D)
    x = with_exact_moments(rng, 1000, m, s)

    model = AffineMap().double()
    model.init_to_affine(a, b, x)
    np.testing.assert_allclose(model.linear_matrix().detach().numpy(), a, atol=1e-12)
    with torch.no_grad():
        mapped, jac = model.forward_and_jacobian(torch.as_tensor(x))
        value = float(exact_kl(mapped, jac, Gaussian(mu, sigma)))

    entropy = 0.5 * (D * math.log(2 * math.pi * math.e) + np.linalg.slogdet(s)[1])
    expected_kl = gaussian_kl(a @ m + b, a @ s @ a.T, mu, sigma)
    assert value - entropy == pytest.approx(expected_kl, rel=1e-9, abs=1e-9)
    # The two terms separately: −E log q(T x) and −log det A.
    cross = 0.5 * (np.trace(np.linalg.inv(sigma) @ a @ s @ a.T)
                   + (a @ m + b - mu) @ np.linalg.inv(sigma) @ (a @ m + b - mu)
                   + np.linalg.slogdet(sigma)[1] + D * math.log(2 * math.pi))
    assert value == pytest.approx(cross - np.linalg.slogdet(a)[1], rel=1e-9, abs=1e-9)


def test_exact_kl_is_minimised_by_the_gaussian_brenier_map(rng) -> None:
    """Among affine maps, the closed-form Gaussian map reaches KL = 0 (value = source entropy)."""
    m, s = rng.uniform(0, 1, D), random_spd(rng, 0.005, 0.05)
    mu, sigma = rng.uniform(0, 1, D), random_spd(rng, 0.002, 0.03)
    x = torch.as_tensor(with_exact_moments(rng, 1000, m, s))
    entropy = 0.5 * (D * math.log(2 * math.pi * math.e) + np.linalg.slogdet(s)[1])
    best = AffineMap.from_gaussians(m, s, mu, sigma).double()
    with torch.no_grad():
        mapped, jac = best.forward_and_jacobian(x)
        value = float(exact_kl(mapped, jac, Gaussian(mu, sigma)))
        shifted = float(exact_kl(mapped + 0.05, jac, Gaussian(mu, sigma)))
    # in float64 (.double()): KL 0 to rounding (≤ 2·10⁻¹² measured over 30 seeds)
    assert abs(value - entropy) < 1e-9
    assert shifted - entropy > 1e-2


# --------------------------------------------------------------- moment KL
def test_moment_kl_is_zero_at_the_target_moments_and_positive_elsewhere(rng) -> None:
    target = GaussianMixture(np.array([0.6, 0.4]), rng.uniform(0, 1, (2, D)),
                             np.stack([random_spd(rng, 0.002, 0.03) for _ in range(2)]))
    mu, sigma = target.mean, target.covariance
    exact = torch.as_tensor(with_exact_moments(rng, 500, mu, sigma))
    assert abs(float(moment_kl(exact, target))) < 1e-10

    delta = np.array([0.05, -0.02, 0.03])
    shifted = float(moment_kl(exact + torch.as_tensor(delta), target))
    assert shifted == pytest.approx(0.5 * delta @ np.linalg.inv(sigma) @ delta, rel=1e-9)
    assert shifted > 0

    other_cov = random_spd(rng, 0.001, 0.05)
    wrong_cov = torch.as_tensor(with_exact_moments(rng, 500, mu, other_cov))
    value = float(moment_kl(wrong_cov, target))
    assert value > 0
    assert value == pytest.approx(gaussian_kl(mu, other_cov, mu, sigma), rel=1e-9)


def test_moment_kl_is_differentiable(rng) -> None:
    target = Gaussian(np.full(D, 0.5), np.eye(D) * 0.01)
    x = torch.as_tensor(rng.uniform(0, 1, (64, D)), dtype=torch.float32).requires_grad_(True)
    moment_kl(x, target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


# ----------------------------------------------------------- transport cost
def test_transport_cost_matches_numpy(rng) -> None:
    src, out = rng.uniform(0, 1, (100, D)), rng.uniform(-0.2, 1.2, (100, D))
    expected = np.mean(np.sum((out - src) ** 2, axis=1))
    assert float(transport_cost(torch.as_tensor(src), torch.as_tensor(out))) == pytest.approx(expected, rel=1e-13)
    black, white = torch.zeros(5, D), torch.ones(5, D)
    assert float(transport_cost(black, white)) == pytest.approx(3.0)
    assert float(transport_cost(white, white)) == 0.0


# ------------------------------------------------------- sliced Wasserstein term
def sw2(mapped, target, directions):
    from colorot.losses import quantiles_at_levels, sliced_w2_squared, sorted_projections

    return sliced_w2_squared(mapped, directions, quantiles_at_levels(sorted_projections(target, directions),
                                                                     mapped.shape[0]))


def test_sliced_w2_squared_is_zero_for_the_same_sample_in_any_order():
    from colorot.losses import random_directions

    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 3, generator=g, dtype=torch.float64)
    dirs = random_directions(16, 3, g).double()
    assert float(sw2(x, x[torch.randperm(500, generator=g)], dirs)) == 0.0


def test_sliced_w2_squared_matches_one_dimensional_w2_and_a_shift():
    from colorot.losses import random_directions

    g = torch.Generator().manual_seed(1)
    a = torch.rand(1000, 1, generator=g, dtype=torch.float64)
    b = torch.rand(1000, 1, generator=g, dtype=torch.float64) * 2
    expected = float(((a.sort(0).values - b.sort(0).values) ** 2).mean())
    one_dir = torch.ones(1, 1, dtype=torch.float64)
    assert abs(float(sw2(a, b, one_dir)) - expected) < 1e-12
    # A shift by δ moves every projection by ⟨θ, δ⟩: SW₂² = mean_θ ⟨θ, δ⟩².
    x = torch.rand(300, 3, generator=g, dtype=torch.float64)
    delta = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    dirs = random_directions(32, 3, g).double()
    assert abs(float(sw2(x + delta, x, dirs)) - float(((delta @ dirs) ** 2).mean())) < 1e-12


def test_sliced_w2_squared_reads_target_quantiles_at_the_batch_levels():
    """A batch of n against a larger target compares with the target's quantiles (i + ½)/n."""
    target = torch.arange(1000, dtype=torch.float64)[:, None] / 1000  # quantile q ≈ q
    mapped = (torch.arange(10, dtype=torch.float64)[:, None] + 0.5) / 10  # exactly those quantiles
    one_dir = torch.ones(1, 1, dtype=torch.float64)
    assert float(sw2(mapped, target, one_dir)) < 1e-6
    assert float(sw2(mapped + 0.1, target, one_dir)) > 0.009


def test_sliced_w2_squared_pulls_mass_towards_the_target():
    from colorot.losses import random_directions

    g = torch.Generator().manual_seed(2)
    x = torch.rand(400, 3, generator=g).requires_grad_(True)
    y = torch.rand(400, 3, generator=g) + 1.0  # the target sits one unit further along every axis
    sw2(x, y, random_directions(64, 3, g)).backward()
    assert (x.grad.sum(0) < 0).all()  # descending the loss moves x towards y


@settings(max_examples=40, deadline=None)
@given(values=hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 6)),
                         elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0]) | st.floats(-10, 10)),
       weights_seed=st.integers(0, 2**31 - 1))
def test_sort_columns_matches_torch_sort_in_values_and_gradients(values, weights_seed) -> None:
    """The numpy-ordered CPU sort is torch.sort: same values, and the same gradient wherever
    ties do not make the assignment ambiguous (tied entries get their gradients in either order,
    which leaves every tie's gradient sum unchanged)."""
    v = torch.tensor(values, requires_grad=True)
    ours, reference = sort_columns(v), torch.sort(v, dim=0).values
    assert torch.equal(ours, reference)
    w = torch.randn(values.shape, generator=torch.Generator().manual_seed(weights_seed), dtype=torch.float64)
    g_ours, = torch.autograd.grad((ours * w).sum(), v)
    g_ref, = torch.autograd.grad((reference * w).sum(), v)
    for column in range(values.shape[1]):
        for value in np.unique(values[:, column]):  # per group of equal entries
            tied = torch.as_tensor(values[:, column] == value)
            assert math.isclose(float(g_ours[tied, column].sum()), float(g_ref[tied, column].sum()),
                                rel_tol=1e-12, abs_tol=1e-12)
