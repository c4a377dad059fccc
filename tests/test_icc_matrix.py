"""Matrix/TRC ICC profiles evaluated in numpy (colorot.icc_matrix): read as LittleCMS reads them,
converted as the exact formulas say, and inverted to within a 16-bit code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ImageCms

from _icc import SPACES, lut_tag, parametric_curve, rgb_profile, table_curve
from colorot.icc_matrix import convert_floats, matrix_profile
from colorot.profiles import UNTAGGED, colour_space, convert_codes

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # LittleCMS's own, untagged images'
ADOBE = rgb_profile("Adobe RGB (1998)")
#: The sRGB tone curve's parameters (IEC 61966-2-1) as an ICC 'para' curve: g, a, b, c, d (e = f = 0).
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_a_matrix_profile_is_read_as_its_colorants_and_curves() -> None:
    adobe = matrix_profile(ADOBE)
    colorants, gamma = SPACES["Adobe RGB (1998)"]
    np.testing.assert_allclose(adobe.matrix, np.array(colorants).T, atol=1 / 65536)
    assert adobe.curves == (("power", (563 / 256, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)),) * 3
    srgb = matrix_profile(SRGB)  # a v4 profile with 'para' curves of type 3
    codes = np.linspace(0, 1, 1001)[None].repeat(3, 0)  # channels first
    np.testing.assert_allclose(srgb.to_linear(codes), srgb_to_linear(codes), atol=2e-5)
    np.testing.assert_allclose(srgb.matrix.sum(1), [0.9642, 1.0, 0.8249], atol=2e-4)  # white lands on D50


@pytest.mark.parametrize(("curve", "formula"), [
    (parametric_curve(0, (2.2,)), lambda x: x ** 2.2),
    (parametric_curve(1, (2.0, 1.25, -0.25)), lambda x: np.where(x >= 0.2, (1.25 * x - 0.25) ** 2, 0)),
    (parametric_curve(2, (2.0, 1.25, -0.25, 0.01)), lambda x: np.where(x >= 0.2, (1.25 * x - 0.25) ** 2, 0) + 0.01),
    (parametric_curve(3, SRGB_CURVE), srgb_to_linear),
    (parametric_curve(4, (*SRGB_CURVE, 0.005, 0.001)),
     lambda x: np.where(x >= 0.04045, ((x + 0.055) / 1.055) ** 2.4 + 0.005, x / 12.92 + 0.001)),
    (table_curve(np.linspace(0, 1, 1024) ** 1.8), lambda x: x ** 1.8),
])
def test_every_curve_type_is_evaluated_and_inverted(curve: bytes, formula) -> None:
    profile = matrix_profile(rgb_profile("Adobe RGB (1998)", curve=curve))
    x = np.linspace(0, 1, 4097)[None].repeat(3, 0)  # channels first
    tolerance = 1e-4 if curve[:4] == b"curv" else 2e-5  # a table: linear between its entries
    linear = profile.to_linear(x)
    np.testing.assert_allclose(linear, formula(x), atol=tolerance)
    level = linear[0]  # where the curve does not rise (below a kink, a table's rounded first entries) f⁻¹ is not unique
    flat = (level == np.r_[np.nan, level[:-1]]) | (level == np.r_[level[1:], np.nan])
    back = profile.from_linear(linear)
    np.testing.assert_allclose(back[:, ~flat], x[:, ~flat], atol=1.5 / 65535)  # within about one 16-bit code


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def test_conversions_are_the_exact_formula() -> None:
    """Both ways between sRGB and Adobe RGB by the formulas (sRGB curve, both matrices, gamma 563/256)
    in float64, computed here, to within a 16-bit code: random codes, and codes on the cube's faces
    (a channel at 0 or 1, where the matrices' sums cancel and float32 is weakest)."""
    rng = np.random.default_rng(0)
    codes = rng.random((40000, 3))
    codes[20000:][np.arange(20000), rng.integers(0, 3, 20000)] = rng.integers(0, 2, 20000)
    srgb, adobe = matrix_profile(SRGB), matrix_profile(ADOBE)
    into_adobe = np.linalg.solve(adobe.matrix, srgb.matrix).T  # rows: linear sRGB → linear Adobe RGB
    exact = np.clip(srgb_to_linear(codes) @ into_adobe, 0, 1) ** (256 / 563)
    np.testing.assert_allclose(convert_floats(codes, srgb, adobe), exact, atol=1 / 65535)
    exact = linear_to_srgb(np.clip(codes ** (563 / 256) @ np.linalg.inv(into_adobe), 0, 1))
    np.testing.assert_allclose(convert_floats(codes, adobe, srgb), exact, atol=1 / 65535)
    assert convert_floats(codes.reshape(200, 200, 3), srgb, adobe).shape == (200, 200, 3)


def test_at_8_bits_they_agree_with_littlecms() -> None:
    """LittleCMS's 8-bit transforms, rounded, land on the same codes for nearly every colour; its
    precalculated 8-bit path strays up to ≈ 2.5 codes in the darkest ones, where this follows the formula."""
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (1, 50000, 3), dtype=np.uint8)
    for source, target in ((SRGB, ADOBE), (ADOBE, SRGB)):
        spaces = [UNTAGGED if icc is SRGB else colour_space(icc) for icc in (source, target)]
        lcms = convert_codes(codes, *spaces)[0].astype(int)
        ours = np.rint(convert_floats(codes[0] / 255, matrix_profile(source), matrix_profile(target)) * 255)
        difference = np.abs(lcms - ours).max(1)
        assert difference.max() <= 3 and np.mean(difference > 1) < 0.002, (difference.max(), np.mean(difference > 1))


