"""The target's EM in a second Python process, while this one starts the map (``colorot fit``).

A KL fit spends ≈ 0.8–1.3 s importing scikit-learn and ≈ 0.3–0.4 s in its EM, all of it holding
Python's lock, while the start of its map needs only pixels: the default's sliced start
(:mod:`colorot.sliced`, about a second), or the C-MGN's and M-MGN's torch import and separable
start (:mod:`colorot.mgn_start`, about 3 s).  Threads cannot overlap the two; a second process
can.  :class:`BackgroundEM` starts ``python -m colorot.em_process`` (a fresh interpreter: no fork of
a process whose threads, BLAS's or torch's, may hold locks) before the images are read, so that
scikit-learn's import overlaps their decoding too, then sends it the prepared
:class:`~colorot.distributions.EMProblem` and later reads back the mixture, which is exactly
:meth:`GaussianMixture.fit_em`'s in this process (same code, same data, one BLAS thread).  If the
process cannot start or does not answer with a mixture, EM runs here instead, so the result, or
the error, is the same either way.  Only arrays cross the pipe (``np.save``, no pickles).

The ``colorot`` command starts the process earlier still (:func:`prestart`, from
:mod:`colorot.launcher`, before the CLI's own imports), and the fit's :class:`BackgroundEM` takes it.
"""

from __future__ import annotations

import atexit
import io
import os
import subprocess
import sys
import threading

import numpy as np

from colorot.defaults import usable_cpus
from colorot.distributions import EMProblem, GaussianMixture

#: Environment of the EM process: one BLAS/OpenMP thread, leaving the other cores to this process.
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "VECLIB_MAXIMUM_THREADS")}  # the last: Apple's Accelerate
#: The process :func:`prestart` started, until a BackgroundEM takes it or :func:`discard_prestarted` ends it.
_prestarted: subprocess.Popen | None = None


def prestart() -> None:
    """Start the EM process now, for the first :class:`BackgroundEM` of this process to take (the
    ``colorot fit`` command, before its imports); ended at exit if none takes it."""
    global _prestarted
    if _prestarted is None:
        _prestarted = _spawn()
        if _prestarted is not None:
            atexit.register(discard_prestarted)


def discard_prestarted() -> None:
    """End the process :func:`prestart` started, if no BackgroundEM took it (a fit without EM)."""
    global _prestarted
    process, _prestarted = _prestarted, None
    if process is not None:
        _end(process)


def _take_prestarted() -> subprocess.Popen | None:
    """The process :func:`prestart` started, still running, or None."""
    global _prestarted
    process, _prestarted = _prestarted, None
    if process is not None and process.poll() is not None:  # it died: start another
        _end(process)
        return None
    return process


def _spawn() -> subprocess.Popen | None:
    """``python -m colorot.em_process``, waiting for its problem on stdin; None with fewer than two
    cores (nothing to overlap with: EM runs here when asked for) or where no process can start."""
    if usable_cpus() < 2:
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "colorot.em_process"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_environment())
    except (OSError, ValueError):  # no interpreter to start (embedded, frozen), no processes left, …
        return None


def _end(process: subprocess.Popen, writer: threading.Thread | None = None) -> None:
    """Kill ``process`` if it still runs, reap it, wait for ``writer`` (the thread sending it its
    problem: its write fails at once on a dead process's pipe, and it closes stdin), and close this
    side of its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if writer is not None:
        writer.join()
    process.stdin.close()
    process.stdout.close()


class BackgroundEM:
    """EM in another process: started at construction (it imports scikit-learn at once), given its
    problem by :meth:`send`, fitting until :meth:`result`; a context manager whose exit stops the
    process if the caller never asked for the result."""

    def __init__(self) -> None:
        self.problem: EMProblem | None = None
        self._process: subprocess.Popen | None = _take_prestarted() or _spawn()
        self._mixture: GaussianMixture | None = None
        self._writer: threading.Thread | None = None

    def send(self, problem: EMProblem) -> None:
        """Give the process its problem (once)."""
        if self.problem is not None:
            raise RuntimeError("this BackgroundEM already has its problem")
        self.problem = problem
        if self._process is None:
            return
        request = _arrays_to_bytes(sample=problem.sample, candidates=np.asarray(problem.candidates),
                                   ridge=np.float64(problem.ridge), random_state=np.int64(problem.random_state))
        # Written from a thread: the pipe holds less than the request, and this process has work to do.
        self._writer = threading.Thread(target=_send, args=(self._process.stdin, request), daemon=True)
        self._writer.start()

    def result(self) -> GaussianMixture:
        """The fitted mixture (EM in this process if the other one failed); the same one on every call."""
        if self.problem is None:
            raise RuntimeError("send the BackgroundEM its problem before asking for the result")
        if self._mixture is None:
            self._mixture = self._fitted()
        return self._mixture

    def _fitted(self) -> GaussianMixture:
        if self._process is not None:
            try:
                answer = self._process.stdout.read()
                if self._process.wait() == 0:
                    arrays = np.load(io.BytesIO(answer), allow_pickle=False)
                    return GaussianMixture(arrays["weights"], arrays["means"], arrays["covariances"])
            except Exception:  # noqa: BLE001 (a broken answer of any kind means: fit here)
                pass
            finally:
                self.close()
        return GaussianMixture.fit_em(self.problem)

    def close(self) -> None:
        """Stop the process (if it still runs) and close both ends of its pipes here."""
        process, self._process = self._process, None
        if process is not None:
            _end(process, self._writer)

    def __enter__(self) -> "BackgroundEM":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _environment() -> dict[str, str]:
    """This process's environment, with one BLAS/OpenMP thread and this colorot first on the path
    (the EM process must run the same code, wherever this one was imported from)."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **_ONE_THREAD, "PYTHONPATH": path}


def _send(pipe, data: bytes) -> None:
    try:
        with pipe:
            pipe.write(data)
    except OSError:  # the process exited: result() then fits here
        pass


def _arrays_to_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _serve() -> None:
    """The EM process: scikit-learn imported first (≈ 0.8–1.8 s, while the caller may still be reading
    its images), then one problem from stdin, its mixture to stdout."""
    import sklearn.mixture  # noqa: F401

    request = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
    problem = EMProblem(request["sample"], tuple(int(k) for k in request["candidates"]), float(request["ridge"]),
                        int(request["random_state"]))
    mixture = GaussianMixture.fit_em(problem)
    sys.stdout.buffer.write(_arrays_to_bytes(weights=mixture.weights, means=mixture.means,
                                             covariances=mixture.covariances))


if __name__ == "__main__":
    _serve()
