"""Tests for colorot.em_process: EM in a second process gives the mixture EM here gives, or falls back."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from colorot import em_process
from colorot.distributions import EMProblem, GaussianMixture
from colorot.em_process import BackgroundEM
from colorot.errors import ImageReadError
from colorot.transfer import ColorTransfer


@pytest.fixture(scope="module")
def problem() -> EMProblem:
    rng = np.random.default_rng(0)
    pixels = np.concatenate([rng.normal(0.3, 0.05, (3000, 3)), rng.normal(0.7, 0.1, (3000, 3))]).clip(0, 1)
    return EMProblem.prepare(np.round(pixels * 255) / 255, 3, ridge=1e-4, random_state=2)


def same(a: GaussianMixture, b: GaussianMixture) -> bool:
    return all(np.array_equal(x, y) for x, y in [(a.weights, b.weights), (a.means, b.means),
                                                 (a.covariances, b.covariances)])


def sent(problem: EMProblem) -> BackgroundEM:
    """A BackgroundEM given ``problem``."""
    running = BackgroundEM()
    running.send(problem)
    return running


def forbid_em_here(monkeypatch) -> None:
    def refuse(cls, problem):
        raise AssertionError("EM ran in this process")

    monkeypatch.setattr(GaussianMixture, "fit_em", classmethod(refuse))


NEEDS_TWO_CORES = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: EM runs in this process")


def closed(process: subprocess.Popen) -> bool:
    """The process has ended and this side of both its pipes is closed (no file left to the GC)."""
    return process.poll() is not None and process.stdin.closed and process.stdout.closed


@pytest.fixture(scope="module")
def auto_problem(problem) -> EMProblem:
    """``--components auto`` on the same pixels: the BIC chooses 2 of its candidates 1, 2, 3, ..., not the first."""
    auto = EMProblem.prepare(problem.sample, "auto", ridge=1e-4, random_state=2)
    assert len(auto.candidates) > 2 and auto.candidates[0] == 1
    return auto


@NEEDS_TWO_CORES
@pytest.mark.parametrize("which", ["problem", "auto_problem"])
def test_the_second_process_gives_exactly_the_mixture_em_gives_here(which, request, monkeypatch) -> None:
    """With "auto" the process chooses among all the candidates as EM here does (the first alone would
    be one component for a two-cluster target)."""
    problem = request.getfixturevalue(which)
    here = GaussianMixture.fit_em(problem)
    assert which == "problem" or len(here.weights) == 2
    forbid_em_here(monkeypatch)
    with sent(problem) as running:
        process = running._process
        assert same(running.result(), here)
    assert closed(process)


def test_without_a_second_process_em_runs_here(problem, monkeypatch) -> None:
    here = GaussianMixture.fit_em(problem)
    monkeypatch.setattr(em_process.sys, "executable", "/nonexistent/python")
    with sent(problem) as running:
        assert same(running.result(), here)


def test_a_process_that_fails_leaves_em_to_this_one(problem, monkeypatch) -> None:
    here = GaussianMixture.fit_em(problem)
    monkeypatch.setattr(em_process, "_arrays_to_bytes", lambda **arrays: b"not an npz archive")
    with sent(problem) as running:
        assert same(running.result(), here)


def test_the_result_is_fitted_once(problem, monkeypatch) -> None:
    with sent(problem) as running:
        first = running.result()
        forbid_em_here(monkeypatch)  # a second call neither reads the closed process nor fits here
        assert running.result() is first


def test_a_process_started_before_its_problem_gives_the_same_mixture(problem, monkeypatch) -> None:
    here = GaussianMixture.fit_em(problem)
    forbid_em_here(monkeypatch)
    with BackgroundEM() as running:
        with pytest.raises(RuntimeError, match="problem"):
            running.result()
        running.send(problem)
        with pytest.raises(RuntimeError, match="already"):
            running.send(problem)
        assert same(running.result(), here)


def test_a_fit_whose_source_cannot_be_read_stops_the_em_process(tmp_path, monkeypatch) -> None:
    started = []
    real_init = em_process.BackgroundEM.__init__
    monkeypatch.setattr(em_process.BackgroundEM, "__init__",
                        lambda self, *a, **k: started.append(self) or real_init(self, *a, **k))
    rng = np.random.default_rng(1)
    with pytest.raises(ImageReadError):
        ColorTransfer(steps=1).fit(tmp_path / "missing.png", rng.random((500, 3)))
    assert len(started) == 1 and started[0]._process is None  # closed on the way out


@NEEDS_TWO_CORES
@pytest.mark.parametrize("given_problem", [True, False])
def test_leaving_early_stops_the_process(problem, given_problem) -> None:
    with (sent(problem) if given_problem else BackgroundEM()) as running:
        process = running._process
        assert process.poll() is None
    assert running._process is None and closed(process)


def test_a_default_fit_gets_the_mixture_of_an_ordinary_em() -> None:
    rng = np.random.default_rng(1)
    source = np.round(rng.random((4000, 3)) * 255) / 255
    target = np.round(rng.random((4000, 3)) ** 2 * 255) / 255
    fitted = ColorTransfer(steps=1).fit(source, target)
    pixels = target.astype(np.float32)  # as fit reads any image
    assert same(fitted.target_dist_, GaussianMixture.fit(pixels, 10, ridge=1e-4, random_state=0))


@NEEDS_TWO_CORES
@pytest.mark.parametrize("model", ["cmgn", "mmgn"])
def test_a_network_fit_gets_the_mixture_of_an_ordinary_em_from_the_second_process(model, monkeypatch) -> None:
    """The C-MGN's and M-MGN's KL solver waits for the second process's mixture after its start."""
    rng = np.random.default_rng(1)
    source = np.round(rng.random((4000, 3)) * 255) / 255
    target = np.round(rng.random((4000, 3)) ** 2 * 255) / 255
    pixels = target.astype(np.float32)  # as fit reads any image
    ordinary = GaussianMixture.fit(pixels, 10, ridge=1e-4, random_state=0)
    started = []
    monkeypatch.setattr(em_process.BackgroundEM, "__enter__", lambda self: started.append(self) or self)
    forbid_em_here(monkeypatch)
    fitted = ColorTransfer(model=model, steps=1).fit(source, target)
    assert len(started) == 1 and started[0]._process is None  # it ran, answered and was closed
    assert same(fitted.target_dist_, ordinary)