def test_gamut_nan_and_range_are_handled_as_the_output_rule_says() -> None:
    srgb, adobe = matrix_profile(SRGB), matrix_profile(ADOBE)
    pure_green_in_adobe = np.array([[0.0, 1.0, 0.0]])
    clipped = convert_floats(pure_green_in_adobe, adobe, srgb)  # outside sRGB's gamut: clipped to it
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    odd = np.array([[np.nan, -0.5, 2.0]])
    np.testing.assert_array_equal(convert_floats(odd, srgb, srgb), convert_floats([[0.0, 0.0, 1.0]], srgb, srgb))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.05, 1), min_size=3, max_size=3))
def test_into_a_wider_gamut_and_back_is_the_identity(code: list[float]) -> None:
    """Inside Adobe RGB's gamut with a margin: sRGB's blue is Adobe RGB's, and the colorants' fixed point
    puts colours on that edge a hair outside it, where the clip then moves them (≈ 10⁻⁴)."""
    srgb, adobe = matrix_profile(SRGB), matrix_profile(ADOBE)
    there = convert_floats(np.array([code]), srgb, adobe)
    np.testing.assert_allclose(convert_floats(there, adobe, srgb)[0], code, atol=2 / 65535)


@pytest.mark.parametrize("icc", [
    rgb_profile("Adobe RGB (1998)", extra=((b"A2B0", lut_tag()),)),  # lookup tables: LittleCMS would use them
    rgb_profile("Adobe RGB (1998)", curve=table_curve([0.0, 0.6, 0.4, 1.0])),  # a curve that falls
    rgb_profile("Adobe RGB (1998)", curve=parametric_curve(7, (1.0,))),  # an unknown function type
    rgb_profile("Adobe RGB (1998)", curve=b"sf32" + bytes(12)),  # not a tone curve type
    ADOBE[:200],  # truncated
    ADOBE.replace(b"RGB ", b"GRAY", 1),  # not an RGB profile
    b"not a profile",
])
def test_other_profiles_are_not_read_as_matrix_profiles(icc: bytes) -> None:
    assert matrix_profile(icc) is None
    if b"A2B0" in icc:
        assert colour_space(icc).srgb_codes is not None  # a profile LittleCMS does read


