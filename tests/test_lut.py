"""Baked 65³ LUTs (``export-lut``'s .cube files) against the exact map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot.apply import map_pixels
from colorot.errors import ConfigError
from colorot.imageio import quantize
from colorot.controls import Controls
from colorot.lut import Lut, bake, interpolate, interpolation_error, lut_grid, lut_title
from colorot.models import RidgeMGN


def test_grid_order_is_red_fastest():
    grid = lut_grid(3)
    np.testing.assert_array_equal(grid[1], [0.5, 0, 0])
    np.testing.assert_array_equal(grid[3], [0, 0.5, 0])
    np.testing.assert_array_equal(grid[9], [0, 0, 0.5])


def test_lut_within_one_code_value_of_exact(curved_map):
    codes = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    exact = quantize(map_pixels(curved_map, codes / np.float32(255)), 8).astype(int)
    via_lut = bake(curved_map).apply_codes(codes).astype(int)
    diff = np.abs(via_lut - exact)
    assert diff.max() <= 1
    assert (diff.max(-1) > 0).mean() < 0.25  # most pixels are identical


def test_lut_size_is_checked(curved_map):
    with pytest.raises(ConfigError):
        bake(curved_map, size=66)


def test_a_step_too_sharp_for_the_grid_is_missed_by_the_lut():
    """One tall step 1/200 wide along red: the 65³ grid (cells 1/64 wide) cannot follow it
    (why ``colorot apply`` maps 8-bit images through a colour table instead)."""
    model = RidgeMGN(hidden=1)
    with torch.no_grad():
        model.V.copy_(torch.eye(3))
        model.W.copy_(torch.tensor([[800.0, 0.0, 0.0]]))
        model.biases.fill_(-800.0 * 0.503)
        model.rho.fill_(float(np.log(np.expm1(0.3 / 800.0))))  # step height 0.3 along red
    codes = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    exact = quantize(map_pixels(model.eval(), codes / np.float32(255)), 8).astype(int)
    assert np.abs(bake(model).apply_codes(codes).astype(int) - exact).max() > 10


def _sharp_step(width: float) -> RidgeMGN:
    """The identity plus one step of height 0.3 along red at 0.503, ≈ ``width`` wide."""
    model = RidgeMGN(hidden=1)
    with torch.no_grad():
        model.V.copy_(torch.eye(3))
        model.W.copy_(torch.tensor([[1.0 / width, 0.0, 0.0]]))
        model.biases.fill_(-0.503 / width)
        model.rho.fill_(float(np.log(np.expm1(0.3 * width))))
    return model.eval()


def test_interpolation_is_the_table_at_its_grid_and_agrees_with_pillow(curved_map):
    lut = bake(curved_map, size=17)
    np.testing.assert_allclose(interpolate(lut, lut_grid(17)), lut.table, atol=1e-6)
    codes = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = quantize(interpolate(lut, codes.reshape(-1, 3) / 255.0), 8).reshape(codes.shape).astype(int)
    assert np.abs(ours - lut.apply_codes(codes).astype(int)).max() <= 1  # Pillow's fixed-point rounding


@pytest.mark.parametrize("scale", [1.5, 6.0], ids=["within-pillow", "beyond-pillow"])
def test_apply_codes_follows_a_table_whose_entries_lie_far_outside_the_cube(scale: float):
    """An inverse map's table runs far outside [0, 1] (±150 for the samples' map); Pillow holds
    entries only within ±2.008, so such a table is interpolated by `interpolate` instead. An
    affine table is interpolated exactly: the output is the affine map, clipped and rounded."""
    lut = Lut(3, (scale * (lut_grid(3) - 0.5) + 0.5).astype(np.float32))  # entries −2.5 … 3.5 at 6×
    codes = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = quantize(scale * (codes / 255.0 - 0.5) + 0.5, 8).astype(int)
    assert np.abs(lut.apply_codes(codes).astype(int) - expected).max() <= 1  # Pillow's fixed point: ±1


@pytest.mark.parametrize("scale", [1.5, 6.0], ids=["within-pillow", "beyond-pillow"])
def test_apply_codes_takes_rows_and_any_leading_shape_as_an_image(scale: float):
    """Rows (N, 3), (…, 3) and empty arrays give what the same codes give as an image, in their
    own shape, through Pillow's filter and through `interpolate` alike."""
    lut = Lut(3, (scale * (lut_grid(3) - 0.5) + 0.5).astype(np.float32))
    image = np.random.default_rng(3).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    expected = lut.apply_codes(image)
    np.testing.assert_array_equal(lut.apply_codes(image.reshape(-1, 3)), expected.reshape(-1, 3))
    np.testing.assert_array_equal(lut.apply_codes(image.reshape(2, 2, 6, 3)), expected.reshape(2, 2, 6, 3))
    np.testing.assert_array_equal(lut.apply_codes(image[:, ::2]), lut.apply_codes(image[:, ::2].copy()))
    assert lut.apply_codes(image[:0].reshape(0, 3)).shape == (0, 3)
    with pytest.raises(ValueError, match="uint8 RGB codes"):
        lut.apply_codes(image[..., :2])


def test_an_affine_map_is_interpolated_exactly_and_a_sharp_step_is_not():
    affine = _sharp_step(0.1)
    with torch.no_grad():
        affine.rho.fill_(-60.0)  # no step: the identity, which trilinear interpolation reproduces
    assert interpolation_error(bake(affine, 5), affine)[1] < 1e-3
    sharp = _sharp_step(0.01)
    coarse, fine = interpolation_error(bake(sharp, 33), sharp), interpolation_error(bake(sharp, 65), sharp)
    assert fine[0] <= coarse[0] and fine[1] < coarse[1]
    assert coarse[1] > 2  # a step 0.01 wide inside a cell 1/32 wide (measured: 7.3 code values)


def test_the_title_names_every_setting_baked_into_the_table():
    assert lut_title("ridge") == lut_title("ridge", controls=Controls()) == "colorot ridge"
    assert lut_title("cmgn", strength=0.5, inverse=True,
                     controls=Controls(keep_luminance=True, saturation=1.2, neutral=0.3)) == (
        "colorot cmgn strength 0.5 inverse keep-luminance saturation 1.2 neutral 0.3")
    assert lut_title("mmgn", controls=Controls(neutral=1.0)) == "colorot mmgn neutral 1"
