"""Torch's CPU threads held at a count for a stretch of work.

torch's CPU thread count (OpenMP's) belongs to the thread that sets it: ``torch.set_num_threads`` in
one thread leaves the others as they were.  :func:`torch_threads_held` sets the count for its
caller's thread alone and puts back what that thread had, so that any number of threads may hold
it at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads_held(count: int) -> Iterator[None]:
    """Torch's CPU work in the calling thread on ``count`` threads while inside (it imports torch)."""
    import torch

    found = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(found)
