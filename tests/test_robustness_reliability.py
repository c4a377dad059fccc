"""Issue 16, item 6: a killed fit, running out of memory in training, an unwritable destination.

A killed ``colorot fit`` is a real process sent SIGKILL at a known point: a wrapper stalls it there
(in training, or in the checkpoint write after the data and before the rename) and leaves a
marker file, so the kill never races the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _robust_helpers import assert_one_line_error, cli, png, temp_files, write_checkpoint

from colorot import apply, train
from colorot.apply import Job, Plan, run
from colorot.distributions import Gaussian
from colorot.errors import DestinationError, ImageWriteError, TrainingError
from colorot.models import build_model

REPO = Path(__file__).resolve().parents[1]

#: Runs ``python -m colorot ARGS`` with one function replaced by a stall: it touches the file
#: $STALLED and sleeps. argv: HOOK ARGS...; HOOK "write" stalls os.fsync (the checkpoint's temp
#: file is then complete and not yet renamed), "train" stalls the divergence check of each step.
STALLING_COLOROT = """
import os, runpy, sys, time
from pathlib import Path
import colorot.train

def stall(*args, **kwargs):
    Path(os.environ["STALLED"]).touch()
    time.sleep(600)

hook = sys.argv.pop(1)
if hook == "write":
    os.fsync = stall
else:
    colorot.train.check_divergence = stall
sys.argv[0] = "colorot"
runpy.run_module("colorot", run_name="__main__")
"""


def _kill_when_stalled(tmp_path: Path, hook: str, *args: object) -> None:
    """Run colorot ARGS until it stalls at ``hook``, then SIGKILL it."""
    marker = tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "STALLED": str(marker)}
    process = subprocess.Popen([sys.executable, "-c", STALLING_COLOROT, hook, *map(str, args)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), f"colorot never reached {hook}: exit {process.poll()}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return png(tmp_path / "img" / "day.png", 12, 12, seed=1), png(tmp_path / "img" / "dusk.png", 12, 12, seed=2)


def test_a_fit_whose_preview_is_refused_leaves_no_checkpoint(
    tmp_path: Path, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint was written, then the preview failed (a full disk): exit 1, which says nothing
    was written, and a rerun stopped at "already exists (use --force)"."""
    from colorot import preview

    def full_disk(path, *args, **kwargs):
        raise DestinationError(f"{path}: cannot write the preview (No space left on device)")

    monkeypatch.setattr(preview, "fit_preview", full_disk)
    outcome = cli("fit", *pair, "-o", tmp_path / "m.pt", "--preview", tmp_path / "p.png", "--steps", "2")
    assert_one_line_error(outcome, "No space left on device")
    assert not (tmp_path / "m.pt").exists()


