"""Issue items 3 and 5: degenerate fits give a usable model or a clear error, and
training never fails silently nor leaves a half-written checkpoint.

Fits run through ``colorot fit`` on images of a few hundred pixels with a few
dozen steps, so each takes about a second.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _robust_helpers import assert_one_line_error, cli, temp_files, write_checkpoint
from conftest import smooth_rgb
from PIL import Image as PILImage

from colorot import checkpoint, train
from colorot.errors import TrainingError
from colorot.imageio import read_image
from colorot.train import DIVERGENCE_MARGIN, DIVERGENCE_WINDOW, check_divergence

FAST = ("--steps", "40", "--batch-size", "256")  # Adam's
CLOSED_FORM = ("--model", "affine", "--distribution", "gaussian")  # no training, no EM: instant


def _fast(model: str) -> tuple[str, ...]:
    """Quick options that apply to ``model``'s default solver: the kl solver's (no batches) or none (closed form)."""
    return () if model == "affine" else FAST[:2]


def _save(path: Path, codes: np.ndarray) -> Path:
    PILImage.fromarray(np.asarray(codes, dtype=np.uint8)).save(path)
    return path


def _fit(tmp_path: Path, source: Path, target: Path, *options: str, name: str = "m.pt") -> Path:
    out = tmp_path / name
    outcome = cli("fit", source, target, "-o", out, "--json", *options)
    assert outcome.crash is None and outcome.code == 0, (outcome.stdout, outcome.stderr)
    assert json.loads(outcome.stdout)["checkpoint"] == str(out)
    return out


def _mapped(ckpt: Path, source: Path) -> np.ndarray:
    """The source's pixels after the fitted map, unclipped float (N, 3)."""
    model = checkpoint.load(ckpt).model
    rgb = read_image(source).rgb.reshape(-1, 3)
    with torch.no_grad():
        return model(torch.as_tensor(rgb)).numpy()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("img") / "source.png", smooth_rgb(16, 20, seed=1))


# --- item 3: degenerate fits ----------------------------------------------------------


@pytest.mark.parametrize("model, target_kind", [(model, kind) for model in ("mmgn", "cmgn")
                                                for kind in ("gmm", "gaussian")]
                         + [("affine", "gaussian")])  # the affine map's target is always the Gaussian
def test_a_single_colour_target_gives_a_finite_map_onto_that_colour(
    tmp_path: Path, source: Path, model: str, target_kind: str
) -> None:
    colour = np.array([200, 40, 90])
    target = _save(tmp_path / "flat.png", np.broadcast_to(colour, (8, 8, 3)))
    ckpt = _fit(tmp_path, source, target, "--model", model, "--distribution", target_kind, *_fast(model))
    info = json.loads(cli("info", ckpt, "--json").stdout)
    assert info["components"] == 1  # the kl solver's default 10 lowered to the 1 colour there is
    mapped = _mapped(ckpt, source)
    assert np.isfinite(mapped).all()
    # every pixel lands near the colour: within 5 standard deviations of the ridge (0.02)
    assert np.abs(mapped - colour / 255).max() < 0.1


@pytest.mark.parametrize("options", [(), ("--distribution", "gaussian"), ("--model", "affine"),
                                     ("--solver", "sliced", "--distribution", "gmm"), ("--components", "auto")],
                         ids=["default", "gaussian", "affine", "sliced-gmm", "auto"])
def test_a_ridge_of_0_on_a_flat_target_names_the_ridge(tmp_path: Path, source: Path, options) -> None:
    """--ridge 0 is allowed; on a target of flat colour areas scikit-learn's EM raised a traceback
    ("ill-defined empirical covariance"), the Gaussian a bare "not positive definite"."""
    codes = np.zeros((8, 8, 3), np.uint8)
    codes[:, 4:] = 255  # black and white: two colours, each without spread
    target = _save(tmp_path / "bw.png", codes)
    outcome = cli("fit", source, target, "-o", tmp_path / "m.pt", "--ridge", "0", *options)
    assert_one_line_error(outcome, "lie flat", "with a ridge of 0: give a larger ridge (--ridge)")
    assert not (tmp_path / "m.pt").exists()