def test_a_curve_flat_at_its_ends_is_inverted_to_the_code_range_s_ends() -> None:
    """A log curve's knees: many codes stand for its black and its white; the inverse takes 0 and 1
    (LittleCMS's 8-bit tables land somewhere between), and the codes between their own inverse."""
    profile = matrix_profile(rgb_profile("Adobe RGB (1998)", curve=table_curve([0, 0, 0, 0.5, 1, 1, 1])))
    linear = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]] * 3)
    np.testing.assert_allclose(profile.from_linear(linear)[0], [0, 2.5 / 6, 0.5, 3.5 / 6, 1], atol=1e-5)  # 16-bit entries


def _generalised_inverse(parameters: tuple, y: np.ndarray) -> np.ndarray:
    """By brute force: the least x on a grid of 2²⁰ steps with f(x) ≥ y, f the 'power' curve of
    ``parameters`` (g, a, b, c, d, e, f) in float64: in a jump of f its foot, on a rising piece f⁻¹(y)."""
    g, a, b, c, d, e, f = parameters
    grid = np.linspace(0.0, 1.0, 2**20 + 1)
    values = np.where(grid >= d, np.maximum(a * grid + b, 0.0) ** g + e, c * grid + f)
    return grid[np.minimum(np.searchsorted(np.maximum.accumulate(values), y), len(grid) - 1)]


@pytest.mark.parametrize("parameters", [
    (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045, 0.05, 0.0),  # the linear piece ends at 0.003, the power one starts at 0.053
    (2.2, 1.0, 0.0, 0.0, 0.1, 0.02, 0.01),  # a flat piece at 0.01, then the power piece from 0.02 + 0.1^2.2
], ids=["rising-then-jump", "flat-then-jump"])
def test_a_value_in_the_jump_between_a_para_curve_s_pieces_is_inverted_to_where_the_jump_is(parameters) -> None:
    """A 'para' curve of type 4 whose linear piece ends below where its power piece starts (c·d + f <
    (ad + b)^g + e): no code gives the values between, and the inverse takes them to d, the code of
    the jump (f⁻¹'s documented rule: the nearest x where none is), as the brute-force inverse does; the
    rest of the range is each value's own code.  No other test asked for a value in a jump.  (The
    code guards the jump twice: np.where(low > c·d + f, d, …), and min(inverse, d) with the flat
    piece's inverse d above f; dropping either alone gives the same codes, as (low − f)/c > d there
    when c > 0, so a mutation pass's drop of the first survives this test too; dropping the first
    and (c = 0) the second fails it, as does taking the linear piece's inverse unbounded.)"""
    profile = matrix_profile(rgb_profile("Adobe RGB (1998)", curve=parametric_curve(4, parameters)))
    held = profile.curves[0][1]  # the parameters as the profile holds them (s15Fixed16)
    g, a, b, c, d, e, f = held
    y = np.linspace(0.0, 1.0, 4097)
    jump = (y > c * d + f) & (y < (a * d + b) ** g + e)
    assert jump.sum() > 40  # the case: many values in the jump
    got = profile.from_linear(np.stack([y] * 3))[0]
    assert (got[jump] == np.float32(d)).all()
    np.testing.assert_allclose(got, _generalised_inverse(held, y), atol=2e-6)  # the grid's step, 10⁻⁶


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([SRGB, ADOBE, rgb_profile("Adobe RGB (1998)", curve=table_curve(np.linspace(0, 1, 64) ** 2))]),
       st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(100, 1000))
def test_a_damaged_profile_is_refused_or_converts_into_the_cube(icc: bytes, changes: list, length: int) -> None:
    """Bytes changed and the profile cut short: None, or a profile whose conversions stay finite in [0, 1]."""
    damaged = bytearray(icc)
    for at, value in changes:
        damaged[at % len(damaged)] = value
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # a damaged curve must not compute NaNs
        profile = matrix_profile(bytes(damaged[:length]))
        if profile is not None:
            srgb, codes = matrix_profile(SRGB), np.random.default_rng(0).random((64, 3))
            for source, target in ((profile, srgb), (srgb, profile)):
                out = convert_floats(codes, source, target)
                assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