def test_a_fit_whose_checkpoint_is_refused_leaves_its_preview_as_it_was(
    tmp_path: Path, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview was written first: a checkpoint then refused (a read-only or full destination)
    left a preview of a fit never saved, replacing the one there with --force (exit 1 says nothing
    was written). The preview is now named only once the checkpoint is."""
    from colorot.transfer import ColorTransfer

    def refused(self, path, *args, **kwargs):
        raise DestinationError(f"{path}: cannot write checkpoint: cannot create it (Read-only file system)")

    monkeypatch.setattr(ColorTransfer, "save", refused)
    sheet = tmp_path / "sheets"
    sheet.mkdir()
    (sheet / "old.png").write_bytes(b"the earlier preview")
    for name, force in (("new.png", ()), ("old.png", ("--force",))):
        outcome = cli("fit", *pair, "-o", tmp_path / "m.pt", "--preview", sheet / name, "--steps", "2", *force)
        assert_one_line_error(outcome, "Read-only file system")
        assert _listing(sheet) == ["old.png"] and (sheet / "old.png").read_bytes() == b"the earlier preview"


def _listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_fit_killed_while_writing_leaves_a_temp_file_the_next_fit_removes(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    closed_form = ("--model", "affine", "--distribution", "gaussian")
    _kill_when_stalled(tmp_path, "write", "fit", *pair, "-o", out / "model.pt", *closed_form)
    assert [path.name.startswith(".model.pt.") for path in temp_files(out)] == [True]
    assert not (out / "model.pt").exists()
    assert cli("fit", *pair, "-o", out / "model.pt", *closed_form).code == 0
    assert _listing(out) == ["model.pt"]


def test_a_fit_killed_while_training_leaves_nothing(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _kill_when_stalled(tmp_path, "train", "fit", *pair, "-o", out / "model.pt", "--model", "cmgn",
                       "--solver", "adam", "--distribution", "gaussian", "--steps", "100000")
    assert _listing(out) == []


# --- out of memory in training -----------------------------------------------------------


def _allocate_too_much(*args, **kwargs):
    """A real failed allocation from torch's CPU allocator: 40 TB."""
    return torch.empty(10**13)


@pytest.mark.parametrize("failure, fragment", [
    (_allocate_too_much, "out of memory"),
    (MemoryError(), "out of memory"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of GPU memory"),
])
def test_running_out_of_memory_in_training_is_a_training_error(
    monkeypatch: pytest.MonkeyPatch, failure, fragment: str
) -> None:
    monkeypatch.setattr(train, "batch_loss", failure if callable(failure) else _raiser(failure))
    model = build_model("cmgn", {"hidden": 4, "layers": 2})
    pixels = np.random.default_rng(0).random((64, 3), dtype=np.float32)
    with pytest.raises(TrainingError, match=fragment) as caught:
        train.train(model, pixels, Gaussian(np.full(3, 0.5), np.eye(3) * 0.05), train.TrainSettings(steps=3))
    assert "--batch-size" in str(caught.value) and "--max-pixels" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_another_runtime_error_in_training_is_not_called_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "batch_loss", _raiser(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train.train(build_model("cmgn", {"hidden": 4, "layers": 2}), np.full((8, 3), 0.5, np.float32),
                    Gaussian(np.full(3, 0.5), np.eye(3) * 0.05), train.TrainSettings(steps=3))


def _raiser(error: BaseException):
    def fail(*args, **kwargs):
        raise error
    return fail


@pytest.mark.parametrize("options", [("--model", "cmgn", "--solver", "adam"), ("--solver", "adam")])
def test_fit_out_of_memory_is_one_line_with_exit_1(
    tmp_path: Path, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...]
) -> None:
    old = write_checkpoint(tmp_path / "m.pt")
    before = old.read_bytes()
    monkeypatch.setattr(train, "batch_loss", _allocate_too_much)
    outcome = cli("fit", *pair, "-o", old, "--force", "--distribution", "gaussian", "--steps", "5",
                  "--batch-size", "999999", *options)
    assert_one_line_error(outcome, "out of memory", "--batch-size", "--max-pixels")
    assert old.read_bytes() == before and temp_files(tmp_path) == []


def test_out_of_memory_outside_training_is_one_line_with_exit_1(
    tmp_path: Path, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (KL) solver's numpy allocations fail as a MemoryError: one line, nothing written."""
    from colorot import kl_solver

    old = write_checkpoint(tmp_path / "m.pt")
    before = old.read_bytes()
    monkeypatch.setattr(kl_solver, "fit_kl", _raiser(MemoryError()))
    outcome = cli("fit", *pair, "-o", old, "--force")
    assert_one_line_error(outcome, "out of memory", "--max-pixels")
    assert old.read_bytes() == before and temp_files(tmp_path) == []


def test_a_file_that_runs_out_of_memory_fails_alone_and_the_batch_goes_on(tmp_path: Path) -> None:
    """Out of memory on one (huge) image stopped the batch where it sorted, the others never tried,
    with a message that named no file (exit 1, after files had been written)."""
    from colorot.apply import run_each

    sources = [png(tmp_path / "in" / f"{name}.png", 4, 4) for name in "abc"]
    jobs = [Job(src, tmp_path / "out" / src.name) for src in sources]

    def work(job: Job) -> str:
        if job.src.name == "b.png":
            raise MemoryError
        return job.src.name

    for count in (1, 2):
        report = run_each(Plan(jobs=jobs, skipped=[]), work, jobs=count)
        assert [job.src.name for job in report.written] == ["a.png", "c.png"] and report.exit_code == 3
        [(failed, message)] = report.failed
        assert failed.src.name == "b.png" and message.startswith(f"{failed.src}: out of memory") and "--jobs" in message


def test_a_library_that_memory_could_not_load_is_out_of_memory_not_a_traceback(
    tmp_path: Path, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a memory limit (ulimit -v) the dynamic loader cannot map scipy's compiled code: its
    ImportError came out as a 40-line traceback."""
    from colorot import kl_solver

    failure = ImportError("/x/_highspy/_core.so: failed to map segment from shared object")
    monkeypatch.setattr(kl_solver, "fit_kl", _raiser(failure))
    outcome = cli("fit", *pair, "-o", tmp_path / "m.pt")
    assert_one_line_error(outcome, "out of memory", "failed to map segment", "ulimit -v")
    monkeypatch.setattr(kl_solver, "fit_kl", _raiser(ImportError("cannot import name 'x' from 'y'")))
    assert isinstance(cli("fit", *pair, "-o", tmp_path / "m.pt").crash, ImportError)  # any other is a bug's


# --- a destination that cannot be written -------------------------------------------------


def test_run_stops_at_the_first_destination_the_file_system_refuses(tmp_path: Path) -> None:
    """Root ignores permissions, so the destination's parent is a file: no folder can be made."""
    sources = [png(tmp_path / "in" / f"{name}.png", 4, 4) for name in "abc"]
    inputs = {path: path.read_bytes() for path in sources}
    (tmp_path / "blocker").write_text("a file where a folder should be")
    jobs = [Job(src, tmp_path / "blocker" / src.name) for src in sources]
    done: list[Job] = []
    with pytest.raises(DestinationError, match="blocker.*the batch stopped"):
        run(Plan(jobs=jobs, skipped=[]), lambda x: x, on_file_done=lambda job, error: done.append(job))
    assert done == [] and {path: path.read_bytes() for path in sources} == inputs
    assert _listing(tmp_path) == ["blocker", "in"] and _listing(tmp_path / "in") == ["a.png", "b.png", "c.png"]


def test_an_unencodable_image_still_fails_only_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder's refusal is about one file, not the destination: the batch goes on."""
    sources = [png(tmp_path / "in" / f"{name}.png", 4, 4) for name in ("bad", "good")]
    real_write = apply.write_image

    def write_image(path, *args, **kwargs):
        if Path(path).name == "bad.png":
            raise ImageWriteError(f"{path}: cannot encode as PNG") from ValueError("unsupported mode")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(apply, "write_image", write_image)
    report = run(Plan(jobs=[Job(src, tmp_path / "out" / src.name) for src in sources], skipped=[]), lambda x: x)
    assert report.exit_code == 3 and [job.src.name for job in report.written] == ["good.png"]
    assert "cannot encode" in report.failed[0][1]


def test_a_failure_that_names_no_file_is_named_by_its_input(tmp_path: Path) -> None:
    """A match's fit error ("training diverged: …") was printed as "failed: training diverged", the
    image it failed on named only in the JSON."""
    from colorot.apply import run_each
    from colorot.errors import TrainingError

    sources = [png(tmp_path / "in" / f"{name}.png", 4, 4) for name in "ab"]
    jobs = [Job(src, tmp_path / "out" / src.name) for src in sources]

    def work(job: Job) -> None:
        raise TrainingError("training diverged" if job.src.name == "a.png" else f"{job.src}: cannot decode image")

    report = run_each(Plan(jobs=jobs, skipped=[]), work)
    assert [message for _, message in report.failed] == [f"{sources[0]}: training diverged",
                                                         f"{sources[1]}: cannot decode image"]
    from colorot.apply import _names

    assert _names("b.png: cannot decode", Path("b.png")) and _names("cannot write 'x/b.png'", Path("b.png"))
    assert not _names("training diverged", Path("a")) and not _names("ab.png: x", Path("b.png"))
