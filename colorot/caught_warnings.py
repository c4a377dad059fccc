"""``warnings.catch_warnings`` for code that may run in several threads at once.

``warnings.catch_warnings`` saves the process's warning filters (and, recording, its
``showwarning``) on entry and puts them back on exit: two threads inside at once put back each
other's, which could leave every later warning ignored or recorded into a dead list.  colorot's
blocks that change the filters take :data:`LOCK`, and so does a warning colorot raises beside one
(so that it reaches the user, not another thread's record).  A worker process's one block around a
whole job (:mod:`colorot.workers`) needs none: every other block opens and closes inside it.
:func:`pillow_warnings_recorded` collects Pillow's own warnings about a file into one message.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = threading.RLock()


@contextmanager
def caught_warnings(*, record: bool = False) -> Iterator[list | None]:
    """``warnings.catch_warnings(record=record)`` under :data:`LOCK`."""
    with LOCK, warnings.catch_warnings(record=record) as caught:
        yield caught


@contextmanager
def pillow_warnings_recorded(notes: list[str]) -> Iterator[None]:
    """Pillow's own warnings in the block (it parses a damaged EXIF block with a bare
    ``UserWarning`` such as "Truncated File Read") appended to ``notes``, for one warning naming
    the image; its decompression-bomb warning dropped (colorot's own limit refuses or admits the
    image); any other warning passed on.  The blocks it guards read headers and metadata, never
    pixels, so holding :data:`LOCK` through them costs other threads little."""
    from PIL import Image as PILImage

    with LOCK:
        with caught_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            if issubclass(warning.category, PILImage.DecompressionBombWarning):
                continue
            if issubclass(warning.category, UserWarning) and _is_pillow_file(warning.filename):
                notes.append(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _is_pillow_file(filename: str) -> bool:
    return Path(filename).parent.name == "PIL"
