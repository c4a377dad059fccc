"""The baked 3-D LUT fast path against the exact map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from colorot.apply import apply_to_file, lut_difference, map_pixels, plan, run
from colorot.errors import ConfigError
from colorot.imageio import quantize, read_image
from colorot.lut import bake, lut_grid
from colorot.models import MMGN, RidgeMGN, gaussian_map_matrix


@pytest.fixture(scope="module")
def curved_map():
    """An M-MGN with real curvature, started at a colour-shifting Gaussian map."""
    rng = np.random.default_rng(3)
    points = rng.random((2000, 3))
    a = gaussian_map_matrix(np.diag([0.05, 0.04, 0.06]), np.array(
        [[0.03, 0.01, 0.0], [0.01, 0.05, 0.01], [0.0, 0.01, 0.02]]))
    torch.manual_seed(0)
    model = MMGN()
    model.init_hidden(points)
    model.init_to_affine(a, np.array([0.2, 0.0, -0.1]), points)
    with torch.no_grad():  # grow the nonlinear part well past its near-affine start
        model.W.mul_(8.0)
    return model.eval().requires_grad_(False)


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


def test_apply_to_file_lut_path_and_16_bit_exact_path(curved_map, tmp_path):
    codes8 = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    PILImage.fromarray(codes8).save(tmp_path / "a.png")
    lut = bake(curved_map)
    apply_to_file(curved_map, tmp_path / "a.png", tmp_path / "lut.png", lut=lut)
    apply_to_file(curved_map, tmp_path / "a.png", tmp_path / "exact.png")
    a = read_image(tmp_path / "lut.png").codes.astype(int)
    b = read_image(tmp_path / "exact.png").codes.astype(int)
    assert np.abs(a - b).max() <= 1

    gray16 = np.random.default_rng(2).integers(0, 65536, (20, 30), dtype=np.uint16)
    PILImage.fromarray(gray16).save(tmp_path / "b.png")
    apply_to_file(curved_map, tmp_path / "b.png", tmp_path / "b16.png", lut=lut)
    image = read_image(tmp_path / "b.png")
    expected = quantize(map_pixels(curved_map, image.rgb), 16)
    got = read_image(tmp_path / "b16.png")
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.codes, expected)  # 16-bit never goes through the LUT


def test_parallel_run_matches_serial(curved_map, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(4)
    for i in range(6):
        PILImage.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / f"{i}.png")
    lut = bake(curved_map)
    serial = run(plan([src], tmp_path / "one"), curved_map, jobs=1, lut=lut)
    parallel = run(plan([src], tmp_path / "two"), curved_map, jobs=3, lut=lut)
    assert [j.src.name for j in serial.written] == [j.src.name for j in parallel.written]
    for job in serial.written:
        np.testing.assert_array_equal(read_image(job.dst).codes,
                                      read_image(tmp_path / "two" / job.dst.name).codes)


def test_lut_difference_reports_a_faithful_lut(curved_map):
    worst, share = lut_difference(curved_map, bake(curved_map))
    assert worst <= 1 and 0 <= share < 1


def test_lut_difference_catches_a_step_too_sharp_for_the_grid():
    """One tall step 1/200 wide along red: the 65³ grid (cells 1/64 wide) cannot follow it."""
    model = RidgeMGN(hidden=1)
    with torch.no_grad():
        model.V.copy_(torch.eye(3))
        model.W.copy_(torch.tensor([[800.0, 0.0, 0.0]]))
        model.biases.fill_(-800.0 * 0.503)
        model.rho.fill_(float(np.log(np.expm1(0.3 / 800.0))))  # step height 0.3 along red
    worst, share = lut_difference(model.eval(), bake(model))
    assert worst > 10 and share > 0
