"""Frame sequences: the blend's window and weights, the blended ridge map, and ``colorot match --sequence``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import checkpoint, load, sequence
from colorot.cli import app
from colorot.errors import ConfigError
from colorot.matching import Matcher, match
from colorot.ridge_map import RidgeParameters
from _fresh_process import cli_imports_torch
from conftest import smooth_rgb

runner = CliRunner()
FAST = ["--steps", "3"]


def test_frames_are_ordered_by_their_numbers() -> None:
    names = ["shot/frame10.png", "shot/frame9.png", "shot/frame100.png", "shot/frame0.png"]
    assert sorted(names, key=sequence.natural_key) == ["shot/frame0.png", "shot/frame9.png", "shot/frame10.png",
                                                       "shot/frame100.png"]
    # Case is ignored but breaks ties; digits that are not decimal (²) are text (they raised).
    names = ["A10.png", "a9.png", "B1.png", "a1²3.png", "a1²2.png", "b1.png"]
    assert sorted(names, key=sequence.natural_key) == ["a1²2.png", "a1²3.png", "a9.png", "A10.png", "B1.png",
                                                       "b1.png"]


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 40), data=st.data(), sigma=st.floats(0, 6))
def test_the_window_is_centred_shrinks_symmetrically_and_its_weights_sum_to_one(count, data, sigma) -> None:
    t = data.draw(st.integers(0, count - 1))
    frames, weights = sequence.window(t, count, sigma)
    half = min(math.floor(3 * sigma), t, count - 1 - t)
    np.testing.assert_array_equal(frames, np.arange(t - half, t + half + 1))
    assert (weights > 0).all() and math.isclose(weights.sum(), 1.0)
    np.testing.assert_allclose(weights, weights[::-1])  # symmetric about t: Σ c_k (k − t) = 0
    if half:
        assert weights[half] == weights.max()


@pytest.mark.parametrize("sigma", [-1.0, math.nan, math.inf, 1e308])  # 1e308: ⌊3σ⌋ overflowed
def test_a_bad_sigma_is_refused(sigma) -> None:
    """The message said "finite" of 1e308, which is: its window's reach 3σ is not."""
    with pytest.raises(ConfigError, match=r"--smooth\) must be ≥ 0 and below 5.99e\+307 \(its window reaches 3σ"):
        sequence.window(0, 3, sigma)


def random_ridge_map(rng: np.random.Generator, hidden: int, eps: float = 1e-3) -> RidgeParameters:
    return RidgeParameters({"W": rng.normal(0, 4, (hidden, 3)), "biases": rng.normal(0, 2, hidden),
                            "rho": rng.normal(-1, 1.5, hidden), "V": rng.normal(0, 0.5, (3, 3)),
                            "b": rng.normal(0, 0.2, 3)}, eps)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 5))
def test_the_blend_is_the_weighted_sum_of_the_maps_and_stays_monotone(seed, count) -> None:
    rng = np.random.default_rng(seed)
    maps = [random_ridge_map(rng, int(rng.integers(0, 12))) for _ in range(count)]
    weights = rng.dirichlet(np.ones(count))
    mix = sequence.blend_ridge_maps(maps, weights)
    assert mix.hidden == sum(m.hidden for m in maps)
    x = rng.uniform(-0.2, 1.2, (64, 3))
    mapped, jac = mix.forward_and_jacobian(x)
    parts = [m.forward_and_jacobian(x) for m in maps]
    np.testing.assert_allclose(mapped, sum(c * p[0] for c, p in zip(weights, parts)), atol=1e-9)
    np.testing.assert_allclose(jac, sum(c * p[1] for c, p in zip(weights, parts)), atol=1e-9)
    np.testing.assert_allclose(jac, np.swapaxes(jac, 1, 2), atol=1e-12)  # a gradient's Jacobian
    assert np.linalg.eigvalsh(jac).min() >= mix.eps * (1 - 1e-9)  # of a strictly convex function


