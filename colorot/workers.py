"""Worker processes for a batch whose files are Python-bound work (``colorot match``'s fits).

A thread pool shares one interpreter lock: each match spends about half its time in Python
between small numpy calls (the sliced start's solves, L-BFGS-B's callbacks), so two threads on
two cores matched 30 photographs in 15.4 s where two processes took 13.7 s (bench/EXPERIMENTS.md,
E54).  The processes come from a fork server (:func:`start_server`), started before the
reference is read so that its imports (:data:`PRELOAD`) load while this process imports
scikit-learn and fits the reference's EM; each worker is forked from it, single-threaded, so no
lock of this process's threads (BLAS's, torch's, the progress bar's) is copied held.

Each worker receives the batch's ``state`` once (pickled: for ``colorot match`` its work, the
:class:`~colorot.matching.Matcher` with its reference inside), runs one BLAS thread (one torch
thread too, if the work needs torch), and ignores Ctrl-C: the parent stops the batch, and files
in flight finish atomically, as with threads.  The warnings a file raises in a worker are shown by
the parent, as its own.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any

from colorot.errors import ColorotError

#: Modules the fork server imports when it starts, so that workers forked from it have them (the
#: CLI too: a worker imports the main module again, and the console script's imports colorot.cli).
PRELOAD = ("colorot.cli", "colorot.apply", "colorot.matching", "colorot.transfer", "colorot.kl_solver", "colorot.sliced",
           "colorot.imageio", "scipy.optimize", "threadpoolctl")

#: The batch's state in a worker process (set by its initializer).
_state: Any = None


def files_needed(workers: int) -> int:
    """The open files a batch on ``workers`` processes may need, with room to spare (the server,
    each worker's pipes, the images being read and written): ``match --jobs 2`` failed under a limit
    of 18 ("Too many open files" in the fork server, with its traceback) and ran under 20."""
    return 64 + 8 * workers


def start_server(workers: int) -> BaseContext | None:
    """The fork server's multiprocessing context for ``workers`` processes, its server started now
    (its :data:`PRELOAD` loading in the background); None where there is none (Windows), in a
    frozen program (whose executable is no Python to start the server with), where it cannot start,
    where the pool's queues cannot work (no POSIX semaphores, as in some sandboxes), or where the
    process may open fewer files than :func:`files_needed` (``ulimit -n``): the caller then uses
    threads."""
    if "forkserver" not in multiprocessing.get_all_start_methods() or getattr(sys, "frozen", False):
        return None
    import resource  # Unix, as the fork server

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < files_needed(workers):
        return None
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    try:
        context.Lock()  # a semaphore, as the pool's queues need (sem_open)
        context.set_forkserver_preload(list(PRELOAD))
        _start_without_ctrl_c(forkserver.ensure_running)
    except (OSError, ValueError, ImportError, NotImplementedError):  # no semaphores, processes or pipes left, …
        return None
    return context


def _start_without_ctrl_c(start: Callable[[], None]) -> None:
    """``start()`` with Ctrl-C blocked in this thread, so that the process it starts inherits it
    blocked for good: a Ctrl-C sent to the terminal's process group then never reaches the fork
    server (CPython's ignores it only once its imports are done, and printed a KeyboardInterrupt
    traceback while they ran) nor the workers forked from it (which ignore it anyway).  One that
    arrives here meanwhile waits, and is raised when ``start`` returns."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class WorkerPool:
    """``workers`` processes of ``context``, each holding ``state`` (pickled once to each)."""

    def __init__(self, context: BaseContext, workers: int, state: Any, *, torch_threads: bool = False) -> None:
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialise,
                                         initargs=(state, torch_threads, os.getpid()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """A future of ``fn(*args, state)`` run in a worker (``fn`` and ``args`` pickled), done once
        the warnings it raised have been shown here; a worker that died fails it with a ColorotError.
        A submission may start the workers: Ctrl-C waits until it is done (:func:`_interrupts_deferred`)."""
        outcome: Future = Future()
        with _interrupts_deferred():
            submitted = self._pool.submit(_run, fn, args)
        submitted.add_done_callback(lambda done: _relay(done, outcome))
        return outcome

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The executor's shutdown, which a second Ctrl-C waits for: interrupted, it was left half done
        and the batch hung after "interrupted" (a terminal's Ctrl-C, pressed twice)."""
        with _interrupts_deferred():
            self._pool.shutdown(wait, cancel_futures=cancel_futures)


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM noted while the block runs, then sent again for their own handlers: the
    executor's steps that a KeyboardInterrupt would leave half done (starting a worker, then recording
    it; a shutdown) run whole.  Only the main thread receives them (elsewhere this changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {number: signal.signal(number, lambda received, frame: noted.append(received))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(noted):
            signal.raise_signal(number)


def _initialise(state: Any, torch_threads: bool, batch: int) -> None:
    """A worker's start: Ctrl-C ignored, one BLAS (and torch) thread, the batch's ``state`` kept,
    and an end of its own when the process ``batch`` (the one running the batch) has ended."""
    global _state
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_after, args=(batch,), daemon=True, name="colorot-batch-watch").start()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if torch_threads:
        import torch

        torch.set_num_threads(1)
    _state = state


def _end_after(batch: int) -> None:
    """End this worker once the process ``batch`` has ended.  Killed outright (SIGKILL, the
    out-of-memory killer) that process cannot end its workers, which are the fork server's children:
    they went on fitting and writing its files, orphaned, and kept the fork server alive.  A file
    this worker was writing is left as a hidden temporary file, which the next run removes."""
    try:
        watched = os.pidfd_open(batch)  # Linux 5.3 and later: readable once the process has ended
    except (AttributeError, OSError):  # none here, or it has already ended
        while _running(batch):
            time.sleep(1.0)
    else:
        select.select([watched], [], [])
    os._exit(1)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's: the number was reused
        return False
    return True


def _run(fn: Callable[..., Any], args: tuple) -> tuple[Any, list[tuple[type[Warning], str]]]:
    """In a worker: ``fn(*args, state)`` and the warnings it raised (category, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every one goes to the parent, whose filters decide
        result = fn(*args, _state)
    return result, [(w.category, str(w.message)) for w in caught]


def _relay(done: Future, outcome: Future) -> None:
    """In this process: show a finished job's warnings, then settle ``outcome`` as ``done``."""
    if done.cancelled():
        outcome.cancel()
        return
    failure = done.exception()
    if isinstance(failure, BrokenProcessPool):
        failure = ColorotError("a worker process ended unexpectedly (killed, or out of memory: try fewer --jobs); "
                               "the batch stopped")
    if failure is not None:
        outcome.set_exception(failure)
        return
    result, caught = done.result()
    for category, message in caught:
        warnings.warn(message, category, stacklevel=1)
    outcome.set_result(result)
