"""Thread counts held for a stretch of work, from any number of threads at once.

**Torch's CPU threads** (OpenMP's): ``torch.set_num_threads`` sets the count of the thread that calls
it, and also the count that each thread started later takes at its first torch call.  So a thread
started while another held 1 found 1, saved it, and restoring it left every later thread on 1.
:func:`torch_threads_held` sets its caller's count and restores the count that thread had; a
thread that found the count a hold had just set (so took it from that hold, not from its own
choice) gets the count the process had before the first of the open holds.

**Native libraries' thread pools** (threadpoolctl's): BLAS's count is the process's, so
:func:`one_blas_thread` limits it to one while any thread is inside and restores it when the last
one leaves (each thread's own save and restore interleaved with the others' and left the process on
one thread); OpenMP's count, like torch's, is each thread's own, limited and restored by the thread
itself (:func:`one_library_thread`: both).  BLAS threads that numpy wakes beside torch's spin on the
same cores: a C-MGN fit took twice its time (E68).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_torch_holds: dict[int, int] = {}  # holding thread → how deep its holds nest
_torch_counts: dict[str, int] = {}  # "before": the count before the first open hold; "set": the last one set


class _BlasHold:
    """The open :func:`one_blas_thread` holds, and the threadpoolctl limiter the first applied."""

    holders = 0
    limiter = None


@contextmanager
def torch_threads_held(count: int) -> Iterator[None]:
    """Torch's CPU work in the calling thread on ``count`` threads while inside (it imports torch)."""
    import torch

    me = threading.get_ident()
    with _LOCK:
        found = torch.get_num_threads()
        first = not _torch_holds
        if not first and me not in _torch_holds and found == _torch_counts["set"]:  # taken from another's hold
            found = _torch_counts["before"]
        torch.set_num_threads(count)  # first: a count torch refuses leaves no hold behind
        if first:
            _torch_counts["before"] = found
        _torch_holds[me] = _torch_holds.get(me, 0) + 1
        _torch_counts["set"] = count
    try:
        yield
    finally:
        with _LOCK:
            _torch_holds[me] -= 1
            if not _torch_holds[me]:
                del _torch_holds[me]
            torch.set_num_threads(found)
            _torch_counts["set"] = found


@contextmanager
def one_library_thread() -> Iterator[None]:
    """BLAS (for the process) and OpenMP (for the calling thread) on one thread while inside."""
    from threadpoolctl import threadpool_limits

    with one_blas_thread(), threadpool_limits(1, user_api="openmp"):
        yield


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread (the process's count) while any thread is inside."""
    from threadpoolctl import threadpool_limits

    with _LOCK:
        if not _BlasHold.holders:
            _BlasHold.limiter = threadpool_limits(1, user_api="blas")
        _BlasHold.holders += 1
    try:
        yield
    finally:
        with _LOCK:
            _BlasHold.holders -= 1
            if not _BlasHold.holders:
                _BlasHold.limiter.restore_original_limits()
                _BlasHold.limiter = None
