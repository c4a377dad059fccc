"""Tests for colorot.models: every map is the gradient of an ε-strongly convex function.

The property tests run in float64 at random parameters (every parameter
perturbed by Gaussian noise of a random scale up to 3, the linear part
optionally made rank-deficient so the ε floor is what holds the spectrum up)
and at random inputs up to |x| = 50, far outside the RGB cube.

Tolerances are relative to the size of the quantities compared: float64
rounding of a sum of a few dozen positive semi-definite terms is ~1e-16 times
the number of terms times their size, so 1e-12 (relative) leaves a margin of
about 100 and is still ~10 orders of magnitude below anything a wrong formula
would produce.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from colorot.errors import ConfigError
from colorot.models import (
    CMGN,
    DEFAULT_EPS,
    DEFAULT_SCALE,
    MMGN_SCALE,
    MMGN,
    MODELS,
    AffineMap,
    RidgeMGN,
    build_model,
    gaussian_map_matrix,
)

REL = 1e-12

#: (model name, activation) pairs covered by the property tests.
SPECS = [
    ("cmgn", "tanh"),
    ("cmgn", "sigmoid"),
    ("cmgn", "softplus"),
    ("mmgn", "logcosh"),
    ("mmgn", "softplus"),
    ("ridge", None),
    ("affine", None),
]
SPEC_IDS = [f"{n}-{a}" if a else n for n, a in SPECS]


PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

#: The C-MGN's and M-MGN's activation scales α the property tests draw from.
ACTIVATION_SCALES = st.sampled_from([0.03, MMGN_SCALE, DEFAULT_SCALE, 1.0, 2.5])


# ----------------------------------------------------------------- helpers
@st.composite
def model_specs(draw, name: str, activation: str | None) -> dict:
    """A model configuration plus how to perturb its parameters."""
    config: dict = {"eps": draw(st.sampled_from([1e-4, DEFAULT_EPS, 0.05, 0.5]))}
    if name == "cmgn":
        config.update(hidden=draw(st.integers(1, 8)), layers=draw(st.integers(1, 3)), activation=activation,
                      scale=draw(ACTIVATION_SCALES))
    elif name == "mmgn":
        config.update(hidden=draw(st.integers(1, 6)), modules=draw(st.integers(1, 4)), activation=activation,
                      scale=draw(ACTIVATION_SCALES))
    elif name == "ridge":
        config.update(hidden=draw(st.integers(1, 8)))
    return {
        "name": name,
        "config": config,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "scale": draw(st.floats(0.0, 3.0)),
        "v_rank": draw(st.integers(0, 3)),
    }


def make_model(spec: dict) -> torch.nn.Module:
    """Build the float64 model of ``spec`` with every parameter perturbed, reproducibly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = build_model(spec["name"], spec["config"]).double()
    g = torch.Generator().manual_seed(spec["seed"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(spec["scale"] * torch.randn(p.shape, generator=g, dtype=torch.float64))
        model.V[spec["v_rank"]:] = 0.0  # VᵀV has rank ≤ v_rank
    return model


def inputs(min_rows: int = 1, max_rows: int = 6):
    return hnp.arrays(
        np.float64,
        st.tuples(st.integers(min_rows, max_rows), st.just(3)),
        elements=st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False),
    )


def autograd_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference Jacobian of each row, by reverse-mode autodiff of one row at a time."""
    f = lambda v: model(v.unsqueeze(0)).squeeze(0)  # noqa: E731
    return torch.stack([torch.func.jacrev(f)(row) for row in x])


def norm2(m: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(m, ord=2)


def random_spd(seed: int, eigenvalues) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return (q * np.asarray(eigenvalues)) @ q.T


def spd_strategy(lo: float, hi: float):
    return st.tuples(st.integers(0, 2**31 - 1), st.lists(st.floats(lo, hi), min_size=3, max_size=3)).map(
        lambda t: random_spd(*t)
    )


# ----------------------------------------------------- property tests (float64)
@pytest.mark.parametrize("name, activation", SPECS, ids=SPEC_IDS)
@PROPERTY_SETTINGS
@given(data=st.data(), x=inputs())
def test_analytic_jacobian_is_exact_symmetric_and_floored_at_eps(name, activation, data, x) -> None:
    spec = data.draw(model_specs(name, activation), label="spec")
    model, eps = make_model(spec), spec["config"]["eps"]
    x = torch.as_tensor(x)
    with torch.no_grad():
        out, jac = model.forward_and_jacobian(x)
        plain = model(x)
        jac_method = model.jacobian(x)
    assert out.shape == x.shape and jac.shape == (x.shape[0], 3, 3)
    assert torch.isfinite(out).all() and torch.isfinite(jac).all()

    scale = norm2(jac)[:, None, None]  # (N, 1, 1)
    # forward(x) is the first output of forward_and_jacobian; jacobian() the second.
    out_scale = out.abs().amax(-1, keepdim=True) + 1.0
    assert ((plain - out).abs() <= REL * out_scale).all()
    assert ((jac_method - jac).abs() <= REL * scale).all()

    reference = autograd_jacobian(model, x)
    err = (jac - reference).abs()
    assert (err <= REL * (scale + 1.0)).all(), f"max |J - J_autograd| = {err.max():.3g}"

    assert ((jac - jac.transpose(1, 2)).abs() <= REL * scale).all()
    sym = (jac + jac.transpose(1, 2)) / 2
    min_eig = torch.linalg.eigvalsh(sym)[:, 0]
    assert (min_eig >= eps - REL * scale[:, 0, 0]).all(), f"min eigenvalue {min_eig.min():.6g} < eps {eps}"


@pytest.mark.parametrize("name, activation", SPECS, ids=SPEC_IDS)
@PROPERTY_SETTINGS
@given(data=st.data(), x=inputs(), y=inputs(), closeness=st.sampled_from([1.0, 1e-2, 1e-5]))
def test_map_is_eps_strongly_monotone(name, activation, data, x, y, closeness) -> None:
    spec = data.draw(model_specs(name, activation), label="spec")
    model, eps = make_model(spec), spec["config"]["eps"]
    n = min(len(x), len(y))
    x = torch.as_tensor(x[:n])
    y = x + closeness * (torch.as_tensor(y[:n]) - x)  # from far apart to very close
    with torch.no_grad():
        tx, ty = model(x), model(y)
    d = x - y
    inner = ((tx - ty) * d).sum(-1)
    dist2 = (d * d).sum(-1)
    tol = REL * (1.0 + tx.norm(dim=-1) + ty.norm(dim=-1)) * dist2.sqrt()
    assert (inner >= eps * dist2 - tol).all(), f"{inner} < {eps} * {dist2}"


@pytest.mark.parametrize("name, activation", SPECS, ids=SPEC_IDS)
@PROPERTY_SETTINGS
@given(data=st.data(), x=inputs(min_rows=2, max_rows=8), others=inputs(min_rows=8, max_rows=8))
def test_each_output_depends_on_its_own_row_only(name, activation, data, x, others) -> None:
    spec = data.draw(model_specs(name, activation), label="spec")
    model = make_model(spec)
    n = len(x)
    i = data.draw(st.integers(0, n - 1), label="row")
    perm = torch.as_tensor(data.draw(st.permutations(range(n)), label="perm"))
    x, others = torch.as_tensor(x), torch.as_tensor(others[:n])
    replaced = others.clone()
    replaced[i] = x[i]
    with torch.no_grad():
        batch_out, batch_jac = model.forward_and_jacobian(x)
        alone_out, alone_jac = model.forward_and_jacobian(x[i : i + 1])
        shuffled = model(x[perm])
        pos = int((perm == i).nonzero()[0, 0])
        replaced_out = model(replaced)
    ref = batch_out[i]
    tol = REL * (1.0 + ref.abs().max())
    for other in (alone_out[0], shuffled[pos], replaced_out[i]):
        assert (other - ref).abs().max() <= tol
    assert (alone_jac[0] - batch_jac[i]).abs().max() <= REL * (1.0 + norm2(batch_jac[i]))


# ------------------------------------------------------- deterministic checks
@pytest.mark.parametrize("make", [lambda: CMGN(hidden=1, layers=2), lambda: MMGN(hidden=1, modules=1), AffineMap],
                         ids=["cmgn", "mmgn", "affine"])
def test_eps_is_attained_when_the_rest_of_the_jacobian_is_singular(make) -> None:
    """With V = 0 and one hidden unit, J = (rank ≤ 1) + εI: its smallest eigenvalue is ε itself."""
    torch.manual_seed(0)
    model = make().double()
    with torch.no_grad():
        model.V.zero_()
        x = torch.as_tensor(np.random.default_rng(0).uniform(-2, 2, size=(16, 3)))
        jac = model.jacobian(x)
    eigs = torch.linalg.eigvalsh(jac)
    np.testing.assert_allclose(eigs[:, 0].numpy(), DEFAULT_EPS, rtol=1e-9)
    if isinstance(model, AffineMap):
        assert torch.equal(jac, DEFAULT_EPS * torch.eye(3, dtype=torch.float64).expand(16, 3, 3))


@pytest.mark.parametrize("model_cls", [CMGN, MMGN])
def test_softplus_jacobian_matches_autograd_beyond_threshold(model_cls) -> None:
    model = model_cls(hidden=1, activation="softplus").double()
    with torch.no_grad():
        model.W.zero_()
        model.W[..., 0] = 1.0
        model.biases.zero_()
    x = torch.tensor([[20.5, 0.3, -0.2]], dtype=torch.float64)  # z = 20.5, just past softplus's threshold
    jac = model.jacobian(x)
    reference = autograd_jacobian(model, x)
    assert (jac - reference).abs().max() <= REL * (1.0 + norm2(jac[0]))


def test_default_models_are_float32_and_shape_preserving() -> None:
    x = torch.rand(7, 3)
    for name in MODELS:
        model = build_model(name)
        out, jac = model.forward_and_jacobian(x)
        assert out.dtype == torch.float32 and out.shape == (7, 3) and jac.shape == (7, 3, 3)


# ------------------------------------------------------------ Gaussian map
@settings(max_examples=30, deadline=None)
@given(cov_s=spd_strategy(1e-2, 10.0), cov_t=spd_strategy(1e-2, 10.0))
def test_gaussian_map_matrix_is_the_spd_solution_of_a_sigma_s_a_eq_sigma_t(cov_s, cov_t) -> None:
    a = gaussian_map_matrix(cov_s, cov_t)
    assert np.array_equal(a, a.T)
    assert np.linalg.eigvalsh(a).min() > 0
    # Condition numbers up to 1e3 each: relative error ≲ 1e-16 · cond² ≈ 1e-10.
    np.testing.assert_allclose(a @ cov_s @ a, cov_t, rtol=0, atol=1e-9 * np.linalg.norm(cov_t, 2))


def test_gaussian_map_matrix_known_value_and_singular_source() -> None:
    cov_s, cov_t = np.diag([1.0, 4.0, 0.25]), np.diag([9.0, 1.0, 1.0])
    np.testing.assert_allclose(gaussian_map_matrix(cov_s, cov_t), np.diag([3.0, 0.5, 2.0]), atol=1e-12)
    with pytest.raises(ConfigError):
        gaussian_map_matrix(np.diag([1.0, 1.0, 0.0]), np.eye(3))


@settings(max_examples=20, deadline=None)
@given(
    mean_s=hnp.arrays(np.float64, 3, elements=st.floats(0, 1)),
    mean_t=hnp.arrays(np.float64, 3, elements=st.floats(0, 1)),
    cov_s=spd_strategy(1e-3, 0.1),
    cov_t=spd_strategy(1e-3, 0.1),
)
def test_affine_from_gaussians_is_the_closed_form_map(mean_s, mean_t, cov_s, cov_t) -> None:
    model = AffineMap.from_gaussians(mean_s, cov_s, mean_t, cov_t)
    a = gaussian_map_matrix(cov_s, cov_t)
    x = np.random.default_rng(0).uniform(0, 1, size=(10, 3))
    with torch.no_grad():
        at_mean = model(torch.as_tensor(mean_s[None], dtype=torch.float32)).double().numpy()[0]
        out = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    # float32 parameters: ~1e-7 relative error on values of order 1-10.
    np.testing.assert_allclose(at_mean, mean_t, atol=2e-5)
    np.testing.assert_allclose(out, mean_t + (x - mean_s) @ a.T, atol=1e-4 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(model.linear_matrix().double().detach().numpy(), a, atol=1e-5 * (1 + np.abs(a).max()))


# ---------------------------------------------------------- init_to_affine
@pytest.mark.parametrize("model_cls", [CMGN, MMGN, RidgeMGN])
@settings(max_examples=15, deadline=None)
@given(a=spd_strategy(0.1, 3.0), c=hnp.arrays(np.float64, 3, elements=st.floats(-1, 1)),
       seed=st.integers(0, 1000))
def test_init_to_affine_starts_within_tolerance_of_the_affine_map(model_cls, a, c, seed) -> None:
    points = np.random.default_rng(seed).uniform(0, 1, size=(256, 3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls()
    model.init_hidden(points, seed=seed)
    model.init_to_affine(a, c, points)
    with torch.no_grad():
        out = model(torch.as_tensor(points, dtype=torch.float32)).double().numpy()
        jac_at_mean = model.jacobian(torch.as_tensor(points.mean(0, keepdims=True), dtype=torch.float32))
    rms = math.sqrt(np.mean(np.sum((out - (points @ a.T + c)) ** 2, axis=1) / 3))
    assert rms <= 1e-3
    # Value and Jacobian agree with the affine map at the mean of the points.
    np.testing.assert_allclose(jac_at_mean[0].double().numpy(), a, atol=1e-4 * (1 + np.abs(a).max()))


def test_init_hidden_moves_the_nonlinear_part_off_its_default() -> None:
    """init_hidden must leave a non-trivial network, or init_to_affine tests nothing."""
    points = np.random.default_rng(0).uniform(0, 1, size=(64, 3))
    for model in (CMGN(), MMGN()):
        model.init_hidden(points, seed=3)
        with torch.no_grad():
            _, jac = model._nonlinear(torch.as_tensor(points, dtype=torch.float32), with_jacobian=True)
        assert float(norm2(jac).max()) > 0.1


@pytest.mark.parametrize("model_cls", [CMGN, MMGN, RidgeMGN])
def test_init_to_affine_below_eps_raises_or_gets_close(model_cls) -> None:
    points = np.random.default_rng(0).uniform(0, 1, size=(200, 3))
    a, c = np.diag([0.05, 1.0, 2.0]), np.zeros(3)
    model = model_cls(eps=0.1).double()
    model.init_hidden(points)
    try:
        model.init_to_affine(a, c, points)
    except ConfigError:
        return
    with torch.no_grad():
        out = model(torch.as_tensor(points)).numpy()
    # The best ε-floored map differs by (0.1 − 0.05)·|x₀ − x̄| ≈ 0.015 RMS; allow a few times that.
    rms = math.sqrt(np.mean(np.sum((out - points @ a.T - c) ** 2, axis=1) / 3))
    assert rms <= 0.05


# ---------------------------------------------------------------- registry
def test_registry_names_and_rebuild_from_config() -> None:
    assert set(MODELS) == {"affine", "cmgn", "mmgn", "ridge"}
    for name, cls in MODELS.items():
        assert cls.name == name
    original = CMGN(hidden=5, layers=2, activation="sigmoid", eps=0.01)
    rebuilt = build_model("cmgn", original.config)
    assert isinstance(rebuilt, CMGN) and rebuilt.config == original.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()
    }
    mm = build_model("mmgn", {"hidden": 3, "modules": 2, "activation": "softplus"})
    assert mm.config == {"dim": 3, "eps": DEFAULT_EPS, "hidden": 3, "modules": 2, "activation": "softplus",
                         "scale": MMGN_SCALE}


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("icnn")


@pytest.mark.parametrize(
    "name, config",
    [
        ("cmgn", {"activation": "relu"}),
        ("cmgn", {"hidden": 0}),
        ("cmgn", {"layers": 0}),
        ("cmgn", {"modules": 3}),
        ("mmgn", {"activation": "tanh"}),
        ("mmgn", {"modules": 0}),
        ("mmgn", {"hidden": 0}),
        ("affine", {"hidden": 4}),
        ("affine", {"nonsense": True}),
    ],
)
def test_invalid_config(name, config) -> None:
    with pytest.raises(ConfigError):
        build_model(name, config)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("eps", [0.0, -1e-3, -1.0])
def test_non_positive_eps(name, eps) -> None:
    with pytest.raises(ConfigError, match="eps"):
        build_model(name, {"eps": eps})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_nan_eps_is_refused(name) -> None:
    with pytest.raises(ConfigError):
        build_model(name, {"eps": float("nan")})


# ------------------------------------------------------- activation scale
@pytest.mark.parametrize("name, power", [("cmgn", 2), ("mmgn", 4)])
def test_activation_scale_is_the_documented_rescaling(name, power) -> None:
    """σ_α(z) = α·σ(z/α) (C-MGN) and S_α(z) = α²·S(z/α) (M-MGN).  With W and the biases divided by
    α, every pre-activation z is divided by α, so the unscaled network's nonlinear part and its
    Jacobian are those of the scaled one over α² (C-MGN: Wᵀσ) or α⁴ (M-MGN: s(z)·Wᵀσ)."""
    torch.manual_seed(0)
    sizes = {"hidden": 4, "layers": 2} if name == "cmgn" else {"hidden": 4, "modules": 2}
    alpha = 0.07
    scaled = build_model(name, {**sizes, "scale": alpha}).double()
    plain = build_model(name, {**sizes, "scale": 1.0}).double()
    with torch.no_grad():
        scaled.biases.copy_(torch.randn(scaled.biases.shape, dtype=torch.float64))
        plain.W.copy_(scaled.W / alpha)
        plain.biases.copy_(scaled.biases / alpha)
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, (20, 3)))
    out_scaled, jac_scaled = scaled._nonlinear(x, with_jacobian=True)
    out_plain, jac_plain = plain._nonlinear(x, with_jacobian=True)
    factor = alpha ** power
    assert out_scaled.abs().max() > 1e-6  # a non-trivial map
    assert torch.allclose(out_scaled, factor * out_plain, rtol=1e-10, atol=1e-14)
    assert torch.allclose(jac_scaled, factor * jac_plain, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("scale", [0.0, -0.1, math.inf, math.nan, True, "0.1"])
def test_activation_scale_must_be_positive_and_finite(scale) -> None:
    for name in ("cmgn", "mmgn"):
        with pytest.raises(ConfigError, match="activation scale"):
            build_model(name, {"scale": scale})
