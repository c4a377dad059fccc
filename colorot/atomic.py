"""Atomic file writes: nothing half-written is ever left under the final name."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from colorot.errors import ColorotError


def write_atomic(path: Path, data: bytes, error: type[ColorotError]) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, sync it, rename it into place.

    The file gets the usual permissions (0666 less the umask). On any failure,
    interruption included, the temp file is removed; an OSError becomes
    ``error`` with a one-line message naming ``path``.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise error(f"{path}: cannot create file ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as exc:
        _remove_quietly(temp)
        raise error(f"{path}: cannot write file ({exc.strerror or exc})") from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
