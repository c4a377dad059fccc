"""Issue item 4: nothing is lost.

Outputs are written to a temp file beside the destination and renamed into
place, so a killed run leaves only complete files and a rerun resumes; the
input tree is never written unless ``--in-place``; collisions are refused before
any write; an unwritable or full destination is a clear error with no partial
file; symbolic-link loops do not hang folder discovery.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _robust_helpers import (
    assert_one_line_error,
    cli,
    decodes_fully,
    half_map_checkpoint,
    png,
    temp_files,
    write_checkpoint,
)
from typer.testing import CliRunner

import colorot.atomic
import colorot.cli
import colorot.errors
import colorot.imageio
from colorot.cli import app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return half_map_checkpoint(tmp_path_factory.mktemp("ckpt") / "half.pt")


def _tree(root: Path, count: int = 6, size: int = 6) -> list[Path]:
    return [png(root / f"d{i % 2}" / f"img{i:02d}.png", size, size, seed=i) for i in range(count)]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (hidden too) with its size and mtime: to prove nothing changed."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.png") if not p.name.startswith("."))


# --- paths the file system refuses --------------------------------------------------------


@pytest.mark.parametrize("command", ["apply", "match"])
def test_a_name_over_the_file_system_s_limit_is_one_line_not_a_traceback(
        tmp_path: Path, half: Path, command: str) -> None:
    """Looking at an output named past NAME_MAX raised OSError (File name too long) out of the plan."""
    _tree(tmp_path / "in")
    first = half if command == "apply" else png(tmp_path / "reference.png", 6, 6, seed=9)
    outcome = cli(command, first, tmp_path / "in", tmp_path / ("L" * 300) / "out", "--json")
    assert_one_line_error(outcome, "File name too long")
    assert outcome.stdout == ""


def test_a_folder_that_cannot_be_listed_stops_the_batch_naming_it(
        tmp_path: Path, half: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder deeper than PATH_MAX was left out of the walk without a word: its images were in
    neither written, skipped nor failed, and the run exited 0."""
    png(tmp_path / "in" / "top.png", 6, 6, seed=1)
    monkeypatch.chdir(tmp_path / "in")
    for _ in range(60):  # one level at a time: each mkdir sees a short relative path
        os.mkdir("d" * 72)
        os.chdir("d" * 72)
    png(Path("deep.png"), 6, 6, seed=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(colorot.errors.ImageReadError, match="cannot list the folder .*File name too long"):
        colorot.imageio.list_images(tmp_path / "in", recursive=True)
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "out")
    assert_one_line_error(outcome, "cannot list the folder", "its images would be left out")
    assert not (tmp_path / "out").exists()


# --- an interrupted run leaves only complete files; a rerun resumes ----------------------


