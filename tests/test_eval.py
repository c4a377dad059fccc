"""``colorot eval`` and the measures behind it (colorot.metrics): exact and debiased W2, clipped fraction,
Jacobian floor."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.linalg import sqrtm
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import ColorTransfer, checkpoint
from colorot.apply import map_pixels
from colorot.cli import app
from colorot.errors import ConfigError
from colorot.imageio import read_pixels
from colorot.metrics import (W2_ESTIMATE_PIXELS, W2_PIXELS, W2_REPEATS, clipped_fraction, evaluate, evaluate_files,
                             exact_w2, min_jacobian_eigenvalue, rms_displacement, sliced_w2, subsample, w2_estimate)
from colorot.models import AffineMap, build_model

from conftest import smooth_rgb


# ------------------------------------------------------------------ sliced W2
# SW2² = mean over unit θ of W2²(⟨θ, X⟩, ⟨θ, Y⟩); over many directions the mean of θθᵀ is I/3.
MANY_DIRECTIONS = 20_000  # seed 0's: the eigenvalues of 3·mean θθᵀ within 1.2 % of 1


@settings(max_examples=20, deadline=None)
@given(shift=hnp.arrays(np.float64, 3, elements=st.floats(-0.5, 0.5)).filter(lambda v: np.linalg.norm(v) > 0.05),
       seed=st.integers(0, 2**32 - 1))
def test_sliced_w2_to_a_translate_is_the_shift_over_root_3(shift, seed) -> None:
    """Shifting X by δ moves each projection by ⟨θ, δ⟩: SW2² = mean ⟨θ, δ⟩² → ‖δ‖²/3; and a set
    against a reordering of itself reads 0."""
    x = np.random.default_rng(seed).random((300, 3))
    assert sliced_w2(x, x[::-1]) == 0.0
    assert sliced_w2(x + shift, x, directions=MANY_DIRECTIONS) == pytest.approx(np.linalg.norm(shift) / 3**0.5,
                                                                                 rel=0.01)


def test_sliced_w2_of_sets_on_one_axis_is_their_1d_w2_over_root_3(rng) -> None:
    """On the red axis alone each projection is θ_r·t: SW2² = mean θ_r² · W2²(1-D) → W2²(1-D)/3, the
    1-D W2 being that of the sorted values."""
    t, u = rng.random(500), rng.random(500) ** 3
    on_axis = lambda v: np.stack([v, np.zeros_like(v), np.zeros_like(v)], axis=1)  # noqa: E731
    w2_1d = np.sqrt(np.mean((np.sort(t) - np.sort(u)) ** 2))
    assert sliced_w2(on_axis(t), on_axis(u), directions=MANY_DIRECTIONS) == pytest.approx(w2_1d / 3**0.5, rel=0.005)


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


# ------------------------------------------------------------ debiased W2
def _gaussian_w2(m1, s1, m2, s2) -> float:
    """Closed form: W2² = ‖m1 − m2‖² + tr(S1 + S2 − 2 (S1^½ S2 S1^½)^½)."""
    root = np.real(sqrtm(s1))
    return float(np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(root @ s2 @ root)))))


@settings(max_examples=15, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(4, 60), st.just(3)), elements=st.floats(0, 1)),
       st.integers(0, 2**32 - 1))
def test_w2_estimate_of_a_set_against_itself_is_zero_and_unresolved(x, seed) -> None:
    est = w2_estimate(x, x.copy(), pixels=20, repeats=3, seed=seed)
    assert est.w2 == 0.0 and est.raw == 0.0 and est.low == 0.0 and not est.resolved
    assert est.floor >= 0.0 and est.pixels == min(20, len(x) // 2)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_w2_estimate_of_two_draws_of_one_distribution_reads_within_its_floor(seed) -> None:
    """Not the same pixels: the raw subsample W2 reads the floor; the debiased one is not resolved from 0."""
    draws = np.random.default_rng(seed)
    a, b = draws.random((2000, 3)), draws.random((2000, 3))
    est = w2_estimate(a, b, pixels=150, repeats=6, seed=seed)
    assert est.raw == pytest.approx(est.floor, rel=0.3)  # the old estimate: all noise
    assert est.w2 < est.floor and est.low <= est.w2 <= est.high


def test_w2_estimate_recovers_a_gaussian_pair_within_its_interval_where_the_raw_estimate_is_biased() -> None:
    m1, s1 = np.array([0.5, 0.4, 0.3]), np.array([[0.02, 0.01, 0.0], [0.01, 0.03, 0.005], [0.0, 0.005, 0.01]])
    m2, s2 = np.array([0.6, 0.45, 0.2]), np.diag([0.01, 0.015, 0.04])
    truth = _gaussian_w2(m1, s1, m2, s2)
    draws = np.random.default_rng(0)
    a, b = draws.multivariate_normal(m1, s1, 4000), draws.multivariate_normal(m2, s2, 4000)
    est = w2_estimate(a, b, pixels=300, repeats=6, seed=1)
    assert est.low <= truth <= est.high and est.resolved
    assert abs(est.w2 - truth) < 0.005 < est.raw - truth  # the raw (old) estimate's bias, removed


def test_w2_estimate_agrees_with_pot_on_the_whole_sets() -> None:
    """POT's exact OT between all 1200 points is the W2 the 200-pixel subsamples estimate."""
    ot = pytest.importorskip("ot")
    draws = np.random.default_rng(3)
    a, b = draws.random((1200, 3)) ** 2, draws.random((1200, 3)) * 0.6 + 0.2
    weights = np.full(1200, 1 / 1200)
    whole = float(np.sqrt(ot.emd2(weights, weights, ot.dist(a, b), numItermax=10**7)))
    est = w2_estimate(a, b, pixels=200, repeats=6, seed=0)
    assert est.low <= whole <= est.high
    assert abs(est.w2 - whole) < est.raw - whole
    xa, xb, half = a[:500], b[:500], np.full(500, 1 / 500)  # each assignment is POT's exact OT on its draws
    assert exact_w2(xa, xb, pixels=500) == pytest.approx(np.sqrt(ot.emd2(half, half, ot.dist(xa, xb))), rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_w2_estimate_draws_disjoint_halves_as_documented(rng, shift) -> None:
    """Each figure recomputed from the documented draws, the interval too (docs/cli.md, eval):
    [sqrt(max(0, mean d − t·s_d)), sqrt(mean c + t·s_c)], s the standard error of the mean over the
    R repeats (std with ddof 1 over √R), t the two-sided 95 % Student quantile with R − 1 degrees of
    freedom, t.ppf(0.975, R − 1).  Only the estimate was checked: a low margin halved, the high
    margin dropped or the one-sided quantile t.ppf(0.95, …) passed.  The shifted pair (b moved by
    0.5 on each channel) has its lower end above 0, where a wrong low margin shows."""
    from scipy.stats import t as student

    a, b = rng.random((30, 3)), rng.random((26, 3)) + shift
    draws = np.random.default_rng(5)
    cross, floor = [], []
    for _ in range(3):
        pa, pb = a[draws.choice(30, 20, replace=False)], b[draws.choice(26, 20, replace=False)]
        cross.append(exact_w2(pa[:10], pb[:10]) ** 2)
        floor.append((exact_w2(pa[:10], pa[10:]) ** 2 + exact_w2(pb[:10], pb[10:]) ** 2) / 2)
    est = w2_estimate(a, b, pixels=10, repeats=3, seed=5)
    assert est.raw == pytest.approx(np.sqrt(np.mean(cross)), rel=1e-12)
    assert est.floor == pytest.approx(np.sqrt(np.mean(floor)), rel=1e-12)
    assert est.w2 == pytest.approx(np.sqrt(max(0.0, np.mean(cross) - np.mean(floor))), rel=1e-12)
    t = student.ppf(0.975, 3 - 1)
    d = np.subtract(cross, floor)
    low = np.sqrt(max(0.0, d.mean() - t * d.std(ddof=1) / np.sqrt(3)))
    high = np.sqrt(np.mean(cross) + t * np.std(cross, ddof=1) / np.sqrt(3))
    assert est.high == pytest.approx(high, rel=1e-12)
    assert est.low == pytest.approx(low, rel=1e-12, abs=0.0)
    assert est.resolved == (shift > 0) and (est.low > 0) == (shift > 0)  # the case each pair is here for
    assert w2_estimate(a, b, pixels=100, repeats=3).pixels == 13  # the smaller set's half bounds n
    with pytest.raises(ValueError, match="has 1 pixel.*needs at least 2"):
        w2_estimate(a[:1], b)


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
    est = w2_estimate(source, target, pixels=50, repeats=W2_REPEATS, seed=4)
    assert (r["w2"], r["w2_interval"], r["w2_floor"], r["w2_raw"]) == (est.w2, [est.low, est.high], est.floor, est.raw)
    assert (r["w2_pixels"], r["w2_repeats"]) == (50, W2_REPEATS) and est.resolved
    assert r["rms_over_w2"] == pytest.approx(r["rms_displacement"] / r["w2"] - 1)
    assert r["min_jacobian_eigenvalue"] is None and r["clipped_fraction"] is None
    with pytest.raises(ConfigError, match="200 pixels and the output 150"):
        evaluate(source, output[:150], target)


def test_evaluate_leaves_rms_over_w2_undefined_where_w2_is_above_0_but_not_resolved() -> None:
    """Two draws of one uniform distribution: the debiased W2 reads a little above 0 (0.053) while
    its interval reaches 0 ([0, 0.185]), so W2 is within the noise and RMS/W2 − 1 is undefined
    (None), as documented; the check once read w2 > 0 and would have divided by the noise."""
    draws = np.random.default_rng(1)
    source, target = draws.random((300, 3)), draws.random((300, 3))
    r = evaluate(source, source * 0.9 + 0.05, target, directions=16, pixels=100, w2_pixels=150, w2_repeats=6, seed=1)
    assert r["w2"] > 0.0 and r["w2_interval"][0] == 0.0  # the case: an estimate above 0, not resolved
    assert r["rms_over_w2"] is None
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A dull source, a contrasty target, a closed-form affine checkpoint and SOURCE after apply."""
    root = tmp_path_factory.mktemp("eval")
    paths = {name: root / f"{name}.png" for name in ("source", "target", "output", "small")}
    dull = np.round(64 + smooth_rgb(16, 20, 1) / 2).astype(np.uint8)
    PILImage.fromarray(dull).save(paths["source"])
    contrasty = smooth_rgb(18, 22, 2).astype(np.float64)
    PILImage.fromarray(np.clip((contrasty - 128) * 2.5 + 128, 0, 255).astype(np.uint8)).save(paths["target"])
    PILImage.fromarray(dull[:8, :10]).save(paths["small"])
    paths["model"] = root / "model.pt"
    ColorTransfer(model="affine", target="gaussian").fit(paths["source"], paths["target"]).save(paths["model"])
    result = CliRunner().invoke(app, ["apply", str(paths["model"]), str(paths["source"]), str(paths["output"]),
                                      "--exact", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return paths


def _eval(*args: object):
    return CliRunner().invoke(app, ["eval", *(str(a) for a in args)])


def test_eval_json_without_model_equals_the_library(files) -> None:
    result = _eval(files["source"], files["output"], files["target"], "--json", "--w2-pixels", "200", "--seed", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    src, out, tgt = (read_pixels(files[k]) for k in ("source", "output", "target"))
    assert doc["sw2"] == sliced_w2(np.clip(out, 0, 1), tgt, seed=3)
    assert doc["sw2_source"] == sliced_w2(src, tgt, seed=3)
    assert doc["sw2"] < doc["sw2_source"]  # the transfer moved the source towards the target
    assert doc["rms_displacement"] == rms_displacement(src, out)
    est = w2_estimate(src, tgt, pixels=200, seed=3)
    assert (doc["w2"], doc["w2_interval"], doc["w2_floor"], doc["w2_raw"]) == (est.w2, [est.low, est.high],
                                                                               est.floor, est.raw)
    assert doc["rms_over_w2"] == pytest.approx(doc["rms_displacement"] / doc["w2"] - 1)
    assert doc["min_jacobian_eigenvalue"] is None and doc["clipped_fraction"] is None and doc["model"] is None
    assert (doc["directions"], doc["pixels"], doc["w2_pixels"], doc["w2_repeats"], doc["seed"]) == \
        (256, 60_000, 16 * 20 // 2, W2_REPEATS, 3)  # n is bounded by half the smaller image
    assert doc["compared_pixels"] == 16 * 20


def test_eval_with_model_adds_jacobian_floor_and_clipped_fraction(files) -> None:
    result = _eval(files["source"], files["output"], files["target"], "--model", files["model"], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    fitted = checkpoint.load(files["model"]).model
    src = read_pixels(files["source"])
    assert doc["min_jacobian_eigenvalue"] == min_jacobian_eigenvalue(fitted, src)
    assert doc["min_jacobian_eigenvalue"] >= fitted.eps * (1 - 1e-4)
    assert doc["clipped_fraction"] == clipped_fraction(map_pixels(fitted, src))
    assert 0 < doc["clipped_fraction"] < 1  # the dull → contrasty map pushes some colours out of [0, 1]
    assert doc["w2"] == w2_estimate(src, read_pixels(files["target"]), pixels=W2_ESTIMATE_PIXELS, seed=0).w2


def test_eval_prints_a_readable_summary(files) -> None:
    plain = _eval(files["source"], files["output"], files["target"])
    assert plain.exit_code == 0, plain.output
    assert "SW2 to target" in plain.stdout and "RMS displacement" in plain.stdout
    assert "n/a (needs --model)" in plain.stdout and plain.stderr == ""
    with_model = _eval(files["source"], files["output"], files["target"], "--model", files["model"])
    assert "of source pixels leave [0, 1]" in with_model.stdout and "needs --model" not in with_model.stdout


def test_eval_of_an_image_against_itself_reads_w2_zero_and_rms_over_w2_undefined(files) -> None:
    """The issue's case: an identity map on identical images must read as moving nothing."""
    same = [files["source"]] * 3
    doc = json.loads(_eval(*same, "--json").stdout)
    assert doc["rms_displacement"] == 0.0 and doc["w2"] == 0.0 and doc["w2_interval"][0] == 0.0
    assert doc["w2_floor"] > 0.0 and doc["rms_over_w2"] is None
    plain = _eval(*same)
    assert plain.exit_code == 0, plain.output
    assert "RMS/W2 − 1           undefined" in plain.stdout and "noise floor" in plain.stdout


def test_eval_leaves_out_the_sources_transparent_pixels(files, tmp_path) -> None:
    rgba = np.dstack([np.asarray(PILImage.open(files["source"])), np.full((16, 20), 255, np.uint8)])
    rgba[:4, :, 3] = 0  # the top four rows are fully transparent
    PILImage.fromarray(rgba).save(tmp_path / "rgba.png")
    doc = evaluate_files(tmp_path / "rgba.png", files["output"], files["target"], w2_pixels=100)
    src, out = (np.asarray(PILImage.open(files[k]).convert("RGB"))[4:] / 255.0 for k in ("source", "output"))
    assert doc["compared_pixels"] == 12 * 20
    assert doc["rms_displacement"] == pytest.approx(rms_displacement(src, out), rel=1e-6)


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_eval_refuses_an_output_of_another_size(files) -> None:
    line = _one_line_error(_eval(files["source"], files["small"], files["target"]))
    assert "20×16" in line and "10×8" in line and "corresponding pixels" in line


def test_eval_needs_two_pixels_of_each_image(files, tmp_path) -> None:
    """A 1×1 image made W2's interval raise a ValueError: a traceback."""
    PILImage.new("RGB", (1, 1)).save(tmp_path / "one.png")
    assert "at least 2" in _one_line_error(_eval(files["source"], files["output"], tmp_path / "one.png"))
    assert "at least 2" in _one_line_error(_eval(tmp_path / "one.png", tmp_path / "one.png", files["target"]))


def test_eval_reports_missing_files_and_bad_checkpoints(files, tmp_path) -> None:
    assert "missing.png" in _one_line_error(_eval(files["source"], tmp_path / "missing.png", files["target"]))
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    assert "bad.pt" in _one_line_error(_eval(files["source"], files["output"], files["target"],
                                             "--model", tmp_path / "bad.pt"))
    assert _eval(files["source"], files["output"], files["target"], "--w2-pixels", "0").exit_code == 2


def test_detail_gain_is_one_for_the_identity_and_scales_with_contrast_squared() -> None:
    from scipy.ndimage import uniform_filter

    from colorot.metrics import detail_gain

    image = 0.3 + 0.2 * np.random.default_rng(0).random((40, 50, 3))
    assert detail_gain(image, image) == pytest.approx(1.0)
    assert detail_gain(image, 0.5 + 2 * (image - 0.5)) == pytest.approx(4.0)  # stays inside [0, 1]
    assert detail_gain(image, image + 0.1) == pytest.approx(1.0)  # a shift adds no detail
    assert detail_gain(image, uniform_filter(image, (5, 5, 1))) < 0.2  # a blur removes it
    with pytest.raises(ValueError):
        detail_gain(image, image[:, :-1])


def test_chroma_detail_gain_sees_colour_mottling_that_leaves_the_luma_alone() -> None:
    from colorot.controls import LUMA
    from colorot.metrics import detail_gain

    rng = np.random.default_rng(1)
    image = 0.3 + 0.2 * rng.random((40, 50, 3))
    mottle = 0.05 * rng.standard_normal((40, 50))
    mottled = image.copy()  # red up, green down in the proportion that keeps Y = LUMA · RGB
    mottled[..., 0] += mottle
    mottled[..., 1] -= mottle * LUMA[0] / LUMA[1]
    assert detail_gain(image, mottled) == pytest.approx(1.0)
    chroma = detail_gain(image, mottled, of="chroma")
    assert chroma > 1.1  # the mottle adds colour detail (exact ratio below)
    luma = mottled @ np.asarray(LUMA)
    assert np.abs(luma - image @ np.asarray(LUMA)).max() < 1e-12
    # B − Y unchanged, R − Y gains the mottle: the ratio recomputed from its definition
    from scipy.ndimage import uniform_filter

    def energy(c):
        return np.mean((c - uniform_filter(c, 3)) ** 2)
    y0, y1 = image @ np.asarray(LUMA), luma
    expected = (energy(mottled[..., 2] - y1) + energy(mottled[..., 0] - y1)) / (
        energy(image[..., 2] - y0) + energy(image[..., 0] - y0))
    assert chroma == pytest.approx(expected, rel=1e-12)
    assert detail_gain(image, 0.5 + 2 * (image - 0.5), of="chroma") == pytest.approx(4.0)
    grey = np.repeat(image[..., :1], 3, axis=2)  # no colour at all: flat in chroma
    assert detail_gain(grey, grey, of="chroma") == 1.0
    assert detail_gain(grey, image, of="chroma") == np.inf
    with pytest.raises(ValueError, match="chroma"):
        detail_gain(image, image, of="hue")


def test_detail_gain_of_a_flat_source_is_infinite_or_one() -> None:
    """A flat source has no detail to amplify: 0/0 is read as no change, x/0 as ∞ (it read 5.6e24)."""
    from colorot.metrics import detail_gain

    flat = np.full((30, 40, 3), 0.7)  # float64 rounding leaves ~1e-32 of "detail" in it
    assert detail_gain(flat, np.full_like(flat, 0.2)) == 1.0
    assert detail_gain(flat, flat + 0.01 * np.random.default_rng(0).random(flat.shape)) == np.inf


@pytest.mark.parametrize("measure", [sliced_w2, exact_w2, w2_estimate, rms_displacement])
def test_the_measures_refuse_empty_non_finite_or_non_rgb_pixels(measure, rng) -> None:
    good = rng.random((20, 3))
    for bad, message in ((np.zeros((0, 3)), "0 pixel"), (np.full((20, 3), np.nan), "NaN or infinite"),
                         (np.where(np.eye(20, 3) > 0, np.inf, good), "NaN or infinite"), (rng.random(20), "RGB rows")):
        for a, b in ((bad, good), (good, bad)):
            with pytest.raises(ValueError, match=message):
                measure(a, b)


def test_the_measures_read_uint8_and_uint16_codes_as_the_rest_of_colorot_does(rng) -> None:
    """uint8 codes were measured as floats 0–255: an evaluate of 8-bit arrays read SW2 157 for 0.004."""
    from colorot.metrics import detail_gain

    codes = rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    other = rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    floats, other_floats = codes / np.float32(255), other / np.float32(255)
    deep = codes.astype(np.uint16) * 257
    assert sliced_w2(codes, other) == pytest.approx(sliced_w2(floats, other_floats), rel=1e-6)
    assert sliced_w2(deep, other) == pytest.approx(sliced_w2(floats, other_floats), rel=1e-6)
    assert rms_displacement(codes, other) == pytest.approx(rms_displacement(floats, other_floats), rel=1e-6)
    assert detail_gain(codes, other) == pytest.approx(detail_gain(floats, other_floats), rel=1e-6)
    as_codes = evaluate(codes, other, other, w2_pixels=20, w2_repeats=2)
    as_floats = evaluate(floats, other_floats, other_floats, w2_pixels=20, w2_repeats=2)
    assert as_codes.keys() == as_floats.keys()
    for key, value in as_floats.items():
        assert as_codes[key] == (value if value is None else pytest.approx(value, rel=1e-5)), key
    with pytest.raises(ValueError, match="int32"):
        sliced_w2(codes.astype(np.int32), other)


def test_rms_displacement_is_the_same_taken_chunk_by_chunk(rng, monkeypatch) -> None:
    """It is summed in float64 a chunk at a time (two full float64 copies took 56 bytes a pixel)."""
    import colorot.metrics as metrics

    source, mapped = rng.random((1000, 3)).astype(np.float32), rng.random((1000, 3)).astype(np.float32)
    d = mapped.astype(np.float64) - source.astype(np.float64)
    monkeypatch.setattr(metrics, "_ROWS_AT_A_TIME", 7)
    assert rms_displacement(source, mapped) == pytest.approx(np.sqrt(np.mean(np.sum(d * d, axis=1))), rel=1e-12)


def test_evaluate_s_clipped_fraction_maps_each_distinct_colour_once(rng, monkeypatch) -> None:
    """Every pixel went through the map (`eval --model` took 9× as long as without it): each
    distinct colour once now, counted for every pixel that has it."""
    import colorot.metrics as metrics
    from colorot.models import AffineMap

    mapped_rows = []
    evaluate_map = metrics.map_pixels
    monkeypatch.setattr(metrics, "map_pixels",
                        lambda f, rows, **options: mapped_rows.append(len(rows)) or evaluate_map(f, rows, **options))

    model = AffineMap.from_gaussians(np.full(3, 0.5), np.eye(3) * 0.01, np.full(3, 0.5), np.eye(3) * 0.0225)  # 1.5x − ¼
    colours = rng.random((40, 3)).astype(np.float32)
    source = colours[rng.integers(0, 40, 3000)]  # 3 000 pixels of 40 colours, unevenly
    r = evaluate(source, source, source, fitted_map=model, w2_pixels=50)
    assert r["clipped_fraction"] == clipped_fraction(source * 1.5 - 0.25) > 0 and mapped_rows == [40]
    assert r["min_jacobian_eigenvalue"] == pytest.approx(1.5, abs=1e-5)


def test_rms_displacement_refuses_unpaired_pixels(rng) -> None:
    with pytest.raises(ValueError, match="corresponding pixels"):
        rms_displacement(rng.random((20, 3)), rng.random((10, 3)))


def test_eval_warns_of_images_and_a_map_in_another_colour_space(tmp_path):
    """A match of an Adobe RGB photo onto an sRGB reference converts the reference: the output, in
    Adobe RGB, scored almost as far from the reference's codes as no transfer, without a word; a map
    fitted in Adobe RGB was measured on an sRGB source as silently."""
    from _icc import rgb_profile

    adobe = rgb_profile("Adobe RGB (1998)")
    codes = smooth_rgb(24, 32, 1)
    source, output, target = tmp_path / "s.png", tmp_path / "o.png", tmp_path / "t.png"
    PILImage.fromarray(codes).save(source, icc_profile=adobe)
    PILImage.fromarray(codes[::-1]).save(output, icc_profile=adobe)
    PILImage.fromarray(smooth_rgb(20, 30, 2)).save(target)
    result = CliRunner().invoke(app, ["eval", str(source), str(output), str(target)], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert f"{target} (sRGB (untagged)) is not in the colour space of {source} (Adobe RGB (1998))" in result.stderr
    assert str(output) + " (" not in result.stderr  # in the source's space

    fitted = tmp_path / "adobe.pt"
    assert CliRunner().invoke(app, ["fit", str(source), str(output), "-o", str(fitted)]).exit_code == 0
    plain = [tmp_path / f"{name}.png" for name in ("ps", "po")]
    for path, image in zip(plain, (codes, codes[::-1])):
        PILImage.fromarray(image).save(path)
    result = CliRunner().invoke(app, ["eval", *map(str, plain), str(target), "--model", str(fitted)],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "the map was fitted in another colour space (Adobe RGB (1998))" in result.stderr
    quiet = CliRunner().invoke(app, ["eval", *map(str, plain), str(target)])
    assert quiet.exit_code == 0 and "colour space" not in quiet.stderr


def test_the_kl_of_a_source_of_few_pixels_is_averaged_over_as_many_draws() -> None:
    """kl_to_target took each of a 2-pixel source's pixels once (no replacement, capped at N), not its
    20 000 draws: 15.93 nats where 20 000 draws give 16.14, another seed anywhere in 15.8–16.4."""
    from colorot.kl_solver import dequantised_entropy
    from colorot.metrics import KL_PIXELS, kl_to_target
    from colorot.transfer import ColorTransfer

    source = np.array([[10, 200, 30], [250, 100, 30]], np.uint8)
    fitted = ColorTransfer().fit(source, np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    x, entropy = source / 255.0, dequantised_entropy(source / 255.0)
    many = kl_to_target(fitted.ridge_parameters_, np.repeat(x, KL_PIXELS // 2, 0), fitted.target_dist_, entropy)
    seeds = [kl_to_target(fitted.ridge_parameters_, x, fitted.target_dist_, entropy, seed=s) for s in range(4)]
    assert max(abs(value - many) for value in seeds) < 0.05
