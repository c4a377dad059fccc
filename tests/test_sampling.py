"""Representative subsamples: distinct rows, each colour cell's share to within one, less error than i.i.d."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from colorot import sampling
from colorot.sampling import KEY_BITS, colour_order, representative_subsample, thinned


def cells(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's colour cell at KEY_BITS bits per channel, as one integer (a plain raster code)."""
    levels = 1 << KEY_BITS
    codes = np.clip(pixels.astype(np.float32) * np.float32(levels), 0, levels - 1).astype(np.int64)
    return (codes[:, 0] * levels + codes[:, 1]) * levels + codes[:, 2]


def clustered_pixels(seed: int, count: int) -> np.ndarray:
    """``count`` float32 pixels in [0, 1] from a few Gaussian blobs: a photo-like colour distribution."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15, 0.85, (4, 3))
    pixels = centres[rng.integers(0, 4, count)] + rng.normal(0, 0.08, (count, 3))
    return np.clip(pixels, 0, 1).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(50, 3000), st.integers(1, 49))
def test_each_colour_cell_gets_its_share_to_within_one(seed: int, count: int, n: int) -> None:
    pixels = clustered_pixels(seed, count)
    picked = representative_subsample(pixels, n, np.random.default_rng(seed))
    assert picked.shape == (n, 3)
    rows = {row.tobytes() for row in pixels}
    assert all(row.tobytes() in rows for row in picked)
    # Along the colour order, any run of consecutive cells holds its share n·p of the sample to
    # within one pixel (systematic sampling); checked for every single cell and for every prefix.
    order = colour_order(pixels)
    sorted_cells = cells(pixels[order])
    boundaries = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1], True])
    picked_cells = cells(picked)
    for start, end in pairwise(boundaries):
        share = n * (end - start) / count
        assert abs(np.count_nonzero(picked_cells == sorted_cells[start]) - share) < 1
        assert abs(np.isin(picked_cells, sorted_cells[:end]).sum() - n * end / count) < 1


def test_pixels_of_one_colour_cell_keep_their_raster_order() -> None:
    """Within a cell the order is the image's own (the module docstring), so a subsample is spread
    across the frame as well.  2000 pixels of four colours at random places: an unstable sort (quicksort,
    which passed every test) scrambles each colour's pixels among themselves."""
    palette = np.array([[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.5, 0.5, 0.5], [0.2, 0.8, 0.6]], np.float32)
    labels = np.random.default_rng(4).integers(0, 4, 2000)
    order = colour_order(palette[labels])
    assert sorted(order.tolist()) == list(range(2000))
    runs = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    assert len(runs) == 4  # one run for each colour, each in raster order
    for run in runs:
        assert (np.diff(run) > 0).all()


def test_the_rows_are_distinct_and_all_are_kept_when_there_are_few() -> None:
    pixels = np.random.default_rng(0).random((1000, 3)).astype(np.float32)
    picked = representative_subsample(pixels, 999, np.random.default_rng(1))
    assert len({row.tobytes() for row in picked}) == 999
    assert representative_subsample(pixels, 1000, np.random.default_rng(1)) is pixels
    assert representative_subsample(pixels, 5000, np.random.default_rng(1)) is pixels


def test_a_seed_gives_one_subsample_and_another_seed_another() -> None:
    pixels = clustered_pixels(3, 20_000)
    first = representative_subsample(pixels, 500, np.random.default_rng(7))
    assert np.array_equal(first, representative_subsample(pixels, 500, np.random.default_rng(7)))
    assert not np.array_equal(first, representative_subsample(pixels, 500, np.random.default_rng(8)))


def test_the_subsample_estimates_quantiles_better_than_an_iid_one() -> None:
    """Over 20 seeds, the 5/50/95 % quantiles of 2 000 of 200 000 pixels miss the full image's by
    less than an i.i.d. subsample's do (the flicker of frame-by-frame fits, bench/EXPERIMENTS.md E43)."""
    pixels = clustered_pixels(11, 200_000)
    levels = [0.05, 0.5, 0.95]
    exact = np.quantile(pixels, levels, axis=0)
    ours, iid = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ours.append(np.abs(np.quantile(representative_subsample(pixels, 2000, rng), levels, axis=0) - exact).mean())
        iid.append(np.abs(np.quantile(pixels[rng.choice(len(pixels), 2000, replace=False)], levels, axis=0)
                          - exact).mean())
    assert np.mean(ours) < 0.5 * np.mean(iid)


@contextlib.contextmanager
def _ordered_pixels(count: int) -> Iterator[None]:
    """sampling.ORDERED_PIXELS set to ``count`` for a hypothesis example (monkeypatch is per test)."""
    original = sampling.ORDERED_PIXELS
    sampling.ORDERED_PIXELS = count
    try:
        yield
    finally:
        sampling.ORDERED_PIXELS = original

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 5000), st.integers(1, 4999))
def test_a_large_image_is_thinned_first_yet_gives_n_distinct_rows(seed: int, count: int, n: int) -> None:
    """Above ORDERED_PIXELS (here 100) the pixels are thinned before the colour order; still n rows."""
    pixels = np.random.default_rng(seed).random((count, 3)).astype(np.float32)
    with _ordered_pixels(100):
        picked = representative_subsample(pixels, n, np.random.default_rng(seed))
    assert len(picked) == min(n, count)
    rows = {row.tobytes() for row in pixels}
    assert len({row.tobytes() for row in picked}) == len(picked) and all(row.tobytes() in rows for row in picked)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 3000), st.integers(1, 2999))
def test_an_order_the_caller_keeps_gives_the_same_subsample(seed: int, count: int, n: int) -> None:
    """``order``: a caller's colour order of its own pixels (colorot.transfer.Reference) changes nothing."""
    pixels = clustered_pixels(seed, count)
    kept = colour_order(pixels)
    picked = representative_subsample(pixels, n, np.random.default_rng(seed),
                                      lambda rows: kept if rows is pixels else colour_order(rows))
    assert np.array_equal(picked, representative_subsample(pixels, n, np.random.default_rng(seed)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 5000), st.integers(1, 400))
def test_thinning_keeps_every_kth_row_and_at_least_what_the_order_takes(seed: int, count: int, n: int) -> None:
    """Every k-th row from a drawn start, at least max(n, ORDERED_PIXELS) (here 100) and fewer than twice that."""
    pixels = np.arange(count * 3, dtype=np.float32).reshape(count, 3)
    with _ordered_pixels(100):
        kept = thinned(pixels, n, np.random.default_rng(seed))
    least = max(n, 100)
    if count < 2 * least:
        assert kept is pixels
    else:
        rows = (kept[:, 0] / 3).astype(int)
        stride = count // least
        assert least <= len(kept) < 2 * least and set(np.diff(rows)) == {stride} and rows[0] < stride
