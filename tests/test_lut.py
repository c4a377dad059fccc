"""Baked 65³ LUTs (``export-lut``'s .cube files) against the exact map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot.apply import map_pixels
from colorot.errors import ConfigError
from colorot.imageio import quantize
from colorot.lut import bake, lut_grid
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
