"""The colour controls' formulas and their monotonicity claims (colorot/controls.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from colorot.controls import LUMA, MAX_SATURATION, Controls, luma
from colorot.errors import ConfigError
from colorot.models import RidgeMGN

W = np.asarray(LUMA)
ONE = np.ones(3)
colours = arrays(np.float64, (16, 3), elements=st.floats(0, 1))
spd = st.tuples(*[st.floats(0.02, 3.0)] * 3).map(np.diag)


def linear(a: np.ndarray):
    """T(x) = A x + b, numpy in and out."""
    return lambda x: x @ a.T + np.asarray([0.05, -0.02, 0.1])


def jacobian_of(f, x: np.ndarray) -> np.ndarray:
    """J of a torch function at one point x (3,), by autograd."""
    return torch.autograd.functional.jacobian(lambda v: f(v[None])[0], torch.as_tensor(x, dtype=torch.float64)).numpy()


def test_defaults_change_nothing():
    evaluate = linear(np.eye(3))
    assert Controls().is_identity and Controls().bind(evaluate) is evaluate


@given(colours, spd)
def test_keep_luminance_keeps_the_source_luma_and_the_maps_chroma(x, a):
    y = linear(a)(x)
    out = Controls(keep_luminance=True).bind(linear(a))(x)
    np.testing.assert_allclose(luma(out), luma(x), atol=1e-12)
    np.testing.assert_allclose(out - luma(out), y - luma(y), atol=1e-12)


@given(colours, spd, st.floats(0, 3))
def test_saturation_scales_chroma_and_keeps_luma(x, a, s):
    y = linear(a)(x)
    out = Controls(saturation=s).bind(linear(a))(x)
    np.testing.assert_allclose(luma(out), luma(y), atol=1e-12)
    np.testing.assert_allclose(out - luma(out), s * (y - luma(y)), atol=1e-12)


def test_saturation_zero_is_grey():
    out = Controls(saturation=0.0).bind(linear(np.diag([0.5, 1.0, 2.0])))(np.random.default_rng(0).random((8, 3)))
    np.testing.assert_allclose(out, np.repeat(out[:, :1], 3, axis=1), atol=1e-12)


@given(spd, st.floats(0, 1))
def test_neutral_sends_mid_grey_to_grey_by_its_fraction(a, n):
    evaluate = linear(a)
    grey = np.full((1, 3), 0.5)
    cast = evaluate(grey) - luma(evaluate(grey))
    out = Controls(neutral=n).bind(evaluate)(grey)
    np.testing.assert_allclose(out - luma(out), (1 - n) * cast, atol=1e-12)
    np.testing.assert_allclose(luma(out), luma(evaluate(grey)), atol=1e-12)  # the cast removed, not the brightness


def ridge_map() -> RidgeMGN:
    torch.manual_seed(0)
    model = RidgeMGN(hidden=16).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model.eval()


def test_neutral_keeps_a_monotone_gradient_map():
    """A constant shift: the Jacobian is the map's own, symmetric positive definite."""
    model = ridge_map()
    controlled = Controls(neutral=1.0).bind(model, torch_map=True)
    for x in np.random.default_rng(1).random((5, 3)):
        j, jc = jacobian_of(model, x), jacobian_of(controlled, x)
        np.testing.assert_allclose(jc, j, atol=1e-10)
        assert np.allclose(jc, jc.T) and np.linalg.eigvalsh(jc).min() > 0
    assert Controls(neutral=1.0).monotone


def test_saturation_stays_one_to_one_but_is_no_gradient_map():
    """J = M_S·J_T: det = S²·det J_T > 0 (one-to-one), yet not symmetric."""
    model, s = ridge_map(), 1.8
    controlled = Controls(saturation=s).bind(model, torch_map=True)
    asymmetric = 0.0
    for x in np.random.default_rng(2).random((5, 3)):
        j, jc = jacobian_of(model, x), jacobian_of(controlled, x)
        np.testing.assert_allclose(np.linalg.det(jc), s * s * np.linalg.det(j), rtol=1e-8)
        asymmetric = max(asymmetric, np.abs(jc - jc.T).max())
    assert asymmetric > 1e-3
    assert not Controls(saturation=s).monotone


def test_keep_luminance_can_make_a_monotone_map_non_monotone():
    """T(x) = A x with A = diag(0.02, 3, 3) (a monotone gradient map): keeping the luma gives
    B = (I − 1wᵀ)A + 1wᵀ, whose symmetric part has a negative eigenvalue, so two colours
    x, x + v exist whose outputs move against v."""
    a = np.diag([0.02, 3.0, 3.0])
    b = (np.eye(3) - np.outer(ONE, W)) @ a + np.outer(ONE, W)
    eigenvalues, vectors = np.linalg.eigh((b + b.T) / 2)
    assert eigenvalues[0] < 0
    x, v = np.full((1, 3), 0.5), 0.01 * vectors[:, :1].T
    controlled = Controls(keep_luminance=True).bind(lambda c: c @ a.T)
    assert float(((controlled(x + v) - controlled(x)) * v).sum()) < 0
    assert not Controls(keep_luminance=True).monotone


def test_numpy_and_torch_give_the_same_output():
    model = ridge_map().float()
    controls = Controls(keep_luminance=True, saturation=0.7, neutral=0.5)
    x = np.random.default_rng(3).random((32, 3)).astype(np.float32)
    with torch.no_grad():
        via_torch = controls.bind(model, torch_map=True)(torch.from_numpy(x)).numpy()
    via_numpy = controls.bind(lambda c: model(torch.from_numpy(c)).detach().numpy())(x)
    np.testing.assert_allclose(via_torch, via_numpy, atol=1e-6)
    assert via_numpy.dtype == np.float32


def test_the_largest_saturation_keeps_a_grey_colour_grey_in_numpy_and_torch():
    """S beyond float32's largest number was ∞ in a float32 map: ∞·0 made grey NaN (written black)."""
    grey = np.full((1, 3), 0.5, np.float32)
    controls = Controls(saturation=MAX_SATURATION)
    np.testing.assert_array_equal(controls.apply(grey, grey), grey)
    np.testing.assert_array_equal(controls.apply(torch.from_numpy(grey), torch.from_numpy(grey)).numpy(), grey)
    with pytest.raises(ConfigError, match="at most 3.4e\\+38"):
        Controls(saturation=1e39)


@pytest.mark.parametrize("kwargs", [{"saturation": -0.1}, {"saturation": float("nan")}, {"neutral": 1.5},
                                    {"neutral": -0.1}, {"neutral": "0.5"}, {"saturation": True},
                                    {"keep_luminance": "no"}])  # the last three: a TypeError, and "no" read as on
def test_bad_values_are_refused(kwargs):
    with pytest.raises(ConfigError):
        Controls(**kwargs)


def test_a_decimal_is_a_number_as_strength_takes_it():
    """Controls(saturation=Decimal("0.5")) was refused as "must be a number"; strength took it."""
    import decimal

    assert Controls(saturation=decimal.Decimal("0.5"), neutral=decimal.Decimal("0.25")) == Controls(saturation=0.5,
                                                                                                   neutral=0.25)
    with pytest.raises(ConfigError, match="must be a number"):
        Controls(saturation=decimal.Decimal("sNaN"))
