"""The 8-bit fast path: a 256³ colour table filled as colours come, against the exact map."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image as PILImage

import colorot.colour_table as colour_table_module
from colorot.apply import apply_to_file, colour_evaluator, colour_table, map_pixels, plan, run
from colorot.colour_table import ColourTable
from colorot.imageio import Image, codes_of_words, quantize, read_image, words_of_codes, write_image
from colorot.ridge_profiles import RidgeProfiles
from colorot.transforms import Interpolated, prepare_map
from _map_helpers import ridge_map


def exact_codes(fitted_map, codes: np.ndarray) -> np.ndarray:
    """The exact path: the map on every pixel in float32, then the output rule."""
    return quantize(map_pixels(fitted_map, codes / np.float32(255)), 8).astype(int)


@pytest.fixture(scope="module")
def sliced_like_map():
    return ridge_map(5, ridges=24, steps=24, sharpness=300.0, height=0.02)


@pytest.fixture
def random_codes():
    return np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)


def test_table_of_the_exact_map_gives_the_exact_path(curved_map, random_codes):
    got = colour_table(curved_map).apply_codes(random_codes).astype(int)
    np.testing.assert_array_equal(got, exact_codes(curved_map, random_codes))


def test_table_of_a_ridge_map_differs_only_at_rounding_ties(sliced_like_map, random_codes):
    """Profiles within 1e-7 of the map: a code can flip only where T·255 is within ~3e-5 of a .5."""
    assert isinstance(colour_evaluator(sliced_like_map), RidgeProfiles)
    diff = np.abs(colour_table(sliced_like_map).apply_codes(random_codes).astype(int)
                  - exact_codes(sliced_like_map, random_codes))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_partial_strength_of_a_ridge_map_goes_through_its_profiles(sliced_like_map, random_codes):
    half = prepare_map(sliced_like_map, strength=0.5)
    assert isinstance(half, Interpolated)
    diff = np.abs(colour_table(half).apply_codes(random_codes).astype(int) - exact_codes(half, random_codes))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_codes_viewing_rgbx_words_map_as_plain_codes(curved_map, random_codes):
    """Decoded 8-bit images are views of RGBX words: the table gathers on the words, whatever their 4th byte."""
    words = random_codes.astype("<u4") @ np.array([1, 1 << 8, 1 << 16], dtype="<u4")
    words |= np.random.default_rng(9).integers(0, 256, words.shape, dtype="<u4") << 24
    view = codes_of_words(words)
    assert words_of_codes(view) is not None
    got = colour_table(curved_map).apply_codes(view)
    np.testing.assert_array_equal(got, exact_codes(curved_map, random_codes))
    assert words_of_codes(got) is not None  # ready for the encoder as they are


def test_each_colour_is_evaluated_once():
    calls = []

    def evaluate(colours):
        calls.append(len(colours))
        return colours * 0.5

    table = ColourTable(evaluate)
    codes = np.zeros((4, 5, 3), dtype=np.uint8)
    codes[0, 0] = [255, 0, 10]
    first = table.apply_codes(codes)
    again = table.apply_codes(codes[::-1].copy())
    assert calls == [2]  # two distinct colours, evaluated together once
    np.testing.assert_array_equal(first[0, 0], [128, 0, 5])
    np.testing.assert_array_equal(again[-1, 0], [128, 0, 5])


def test_band_size_does_not_change_the_answer(curved_map, random_codes, monkeypatch):
    whole = colour_table(curved_map).apply_codes(random_codes)
    monkeypatch.setattr(colour_table_module, "BAND_PIXELS", 1000)
    np.testing.assert_array_equal(colour_table(curved_map).apply_codes(random_codes), whole)


def test_threads_sharing_a_table_agree(curved_map):
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(8)]
    table = colour_table(curved_map)
    results = [None] * len(images)

    def work(i):
        results[i] = table.apply_codes(images[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for image, result in zip(images, results):
        np.testing.assert_array_equal(result, exact_codes(curved_map, image))


def test_odd_shapes_and_bad_input(curved_map):
    table = colour_table(curved_map)
    assert table.apply_codes(np.zeros((0, 7, 3), np.uint8)).shape == (0, 7, 3)
    assert table.apply_codes(np.full((3, 3), 200, np.uint8)).shape == (3, 3)  # one row of 3 colours
    with pytest.raises(ValueError):
        table.apply_codes(np.zeros((2, 2, 3), np.uint16))


def test_apply_to_file_table_path_and_16_bit_path_of_an_unridged_map(curved_map, tmp_path):
    codes8 = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    PILImage.fromarray(codes8).save(tmp_path / "a.png")
    table = colour_table(curved_map)
    apply_to_file(curved_map, tmp_path / "a.png", tmp_path / "table.png", table=table)
    apply_to_file(curved_map, tmp_path / "a.png", tmp_path / "exact.png")
    np.testing.assert_array_equal(read_image(tmp_path / "table.png").codes, read_image(tmp_path / "exact.png").codes)

    gray16 = np.random.default_rng(2).integers(0, 65536, (20, 30), dtype=np.uint16)
    PILImage.fromarray(gray16).save(tmp_path / "b.png")
    apply_to_file(curved_map, tmp_path / "b.png", tmp_path / "b16.png", table=table)
    image = read_image(tmp_path / "b.png")
    got = read_image(tmp_path / "b16.png")
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.codes, quantize(map_pixels(curved_map, image.rgb), 16))  # the map itself


def test_map_floats_takes_16_bit_codes_band_by_band_as_their_floats(sliced_like_map, monkeypatch):
    codes = np.random.default_rng(4).integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    floats = codes.astype(np.float32)
    floats /= 65535
    monkeypatch.setattr(colour_table_module, "BAND_PIXELS", 7)  # many bands, the last partial
    table = colour_table(sliced_like_map)
    np.testing.assert_array_equal(table.map_floats(codes), table.map_floats(floats))
    np.testing.assert_allclose(table.map_floats(codes), map_pixels(sliced_like_map, floats), atol=1e-6)


def test_16_bit_images_of_a_ridge_map_go_through_its_profiles(sliced_like_map, tmp_path):
    rgb16 = np.random.default_rng(3).integers(0, 65536, (40, 50, 3), dtype=np.uint16)
    path = tmp_path / "c.png"
    write_image(path, Image(codes=rgb16, alpha=None, bit_depth=16, mode="RGB", format="PNG"), rgb16)
    apply_to_file(sliced_like_map, path, tmp_path / "fast16.png", table=colour_table(sliced_like_map))
    apply_to_file(sliced_like_map, path, tmp_path / "exact16.png")
    fast, exact = read_image(tmp_path / "fast16.png"), read_image(tmp_path / "exact16.png")
    assert fast.bit_depth == exact.bit_depth == 16
    diff = np.abs(fast.codes.astype(int) - exact.codes.astype(int))
    # 1e-7 is 0.007 of a 16-bit code; float32 rounds the exact map by ~4e-7 (0.03 codes) itself.
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # 0.2 % measured


def test_parallel_run_matches_serial(curved_map, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(4)
    for i in range(6):
        PILImage.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / f"{i}.png")
    serial = run(plan([src], tmp_path / "one"), curved_map, jobs=1, table=colour_table(curved_map))
    parallel = run(plan([src], tmp_path / "two"), curved_map, jobs=3, table=colour_table(curved_map))
    assert [j.src.name for j in serial.written] == [j.src.name for j in parallel.written]
    for job in serial.written:
        np.testing.assert_array_equal(read_image(job.dst).codes, read_image(tmp_path / "two" / job.dst.name).codes)
