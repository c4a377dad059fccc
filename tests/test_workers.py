"""Worker processes for ``colorot match`` (colorot.workers): the same report, errors and warnings
as the thread pool's, from other processes that ignore Ctrl-C."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from _worker_helpers import die, fail_on_bad, name_and_process, warn_then_write, write_process
from colorot import load
from colorot.apply import Job, Plan, run_each
from colorot.cli import app
from colorot.errors import ColorotError, DestinationError, ImageMetadataWarning
from colorot.workers import start_server
from conftest import smooth_rgb

pytestmark = pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                                reason="no fork server on this platform")


def plan_of(tmp_path: Path, names: list[str]) -> Plan:
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in names:
        (tmp_path / "in" / name).write_text("input")
        jobs.append(Job(tmp_path / "in" / name, tmp_path / "out" / name))
    return Plan(jobs, [])


def test_files_run_in_worker_processes_that_ignore_ctrl_c(tmp_path):
    plan = plan_of(tmp_path, [f"{i}.txt" for i in range(6)])
    report = run_each(plan, write_process, jobs=2, processes=start_server(2))
    assert report.exit_code == 0 and len(report.written) == 6
    runs = [(tmp_path / "out" / f"{i}.txt").read_text().split() for i in range(6)]
    pids = {int(pid) for pid, _ in runs}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert all(ignores == "True" for _, ignores in runs)


@pytest.mark.parametrize("processes", [False, True])
def test_what_work_returns_comes_back_for_each_file_that_did_not_fail(tmp_path, processes):
    plan = plan_of(tmp_path, ["a.txt", "bad.txt", "c.txt"])
    results = {}
    report = run_each(plan, fail_on_bad, jobs=2, processes=start_server(2) if processes else None, results=results)
    assert sorted(job.src.name for job in results) == ["a.txt", "c.txt"] and report.exit_code == 3
    returned = {}
    run_each(plan_of(tmp_path / "again", ["a.txt", "b.txt"]), name_and_process, jobs=2,
             processes=start_server(2) if processes else None, results=returned)
    assert sorted(name for name, _ in returned.values()) == ["a.txt", "b.txt"]
    assert all((pid != os.getpid()) == processes for _, pid in returned.values())


def test_a_workers_warnings_are_raised_here(tmp_path):
    plan = plan_of(tmp_path, ["a.jpg", "b.jpg"])
    with pytest.warns(ImageMetadataWarning) as caught:
        report = run_each(plan, warn_then_write, jobs=2, processes=start_server(2))
    assert report.exit_code == 0
    assert sorted(str(w.message) for w in caught) == ["a.jpg: damaged metadata", "b.jpg: damaged metadata"]


def test_a_failed_file_fails_alone_and_a_refused_destination_stops_the_batch(tmp_path):
    plan = plan_of(tmp_path, ["good1.txt", "bad.txt", "good2.txt"])
    report = run_each(plan, fail_on_bad, jobs=2, processes=start_server(2))
    assert [job.src.name for job in report.written] == ["good1.txt", "good2.txt"]
    assert [(job.src.name, error) for job, error in report.failed] == [("bad.txt", "bad.txt is bad")]
    assert report.exit_code == 3
    refused = plan_of(tmp_path / "second", ["good.txt", "refused.txt"])
    with pytest.raises(DestinationError, match="refused; the batch stopped"):
        run_each(refused, fail_on_bad, jobs=2, processes=start_server(2))


def test_a_worker_that_dies_stops_the_batch_with_a_clear_error(tmp_path):
    with pytest.raises(ColorotError, match="a worker process ended unexpectedly"):
        run_each(plan_of(tmp_path, ["a.txt", "b.txt"]), die, jobs=2, processes=start_server(2))


#: ``python -m colorot ARGS`` that says on its last line whether ``colorot match`` started the fork server.
_SPY = ("import atexit, sys\n"
        "from colorot import workers\n"
        "started, start = [], workers.start_server\n"
        "workers.start_server = lambda count: started.append(start(count)) or started[-1]\n"
        "atexit.register(lambda: print('server', [s is not None for s in started]))\n"
        "sys.argv[0] = 'colorot'\n"
        "from colorot.cli import main\n"
        "main()\n")


def test_a_frozen_program_keeps_to_threads(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert start_server(2) is None


def test_a_process_that_may_open_too_few_files_keeps_to_threads(monkeypatch):
    """Under ``ulimit -n 20`` ``match --jobs 3`` stopped at "Too many open files", with the fork
    server's traceback; it now runs on threads."""
    import resource

    from colorot.workers import files_needed

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (files_needed(3) - 1, resource.RLIM_INFINITY))
    assert start_server(3) is None
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (files_needed(3), resource.RLIM_INFINITY))
    assert start_server(3) is not None