def test_a_fit_whose_loss_overflows_saves_nothing(monkeypatch, tmp_path: Path) -> None:
    """Finite settings far from the defaults overflowed into a NaN final loss, saved with the map."""
    from colorot import transfer
    from colorot.history import History

    real = transfer.ColorTransfer._fit_map

    def overflowing(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        self.history_ = History([1.0, float("nan")], self.history_.seconds)
        return result

    monkeypatch.setattr(transfer.ColorTransfer, "_fit_map", overflowing)
    pixels = np.random.default_rng(0).random((500, 3))
    with pytest.raises(TrainingError, match="final loss is nan .*nothing was saved"):
        transfer.ColorTransfer(steps=2).fit(pixels, pixels)


def test_a_greyscale_target_gives_grey_outputs(tmp_path: Path, source: Path) -> None:
    grey = smooth_rgb(12, 12, seed=5)[..., :1].repeat(3, axis=2)
    target = _save(tmp_path / "grey.png", grey)
    ckpt = _fit(tmp_path, source, target, *_fast("ridge"))
    mapped = _mapped(ckpt, source)
    assert np.isfinite(mapped).all()
    chroma = mapped - mapped.mean(axis=1, keepdims=True)
    assert np.sqrt((chroma**2).mean()) < 0.03  # ≈ the ridge's 0.02 spread, not colourful


def test_a_single_colour_source_gives_a_finite_map(tmp_path: Path, source: Path) -> None:
    flat = _save(tmp_path / "flat.png", np.full((6, 6, 3), 77))
    ckpt = _fit(tmp_path, flat, source, *_fast("ridge"))
    assert np.isfinite(_mapped(ckpt, flat)).all()
    assert np.isfinite(_mapped(ckpt, source)).all()  # and on colours it never saw


@pytest.mark.parametrize("solver", ["kl", "sliced"])
def test_an_all_black_source_is_carried_to_the_target_mean(tmp_path: Path, source: Path, solver: str) -> None:
    """A black frame (a fade) gave G = 0 exactly in the sliced solves: NaN, then a LinAlgError traceback."""
    black = _save(tmp_path / "black.png", np.zeros((6, 6, 3)))
    ckpt = _fit(tmp_path, black, source, "--solver", solver)
    mapped = _mapped(ckpt, black)
    with PILImage.open(source) as image:
        mean = np.asarray(image.convert("RGB"), np.float64).reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(mapped.reshape(-1, 3).mean(0), mean, atol=0.02)


#: model → (RMS, max) bound on ‖T(x) − x‖ for a source fitted onto itself.
IDENTITY_BOUNDS = {"ridge": (0.02, 0.05), "mmgn": (0.02, 0.05), "cmgn": (0.06, 0.12)}


@pytest.mark.parametrize("model", ["ridge", "mmgn", "cmgn"])
def test_a_source_equal_to_the_target_gives_about_the_identity(
    tmp_path: Path, source: Path, model: str
) -> None:
    """Why not exactly the identity: training starts at the closed-form map, which *is* the
    identity here, but the exact KL then pulls towards the target *model* (a K=4 GMM with
    every covariance widened by the ridge, σ = 0.02), not towards the image itself.
    Measured (40 steps, 10 smooth images of 16×20 and 32×32): M-MGN RMS 0.007–0.013, max
    ≤ 0.034; C-MGN RMS 0.012–0.049, max ≤ 0.10; this image, with the warm-up: ridge map
    (the default) RMS 0.0096, max 0.011; M-MGN 0.0055, 0.0078; C-MGN 0.0068, 0.010. Bounds:
    ridge map and M-MGN RMS < 0.02, the ridge's σ (≈ 5 code values), max < 0.05; C-MGN
    RMS < 0.06, max < 0.12. For scale,
    a map between two different such images moves pixels by 0.18–0.40 RMS."""
    ckpt = _fit(tmp_path, source, source, "--model", model, "--components", "4", *_fast(model))
    pixels = read_image(source).rgb.reshape(-1, 3)
    moved = np.linalg.norm(_mapped(ckpt, source) - pixels, axis=1)
    rms_bound, max_bound = IDENTITY_BOUNDS[model]
    print(f"{model}: RMS {np.sqrt((moved**2).mean()):.4f}, max {moved.max():.4f}")
    assert np.sqrt((moved**2).mean()) < rms_bound
    assert moved.max() < max_bound


def test_the_affine_map_of_a_source_onto_itself_is_exactly_the_identity(
    tmp_path: Path, source: Path
) -> None:
    ckpt = _fit(tmp_path, source, source, *CLOSED_FORM)
    pixels = read_image(source).rgb.reshape(-1, 3)
    assert np.abs(_mapped(ckpt, source) - pixels).max() < 1e-4


def test_fewer_pixels_than_components_is_a_clear_error(tmp_path: Path, source: Path) -> None:
    tiny = _save(tmp_path / "tiny.png", [[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [0, 0, 0]]])  # 3 colours
    assert_one_line_error(cli("fit", source, tiny, "-o", tmp_path / "m.pt", "--distribution", "gmm",
                              "--components", "5"),
                          "5 mixture components need at least 5 pixels", "use --components 3 or auto")  # was 4
    two_colours = _save(tmp_path / "two.png", np.tile([[[0, 0, 0]], [[255, 255, 255]]], (4, 4, 1)))
    assert_one_line_error(
        cli("fit", source, two_colours, "-o", tmp_path / "m.pt", "--distribution", "gmm", "--components", "3"),
        "3 distinct colours", "--components 2",
    )
    assert not (tmp_path / "m.pt").exists()
    ckpt = _fit(tmp_path, source, two_colours, name="default.pt")  # the default K is lowered, not refused
    assert json.loads(cli("info", ckpt, "--json").stdout)["components"] == 2
    # auto K on the 4-pixel target picks at most 4 components and trains
    ckpt = _fit(tmp_path, source, tiny, "--solver", "adam", *FAST)
    assert json.loads(cli("info", ckpt, "--json").stdout)["components"] <= 4
    assert np.isfinite(_mapped(ckpt, source)).all()


def test_a_source_far_outside_the_target_range_is_carried_into_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    dark = _save(tmp_path / "dark.png", rng.integers(0, 12, (12, 12, 3)))
    bright = _save(tmp_path / "bright.png", rng.integers(230, 256, (12, 12, 3)))
    for model in ("mmgn", "affine"):
        ckpt = _fit(tmp_path, dark, bright, "--model", model, *_fast(model), name=f"{model}.pt")
        mapped = _mapped(ckpt, dark)
        assert np.isfinite(mapped).all()
        assert np.abs(mapped.mean(axis=0) - 242.5 / 255).max() < 0.03


@pytest.mark.parametrize("option, value", [("--max-pixels", "1"), ("--max-pixels", "0"),
                                            ("--batch-size", "1"), ("--lr", "0"), ("--steps", "-1"),
                                            ("--eps", "0"), ("--eps", "-1"), ("--eps", "nan"),
                                            ("--eps", "inf"), ("--ridge", "-1"), ("--ridge", "nan"),
                                            ("--lr", "nan"), ("--lr", "inf"),
                                            ("--transport-weight", "nan"), ("--hidden", "0"),
                                            ("--eps", "1e39"), ("--ridge", "1e300"), ("--sw-weight", "1e300"),
                                            ("--transport-weight", "1e13"),  # each overflowed the fit
                                            ("--hidden", "5000"), ("--modules", "100000")])
def test_invalid_training_options_are_one_line_errors(
    tmp_path: Path, source: Path, option: str, value: str
) -> None:
    applies = {"--modules": ("--model", "mmgn")}.get(option, ("--solver", "adam"))  # where the option is used
    outcome = cli("fit", source, source, "-o", tmp_path / "m.pt", *applies, option, value)
    assert_one_line_error(outcome)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999999"])
def test_an_out_of_range_seed_is_a_usage_error(tmp_path: Path, source: Path, seed: str) -> None:
    """These seeds used to crash inside numpy / scikit-learn with a traceback."""
    outcome = cli("fit", source, source, "-o", tmp_path / "m.pt", "--seed", seed)
    assert outcome.crash is None and outcome.code == 2 and "--seed" in outcome.stderr


# --- item 5: training never silently fails ------------------------------------------------


def _poison_loss(monkeypatch: pytest.MonkeyPatch, poison) -> None:
    """Wrap train.batch_loss so that call i (from 1) returns poison(loss, i)."""
    real, calls = train.batch_loss, [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        return poison(real(*args, **kwargs), calls[0])

    monkeypatch.setattr(train, "batch_loss", poisoned)


@pytest.fixture
def old_checkpoint(tmp_path: Path) -> Path:
    """An existing checkpoint at the output path: a failed fit must leave it untouched."""
    return write_checkpoint(tmp_path / "m.pt")


def _fit_fails(tmp_path: Path, source: Path, old: Path, *fragments: str, options=FAST) -> None:
    before = old.read_bytes()
    outcome = cli("fit", source, source, "-o", old, "--force", "--solver", "adam", "--components", "2", *options)
    assert_one_line_error(outcome, *fragments)
    assert old.read_bytes() == before and temp_files(tmp_path) == []


def test_a_nan_loss_stops_training_and_writes_nothing(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_loss(monkeypatch, lambda loss, i: loss * float("nan") if i == 8 else loss)
    _fit_fails(tmp_path, source, old_checkpoint, "non-finite at step 7", "--lr")


def test_an_infinite_loss_stops_training(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_loss(monkeypatch, lambda loss, i: loss + float("inf") if i == 3 else loss)
    _fit_fails(tmp_path, source, old_checkpoint, "non-finite")


def test_a_rising_loss_is_reported_as_divergence(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_loss(monkeypatch, lambda loss, i: loss + 0.8 * i)  # climbs steadily, stays finite
    _fit_fails(tmp_path, source, old_checkpoint, "training diverged", "--lr")


def test_a_far_too_high_learning_rate_is_caught(
    tmp_path: Path, source: Path, old_checkpoint: Path
) -> None:
    """Without the divergence rule this run 'succeeded' with a final loss of ~4·10⁶."""
    _fit_fails(tmp_path, source, old_checkpoint, "training diverged",
               options=("--steps", "60", "--batch-size", "256", "--lr", "10"))


def test_cuda_out_of_memory_is_a_clear_error(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(loss, i):
        if i == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return loss

    _poison_loss(monkeypatch, oom)
    _fit_fails(tmp_path, source, old_checkpoint, "out of GPU memory", "--batch-size")


def test_a_brief_rise_from_a_large_start_is_not_divergence() -> None:
    """Measured on a real photo pair: the objective (KL + 5000·SW₂²) started at 15.1 and its
    first 20 steps averaged 26 before falling; a real divergence climbs to ~10⁶."""
    check_divergence([26.0] * DIVERGENCE_WINDOW, start=15.1)
    with pytest.raises(TrainingError):
        check_divergence([1e6] * DIVERGENCE_WINDOW, start=15.1)


#: The rule's allowance above a start of 0.5: DIVERGENCE_MARGIN + |start|.
ALLOWED = DIVERGENCE_MARGIN + 0.5


@pytest.mark.parametrize("losses, diverged", [
    ([0.5] * 100, False),
    (list(np.linspace(0.5, -3.0, 100)), False),  # falling: healthy
    ([0.5 + (-1) ** i * 8 for i in range(100)], False),  # noisy but level
    ([0.5 + ALLOWED - 0.5] * 100, False),  # worse, but within the margin
    ([0.5 + ALLOWED + 0.5] * DIVERGENCE_WINDOW, True),
    ([0.5] * (DIVERGENCE_WINDOW - 2) + [1e6], False),  # too few steps to judge yet
    ([0.5] * 50 + [0.5 + 2 * ALLOWED] * 11 + [0.5] * 9, True),  # window mean > margin
])
def test_the_divergence_rule(losses: list[float], diverged: bool) -> None:
    history: list[float] = []
    try:
        for value in losses:
            history.append(value)
            check_divergence(history, start=0.5)
    except TrainingError:
        assert diverged
    else:
        assert not diverged


def test_the_divergence_rule_never_trips_a_healthy_default_run(tmp_path: Path, source: Path) -> None:
    target = _save(tmp_path / "t.png", smooth_rgb(16, 20, seed=9))
    ckpt = _fit(tmp_path, source, target, "--solver", "adam", "--steps", "150", "--batch-size", "512")
    assert checkpoint.load(ckpt).train["steps"] == 150


# --- item 5: overwriting and atomic checkpoint writes --------------------------------------


def test_an_existing_checkpoint_needs_force(tmp_path: Path, source: Path, old_checkpoint: Path) -> None:
    before = old_checkpoint.read_bytes()
    outcome = cli("fit", source, source, "-o", old_checkpoint, *CLOSED_FORM)
    assert_one_line_error(outcome, "already exists", "--force")
    assert old_checkpoint.read_bytes() == before
    _fit(tmp_path, source, source, *CLOSED_FORM, "--force")
    assert old_checkpoint.read_bytes() != before
    assert checkpoint.load(old_checkpoint).model.name == "affine"


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    OSError(errno.EIO, "Input/output error"),
])
def test_a_full_disk_while_saving_leaves_the_old_checkpoint_and_no_temp_file(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
    failure: OSError,
) -> None:
    def fail(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    before = old_checkpoint.read_bytes()
    outcome = cli("fit", source, source, "-o", old_checkpoint, "--force", *CLOSED_FORM)
    assert_one_line_error(outcome, "cannot write checkpoint", failure.strerror)
    assert old_checkpoint.read_bytes() == before and temp_files(tmp_path) == []


def test_a_read_only_destination_is_a_clear_error(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # tests run as root: chmod would not stop it
    (tmp_path / "ro").mkdir()
    outcome = cli("fit", source, source, "-o", tmp_path / "ro" / "m.pt", *CLOSED_FORM)
    assert_one_line_error(outcome, "cannot write checkpoint", "Permission denied")
    assert list(tmp_path.rglob("*.pt")) == []


def test_a_missing_output_folder_is_a_clear_error_before_the_fit(tmp_path: Path, source: Path) -> None:
    outcome = cli("fit", source, source, "-o", tmp_path / "nope" / "m.pt")  # the default fit: refused before it
    assert_one_line_error(outcome, "cannot write the checkpoint", "the folder", "does not exist")
    assert_one_line_error(cli("fit", source, source, "-o", tmp_path, "--force"), "is a folder")
    assert_one_line_error(cli("fit", source, source, "-o", "", "--force"), "an empty argument was given")
    model = _fit(tmp_path, source, source, *CLOSED_FORM)
    assert_one_line_error(cli("export-lut", model, model, "--force"), "LUT", "would overwrite")
    assert_one_line_error(cli("export-lut", model, tmp_path / "nope" / "g.cube"), "the folder", "does not exist")
    assert_one_line_error(cli("fit", source, source, "-o", tmp_path / "p.pt", "--preview", tmp_path / "nope" / "p.png"),
                          "preview", "does not exist")
    assert not (tmp_path / "p.pt").exists()  # refused before the fit: no checkpoint without its preview


def test_a_checkpoint_follows_the_umask_like_any_file(tmp_path: Path, source: Path) -> None:
    umask = os.umask(0o022)
    try:
        ckpt = _fit(tmp_path, source, source, *CLOSED_FORM)
    finally:
        os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o644


def test_an_interrupted_save_leaves_no_temp_file(
    tmp_path: Path, source: Path, old_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    before = old_checkpoint.read_bytes()
    outcome = cli("fit", source, source, "-o", old_checkpoint, "--force", *CLOSED_FORM)
    assert outcome.code == 130 and "interrupted" in outcome.stderr
    assert old_checkpoint.read_bytes() == before and temp_files(tmp_path) == []
