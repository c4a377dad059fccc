"""The measures behind ``colorot eval`` (colorot.metrics): exact W2, clipped fraction, Jacobian floor."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from colorot.errors import ConfigError
from colorot.metrics import (W2_PIXELS, clipped_fraction, evaluate, exact_w2, min_jacobian_eigenvalue,
                             rms_displacement, sliced_w2, subsample)
from colorot.models import AffineMap, build_model


# ------------------------------------------------------------------ exact W2
def test_exact_w2_of_a_set_to_itself_is_zero(rng) -> None:
    x = rng.random((40, 3))
    assert exact_w2(x, x) == 0.0
    assert exact_w2(x, x[rng.permutation(40)]) == pytest.approx(0.0, abs=1e-12)  # order does not matter


def test_exact_w2_to_a_translate_is_the_shift_length(rng) -> None:
    # Σ‖xᵢ − x_σ(i) − v‖² = Σ‖xᵢ − x_σ(i)‖² + n‖v‖² for every permutation σ: the identity wins.
    x = rng.random((60, 3))
    v = np.array([0.3, -0.1, 0.2])
    assert exact_w2(x, x + v) == pytest.approx(np.linalg.norm(v), rel=1e-12)


def test_exact_w2_matches_brute_force_over_permutations(rng) -> None:
    a, b = rng.random((6, 3)), rng.random((6, 3))
    best = min(np.mean(np.sum((a - b[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(6)))
    assert exact_w2(a, b) == pytest.approx(np.sqrt(best), rel=1e-12)


def test_exact_w2_subsamples_as_documented(rng) -> None:
    """n = min(pixels, |a|, |b|); subsample(a) then subsample(b) from one default_rng(seed)."""
    a, b = rng.random((30, 3)), rng.random((25, 3))
    draws = np.random.default_rng(7)
    xa, xb = subsample(a, 6, draws), subsample(b, 6, draws)
    best = min(np.mean(np.sum((xa - xb[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(6)))
    assert exact_w2(a, b, pixels=6, seed=7) == pytest.approx(np.sqrt(best), rel=1e-12)
    assert exact_w2(a, b, pixels=6, seed=7) != exact_w2(a, b, pixels=6, seed=8)
    assert exact_w2(a[:4], b, pixels=W2_PIXELS) == exact_w2(a[:4], b, pixels=4)  # the smaller set bounds n


# ------------------------------------------------------------ clipped fraction
def test_clipped_fraction_counts_pixels_with_any_channel_outside_the_unit_cube() -> None:
    mapped = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-0.01, 0.5, 0.5], [0.5, 1.2, 0.5],
                       [np.nan, 0.5, 0.5], [0.2, 0.4, 0.6], [-1.0, 2.0, 3.0], [0.5, 0.5, 1.0]])
    assert clipped_fraction(mapped) == 4 / 8  # the edges 0 and 1 are inside; NaN is clipped
    assert clipped_fraction(mapped.reshape(2, 4, 3)) == 4 / 8
    assert clipped_fraction(np.full((5, 3), 0.5)) == 0.0


# ------------------------------------------------------- minimum eigenvalue of J
def test_min_jacobian_eigenvalue_of_an_affine_map_is_its_matrix_smallest_eigenvalue(rng) -> None:
    model = AffineMap(eps=1e-3)
    with torch.no_grad():
        model.V.copy_(torch.as_tensor(rng.normal(size=(3, 3)) * 0.5, dtype=torch.float32))
    expected = float(np.linalg.eigvalsh(model.linear_matrix().double().detach().numpy())[0])
    pixels = rng.random((50, 3)).astype(np.float32)
    assert min_jacobian_eigenvalue(model, pixels) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_min_jacobian_eigenvalue_of_an_mmgn_is_at_least_eps_and_is_the_minimum_over_colours(rng) -> None:
    torch.manual_seed(3)
    model = build_model("mmgn", {"hidden": 4, "modules": 3, "eps": 1e-2}).double()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 2.0)
    codes = rng.integers(0, 256, size=(300, 3))
    pixels = np.concatenate([codes, codes[:100]]) / 255.0  # duplicates: evaluated once
    low = min_jacobian_eigenvalue(model, pixels)
    assert low >= 1e-2 - 1e-12
    jac = model.jacobian(torch.as_tensor(pixels)).detach()
    assert low == pytest.approx(float(torch.linalg.eigvalsh(jac)[:, 0].min()), rel=1e-12)
    assert min_jacobian_eigenvalue(model, pixels, chunk=7) == pytest.approx(low, rel=1e-12)


def test_min_jacobian_eigenvalue_of_an_mmgn_reaches_eps_when_the_network_is_rank_deficient(rng) -> None:
    # One module of 2 units: Σ_k W_kᵀ[…]W_k has rank ≤ 2 in 3-D; with V = 0 the floor εI is attained.
    model = build_model("mmgn", {"hidden": 2, "modules": 1, "eps": 1e-2}).double()
    with torch.no_grad():
        model.W.normal_(0.0, 2.0)
        model.V.zero_()
    assert min_jacobian_eigenvalue(model, rng.random((100, 3))) == pytest.approx(1e-2, rel=1e-9)


class _Skew(torch.nn.Module):
    """J = [[1, 4, 0], [0, 1, 0], [0, 0, 1]] everywhere: eigenvalues all 1, its symmetric part's −1, 1, 3."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.evaluated = 0

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluated += x.shape[0]
        jac = torch.eye(3, dtype=x.dtype) * self.scale
        jac[0, 1] = 4.0
        return jac.expand(x.shape[0], 3, 3)


def test_min_jacobian_eigenvalue_takes_the_symmetric_part_once_per_distinct_colour() -> None:
    skew = _Skew()
    pixels = np.repeat(np.array([[0.5, 0.5, 0.5], [0.0, 1.0, 0.2], [0.1, 0.2, 0.3]]), 5, axis=0).reshape(3, 5, 3)
    assert min_jacobian_eigenvalue(skew, pixels) == pytest.approx(-1.0)
    assert skew.evaluated == 3


# ------------------------------------------------------------------- evaluate
def test_evaluate_combines_the_measures_and_refuses_unpaired_pixels(rng) -> None:
    source, target = rng.random((200, 3)), rng.random((150, 3)) ** 2
    output = source * 1.2 - 0.1
    r = evaluate(source, output, target, directions=16, pixels=100, w2_pixels=50, seed=4)
    assert r["sw2"] == sliced_w2(np.clip(output, 0, 1), target, directions=16, pixels=100, seed=4)
    assert r["sw2_source"] == sliced_w2(source, target, directions=16, pixels=100, seed=4)
    assert r["rms_displacement"] == rms_displacement(source, output)
    assert r["w2"] == exact_w2(source, target, pixels=50, seed=4)
    assert r["rms_over_w2"] == pytest.approx(r["rms_displacement"] / r["w2"] - 1)
    assert r["min_jacobian_eigenvalue"] is None and r["clipped_fraction"] is None
    with pytest.raises(ConfigError, match="200 pixels and the output 150"):
        evaluate(source, output[:150], target)