def test_a_system_without_semaphores_keeps_to_threads(monkeypatch):
    def no_semaphores(self):
        raise ImportError("This platform lacks a functioning sem_open implementation")

    monkeypatch.setattr("multiprocessing.context.BaseContext.Lock", no_semaphores)
    assert start_server(2) is None


#: A program that starts the fork server, then gets the terminal's Ctrl-C (to its whole process
#: group) while the server is still starting; it notes its own and lets one worker answer.
CTRL_C_AS_THE_SERVER_STARTS = """
import os, signal
from colorot.workers import WorkerPool, start_server

signal.signal(signal.SIGINT, lambda signum, frame: print("noted"))
context = start_server(2)
os.killpg(0, signal.SIGINT)
pool = WorkerPool(context, 1, "state")
print(pool.submit(str).result(timeout=60))
pool.shutdown()
"""


def test_a_ctrl_c_as_the_fork_server_starts_is_left_to_this_process():
    """CPython's fork server ignores Ctrl-C only once its imports are done: before, one sent to the
    terminal's process group printed its KeyboardInterrupt traceback (or ended it).  It never sees
    one now; this process does, as soon as the server is started."""
    run = subprocess.run([sys.executable, "-c", CTRL_C_AS_THE_SERVER_STARTS], capture_output=True, text=True,
                         timeout=120, start_new_session=True)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.split() == ["noted", "state"]


#: A batch of 1-second files in 2 worker processes, and Ctrl-C twice: once while the first files run,
#: once while the batch waits for the files in flight.
CTRL_C_TWICE = """
import os, signal, sys, threading, time
from pathlib import Path
from colorot.apply import Job, Plan, run_each
from colorot.workers import start_server
from _worker_helpers import sleep_then_write

root = Path(sys.argv[1])
jobs = [Job(root / f"{i}.txt", root / "out" / f"{i}.txt") for i in range(6)]
for job in jobs:
    job.src.write_text("in")

def ctrl_c_twice():
    time.sleep(1.5)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=ctrl_c_twice, daemon=True).start()
try:
    run_each(Plan(jobs, []), sleep_then_write, jobs=2, processes=start_server(2))
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_second_ctrl_c_while_the_batch_stops_does_not_hang_it(tmp_path):
    """The second interrupted the executor's shutdown half done: "interrupted" was printed, then the
    process waited for ever on workers that no stop reached (a terminal sends one Ctrl-C to the
    process, one to its group; or a user presses it twice)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", CTRL_C_TWICE, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0 and run.stdout.split() == ["interrupted"], run.stderr
    assert all((tmp_path / "out" / f"{i}.txt").read_text() == "done" for i in range(2))  # finished, as in flight


def reference_image(tmp_path: Path) -> Path:
    reference = tmp_path / "reference.png"
    PILImage.fromarray((smooth_rgb(20, 30, 9) * np.asarray([1.0, 0.6, 0.3])).astype(np.uint8)).save(reference)
    return reference


def damaged_jpegs(folder: Path, names: list[str]) -> None:
    """JPEGs whose EXIF block is cut short (Pillow: "Truncated File Read")."""
    folder.mkdir()
    exif = PILImage.Exif()
    exif[0x010F], exif[0x0110] = "camera", "a model name long enough to be stored after the directory"
    for i, name in enumerate(names):
        PILImage.fromarray(smooth_rgb(16, 24, i)).save(folder / name, exif=exif.tobytes()[:-30])