@pytest.fixture
def prestarted():
    """The process em_process.prestart() starts (ended afterwards whatever the test did)."""
    em_process.prestart()
    process = em_process._prestarted
    yield process
    em_process.discard_prestarted()
    if process is not None:
        em_process._end(process)


@NEEDS_TWO_CORES
def test_a_prestarted_process_is_taken_by_the_fit_s_background_em(problem, monkeypatch, prestarted) -> None:
    """The colorot command starts the EM process before its imports (colorot.launcher); the fit uses that one."""
    here = GaussianMixture.fit_em(problem)
    forbid_em_here(monkeypatch)
    assert prestarted is not None and prestarted.poll() is None
    with sent(problem) as running:
        assert running._process is prestarted
        assert same(running.result(), here)
    assert closed(prestarted) and em_process._prestarted is None
    with BackgroundEM() as another:  # taken once: the next starts its own
        assert another._process is not prestarted


@NEEDS_TWO_CORES
def test_a_prestarted_process_that_died_is_replaced(problem, monkeypatch, prestarted) -> None:
    here = GaussianMixture.fit_em(problem)
    forbid_em_here(monkeypatch)
    prestarted.kill()
    prestarted.wait()
    with sent(problem) as running:
        assert running._process is not prestarted
        assert same(running.result(), here)
    assert closed(prestarted)


@NEEDS_TWO_CORES
@pytest.mark.parametrize("options", [{"solver": "sliced"}, {"target": "gaussian"}])
def test_a_fit_without_em_ends_the_prestarted_process(options, prestarted) -> None:
    rng = np.random.default_rng(1)
    ColorTransfer(steps=1, **options).fit(rng.random((500, 3)), rng.random((500, 3)))
    assert closed(prestarted) and em_process._prestarted is None


def test_prestart_is_for_the_fit_command_alone() -> None:
    from colorot.launcher import is_fit_command

    assert is_fit_command(["fit", "a.jpg", "b.jpg", "-o", "m.pt"])
    assert is_fit_command(["--debug", "fit", "a.jpg", "b.jpg"])
    for args in (["apply", "m.pt", "fit", "out"], ["match", "fit.jpg", "x.jpg", "out"], ["fit", "--help"],
                 ["--version"], ["fit", "-h"], []):
        assert not is_fit_command(args), args


def test_the_command_runs_through_the_launcher(tmp_path) -> None:
    """`python -m colorot fit` (the console script's path too) fits, with the EM process started early, and
    a fit that fails before it is needed still ends promptly (the process ended at exit)."""
    import sys

    from conftest import smooth_rgb
    from PIL import Image

    for name, seed in (("s.png", 1), ("t.png", 2)):
        Image.fromarray(smooth_rgb(24, 32, seed)).save(tmp_path / name)
    run = [sys.executable, "-m", "colorot", "fit", str(tmp_path / "s.png"), str(tmp_path / "t.png")]
    done = subprocess.run([*run, "-o", str(tmp_path / "m.pt"), "--steps", "2"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and (tmp_path / "m.pt").is_file(), done.stderr
    failed = subprocess.run([sys.executable, "-m", "colorot", "fit", str(tmp_path / "missing.png"),
                             str(tmp_path / "t.png"), "-o", str(tmp_path / "n.pt")],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "missing.png" in failed.stderr
