"""``warnings.catch_warnings`` for code that may run in several threads at once.

``warnings.catch_warnings`` saves the process's warning filters (and, recording, its
``showwarning``) on entry and puts them back on exit: two threads inside at once put back each
other's, which could leave every later warning ignored or recorded into a dead list.  colorot's
blocks that change the filters take :data:`LOCK`, and so does a warning colorot raises beside one
(so that it reaches the user, not another thread's record).  A worker process's one block around a
whole job (:mod:`colorot.workers`) needs none: every other block opens and closes inside it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LOCK = threading.RLock()


@contextmanager
def caught_warnings(*, record: bool = False) -> Iterator[list | None]:
    """``warnings.catch_warnings(record=record)`` under :data:`LOCK`."""
    with LOCK, warnings.catch_warnings(record=record) as caught:
        yield caught
