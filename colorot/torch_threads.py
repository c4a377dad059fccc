"""Torch's CPU threads held at one for a stretch of work, from any number of threads at once.

``torch.set_num_threads`` is one setting for the whole process: two threads that each set it and
then put back what they found can leave it at the other's value while that one still runs.
:func:`one_torch_thread` counts its holders: the first sets one thread, the last puts back what
the first found.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_found = 1


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch's CPU work on one thread while any holder is inside (it imports torch)."""
    global _holders, _found
    import torch

    with _lock:
        if _holders == 0:
            _found = torch.get_num_threads()
            torch.set_num_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                torch.set_num_threads(_found)