def test_maps_that_cannot_be_blended_are_refused() -> None:
    rng = np.random.default_rng(0)
    a, b = random_ridge_map(rng, 3), random_ridge_map(rng, 3, eps=1e-2)
    with pytest.raises(ValueError, match="floors"):
        sequence.blend_ridge_maps([a, b], [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        sequence.blend_ridge_maps([a, a], [0.5, 0.6])
    with pytest.raises(ValueError, match="≥ 0"):
        sequence.blend_ridge_maps([a, a], [1.5, -0.5])


def frames(count: int, size=(16, 24)) -> list[np.ndarray]:
    """A slow brightening of one smooth picture, with fresh noise in every frame."""
    base = smooth_rgb(*size, 7).astype(np.float64)
    rng = np.random.default_rng(1)
    return [np.clip(np.rint(base * (1 + 0.02 * t) + rng.normal(0, 2, base.shape)), 0, 255).astype(np.uint8)
            for t in range(count)]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return (smooth_rgb(20, 30, 9) * np.asarray([1.0, 0.7, 0.4])).astype(np.uint8)


def test_a_blended_frame_is_its_window_of_fits_and_says_so(reference) -> None:
    matcher = Matcher(reference, steps=3)
    clip = frames(5)
    fits = {t: sequence.FrameFit.of(matcher.fit(image, measure_kl=False), image) for t, image in enumerate(clip)}
    x = clip[2].reshape(-1, 3) / 255.0
    for tau in (math.inf, 4.0, 0.5):
        frames_2, weights_2 = sequence.window(2, 5, 1.0)
        far = np.asarray([fits[2].distance(fits[int(k)]) for k in frames_2])
        weights_2 = weights_2 * np.exp(-0.5 * (np.maximum(far, far[::-1]) / tau) ** 2)
        kept = weights_2 >= 1e-3 * weights_2[2]
        frames_2, weights_2 = frames_2[kept], weights_2[kept] / weights_2[kept].sum()
        one = sequence.blended(fits, 2, 5, 1.0, tau, names=[f"f{t}" for t in range(5)])
        expected = sum(c * fits[int(k)].estimator.transform(x) for k, c in zip(frames_2, weights_2))
        np.testing.assert_allclose(one.transform(x), expected, atol=1e-5)
        assert one.train_info_["sequence"] == {"sigma": 1.0, "range": None if tau == math.inf else tau,
                                               "frames": [f"f{k}" for k in frames_2],
                                               "weights": [round(float(c), 6) for c in weights_2]}
    assert one.train_info_["kl_nats"] is None and one.train_info_["final_loss"] is None  # the own map's, not the blend's
    assert fits[2].estimator.train_info_.get("sequence") is None
    # A frame whose fit failed is left out with its mirror image about the frame: the window stays centred.
    del fits[3]
    without = sequence.blended(fits, 2, 5, 1.0, math.inf)
    kept_frames = [0, 2, 4]
    c = np.asarray([math.exp(-2), 1, math.exp(-2)]) / (1 + 2 * math.exp(-2))
    np.testing.assert_allclose(without.transform(x), sum(ci * fits[k].estimator.transform(x)
                                                         for ci, k in zip(c, kept_frames)), atol=1e-5)
    assert without.train_info_["sequence"]["frames"] == kept_frames
    with pytest.raises(ValueError, match="frame 3 has no fit"):  # its own map is the blend's centre
        sequence.blended(fits, 3, 5, 1.0)
    with pytest.raises(ValueError, match="not among 5 frames"):
        sequence.blended(fits, 5, 5, 1.0)


class Distances:
    """A stand-in for FrameFit whose distances D_t,k come from a table."""

    def __init__(self, table: np.ndarray, t: int) -> None:
        self.table, self.t = table, t

    def distance(self, other: "Distances") -> float:
        return float(self.table[self.t, other.t])


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 25), data=st.data(), sigma=st.floats(0, 4), tau=st.floats(0.1, 50))
def test_the_blend_weights_are_centred_and_fade_with_distance(count, data, sigma, tau) -> None:
    t = data.draw(st.integers(0, count - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    table = rng.uniform(0, 3 * tau, (count, count)) * (rng.random((count, count)) < 0.8) + np.eye(count) * 1e9
    failed = {k for k in range(count) if k != t and rng.random() < 0.2}
    fits = {k: Distances(table, k) for k in range(count) if k not in failed}
    frames, weights = sequence.blend_weights(fits, t, count, sigma, tau)
    assert t in frames and math.isclose(weights.sum(), 1.0) and (weights > 0).all()
    assert not set(frames.tolist()) & failed
    np.testing.assert_array_equal(frames, 2 * t - frames[::-1])  # centred on t ...
    np.testing.assert_allclose(weights, weights[::-1])  # ... with equal weights at equal offsets
    assert weights[frames == t] == weights.max()
    for k, c in zip(frames, weights):  # c_tk ∝ temporal weight × exp(−½(max(D_t,k, D_t,2t−k)/τ)²)
        far = max(table[t, k], table[t, 2 * t - k]) if k != t else 0.0
        expected = math.exp(-0.5 * ((k - t) / sigma) ** 2 - 0.5 * (far / tau) ** 2) if k != t else 1.0
        assert c / weights[frames == t][0] == pytest.approx(expected, rel=1e-9)
    # A neighbour across a cut (D ≫ τ) is never blended, nor its mirror image.
    table[t, :] = np.where(np.arange(count) > t, 100 * tau, table[t, :])
    table[t, t] = 0
    frames, _ = sequence.blend_weights(fits, t, count, sigma, tau)
    assert frames.tolist() == [t]


def test_a_neighbour_under_a_thousandth_of_the_frame_s_own_weight_is_dropped() -> None:
    """WEIGHT_FLOOR is a fraction of frame t's own weight (the module docstring), not of the whole
    blend's: a floor on the normalised weights passed every test.  With σ = 3 the own weight is
    about 0.16 of the blend, so such a floor drops neighbours up to six thousandths of it.  Here
    frames t ± 4 weigh 1.01 thousandths of frame t's weight (kept) and t ± 5 0.99 (dropped), by
    distances D chosen for it; the others have D = 0."""
    sigma, tau, count, t = 3.0, 4.0, 19, 9
    table = np.zeros((count, count))
    for offset, ratio in ((4, 1.01 * sequence.WEIGHT_FLOOR), (5, 0.99 * sequence.WEIGHT_FLOOR)):
        temporal = math.exp(-0.5 * (offset / sigma) ** 2)  # c_tk / c_tt before the range factor
        table[t, [t - offset, t + offset]] = tau * math.sqrt(2 * math.log(temporal / ratio))
    fits = {k: Distances(table, k) for k in range(count)}
    frames, weights = sequence.blend_weights(fits, t, count, sigma, tau)
    assert frames.tolist() == [k for k in range(count) if abs(k - t) != 5]
    assert weights[frames == t - 4][0] / weights[frames == t][0] == pytest.approx(1.01e-3, rel=1e-9)
    assert weights[frames == t][0] < 0.2  # the case: a floor on the normalised weights would drop t ± 4


def test_a_bad_range_is_refused() -> None:
    for tau in (0.0, -1.0, math.nan):
        with pytest.raises(ConfigError, match="--smooth-range"):
            sequence.check_range(tau)


def test_python_match_with_smooth(reference, monkeypatch) -> None:
    clip = [image / 255.0 for image in frames(4)]
    own = match(reference, clip, steps=3)
    unsmoothed = match(reference, clip, steps=3, smooth=0)
    smoothed = match(reference, clip, steps=3, smooth=1)
    for a, b in zip(own, unsmoothed):
        np.testing.assert_allclose(a, b, atol=1e-5)  # σ = 0: every frame its own map
    assert max(np.abs(a - b).max() for a, b in zip(own, smoothed)) > 1e-3
    np.testing.assert_allclose(own[0], smoothed[0], atol=1e-5)  # the clip's ends keep their own maps
    with pytest.raises(ConfigError, match="--smooth"):
        match(reference, clip, smooth=-1)
    with pytest.raises(ConfigError, match="give smooth too"):
        match(reference, clip, smooth_range=4)
    masked = match(reference, clip[:2], steps=3, smooth=1, reference_mask=np.ones(reference.shape[:2], bool))
    assert len(masked) == 2  # Matcher's own option: the early check had passed it to ColorTransfer (TypeError)
    for params in ({"model": "cmgn"}, {"solver": "adam"}):  # refused before the reference's fit, as the CLI does
        with monkeypatch.context() as patched:
            patched.setattr("colorot.matching.Matcher", lambda *a, **k: pytest.fail("fitted first"))
            with pytest.raises(ConfigError, match="blends ridge maps"):
                match(reference, clip, smooth=1, **params)
    temporal = match(reference, clip, steps=3, smooth=1, smooth_range=math.inf)
    assert max(np.abs(a - b).max() for a, b in zip(smoothed, temporal)) > 1e-4  # the range term counts


@pytest.fixture(scope="module")
def clip(tmp_path_factory, reference) -> dict:
    """Six numbered frames (frame8 … frame13: natural order is not the names' sorted order) and a reference."""
    root = tmp_path_factory.mktemp("sequence")
    path = root / "reference.png"
    PILImage.fromarray(reference).save(path)
    folder = root / "frames"
    folder.mkdir()
    for t, image in enumerate(frames(6)):
        PILImage.fromarray(image).save(folder / f"frame{t + 8}.png")
    return {"reference": path, "folder": folder, "names": [f"frame{t + 8}.png" for t in range(6)]}


def run_match(clip, *args: str):
    return runner.invoke(app, ["match", str(clip["reference"]), *args, *FAST])


def codes(path: Path) -> np.ndarray:
    with PILImage.open(path) as image:
        return np.asarray(image).astype(int)


@pytest.fixture(scope="module")
def matched(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("matched") / "out"
    result = run_match(clip, str(clip["folder"]), str(out), "--sequence", "--jobs", "2")
    assert result.exit_code == 0, result.output
    return out


def test_match_sequence_writes_each_frame_through_its_blend(clip, matched, reference, tmp_path) -> None:
    inputs = [codes(clip["folder"] / name) / 255.0 for name in clip["names"]]
    expected = match(reference, inputs, steps=3, smooth=1.0)
    for name, wanted in zip(clip["names"], expected):
        assert np.abs(codes(matched / name) - np.clip(wanted, 0, 1) * 255).max() <= 1.0, name
    # ... which is not what frame-by-frame matching writes.
    own = tmp_path / "own"
    assert run_match(clip, str(clip["folder"]), str(own)).exit_code == 0
    assert any((codes(own / name) != codes(matched / name)).any() for name in clip["names"][1:-1])


def test_a_kept_sequence_map_is_the_blend_and_says_so(clip, tmp_path) -> None:
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = run_match(clip, str(clip["folder"]), str(out), "--sequence", "--smooth", "0.5", "--save-maps", str(maps),
                       "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sequence"] == {"sigma": 0.5, "range": 4.0}
    info = load(maps / "frame10.pt").train_info_["sequence"]
    assert info["frames"] == [str(clip["folder"] / name) for name in clip["names"][1:4]] and info["sigma"] == 0.5
    again = tmp_path / "again.png"
    assert runner.invoke(app, ["apply", str(maps / "frame10.pt"), str(clip["folder"] / "frame10.png"),
                               str(again)]).exit_code == 0
    assert np.abs(codes(again) - codes(out / "frame10.png")).max() <= 1


def test_a_wide_blend_is_kept_as_a_map_that_loads(clip, tmp_path) -> None:
    """σ = 2.5 over 15 frames blends 15 maps into the middle frame: 15 × 576 units, over the 4096 the
    loader took before, which wrote maps no command could read."""
    folder = tmp_path / "long"
    folder.mkdir()
    for t, image in enumerate(frames(15, size=(8, 12))):
        PILImage.fromarray(image).save(folder / f"f{t:02d}.png")
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = run_match(clip, str(folder), str(out), "--sequence", "--smooth", "2.5", "--smooth-range", "inf",
                       "--save-maps", str(maps))
    assert result.exit_code == 0, result.output
    assert checkpoint.load(maps / "f07.pt").model.config["hidden"] == 15 * sequence.FRAME_MAP_UNITS > checkpoint.MAX_MODEL_SIZE
    assert runner.invoke(app, ["info", str(maps / "f07.pt")]).exit_code == 0
    too_many = {"dim": 3, "eps": 1e-3, "hidden": checkpoint.MAX_MODEL_UNITS + 1}
    assert checkpoint.model_size_error(too_many, checkpoint.MAX_MODEL_UNITS) is not None


def test_blends_too_large_for_a_map_file_are_refused_before_any_work(clip, tmp_path, monkeypatch) -> None:
    """With --save-maps, a frame whose blend held over 65 536 units was written, then failed at its
    map (exit 3), and again on every rerun; the bound is known before any fit."""
    sequence.refuse_blends_too_large_to_save(114, 19.0)  # 113 maps of 576 units: 65 088
    with pytest.raises(ConfigError, match="use --smooth below 19"):
        sequence.refuse_blends_too_large_to_save(115, 19.0)
    monkeypatch.setattr(checkpoint, "MAX_MODEL_UNITS", 3 * sequence.FRAME_MAP_UNITS)
    out = tmp_path / "out"
    result = run_match(clip, str(clip["folder"]), str(out), "--sequence", "--save-maps", str(tmp_path / "maps"))
    assert result.exit_code == 1 and "holds up to 5 frames' maps" in result.output and "below 0.666667" in result.output
    assert not out.exists()
    narrow = run_match(clip, str(clip["folder"]), str(out), "--sequence", "--smooth", "0.5",
                       "--save-maps", str(tmp_path / "maps"))
    assert narrow.exit_code == 0, narrow.output  # three maps a blend at most


def test_the_frames_go_in_rounds_without_changing_a_frame(clip, matched, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sequence, "CHUNK", 2)
    out = tmp_path / "out"
    assert run_match(clip, str(clip["folder"]), str(out), "--sequence").exit_code == 0
    for name in clip["names"]:
        np.testing.assert_array_equal(codes(out / name), codes(matched / name))


def test_a_stopped_sequence_resumes_to_the_same_frames(clip, matched, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in clip["names"]:
        if name != "frame10.png":
            (out / name).write_bytes((matched / name).read_bytes())
    result = run_match(clip, str(clip["folder"]), str(out), "--sequence", "--json")
    document = json.loads(result.stdout)
    assert document["written"] == [str(out / "frame10.png")]
    assert document["skipped"] == [str(out / name) for name in clip["names"] if name != "frame10.png"]  # in frame order
    np.testing.assert_array_equal(codes(out / "frame10.png"), codes(matched / "frame10.png"))


def test_a_resumed_sequence_says_when_a_frame_written_earlier_no_longer_fits(clip, matched, tmp_path) -> None:
    """Its neighbours were blended without it, silently (exit 0, nothing on stderr)."""
    folder, out = tmp_path / "frames", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for name in clip["names"]:
        (folder / name).write_bytes((clip["folder"] / name).read_bytes())
        if name != "frame10.png":
            (out / name).write_bytes((matched / name).read_bytes())
    (folder / "frame9.png").write_bytes(b"not a png any more")
    result = run_match(clip, str(folder), str(out), "--sequence")
    assert result.exit_code == 0, result.output
    assert "frame9.png" in result.stderr and "its neighbours are blended without it" in result.stderr


def test_a_broken_frame_fails_alone_and_leaves_its_neighbours_blends(clip, tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in clip["names"]:
        (folder / name).write_bytes((clip["folder"] / name).read_bytes())
    (folder / "frame10.png").write_bytes(b"not a png")
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = run_match(clip, str(folder), str(out), "--sequence", "--save-maps", str(maps), "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert [f["input"] for f in document["failed"]] == [str(folder / "frame10.png")]
    assert len(document["written"]) == 5
    assert str(folder / "frame10.png") not in load(maps / "frame11.pt").train_info_["sequence"]["frames"]


@pytest.mark.parametrize("args, message, exit_code", [
    (["--smooth", "2"], "add --sequence", 1),
    (["--smooth-range", "2"], "add --sequence", 1),
    (["--sequence", "--model", "cmgn"], "--sequence blends ridge maps", 1),
    (["--sequence", "--solver", "adam"], "--sequence blends ridge maps", 1),
    (["--sequence", "--shard", "0/2"], "no --shard", 1),
    (["--sequence", "--smooth-range", "0"], "--smooth-range", 2),  # a value out of range: a usage error
    (["--sequence", "--smooth-range", "nan"], "--smooth-range", 2),
    (["--sequence", "--smooth", "-1"], "--smooth", 2),
    (["--smooth", "inf"], "--smooth", 2),
    (["--sequence", "--smooth", "1e308"], "--smooth", 2),
])
def test_refused_sequence_options(clip, tmp_path, args, message, exit_code) -> None:
    result = run_match(clip, str(clip["folder"]), str(tmp_path / "out"), *args)
    assert result.exit_code == exit_code and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_sequence_cannot_stream(clip) -> None:
    data = (clip["folder"] / "frame8.png").read_bytes()
    result = runner.invoke(app, ["match", str(clip["reference"]), "-", "-", "--sequence", *FAST], input=data)
    assert result.exit_code == 1 and "--sequence" in result.stderr


def test_a_default_sequence_never_imports_torch(clip, tmp_path) -> None:
    assert cli_imports_torch("match", str(clip["reference"]), str(clip["folder"]), str(tmp_path / "out"),
                             "--sequence", "--jobs", "2", *FAST) is False


def test_match_sequence_reports_every_fit_and_every_frame(clip, matched, tmp_path) -> None:
    from colorot.apply import Job, Plan
    from colorot.matching import write_matched

    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(clip["folder"] / name, out / name) for name in clip["names"]]
    (out / "frame8.png").write_bytes((matched / "frame8.png").read_bytes())  # an output that exists: skipped
    matcher = Matcher(clip["reference"], steps=3)
    fitted, done = [], []
    report = sequence.match_sequence(lambda job: sequence.FrameFit.of(matcher.fit(job.src, measure_kl=False), job.src),
                                     lambda estimator, job: write_matched(estimator, job.src, job.dst),
                                     Plan(jobs[:0:-1], jobs[:1]), jobs=2,
                                     on_file_done=lambda job, error: done.append((job.src.name, error)),
                                     on_fit_done=lambda job, error: fitted.append(job.src.name))
    assert sorted(fitted) == sorted(clip["names"])  # frame8 too: its neighbours' blends need its map
    assert sorted(done) == sorted((name, None) for name in clip["names"][1:])
    assert report.written == jobs[1:] and report.skipped == jobs[:1] and not report.failed
    for name in clip["names"][1:]:
        np.testing.assert_array_equal(codes(out / name), codes(matched / name))


def test_frames_spelt_relative_and_absolute_are_one_clip_in_order(clip, matched, tmp_path, monkeypatch) -> None:
    """Sorted by the text as given, absolute paths came before relative ones: frames 11–13 first, then
    8–10, each blended with the wrong neighbours."""
    from colorot.apply import Job, Plan
    from colorot.matching import write_matched

    monkeypatch.chdir(clip["folder"].parent)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(Path("frames") / name if t < 3 else clip["folder"] / name, out / name)
            for t, name in enumerate(clip["names"])]
    matcher = Matcher(clip["reference"], steps=3)
    sequence.match_sequence(lambda job: sequence.FrameFit.of(matcher.fit(job.src, measure_kl=False), job.src),
                            lambda estimator, job: write_matched(estimator, job.src, job.dst), Plan(jobs, []), jobs=1)
    for name in clip["names"]:
        np.testing.assert_array_equal(codes(out / name), codes(matched / name))


def test_frames_beside_a_cut_keep_their_own_maps(reference, tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    first = frames(3)
    second = [255 - image[::-1] for image in frames(3)]  # another picture: the cut after frame 2
    for t, image in enumerate(first + second):
        PILImage.fromarray(image).save(folder / f"f{t}.png")
    reference_path = tmp_path / "reference.png"
    PILImage.fromarray(reference).save(reference_path)
    maps = tmp_path / "maps"
    for tau, kept in (("4", [[0, 1, 2], [2], [3]]), ("inf", [[0, 1, 2], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])):
        result = runner.invoke(app, ["match", str(reference_path), str(folder), str(tmp_path / tau), "--sequence",
                                     "--smooth-range", tau, "--save-maps", str(maps / tau), *FAST])
        assert result.exit_code == 0, result.output
        blends = [load(maps / tau / f"f{t}.pt").train_info_["sequence"]["frames"] for t in (1, 2, 3)]
        assert blends == [[str(folder / f"f{k}.png") for k in frames_k] for frames_k in kept], tau


def test_a_frame_grades_by_its_map_also_when_too_sharp_to_tabulate() -> None:
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (50, 3))
    smooth, sharp = random_ridge_map(rng, 6), random_ridge_map(rng, 6)
    sharp.state["W"] = sharp.state["W"] * 1e5  # steps too sharp for the profiles' tables
    for parameters in (smooth, sharp):
        frame = sequence.FrameFit(SimpleNamespace(ridge_parameters_=parameters), x)
        np.testing.assert_allclose(frame.grade(x), parameters.forward_and_jacobian(x)[0], atol=1e-6)
        assert frame.distance(frame) == 0


def test_the_distance_between_two_frames_maps_is_the_rms_of_their_difference_in_code_values() -> None:
    """D_t,k by hand: T_t(x) = εx and T_k(x) = εx + (x_r, 0, 0) (an affine ridge map, V = diag(1, 0, 0))
    differ by x_r, which is 0, 0.3 and 0.4 on the three sample pixels: their RMS is
    sqrt(0.25 / 3) = 1/√12, so D = 255/√12 = 73.6 code values (the mean of the norms, 0.7/3, would
    give 59.5: it passed, as the other tests take D from distance() itself)."""
    from types import SimpleNamespace

    def affine(v: np.ndarray) -> RidgeParameters:
        return RidgeParameters({"W": np.zeros((0, 3)), "biases": np.zeros(0), "rho": np.zeros(0), "V": v,
                                "b": np.zeros(3)}, 1e-3)

    sample = np.array([[0.0, 0.9, 0.2], [0.3, 0.1, 0.5], [0.4, 0.6, 0.7]])
    own = sequence.FrameFit(SimpleNamespace(ridge_parameters_=affine(np.zeros((3, 3)))), sample)
    other = sequence.FrameFit(SimpleNamespace(ridge_parameters_=affine(np.diag([1.0, 0.0, 0.0]))), sample)
    assert own.distance(other) == pytest.approx(255 / math.sqrt(12), rel=1e-6)  # the tables: exact within 10⁻⁷