def test_a_killed_batch_leaves_only_complete_files_and_a_rerun_resumes(tmp_path: Path) -> None:
    """SIGKILL a real ``colorot apply`` of 40 images once the first outputs appear."""
    heavy = write_checkpoint(tmp_path / "heavy.pt", "mmgn", hidden=64, modules=32)  # ~0.1 s/image
    inputs = [png(tmp_path / "in" / f"s{i % 3}" / f"img{i:02d}.png", 48, 48, seed=i)
              for i in range(40)]
    before = _snapshot(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "colorot", "apply", str(heavy),
                                str(tmp_path / "in"), str(out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_outputs(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    survivors = _outputs(out)
    assert 3 <= len(survivors) < 40
    assert all(decodes_fully(path) for path in survivors)  # complete, never half-written
    # a temp file of the image being written may remain: hidden, and removed by the rerun
    assert all(p.name.startswith(".") for p in out.rglob("*.tmp"))

    outcome = cli("apply", heavy, tmp_path / "in", out, "--json")
    assert outcome.code == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert len(report["skipped"]) == len(survivors)
    assert len(report["written"]) == 40 - len(survivors)
    assert len(_outputs(out)) == 40 and all(decodes_fully(p) for p in _outputs(out))
    assert temp_files(out) == []
    assert _snapshot(tmp_path / "in") == before and len(inputs) == 40


def _descendants(pid: int) -> set[int]:
    """The processes under ``pid`` (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            children.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):  # not a process, or gone meanwhile
            continue
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _match_with_a_file_written(tmp_path: Path) -> tuple[subprocess.Popen, Path, set[int]]:
    """`colorot match --jobs 2` of 24 images in a fresh process, once its first file is written: the
    process, its output folder and the processes under it (fork server, workers)."""
    for i in range(24):
        png(tmp_path / "in" / f"img{i:02d}.png", 96, 128, seed=i)
    reference = png(tmp_path / "reference.png", 32, 32, seed=99)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "colorot", "match", str(reference), str(tmp_path / "in"),
                                str(out), "--jobs", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _outputs(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return process, out, _descendants(process.pid)


def _alive(pid: int) -> bool:
    """Whether the process ``pid`` still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _still_running(pids: set[int]) -> list[int]:
    """Those of ``pids`` still running after up to 10 s (killed then, so that none outlives the test)."""
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_a_kill_stops_a_match_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGTERM ended `colorot match --jobs 2` at once (exit 143): its temporary files stayed, and its
    worker processes went on fitting and writing files, orphaned, until killed by hand."""
    process, out, helpers = _match_with_a_file_written(tmp_path)
    try:
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=60)[1].decode()
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in stderr, (process.returncode, stderr)
    assert helpers, "no worker processes were seen"
    assert _still_running(helpers) == []  # no worker left running
    assert temp_files(out) == [] and 1 <= len(_outputs(out)) < 24
    assert all(decodes_fully(path) for path in _outputs(out))


def test_a_second_ctrl_c_is_ignored_while_the_first_winds_down() -> None:
    """A second Ctrl-C (or timeout's SIGTERM, sent to the process and its group) raised inside the
    first one's unwinding: a thread pool's shutdown let its writers die mid-file (half-written temp
    files, 7 of 10 double presses), the `interrupted` line was lost, tracebacks were printed. A
    third ends the process at once (a wind-down that hangs can still be stopped)."""
    code = ("import os, signal, sys\n"
            "import colorot.cli\n"
            "def command():  # a command that Ctrl-C stops, pressed again while it winds down\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIG{first})\n"
            "    except KeyboardInterrupt:\n"
            "        os.kill(os.getpid(), signal.SIG{second})\n"
            "        print('wound down', flush=True)\n"
            "        os.kill(os.getpid(), signal.SIGINT)  # a third: the end, at once\n"
            "        print('not reached', flush=True)\n"
            "colorot.cli.main = command\n"
            "sys.argv = ['colorot', 'info']\n"
            "from colorot import launcher\n"
            "launcher.main()\n")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for first, second in (("INT", "INT"), ("TERM", "INT"), ("INT", "TERM")):
        done = subprocess.run([sys.executable, "-c", code.format(first=first, second=second)], capture_output=True,
                              text=True, env=env, timeout=60)
        assert done.stdout == "wound down\n" and done.returncode == -signal.SIGINT, (done.stdout, done.stderr)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_the_workers_end_when_a_match_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL of `colorot match --jobs 2` (which nothing can catch: the out-of-memory killer's) left
    the fork server and its workers running, orphaned, fitting and writing the batch's files."""
    process, out, helpers = _match_with_a_file_written(tmp_path)
    try:
        process.kill()
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert helpers, "no worker processes were seen"
    assert _still_running(helpers) == []
    assert len(_outputs(out)) < 24


def test_a_ctrl_c_while_the_command_line_is_read_says_interrupted(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """typer ends a Ctrl-C outside a command's body (while click reads its options) with exit 130 and
    not a word; the program says it was interrupted, as it does everywhere else."""
    def interrupted(self, ctx, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(colorot.cli._Command, "parse_args", interrupted)
    monkeypatch.setattr(sys, "argv", ["colorot", "info", "model.pt"])
    monkeypatch.setitem(colorot.cli._state, "program", False)
    monkeypatch.setitem(colorot.cli._state, "interrupted", False)
    with pytest.raises(SystemExit) as exit_:
        colorot.cli.main()
    assert exit_.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_a_rerun_removes_only_the_temp_files_of_its_own_outputs(tmp_path: Path, half: Path) -> None:
    png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.0badf00d.tmp"  # what a killed write of out/a.png leaves
    stale.write_bytes(b"\x89PNG half")
    kept = [out / ".a.png.notahex1.tmp", out / ".notes.tmp", out / ".b.png.0badf00d.tmp",
            out / ".a.png.0123456789.tmp", out / ".a.png.0bad.tmp"]  # hex digits, but not 8: not a temp name
    for path in kept:
        path.write_text("not ours")
    assert cli("apply", half, tmp_path / "in", out).code == 0
    assert not stale.exists() and all(path.exists() for path in kept)
    assert decodes_fully(out / "a.png")


def test_ctrl_c_mid_batch_leaves_complete_files_and_no_temp_file(
    tmp_path: Path, half: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "in")
    calls = [0]

    def interrupting(name_it):  # the call that gives a written file its name (a link without --overwrite)
        def call(src, dst):
            calls[0] += 1
            if calls[0] == 3:
                raise KeyboardInterrupt
            name_it(src, dst)
        return call

    monkeypatch.setattr(os, "replace", interrupting(os.replace))
    monkeypatch.setattr(os, "link", interrupting(os.link))
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "out", "--jobs", "1")  # serial: the count is exact
    assert outcome.code == 130 and "interrupted" in outcome.stderr
    assert len(_outputs(tmp_path / "out")) == 2 and temp_files(tmp_path) == []
    monkeypatch.undo()
    report = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json").stdout)
    assert (len(report["skipped"]), len(report["written"])) == (2, 4)


# --- the input tree is never written to ------------------------------------------------------


@pytest.mark.parametrize("output", ["in", "in/", "in/graded", "in/d0", "in/d0/deeper/"])
def test_an_output_inside_the_inputs_is_refused_without_in_place(
    tmp_path: Path, half: Path, output: str
) -> None:
    _tree(tmp_path / "in")
    before = _snapshot(tmp_path)
    outcome = cli("apply", half, tmp_path / "in", f"{tmp_path}/{output}")
    assert_one_line_error(outcome)
    assert "--in-place" in outcome.stderr or "overwrite an input" in outcome.stderr
    assert _snapshot(tmp_path) == before


def test_in_place_writes_beside_the_inputs_but_never_over_them(tmp_path: Path, half: Path) -> None:
    _tree(tmp_path / "in")
    before = _snapshot(tmp_path / "in")
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "in" / "graded", "--in-place")
    assert outcome.code == 0, outcome.stderr
    after = _snapshot(tmp_path / "in")
    assert {k: v for k, v in after.items() if not k.startswith("graded")} == before
    # the same folder as its own output would overwrite every input: refused even in place
    assert_one_line_error(cli("apply", half, tmp_path / "in", tmp_path / "in", "--in-place"),
                          "overwrite an input")
    assert _snapshot(tmp_path / "in") == after


def test_a_rerun_into_its_own_input_folder_says_why_it_is_refused(tmp_path: Path, half: Path) -> None:
    """The first run's outputs are the second's inputs; the refusal said only "would overwrite an input"."""
    _tree(tmp_path / "in")
    first = cli("apply", half, tmp_path / "in", tmp_path / "in", "--in-place", "--suffix", ".tif")
    assert first.code == 0, first.stderr
    after = _snapshot(tmp_path / "in")
    assert_one_line_error(cli("apply", half, tmp_path / "in", tmp_path / "in", "--in-place", "--suffix", ".tif"),
                          "overwrite an input", "an earlier --in-place run's output", "an output folder of its own")
    assert _snapshot(tmp_path / "in") == after


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_an_output_equal_to_an_input_file_is_refused(
    tmp_path: Path, half: Path, spelling: str
) -> None:
    src = png(tmp_path / "sub" / "a.png")
    dst = {"same": src, "dotted": tmp_path / "sub" / ".." / "sub" / "a.png",
           "symlink": tmp_path / "link.png"}[spelling]
    if spelling == "symlink":
        dst.symlink_to(src)
    before = src.read_bytes()
    assert_one_line_error(cli("apply", half, src, dst, "--overwrite"), "overwrite an input")
    assert src.read_bytes() == before


@pytest.mark.parametrize("names, options", [
    (["x/a.png", "y/a.png"], []),
    (["x/a.png", "x/a.jpg"], ["--suffix", ".png"]),
    (["x/", "y/x/"], []),  # two folders both named x mirror into out/x
])
def test_two_inputs_mapping_to_one_output_are_refused_before_any_write(
    tmp_path: Path, half: Path, names: list[str], options: list[str]
) -> None:
    inputs = []
    for name in names:
        if name.endswith("/"):
            png(tmp_path / name / "a.png")
        else:
            png(tmp_path / name)
        inputs.append(tmp_path / name)
    outcome = cli("apply", half, *inputs, tmp_path / "out/", *options)
    assert_one_line_error(outcome, "would both be written to")
    assert not (tmp_path / "out").exists()


# --- unwritable or full destinations -----------------------------------------------------


def _fail_temp_files(monkeypatch: pytest.MonkeyPatch, stage: str, error: OSError,
                     after: int = 0) -> None:
    """Make writing a temp file fail at ``stage`` ("create" or "sync") after ``after`` successes.

    Tests run as root, where chmod does not stop writes, so failures are injected.
    """
    real_open, real_fsync, done = os.open, os.fsync, [0]

    def guarded_open(path, flags, mode=0o777, *args, **kwargs):
        if stage == "create" and str(path).endswith(".tmp"):
            done[0] += 1
            if done[0] > after:
                raise error
        return real_open(path, flags, mode, *args, **kwargs)

    def guarded_fsync(fd):
        if stage == "sync":
            done[0] += 1
            if done[0] > after:
                raise error
        return real_fsync(fd)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "fsync", guarded_fsync)


@pytest.mark.parametrize("command", ["apply", "match"])
def test_a_preview_the_file_system_refuses_is_reported_with_the_batch(tmp_path: Path, half: Path, command: str) -> None:
    """Every image was written, then the preview's refusal was the only thing said: exit 1 (which
    says nothing was written) and no --json document."""
    _tree(tmp_path / "in")
    (tmp_path / "afile").write_text("a file where the preview's folder would go")
    first = half if command == "apply" else png(tmp_path / "reference.png", 8, 8, seed=9)
    extra = ("--steps", "2") if command == "match" else ()
    outcome = cli(command, first, tmp_path / "in", tmp_path / "out", "--preview", tmp_path / "afile" / "p.png",
                  "--json", *extra)
    assert outcome.code == 3, (outcome.code, outcome.stderr)
    report = json.loads(outcome.stdout)
    assert len(report["written"]) == 6 and report["preview"] is None
    assert "afile is a file" in report["preview_error"] and len(_outputs(tmp_path / "out")) == 6
    plain = cli(command, first, tmp_path / "in", tmp_path / "again", "--preview", tmp_path / "afile" / "p.png", *extra)
    assert plain.code == 3 and f"failed: preview {tmp_path / 'afile' / 'p.png'} not written" in plain.stdout


def test_a_full_destination_for_the_maps_stops_a_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--save-maps` on a full disk failed each map in turn (exit 3, every input fitted) where a
    refused destination stops the batch."""
    _tree(tmp_path / "in")
    reference = png(tmp_path / "reference.png", 8, 8, seed=9)
    real_open = os.open

    def full_for_maps(path, flags, mode=0o777, *args, **kwargs):
        if str(path).endswith(".tmp") and ".pt." in Path(path).name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", full_for_maps)
    outcome = cli("match", reference, tmp_path / "in", tmp_path / "out", "--jobs", "1", "--steps", "2",
                  "--save-maps", tmp_path / "maps")
    assert_one_line_error(outcome, "No space left on device", "the batch stopped")
    assert len(_outputs(tmp_path / "out")) == 1 and temp_files(tmp_path) == []  # its image went first


@pytest.mark.parametrize("stage, error", [
    ("create", PermissionError(errno.EACCES, "Permission denied")),
    ("create", OSError(errno.EROFS, "Read-only file system")),
    ("sync", OSError(errno.ENOSPC, "No space left on device")),
    ("sync", OSError(errno.EDQUOT, "Disk quota exceeded")),
])
def test_an_unwritable_or_full_destination_stops_the_batch_with_one_message(
    tmp_path: Path, half: Path, monkeypatch: pytest.MonkeyPatch, stage: str, error: OSError
) -> None:
    _tree(tmp_path / "in")
    before = _snapshot(tmp_path / "in")
    _fail_temp_files(monkeypatch, stage, error, after=2)  # the disk fills after two files
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "out", "--json")
    assert_one_line_error(outcome, error.strerror, "the batch stopped")
    assert len(_outputs(tmp_path / "out")) == 2 and all(decodes_fully(p) for p in
                                                        _outputs(tmp_path / "out"))
    assert temp_files(tmp_path) == [] and _snapshot(tmp_path / "in") == before
    # space freed: the rerun writes exactly the four that were not
    monkeypatch.undo()
    report = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json").stdout)
    assert (len(report["skipped"]), len(report["written"]), report["failed"]) == (2, 4, [])


_WRITE_UNDER_A_SIZE_LIMIT = """
import resource, sys
from colorot.errors import ImageWriteError
from colorot.imageio import read_image, write_image
image = read_image(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))  # Python ignores SIGXFSZ: writes fail or fall short
try:
    write_image(sys.argv[2], image, image.rgb)
except ImageWriteError as exc:
    print("refused:", exc)
else:
    print("written")
"""


@pytest.mark.parametrize("suffix, options, shape", [
    (".jpg", {"quality": 95}, (150, 200)), (".bmp", {}, (60, 80)), (".tif", {}, (60, 80)),
    (".tif", {"compression": "tiff_lzw"}, (60, 80)),
], ids=["jpeg", "bmp", "tiff", "tiff-lzw"])
def test_a_disk_that_fills_mid_file_leaves_no_cut_file(tmp_path: Path, suffix: str, options: dict, shape) -> None:
    """Given the file's descriptor, Pillow's JPEG, BMP and uncompressed TIFF writers took a short
    write for a whole one: the cut file was renamed into place and reported written (a rerun then
    skipped it); libtiff's failure read as an encoder error. A real file-size limit, in a child;
    each file between 8 and 64 KiB, so that one block of Pillow's falls short."""
    noise = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    source = tmp_path / f"in{suffix}"
    colorot.imageio.PILImage.fromarray(noise).save(source, **options)
    output = tmp_path / f"out{suffix}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", _WRITE_UNDER_A_SIZE_LIMIT, str(source), str(output)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and "File too large" in done.stdout, done.stdout
    assert not output.exists() and temp_files(tmp_path) == []


def test_a_whole_jpeg_is_encoded_once_straight_into_its_file(tmp_path: Path, monkeypatch) -> None:
    """The JPEG path keeps Pillow's encoder on the file's descriptor (through Python's write it holds
    the GIL: a batch on 2 workers took 15 % longer); only a cut file is written again that way."""
    def refused(file):
        raise AssertionError("a whole JPEG went through the Python-write path")

    monkeypatch.setattr(colorot.imageio, "_WritesOnly", refused)
    image = colorot.imageio.read_image(png(tmp_path / "a.png"))
    colorot.imageio.write_image(tmp_path / "a.jpg", image, image.rgb)
    assert (tmp_path / "a.jpg").read_bytes().endswith(b"\xff\xd9")


def test_a_jpeg_on_a_nearly_full_disk_goes_through_python_s_write(tmp_path: Path, monkeypatch) -> None:
    """A cut before Pillow's last write leaves a file that still ends in FF D9; where the file system
    has no room to spare (another worker may free space between two writes), each block goes through
    Python's write, which raises."""
    from types import SimpleNamespace

    used = []
    real = colorot.imageio._WritesOnly
    monkeypatch.setattr(colorot.imageio, "_WritesOnly", lambda file: used.append(file) or real(file))
    monkeypatch.setattr(os, "fstatvfs", lambda fd: SimpleNamespace(f_bavail=1000, f_frsize=4096), raising=False)
    image = colorot.imageio.read_image(png(tmp_path / "a.png"))
    colorot.imageio.write_image(tmp_path / "a.jpg", image, image.rgb)
    assert len(used) == 1 and (tmp_path / "a.jpg").read_bytes().endswith(b"\xff\xd9")


def test_the_jpeg_end_check_reads_without_pread_too(tmp_path: Path, monkeypatch) -> None:
    """Windows has no os.pread: the check reads the last bytes and puts the file's offset back."""
    monkeypatch.delattr(os, "pread")
    with open(tmp_path / "a.jpg", "w+b") as file:
        file.write(b"\xff\xd8 ... \xff\xd9")  # 9 bytes
        assert colorot.imageio._ends_a_jpeg(file) and file.tell() == 9
        file.write(b"\x00")
        assert not colorot.imageio._ends_a_jpeg(file) and file.tell() == 10


def test_an_output_folder_that_cannot_be_created_stops_the_batch(
    tmp_path: Path, half: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "in")
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if "out" in self.parts:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "out")
    assert_one_line_error(outcome, "cannot create folder", "the batch stopped")
    assert not (tmp_path / "out").exists()


def test_an_output_path_through_a_file_stops_the_batch(tmp_path: Path, half: Path) -> None:
    _tree(tmp_path / "in")
    before = _snapshot(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    outcome = cli("apply", half, tmp_path / "in", tmp_path / "blocker" / "out", "--jobs", "2")
    assert_one_line_error(outcome, f"({tmp_path / 'blocker'} is a file)", "the batch stopped")  # was "(File exists)"
    assert _snapshot(tmp_path) == {**before, "blocker": _snapshot(tmp_path)["blocker"]}


# --- folder discovery ------------------------------------------------------------------------


def _in_thread(seconds: float, *args: object):
    """Run the CLI in a thread; fail (instead of hanging the suite) if it takes too long."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(cli(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"colorot {args[0]} still running after {seconds} s"
    return box[0]


def test_symlink_loops_do_not_hang_discovery(tmp_path: Path, half: Path) -> None:
    root = tmp_path / "in"
    _tree(root, count=4)
    (root / "loop").symlink_to(root)  # in/loop → in
    (root / "d0" / "up").symlink_to(root)  # in/d0/up → in
    (root / "d1" / "self").symlink_to(root / "d1")  # in/d1/self → in/d1
    (root / "d0" / "a").mkdir()
    (root / "d0" / "a" / "b").symlink_to(root / "d0")  # a longer cycle
    outcome = _in_thread(30, "apply", half, root, tmp_path / "out", "--json")
    assert outcome.code == 0, outcome.stderr
    written = json.loads(outcome.stdout)["written"]
    assert len(written) == 4  # each real image once


def test_dangling_and_unreadable_entries_are_reported_not_fatal(
    tmp_path: Path, half: Path
) -> None:
    root = tmp_path / "in"
    _tree(root, count=2)
    (root / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "folder.png").mkdir()  # a folder with an image suffix is not an image
    outcome = _in_thread(30, "apply", half, root, tmp_path / "out", "--json")
    assert outcome.crash is None and outcome.code == 3, outcome.stderr
    report = json.loads(outcome.stdout)
    assert [Path(item["input"]).name for item in report["failed"]] == ["gone.png"]
    assert "No such file" in report["failed"][0]["error"] and len(report["written"]) == 2


def test_a_rerun_skips_finished_work_and_overwrite_redoes_it(tmp_path: Path, half: Path) -> None:
    _tree(tmp_path / "in")
    first = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json").stdout)
    assert len(first["written"]) == 6
    mtimes = _snapshot(tmp_path / "out")
    second = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json").stdout)
    assert (len(second["written"]), len(second["skipped"])) == (0, 6)
    assert _snapshot(tmp_path / "out") == mtimes
    third = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json",
                           "--overwrite").stdout)
    assert len(third["written"]) == 6 and temp_files(tmp_path) == []


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no-hard-links"])
def test_a_write_that_may_not_replace_keeps_a_file_that_appeared(tmp_path: Path, monkeypatch, hard_links) -> None:
    """``replace=False`` keeps a file that is there when the write lands, also where the file
    system has no hard links (the check-then-rename fallback); the temp file is removed."""
    if not hard_links:
        def no_link(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(colorot.atomic.os, "link", no_link)
    theirs = tmp_path / "out.png"
    theirs.write_bytes(b"theirs")
    with pytest.raises(colorot.errors.OutputExistsError, match="appeared while this run was writing it"):
        colorot.atomic.write_atomic(theirs, b"ours", colorot.errors.ImageWriteError, replace=False)
    assert theirs.read_bytes() == b"theirs" and temp_files(tmp_path) == []
    colorot.atomic.write_atomic(tmp_path / "new.png", b"ours", colorot.errors.ImageWriteError, replace=False)
    assert (tmp_path / "new.png").read_bytes() == b"ours" and temp_files(tmp_path) == []
    colorot.atomic.write_atomic(theirs, b"ours", colorot.errors.ImageWriteError)
    assert theirs.read_bytes() == b"ours"


@pytest.fixture
def another_run_writes_each_output(monkeypatch) -> None:
    """Another run writes b"theirs" at each output just before this run's write lands (every atomic
    write calls ``remove_stale_temp_files`` first)."""
    other_run = colorot.atomic.remove_stale_temp_files

    def another_run_writes(path):
        Path(path).write_bytes(b"theirs")
        return other_run(path)

    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", another_run_writes)


@pytest.mark.parametrize("command", ["apply", "match"])
@pytest.mark.usefixtures("another_run_writes_each_output")
def test_an_output_another_run_writes_meanwhile_is_kept_unless_overwrite(
        tmp_path: Path, half: Path, command) -> None:
    """Outputs are checked when the run is planned; one that appears before its write lands (another
    run writing the same folder) was replaced. Now it is kept, and its file fails with exit 3."""
    inputs = _tree(tmp_path / "in", count=2)
    first = half if command == "apply" else inputs[0]
    extra = ["--steps", "2"] if command == "match" else []
    outcome = cli(command, first, tmp_path / "in", tmp_path / "out", "--json", *extra)
    assert outcome.crash is None and outcome.code == 3, (outcome.code, outcome.stderr)
    failed = json.loads(outcome.stdout)["failed"]
    assert len(failed) == 2 and all("appeared while this run was writing it" in f["error"] for f in failed)
    assert all(p.read_bytes() == b"theirs" for p in _outputs(tmp_path / "out")) and temp_files(tmp_path) == []
    outcome = cli(command, first, tmp_path / "in", tmp_path / "out", "--json", "--overwrite", *extra)
    assert outcome.code == 0 and all(decodes_fully(p) for p in _outputs(tmp_path / "out")), outcome.stderr


@pytest.mark.parametrize("command", ["apply", "match"])
@pytest.mark.usefixtures("another_run_writes_each_output")
def test_an_output_from_stdin_another_run_writes_meanwhile_is_kept_unless_overwrite(
        tmp_path: Path, half: Path, command) -> None:
    """The same rule for one image read from stdin (``-``) into a file: written with ``replace`` True,
    it would replace a file another run wrote after the run checked its output."""
    inputs = _tree(tmp_path / "in", count=1)
    first = half if command == "apply" else inputs[0]
    extra = ["--steps", "2"] if command == "match" else []
    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, [command, str(first), "-", str(out), *extra], input=inputs[0].read_bytes())
    assert result.exit_code == 1 and "appeared while this run was writing it" in result.stderr, result.output
    assert out.read_bytes() == b"theirs" and temp_files(tmp_path) == []
    result = CliRunner().invoke(app, [command, str(first), "-", str(out), "--overwrite", *extra],
                                input=inputs[0].read_bytes())
    assert result.exit_code == 0 and decodes_fully(out), result.output


@pytest.mark.parametrize("when", ["image", "map"], ids=["during-the-image-write", "during-the-map-write"])
def test_a_map_another_run_saves_meanwhile_is_kept_unless_overwrite(tmp_path: Path, monkeypatch, when) -> None:
    """``--save-maps``: a map that another run saves after this run planned it (checked when the
    run starts) was replaced. Now it is kept, and its file fails with exit 3."""
    inputs = _tree(tmp_path / "in", count=2)
    maps, out = tmp_path / "maps", tmp_path / "out"
    other_run = colorot.atomic.remove_stale_temp_files  # called first by every atomic write

    def another_run_saves_the_map(path):
        path = Path(path)
        if when == "map" and path.suffix == ".pt":
            path.write_bytes(b"theirs")
        elif when == "image" and path.suffix != ".pt":
            mirrored = maps / path.relative_to(out).with_suffix(".pt")
            mirrored.parent.mkdir(parents=True, exist_ok=True)
            mirrored.write_bytes(b"theirs")
        return other_run(path)

    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", another_run_saves_the_map)
    args = ("match", inputs[0], tmp_path / "in", out, "--json", "--steps", "2", "--save-maps", maps)
    outcome = cli(*args)
    assert outcome.crash is None and outcome.code == 3, (outcome.code, outcome.stderr)
    failed = json.loads(outcome.stdout)["failed"]
    assert len(failed) == 2 and all("appeared while this run was writing it" in f["error"] for f in failed)
    assert all(p.read_bytes() == b"theirs" for p in maps.rglob("*.pt")) and len(list(maps.rglob("*.pt"))) == 2
    assert temp_files(tmp_path) == []
    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", other_run)
    outcome = cli(*args, "--overwrite")
    assert outcome.code == 0, outcome.stderr
    assert len([colorot.load(p) for p in maps.rglob("*.pt")]) == 2  # whole checkpoints now


@pytest.fixture
def another_run_writes_the_preview(monkeypatch) -> None:
    """Another run writes b"theirs" at each .png under a "sheets" folder (the previews) just before
    this run's write of it lands, after the run checked the path."""
    other_run = colorot.atomic.remove_stale_temp_files

    def another_run_writes(path):
        if Path(path).parent.name == "sheets":
            Path(path).write_bytes(b"theirs")
        return other_run(path)

    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", another_run_writes)


@pytest.mark.usefixtures("another_run_writes_the_preview")
def test_a_fit_preview_another_run_writes_meanwhile_is_kept_unless_force(tmp_path: Path) -> None:
    """`fit --preview` replaced a file another run wrote at its path after the check, without --force."""
    inputs = _tree(tmp_path / "in", count=2)
    (tmp_path / "sheets").mkdir()
    sheet, model = tmp_path / "sheets" / "fit.png", tmp_path / "m.pt"
    args = ("fit", inputs[0], inputs[1], "-o", model, "--steps", "2", "--preview", sheet)
    outcome = cli(*args)
    assert outcome.crash is None and outcome.code == 1, (outcome.code, outcome.stderr)
    assert "appeared while this run was writing it" in outcome.stderr and sheet.read_bytes() == b"theirs"
    assert f"the checkpoint {model} was written" in " ".join(outcome.stderr.split())
    assert temp_files(tmp_path) == [] and colorot.load(model).train_info_["steps"] == 2  # the map was saved first
    outcome = cli(*args, "--force")
    assert outcome.code == 0 and decodes_fully(sheet), outcome.stderr


@pytest.mark.parametrize("command", ["apply", "match"])
@pytest.mark.usefixtures("another_run_writes_the_preview")
def test_a_batch_preview_another_run_writes_meanwhile_is_kept_unless_overwrite(
        tmp_path: Path, half: Path, command) -> None:
    """A batch's --preview that was not there when the run was planned replaced a file another run
    wrote there meanwhile; now it is kept and reported (exit 3). An earlier batch's sheet there when
    the run is planned is replaced, as a rerun does."""
    inputs = _tree(tmp_path / "in", count=2)
    first = half if command == "apply" else inputs[0]
    extra = ["--steps", "2"] if command == "match" else []
    sheet = tmp_path / "sheets" / "batch.png"
    outcome = cli(command, first, tmp_path / "in", tmp_path / "out", "--json", "--preview", sheet, *extra)
    assert outcome.crash is None and outcome.code == 3, (outcome.code, outcome.stderr)
    document = json.loads(outcome.stdout)
    assert "appeared while this run was writing it" in document["preview_error"] and document["preview"] is None
    assert len(document["written"]) == 2 and sheet.read_bytes() == b"theirs" and temp_files(tmp_path) == []
    outcome = cli(command, first, tmp_path / "in", tmp_path / "out", "--json", "--preview", sheet, "--overwrite", *extra)
    assert outcome.code == 0 and decodes_fully(sheet), outcome.stderr


def test_the_temp_name_pattern_is_the_one_cleaned_up() -> None:
    """The cleanup and the writer agree on the temp-file name (guards a silent drift)."""
    temp = colorot.atomic.temp_path(Path("/x/a.png"), "0123abcd")
    assert temp == Path("/x/.a.png.0123abcd.tmp")


def test_a_nul_byte_in_a_path_is_a_clear_error(tmp_path: Path, half: Path) -> None:
    """Found by the CLI fuzzer: argv cannot carry NUL, but --from-stdin lists and the API can."""
    _tree(tmp_path / "in")
    for args in (("apply", half, tmp_path / "in", "out\x00"), ("apply", half, "in\x00", tmp_path / "out")):
        outcome = cli(*args)
        assert outcome.crash is None and outcome.code == 1, (args, outcome)
        assert "NUL" in outcome.stderr, (args, outcome)
    outcome = cli("info", "m\x00.pt")  # Typer's own path check: a usage error
    assert outcome.crash is None and outcome.code == 2


# --- names, links, pipes and streams (found by exploratory runs of the 0.2 CLI) ----------

def test_a_self_link_or_a_pipe_in_a_folder_fails_alone_or_is_left_out(tmp_path: Path, half: Path) -> None:
    """A link to itself was a traceback from path resolution; a named pipe made the run wait forever."""
    root = tmp_path / "in"
    _tree(root, count=2)
    (root / "self.png").symlink_to("self.png")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.png")
    outcome = _in_thread(30, "apply", half, root, tmp_path / "out", "--json", "--jobs", "1")
    assert outcome.crash is None and outcome.code == 3, outcome.stderr
    report = json.loads(outcome.stdout)
    assert [Path(item["input"]).name for item in report["failed"]] == ["self.png"]
    assert len(report["written"]) == 2


def test_rich_markup_in_a_name_is_printed_as_it_is(tmp_path: Path, half: Path) -> None:
    """'[/x]' in a path was read as a Rich closing tag: a MarkupError traceback, or a changed name."""
    assert_one_line_error(cli("apply", half, tmp_path / "nope[/x].png", tmp_path / "o.png"), "nope[/x].png")
    assert_one_line_error(cli("apply", half, tmp_path / "nope[red]X.png", tmp_path / "o.png"), "nope[red]X.png")
    root = tmp_path / "in"
    png(root / "ok.png")
    broken = root / "a[/b]" / "c.png"
    broken.parent.mkdir(parents=True)  # the folders "a[" and "b]"
    broken.write_bytes(b"not an image")
    outcome = cli("apply", half, root, tmp_path / "out", "--jobs", "1")
    assert outcome.crash is None and outcome.code == 3, outcome.stderr
    assert f"failed: {broken}" in outcome.stderr and (tmp_path / "out" / "ok.png").exists()


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="needs a file system that takes any bytes in names")
def test_a_summary_names_a_file_that_is_not_utf8_by_its_bytes_on_a_strict_utf8_stdout(
    tmp_path: Path, half: Path
) -> None:
    """A UTF-8 locale's stdout is strict: the summary of a run that had written its file (and a rerun
    that skipped it) ended in a UnicodeEncodeError traceback, exit 1. The name's bytes are written
    back as they are, as ls shows them."""
    source = os.fsdecode(bytes(png(tmp_path / "a.png"))[:-5] + b"caf\xe9.png")
    os.rename(tmp_path / "a.png", source)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for _ in range(2):  # written, then skipped
        done = subprocess.run([sys.executable, "-m", "colorot", "apply", str(half), source, str(tmp_path / "out")],
                              capture_output=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"skipped: " + bytes(tmp_path / "out") + b"/caf\xe9.png exists" in done.stdout


def test_a_command_that_needs_torch_says_so_where_it_is_missing(tmp_path: Path, half: Path) -> None:
    """torch is a dependency, but an incomplete install (pip install --no-deps) lacks it: info, export-lut,
    eval --model ended in a ModuleNotFoundError traceback. (A default fit and its apply run without it.)"""
    code = ("import sys; sys.modules['torch'] = None\n"  # import torch now raises ModuleNotFoundError
            "from colorot.cli import main\n"
            "sys.argv = ['colorot', 'export-lut', sys.argv[1], sys.argv[2]]\n"
            "main()\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code, str(half), str(tmp_path / "grade.cube")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == ["error: this needs PyTorch, which is not installed: pip install torch "
                                                "(any ≥ 2.1; a default fit and applying its map run without it)"]


def test_fit_with_a_preview_says_before_the_fit_that_it_needs_torch(tmp_path: Path, monkeypatch) -> None:
    """Without torch a default fit runs, but its preview maps thumbnails with torch: the whole fit ran,
    then "this needs PyTorch", and nothing was saved."""
    real = colorot.cli.importlib.util.find_spec
    monkeypatch.setattr(colorot.cli.importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    source = png(tmp_path / "a.png")
    assert_one_line_error(cli("fit", source, source, "-o", tmp_path / "m.pt", "--preview", tmp_path / "p.png"),
                          "--preview needs PyTorch")
    assert not (tmp_path / "m.pt").exists()


def test_a_list_on_stdin_with_a_byte_order_mark_or_in_utf16(tmp_path: Path, half: Path) -> None:
    """Notepad's UTF-8 list began with an invisible mark (its first name "not found"); PowerShell 5.1's
    UTF-16 list read as names full of NUL bytes."""
    png(tmp_path / "a.png")
    listed = b"\xef\xbb\xbf" + bytes(tmp_path / "a.png") + b"\r\n"
    outcome = CliRunner().invoke(app, ["apply", str(half), "--from-stdin", str(tmp_path / "out"), "--json"], input=listed)
    assert outcome.exit_code == 0 and len(json.loads(outcome.stdout)["written"]) == 1, outcome.output
    utf16 = (str(tmp_path / "a.png") + "\r\n").encode("utf-16")
    assert_one_line_error(cli_with_input(utf16, "apply", half, "--from-stdin", tmp_path / "out2"), "UTF-16")


def cli_with_input(data: bytes, *args: object):
    """``cli`` with ``data`` on stdin."""
    from _robust_helpers import Outcome

    result = CliRunner().invoke(app, [str(a) for a in args], input=data)
    crash = None if result.exception is None or isinstance(result.exception, SystemExit) else result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, crash)


def test_the_default_jobs_are_the_cpus_this_process_may_use(monkeypatch) -> None:
    """--jobs took the machine's CPU count: a job on 4 cores of a 64-core node started 64 workers."""
    from colorot.defaults import usable_cpus

    monkeypatch.delattr(os, "process_cpu_count", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus() == 1


def test_on_macos_spellings_of_one_file_are_one_file(tmp_path: Path, half: Path, monkeypatch) -> None:
    """macOS's file names ignore case and Unicode normalisation: out/Beach.png and out/beach.png were
    two outputs (the first result lost with --overwrite), and an output spelt as an input in another
    case or normalisation replaced the input. Simulated: Linux's names keep case, so the keys are
    checked as macOS folds them, and the refusals come before any write."""
    monkeypatch.setattr(colorot.atomic, "NAMES_FOLDED", True)  # as on macOS
    png(tmp_path / "a" / "Beach.png")
    png(tmp_path / "b" / "beach.png")
    assert_one_line_error(cli("apply", half, tmp_path / "a" / "Beach.png", tmp_path / "b" / "beach.png",
                              tmp_path / "out", "--overwrite"), "would both be written to")
    nfc = png(tmp_path / "in" / "caf\u00e9.png")
    nfd = tmp_path / "in" / "cafe\u0301.png"  # another spelling of the same name
    for output in (tmp_path / "in" / "Caf\u00e9.png", nfd):
        assert_one_line_error(cli("apply", half, nfc, output, "--overwrite"), "output would overwrite an input")
    assert not (tmp_path / "out").exists()


def test_on_macos_two_maps_of_one_folded_name_are_refused(tmp_path: Path, monkeypatch) -> None:
    """X.png and x.jpg keep their maps in X.pt and x.pt: one file where names ignore case."""
    monkeypatch.setattr(colorot.atomic, "NAMES_FOLDED", True)  # as on macOS
    reference = png(tmp_path / "ref.png")
    png(tmp_path / "in" / "X.png")
    png(tmp_path / "in" / "x.jpg")
    assert_one_line_error(cli("match", reference, tmp_path / "in", tmp_path / "out", "--save-maps",
                              tmp_path / "maps"), "would both keep their map in")
    assert not (tmp_path / "out").exists()


def test_where_names_keep_case_two_spellings_are_two_files(tmp_path: Path, half: Path) -> None:
    png(tmp_path / "a" / "Beach.png")
    png(tmp_path / "b" / "beach.png")
    outcome = cli("apply", half, tmp_path / "a" / "Beach.png", tmp_path / "b" / "beach.png", tmp_path / "out", "--json")
    assert outcome.code == 0 and len(json.loads(outcome.stdout)["written"]) == 2, outcome.stderr


def test_shards_take_names_that_are_not_utf8(tmp_path: Path, half: Path) -> None:
    root = tmp_path / "in"
    png(root / "a.png")
    (root / "a.png").rename(os.fsdecode(bytes(root / "a.png")[:-5] + b"caf\xe9.png"))
    png(root / "b.png")
    written = []
    for index in range(2):
        outcome = cli("apply", half, root, tmp_path / "out", "--shard", f"{index}/2", "--json")
        assert outcome.crash is None and outcome.code == 0, outcome.stderr
        written += json.loads(outcome.stdout)["written"]
    assert len(written) == 2


def test_a_name_near_the_length_limit_is_written(tmp_path: Path, half: Path) -> None:
    """The temp file's name adds 14 bytes: a 250-byte name (which Linux takes) stopped the batch."""
    root = tmp_path / "in"
    long_name = "x" * 246 + ".png"
    png(root / long_name)
    png(root / "z.png")
    outcome = cli("apply", half, root, tmp_path / "out", "--json")
    assert outcome.code == 0, outcome.stderr
    assert sorted(Path(p).name for p in json.loads(outcome.stdout)["written"]) == [long_name, "z.png"]
    temp = colorot.atomic.temp_path(tmp_path / long_name, "0123abcd")
    assert len(os.fsencode(temp.name)) <= colorot.atomic.NAME_MAX
    temp.write_bytes(b"left by a killed write")
    assert colorot.atomic.remove_stale_temp_files(tmp_path / long_name) == 1


def test_an_output_name_too_long_for_the_file_system_fails_that_file_alone(tmp_path: Path, half: Path) -> None:
    """A 255-byte input name given a longer suffix stopped the whole batch where it sorted (exit 1,
    3 of 501 written); it is that file's failure (exit 3), and the others are written."""
    root = tmp_path / "in"
    long_name = "a" * 251 + ".png"  # 255 bytes: the most Linux takes
    png(root / long_name)
    png(root / "b.png")
    outcome = cli("apply", half, root, tmp_path / "out", "--suffix", ".jpeg", "--json")
    assert outcome.code == 3, outcome.stderr
    doc = json.loads(outcome.stdout)
    assert [Path(p).name for p in doc["written"]] == ["b.jpeg"] and len(doc["failed"]) == 1
    assert "too long" in outcome.stderr


def test_an_image_from_stdin_skips_an_existing_file_unless_overwrite(tmp_path: Path, half: Path) -> None:
    """'-' → FILE replaced any existing file, the very photo that was piped in included."""
    photo = png(tmp_path / "photo.png")
    before = photo.read_bytes()
    runner = CliRunner()
    result = runner.invoke(app, ["apply", str(half), "-", str(photo)], input=before)
    assert result.exit_code == 0 and "1 skipped" in result.stdout, result.output
    assert photo.read_bytes() == before
    result = runner.invoke(app, ["apply", str(half), "-", str(photo), "--overwrite"], input=before)
    assert result.exit_code == 0 and photo.read_bytes() != before, result.output
    result = runner.invoke(app, ["apply", str(half), "-", str(tmp_path / "new" / "out.png")], input=before)
    assert result.exit_code == 0 and decodes_fully(tmp_path / "new" / "out.png"), result.output


def test_a_preview_never_replaces_an_input_or_an_output(tmp_path: Path, half: Path) -> None:
    root = tmp_path / "in"
    _tree(root, count=2)
    before = _snapshot(root)
    for preview in (root / "d0" / "img00.png", tmp_path / "out" / "d1" / "img01.png"):
        assert_one_line_error(cli("apply", half, root, tmp_path / "out", "--preview", preview), "preview", "would overwrite")
    assert_one_line_error(cli("apply", half, root, tmp_path / "out", "--preview", tmp_path / "sheet"),
                          "unknown file extension")
    for read_only in ("sheet.psd", "sheet.xpm", "sheet.xbm"):  # Pillow reads them; a KeyError after the run
        assert_one_line_error(cli("apply", half, root, tmp_path / "out", "--preview", tmp_path / read_only),
                              "cannot write an RGB image in")
    assert _snapshot(root) == before and not (tmp_path / "out").exists()  # refused before any work
    source = png(tmp_path / "source.png")
    assert_one_line_error(cli("fit", source, source, "-o", tmp_path / "m.pt", "--preview", source), "preview", "would overwrite")
    assert_one_line_error(cli("fit", source, png(tmp_path / "t.png"), "-o", source, "--force"), "overwrite an input")
    assert decodes_fully(source) and not (tmp_path / "m.pt").exists()


def test_a_single_file_to_a_format_that_cannot_be_written_is_refused(tmp_path: Path, half: Path) -> None:
    """'out.gif' was taken for a folder name: out.gif/a.png appeared."""
    source = png(tmp_path / "a.png")
    assert_one_line_error(cli("apply", half, source, tmp_path / "out.gif"), "cannot write '.gif'")
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize("command", ["apply", "match"])
def test_a_stdout_format_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path, half: Path,
                                                                          command: str) -> None:
    """--format was checked only when the image was encoded: after the fit, as a failed file (exit 3)."""
    source = png(tmp_path / "a.png")
    first = source if command == "match" else half
    for name in ("xyz", "gif"):
        assert_one_line_error(cli(command, first, source, "-", "--format", name),
                              f"cannot write the '{name}' format", "(--format or --suffix)")


def test_a_folder_where_an_output_goes_is_refused_not_skipped(tmp_path: Path, half: Path) -> None:
    """It was counted as an existing output and skipped (exit 0, nothing written for it)."""
    sources = [png(tmp_path / "a.png"), png(tmp_path / "b.png")]
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    assert_one_line_error(cli("apply", half, *sources, tmp_path / "out"), f"output {tmp_path / 'out' / 'a.png'} is a folder")
    assert not (tmp_path / "out" / "b.png").exists()


@pytest.mark.parametrize("order", [0, 1])
def test_an_output_named_as_the_folder_of_another_output_is_refused_before_any_work(tmp_path: Path, half: Path,
                                                                                    order: int) -> None:
    """x/a.png and the folder y/a.png (holding inner.png) given together: one order wrote out/a.png
    and then stopped the batch (exit 1, b.png never written), the other failed a file as written by
    "another run"."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y" / "a.png").mkdir(parents=True)
    files = [png(tmp_path / "x" / "a.png"), tmp_path / "y" / "a.png", png(tmp_path / "x" / "b.png")]
    png(tmp_path / "y" / "a.png" / "inner.png")
    inputs = files if order == 0 else files[::-1]
    assert_one_line_error(cli("apply", half, *inputs, tmp_path / "out"), "a folder that", "is written in")
    assert not (tmp_path / "out").exists()


def test_an_empty_path_is_refused_and_a_listed_path_is_done_once(tmp_path: Path, half: Path, monkeypatch) -> None:
    """However spelt: a relative and an absolute spelling of one path wrote it twice (out/a.png twice over)."""
    source = png(tmp_path / "a.png")
    assert_one_line_error(cli("apply", half, source, ""), "an empty argument was given")
    assert_one_line_error(cli("apply", half, "", tmp_path / "out"), "an empty argument was given")
    monkeypatch.chdir(tmp_path)
    listed = f"{source}\n{source}\n./a.png\na.png\n\n"
    result = CliRunner().invoke(app, ["apply", str(half), "--from-stdin", str(tmp_path / "out"), "--json"], input=listed)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["written"]) == 1
    # As first spelt (docs/cli.md): a relative path keeps its folders under the output, an absolute one
    # goes to OUTPUT/<name>, so the spelling kept decides where the one output lands.
    nested = png(tmp_path / "sub" / "n.png")
    for listed, out, written in ((f"sub/n.png\n{nested}\n", "by_path", "sub/n.png"),
                                 (f"{nested}\n./sub/n.png\n", "by_name", "n.png")):
        result = CliRunner().invoke(app, ["apply", str(half), "--from-stdin", str(tmp_path / out), "--json"], input=listed)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["written"] == [str(tmp_path / out / written)]


def test_a_dangling_link_at_a_file_output_is_refused_before_the_work(tmp_path: Path, half: Path) -> None:
    """fit -o and export-lut did all their work, then said the file "appeared while this run was
    writing it (another run?)"; fit --preview replaced the link without --force."""
    source, target = png(tmp_path / "s.png"), png(tmp_path / "t.png", seed=1)
    for name in ("m.pt", "t.cube", "p.png"):
        (tmp_path / name).symlink_to(tmp_path / "nowhere" / name)
    fit = ["fit", source, target, "--steps", "2", "--max-pixels", "500"]
    for args, link in ((fit + ["-o", tmp_path / "m.pt"], "m.pt"), (["export-lut", half, tmp_path / "t.cube"], "t.cube"),
                       (fit + ["-o", tmp_path / "n.pt", "--preview", tmp_path / "p.png"], "p.png")):
        assert_one_line_error(cli(*args), f"{tmp_path / link} already exists (use --force to replace it)")
        assert (tmp_path / link).is_symlink()
    assert not (tmp_path / "n.pt").exists()
    assert cli("export-lut", half, tmp_path / "t.cube", "--force", "--size", "3").code == 0
    assert not (tmp_path / "t.cube").is_symlink() and not (tmp_path / "nowhere").exists()


def test_an_output_folder_a_link_inside_the_input_folder_reaches_is_refused(tmp_path: Path, half: Path) -> None:
    """The first run wrote into it; every rerun then took those outputs for inputs ("output would
    overwrite an input") and could never resume."""
    png(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "o").symlink_to(Path("..") / "out")
    assert_one_line_error(cli("apply", half, tmp_path / "in", tmp_path / "out"),
                          f"output {tmp_path / 'out'} is inside the input folder {tmp_path / 'in'}, as "
                          f"{tmp_path / 'in' / 'o'} (through a link)")
    assert list((tmp_path / "out").iterdir()) == []
    assert cli("apply", half, tmp_path / "in", tmp_path / "out", "--in-place").code == 0


def test_a_dangling_link_at_an_output_is_skipped_as_an_existing_output(tmp_path: Path, half: Path) -> None:
    """The plan looked through the link (no file there), the write could not take the name: "appeared
    while this run was writing it (another run?)", exit 3, on every rerun."""
    sources = [png(tmp_path / "in" / "a.png"), png(tmp_path / "in" / "b.png", seed=1)]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.png").symlink_to(tmp_path / "nowhere" / "gone.png")
    report = json.loads(cli("apply", half, tmp_path / "in", tmp_path / "out", "--json").stdout)
    assert [Path(p).name for p in report["written"]] == ["a.png"] and report["failed"] == []
    assert [Path(p).name for p in report["skipped"]] == ["b.png"] and (tmp_path / "out" / "b.png").is_symlink()
    assert cli("apply", half, sources[1], tmp_path / "out" / "b.png", "--overwrite").code == 0
    assert not (tmp_path / "out" / "b.png").is_symlink() and decodes_fully(tmp_path / "out" / "b.png")


def test_listed_paths_are_one_only_where_they_name_one_file_by_one_name(tmp_path: Path, half: Path,
                                                                        monkeypatch) -> None:
    """`lnk/../x.png` (a link's parent: another folder) was taken by its text for `x.png` and skipped
    without a word; a link to a file under another name is another input, written as well."""
    png(tmp_path / "x.png")
    png(tmp_path / "real" / "x.png", seed=1)
    (tmp_path / "real" / "deep").mkdir()
    (tmp_path / "lnk").symlink_to(tmp_path / "real" / "deep")
    (tmp_path / "alias.png").symlink_to(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    both = runner.invoke(app, ["apply", str(half), "--from-stdin", "out"], input="x.png\nlnk/../x.png\n")
    assert both.exit_code == 1 and "would both be written to out/x.png" in both.stderr
    linked = runner.invoke(app, ["apply", str(half), "--from-stdin", "out", "--json"], input="x.png\nalias.png\n")
    assert linked.exit_code == 0, linked.output
    assert sorted(Path(p).name for p in json.loads(linked.stdout)["written"]) == ["alias.png", "x.png"]


def test_names_differing_in_case_are_never_merged_but_refused_where_the_system_folds_them(
        tmp_path: Path, half: Path, monkeypatch) -> None:
    """Where names are folded (macOS), `A.png` and `a.png` were merged as one path listed twice: on a
    case-sensitive volume, two files, one of them dropped without a word. They are two inputs now;
    where they would land on one output they are refused (nothing dropped)."""
    monkeypatch.chdir(tmp_path)
    png(tmp_path / "A.png")
    png(tmp_path / "a.png", seed=1)
    assert colorot.atomic.spelling_key("A.png") != colorot.atomic.spelling_key(tmp_path / "a.png")
    monkeypatch.setattr(colorot.atomic, "NAMES_FOLDED", True)
    assert colorot.atomic.spelling_key("A.png") != colorot.atomic.spelling_key(tmp_path / "a.png")
    for args, given in ((["--from-stdin", "out"], "A.png\na.png\n"), (["A.png", "a.png", "out"], None)):
        result = CliRunner().invoke(app, ["apply", str(half), *args], input=given)
        assert result.exit_code == 1 and "would both be written" in result.stderr, result.output


def test_listed_paths_are_split_at_newlines_alone(tmp_path: Path, half: Path) -> None:
    """str.splitlines() also split names at a form feed, a lone carriage return, U+2028 and others:
    the whole batch was refused ("input not found: …/ff")."""
    names = ["ff\fx.png", "cr\rx.png", "ls\u2028x.png", "fs\x1cx.png", "plain.png"]
    sources = [png(tmp_path / "in" / name, seed=i) for i, name in enumerate(names)]
    listed = "".join(f"{source}\r\n" if i == len(sources) - 1 else f"{source}\n" for i, source in enumerate(sources))
    result = CliRunner().invoke(app, ["apply", str(half), "--from-stdin", str(tmp_path / "out"), "--json"], input=listed)
    assert result.exit_code == 0, result.output
    assert sorted(Path(p).name for p in json.loads(result.stdout)["written"]) == sorted(names)


def test_a_failed_write_to_stdout_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from colorot import cli as cli_module
    from colorot.errors import DestinationError

    class FullDevice:
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        buffer = property(lambda self: self)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", FullDevice())
    for data in ("text\n", b"\x89PNG"):
        with pytest.raises(DestinationError, match="cannot write to stdout"):
            cli_module._write_stdout(data)


@pytest.mark.parametrize("data", ["text\n" * 20, b"\x89PNG" * 20])
def test_a_write_to_stdout_that_takes_part_goes_on_until_all_is_taken_or_refused(
        monkeypatch: pytest.MonkeyPatch, data: str | bytes) -> None:
    """Python's buffered write of a block returned having taken part of it on a filling disk, and
    the rest was dropped: a truncated image or JSON, exit 0."""
    from colorot import cli as cli_module
    from colorot.errors import DestinationError

    class FillingDevice:
        def __init__(self, room: int) -> None:
            self.taken, self.room = b"", room

        def write(self, chunk: memoryview) -> int:
            if self.room == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            part = bytes(chunk[:min(7, self.room)])
            self.taken, self.room = self.taken + part, self.room - len(part)
            return len(part)

        buffer = property(lambda self: self)

        def flush(self) -> None:
            pass

    expected = data.encode() if isinstance(data, str) else data
    roomy = FillingDevice(room=10_000)
    monkeypatch.setattr(sys, "stdout", roomy)
    cli_module._write_stdout(data)
    assert roomy.taken == expected  # seven bytes a write, all of it
    monkeypatch.setattr(sys, "stdout", FillingDevice(room=30))
    with pytest.raises(DestinationError, match="No space left on device"):
        cli_module._write_stdout(data)


def test_a_closed_stdin_or_stdout_is_one_error_line(tmp_path: Path, half: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with `<&-` or `>&-`, Python's sys.stdin or sys.stdout is None: an AttributeError traceback."""
    from colorot import cli as cli_module

    monkeypatch.setattr(cli_module, "sys", type("ClosedSys", (), {"stdin": None, "stdout": None})())
    with pytest.raises(colorot.errors.ImageReadError, match="cannot read stdin: it is closed"):
        cli_module._read_stdin()
    with pytest.raises(colorot.errors.DestinationError, match="cannot write to stdout: it is closed"):
        cli_module._write_stdout(b"x")


def test_a_16_bit_png_with_a_transparent_colour_keeps_it(tmp_path: Path, half: Path) -> None:
    """A 16-bit PNG's tRNS colour key was lost (Pillow compares it with truncated 8-bit samples)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    codes = np.full((2, 4, 3), (40000, 20000, 10000), np.uint16)
    codes[:, :2] = (1000, 2000, 3000)
    codes[:, 3] = (1000, 5000, 7000)  # the key's red, not the key: opaque
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in codes)
    path = tmp_path / "in" / "keyed.png"
    path.parent.mkdir()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 2, 16, 2, 0, 0, 0))
                     + chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    image = colorot.imageio.read_image(path)
    assert image.bit_depth == 16 and image.alpha.tolist() == [[0, 0, 65535, 65535]] * 2
    assert cli("apply", half, path.parent, tmp_path / "out").code == 0
    written = colorot.imageio.read_image(tmp_path / "out" / "keyed.png")
    assert written.bit_depth == 16 and np.array_equal(written.alpha, image.alpha)


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks (fcntl.flock) are POSIX")
def test_the_cleanup_leaves_a_live_write_of_another_run_alone(tmp_path: Path) -> None:
    """Two runs writing one folder: each removed the other's temp file just before its rename."""
    import fcntl

    out = tmp_path / "a.png"
    live = colorot.atomic.temp_path(out, "0123abcd")
    dead = colorot.atomic.temp_path(out, "89abcdef")
    dead.write_bytes(b"left by a killed write")
    fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as write_atomic holds its temp file
    try:
        assert colorot.atomic.remove_stale_temp_files(out) == 1
        assert live.exists() and not dead.exists()
    finally:
        os.close(fd)
    assert colorot.atomic.remove_stale_temp_files(out) == 1 and not live.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks (fcntl.flock) are POSIX")
def test_a_cleanup_between_a_temp_file_s_creation_and_its_lock_costs_the_write_nothing(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """Another run's cleanup could remove a temp file before its writer locked it: the write failed
    ("No such file or directory"), and a batch took it for a refused destination and stopped."""
    out = tmp_path / "x.png"
    real = colorot.atomic._locked_and_named
    cleanups = []

    def cleaned_first(fd: int) -> bool:
        if not cleanups:  # the first temp file: another run lists and clears it before this locks it
            colorot.atomic._listings.clear()
            cleanups.append(colorot.atomic.remove_stale_temp_files(out))
        return real(fd)

    monkeypatch.setattr(colorot.atomic, "_locked_and_named", cleaned_first)
    colorot.atomic.write_atomic(out, b"data", colorot.errors.ImageWriteError, "image")
    assert cleanups == [1] and out.read_bytes() == b"data"
    assert [path.name for path in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks (fcntl.flock) are POSIX")
def test_a_cleanup_between_a_temp_file_s_close_and_its_rename_leaves_it_alone(tmp_path: Path, monkeypatch) -> None:
    """The file was renamed after its close had released its lock: another run's cleanup could remove
    it in between (two processes writing one folder: 34–103 of 4000 writes failed, each stopping its batch)."""
    out = tmp_path / "x.png"
    real = colorot.atomic._give_name
    cleanups = []

    def cleaned_first(temp: Path, path: Path, replace: bool) -> None:
        colorot.atomic._listings.clear()
        cleanups.append(colorot.atomic.remove_stale_temp_files(path))
        real(temp, path, replace)

    monkeypatch.setattr(colorot.atomic, "_give_name", cleaned_first)
    for replace in (True, False):
        out.unlink(missing_ok=True)
        colorot.atomic.write_atomic(out, b"data", colorot.errors.ImageWriteError, "image", replace=replace)
        assert out.read_bytes() == b"data"
    assert cleanups == [0, 0] and [path.name for path in tmp_path.iterdir()] == ["x.png"]


def test_a_folder_is_listed_once_for_a_batch_of_writes_into_it(tmp_path: Path, monkeypatch) -> None:
    """Every write listed its whole folder for stale temp files: a batch's time grew with the square
    of the folder's size (3000 files into a folder of 10 000: 4× as long)."""
    for i in range(30):
        (tmp_path / f"other{i}.jpg").touch()
    stale = colorot.atomic.temp_path(tmp_path / "f7.bin", "0badf00d")
    stale.write_bytes(b"left by a killed write")
    listings = []
    real_scandir = os.scandir
    monkeypatch.setattr(colorot.atomic.os, "scandir", lambda folder: listings.append(folder) or real_scandir(folder))
    for i in range(20):
        colorot.atomic.write_atomic(tmp_path / f"f{i}.bin", b"x", colorot.errors.ColorotError)
    assert len(listings) == 1 and not stale.exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_a_list_that_is_no_file_system_name_is_read_in_the_locale_s_encoding(tmp_path: Path, half: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Where os.fsdecode decodes strictly (Windows: UTF-8, surrogatepass), a list in the console's code
    page raised UnicodeDecodeError, a traceback."""
    def strict(data):
        return data.decode("utf-8")

    monkeypatch.setattr(os, "fsdecode", strict)
    result = CliRunner().invoke(app, ["apply", str(half), "--from-stdin", str(tmp_path / "out")],
                                input=b"caf\xe9.png\n")
    assert result.exit_code == 1 and "input not found" in result.stderr and "Traceback" not in result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_given_as_an_input_is_named_as_one(tmp_path: Path, half: Path) -> None:
    """A shell's <(cat x.jpg): fit read its profile, then found the pipe empty ("empty file"); apply
    took it for a folder ("a folder or several inputs need an output folder")."""
    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    target = png(tmp_path / "t.png")
    done = threading.Event()

    def unblock() -> None:  # should a reader open the pipe after all, it finds it empty instead of hanging
        while not done.wait(2):
            with open(pipe, "wb"):
                pass

    threading.Thread(target=unblock, daemon=True).start()
    assert_one_line_error(cli("fit", pipe, target, "-o", tmp_path / "m.pt"), "photo.jpg: a pipe or a device")
    assert_one_line_error(cli("apply", half, pipe, tmp_path / "out.jpg"), "photo.jpg is a pipe or a device", "'-'")
    assert_one_line_error(cli("match", target, pipe, tmp_path / "out.jpg"), "photo.jpg is a pipe or a device")
    done.set()
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "out.jpg").exists()


def test_in_place_says_which_images_under_its_output_folder_it_leaves_out(tmp_path: Path, half: Path) -> None:
    """`apply m.pt t5/ t5/sub/ --in-place` left out the photo already in t5/sub (taken for an earlier
    output) without a word; earlier outputs themselves are not counted, so a rerun stays quiet."""
    root = tmp_path / "t5"
    png(root / "a.png")
    png(root / "sub" / "b.png", seed=3)
    first = cli("apply", half, root, root / "sub", "--in-place", "--json")
    assert first.code == 0, first.stderr
    assert "1 image(s) under the output folder" in first.stderr and "b.png" in first.stderr
    assert json.loads(first.stdout)["written"] == [str(root / "sub" / "a.png")]
    rerun = cli("apply", half, root, root / "sub", "--in-place")
    assert rerun.code == 0 and rerun.stderr.count("image(s) under the output folder") == 1  # still b.png alone
    (root / "sub" / "b.png").unlink()
    quiet = cli("apply", half, root, root / "sub", "--in-place")
    assert quiet.code == 0 and "left out" not in quiet.stderr  # its own earlier output is no warning


def test_several_inputs_name_a_linked_folder_by_the_link_and_a_path_given_twice_is_done_once(
        tmp_path: Path, half: Path) -> None:
    """A linked folder input was named after its target (out/photos/, where a linked file keeps the
    link's name); one file given twice was refused as "a.png and a.png would both be written"."""
    png(tmp_path / "x" / "photos" / "a.png")
    (tmp_path / "mylink").symlink_to(tmp_path / "x" / "photos", target_is_directory=True)
    single = png(tmp_path / "s.png", seed=2)
    result = cli("apply", half, tmp_path / "mylink", single, tmp_path / "out", "--json")
    assert result.code == 0, result.stderr
    assert sorted(json.loads(result.stdout)["written"]) == [str(tmp_path / "out" / "mylink" / "a.png"),
                                                          str(tmp_path / "out" / "s.png")]
    twice = cli("apply", half, single, tmp_path / "." / "s.png", tmp_path / "out2/", "--json")
    assert twice.code == 0, twice.stderr
    assert json.loads(twice.stdout)["written"] == [str(tmp_path / "out2" / "s.png")]
    from colorot.apply import plan  # a folder given as 'x/' and 'x' (the CLI's Path drops the '/'; plan's caller may not)
    assert len(plan([f"{tmp_path / 'x'}/", str(tmp_path / "x")], tmp_path / "out3").jobs) == 1
    (tmp_path / "x" / "deeper").mkdir()
    (tmp_path / "x" / "deeper" / "lnk").symlink_to(tmp_path / "x" / "photos", target_is_directory=True)
    dotted = plan([tmp_path / "x" / "deeper" / "lnk" / "..", single], tmp_path / "out4")  # lnk/.. is x/photos/..: x
    assert [job.dst for job in dotted.jobs] == [tmp_path / "out4" / "x" / "photos" / "a.png", tmp_path / "out4" / "s.png"]


def test_a_folder_where_an_image_file_goes_says_so(tmp_path: Path) -> None:
    """`fit holiday/ ...` and `match holiday/ ref.jpg out/` (reference and inputs swapped) said only
    "cannot read file (Is a directory)"."""
    folder = tmp_path / "holiday"
    png(folder / "a.png")
    target = png(tmp_path / "t.png", seed=1)
    fit = cli("fit", folder, target, "-o", tmp_path / "m.pt")
    assert fit.code == 1 and "is a folder; an image file goes here" in fit.stderr and "*.jpg" in fit.stderr
    swapped = cli("match", folder, target, tmp_path / "out")
    assert swapped.code == 1 and "is a folder; an image file goes here" in swapped.stderr