def damaged_warnings(stderr: str, folder: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """The warning lines of ``stderr``, sorted, and those expected: one for each of ``names``."""
    return (sorted(line for line in stderr.splitlines() if line.strip()),
            [f"warning: {folder / name}: damaged metadata (Truncated File Read, says Pillow): the pixels are read "
             "in full, the EXIF is carried as far as it could be read" for name in sorted(names)])


def colorot_at_jobs_1_and_2(*args: str) -> dict:
    """``python -m colorot ARGS --jobs J --save-maps maps<J>`` in fresh processes for J = 1, 2 (each must
    succeed; ARGS end with an output folder, suffixed with J): each run, by J."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    runs = {}
    for jobs in ("1", "2"):
        output = Path(args[-1])
        command = [sys.executable, "-c", _SPY, *args[:-1], f"{output}{jobs}", "--jobs", jobs,
                   "--save-maps", str(output.parent / f"maps{jobs}")]
        runs[jobs] = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert runs[jobs].returncode == 0, runs[jobs].stderr
    assert runs["1"].stdout.splitlines()[-1] == "server []"
    assert runs["2"].stdout.splitlines()[-1] == "server [True]"
    return runs


def assert_the_same_outputs_and_maps(tmp_path: Path, names: list[str]) -> list:
    """The images and kept maps of :func:`colorot_at_jobs_1_and_2` the same at both; the maps, by J."""
    kept = []
    for name in names:
        one, two = (np.asarray(PILImage.open(tmp_path / f"jobs{j}" / name)) for j in ("1", "2"))
        assert np.array_equal(one, two)
        maps = [load(tmp_path / f"maps{j}" / Path(name).with_suffix(".pt")) for j in ("1", "2")]
        first, second = (m.ridge_parameters_.state for m in maps)
        assert first.keys() == second.keys() and all(np.array_equal(first[key], second[key]) for key in first)
        kept.append(maps)
    return kept


def test_match_in_worker_processes_writes_what_one_process_writes_with_each_warning_once(tmp_path):
    """colorot's own process matches in worker processes, outputs and kept maps as those of one
    process; the damaged metadata of each image is one warning (the file is decoded once)."""
    reference, folder, names = reference_image(tmp_path), tmp_path / "photos", [f"{i}.jpg" for i in range(4)]
    damaged_jpegs(folder, names)
    runs = colorot_at_jobs_1_and_2("match", str(reference), str(folder), str(tmp_path / "jobs"))
    warned, expected = damaged_warnings(runs["2"].stderr, folder, names)
    assert warned == expected
    assert_the_same_outputs_and_maps(tmp_path, names)


def test_a_sequence_fits_its_frames_in_worker_processes_as_one_process_does(tmp_path):
    """... and warns once about each frame's damaged metadata, though a frame is decoded again for its write."""
    reference, folder, names = reference_image(tmp_path), tmp_path / "frames", [f"frame{t}.jpg" for t in range(5)]
    damaged_jpegs(folder, names)
    runs = colorot_at_jobs_1_and_2("match", "--sequence", str(reference), str(folder), str(tmp_path / "jobs"))
    for run in runs.values():
        warned, expected = damaged_warnings(run.stderr, folder, names)
        assert warned == expected
    for name, (one, two) in zip(names, assert_the_same_outputs_and_maps(tmp_path, names)):
        assert one.train_info_["sequence"] == two.train_info_["sequence"]
        assert two.train_info_["source_sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("options", [[], ["--sequence"]])
def test_the_cli_inside_another_program_keeps_to_threads_with_each_warning_once(tmp_path, options):
    """CliRunner (or any program calling the Typer app) never starts worker processes, which would
    import that program's main module again."""
    reference, folder, names = reference_image(tmp_path), tmp_path / "photos", ["a.jpg", "b.jpg", "c.jpg"]
    damaged_jpegs(folder, names)
    started = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("colorot.workers.start_server", lambda: started.append(1))
        result = CliRunner().invoke(app, ["match", str(reference), str(folder), str(tmp_path / "out"), "--jobs", "2",
                                          *options])
    assert result.exit_code == 0, result.output
    assert started == []
    warned, expected = damaged_warnings(result.stderr, folder, names)
    assert warned == expected
