"""Atomic file writes: nothing half-written is ever left under the final name; and the checks of a
file output before any work (not a folder, not an input, not replaced unasked)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Iterable

from colorot.errors import ColorotError, ConfigError, OutputExistsError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a temp file is then taken for stale by its name alone
    fcntl = None


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None], error: type[ColorotError],
                 what: str = "file", *, replace: bool = True, before_naming: Callable[[], None] | None = None) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, sync it, rename it into place.

    ``before_naming``: work to do once the file is written, before it is named (another file's
    write, which then decides: if it raises, this file is not named either).

    ``data`` is the bytes, or a function that writes them into the open file. Unless ``replace``,
    a file that exists at ``path`` by then (another run wrote it since this one checked) is left
    as it is and OutputExistsError raised: the temp file is hard-linked to ``path``, which fails
    on an existing name, or, where the file system has no hard links, checked and renamed.

    Temp files a killed earlier write left for ``path`` are removed first. The file
    gets the usual permissions (0666 less the umask). On any failure, interruption
    included, the temp file is removed; an OSError (the file system's) becomes
    ``error``, chained from it, with a one-line message naming ``path`` and ``what`` it is; so does
    a path that names no file (``""``, ``.``, ``/``).
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise error(f"{path}: cannot write {what}: give a file name, not a folder")
    remove_stale_temp_files(path)
    for _ in range(TEMP_TRIES):
        temp = temp_path(path, secrets.token_hex(4))
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),  # Windows: no text
                         0o666)  # mode; read too: a JPEG's end is checked (imageio)
        except OSError as exc:
            raise error(f"{path}: cannot write {what}: cannot create it ({exc.strerror or exc})") from exc
        if _locked_and_named(fd):  # while the lock is held, another run's cleanup leaves the file alone
            break
        os.close(fd)  # that cleanup took it between its creation and the lock: another name
    else:
        raise error(f"{path}: cannot write {what}: its temp files were removed as they were made (another run's cleanup?)")
    try:
        with os.fdopen(fd, "wb") as file:
            if callable(data):
                data(file)
            else:
                file.write(data)
            file.flush()
            os.fsync(file.fileno())
            if before_naming is not None:
                before_naming()
            if fcntl is not None:  # named while its lock is held: no other run's cleanup can take it first
                _give_name(temp, path, replace)
        if fcntl is None:  # Windows: an open file cannot be renamed
            _give_name(temp, path, replace)
    except OSError as exc:
        _remove_quietly(temp)
        raise error(f"{path}: cannot write {what} ({exc.strerror or exc})") from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def _give_name(temp: Path, path: Path, replace: bool) -> None:
    """Rename the written ``temp`` to ``path``: over a file there if ``replace``, else
    :func:`_place_without_replacing`."""
    if replace:
        os.replace(temp, path)
    else:
        _place_without_replacing(temp, path)


def _place_without_replacing(temp: Path, path: Path) -> None:
    """Give the written ``temp`` the name ``path`` unless a file has it: OutputExistsError then."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise appeared(path) from None
    except OSError:  # no hard links on this file system (FAT, some network shares): check, then rename
        if os.path.lexists(path):
            raise appeared(path) from None
        os.replace(temp, path)
    else:
        _remove_quietly(temp)


def appeared(path: Path) -> OutputExistsError:
    """The error for a file that another run wrote at ``path`` after this run planned to write it."""
    return OutputExistsError(f"{path} appeared while this run was writing it (another run?) and is left as it is")


#: The longest file name, in bytes, most file systems take (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


def temp_path(path: Path, token: str) -> Path:
    """The hidden temp file ``.<stem>.<token>.tmp`` written before the rename to ``path``."""
    return path.with_name(f".{_temp_stem(path)}.{token}.tmp")


def _temp_stem(path: Path) -> str:
    """``path``'s name, or, when the temp file's name would then pass :data:`NAME_MAX` bytes, a
    digest of it (a name the file system takes must not fail for its temp file's length)."""
    name = os.fsencode(path.name)
    if len(name) + len("..12345678.tmp") <= NAME_MAX:
        return path.name
    return "colorot-" + hashlib.sha256(name).hexdigest()[:32]


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


#: How long one listing of a folder's temp files serves :func:`remove_stale_temp_files`, in
#: seconds: a batch writes thousands of files into one folder, and listing it for each write made
#: a batch's time grow with the square of the folder's size (30 000 names: 45 ms a write). A temp
#: file a killed earlier run left is in the first listing; one a process killed since leaves is
#: found by the next listing.
LISTING_LIFETIME = 60.0
#: A temp file's name (:func:`temp_path`): the stem, then 8 hex digits.
_TEMP_NAME = re.compile(r"\.(.+)\.([0-9a-f]{8})\.tmp", re.DOTALL)
_listings: dict[str, tuple[float, dict[str, list[str]]]] = {}  # folder → (when listed, stem → temp names)
_listings_lock = threading.Lock()


def remove_stale_temp_files(path: str | os.PathLike[str]) -> int:
    """Remove the temp files an interrupted (killed) :func:`write_atomic` left beside ``path``.

    Only names of the exact form ``.<stem>.<8 hex digits>.tmp`` (:func:`temp_path`) are touched,
    and not one a live write still holds locked (another process writing the same output).
    The folder is listed at most once every :data:`LISTING_LIFETIME` seconds.
    Returns how many were removed.
    """
    path = Path(path)
    stem, folder = _temp_stem(path), path.parent
    with _listings_lock:
        candidates = _temp_names(folder).pop(stem, [])
    kept = [name for name in candidates if not _removed_unless_in_use(folder / name)]  # another's live write
    if kept:
        with _listings_lock:
            _temp_names(folder).setdefault(stem, []).extend(kept)
    return len(candidates) - len(kept)


def _temp_names(folder: Path) -> dict[str, list[str]]:
    """The temp files in ``folder`` by stem, from a listing at most :data:`LISTING_LIFETIME` old
    (:data:`_listings_lock` held)."""
    now, key = time.monotonic(), os.fspath(folder)
    listed = _listings.get(key)
    if listed is not None and now - listed[0] < LISTING_LIFETIME:
        return listed[1]
    by_stem: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):  # a folder that cannot be listed holds nothing to clear
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMP_NAME.fullmatch(entry.name)
                if match is not None:
                    by_stem.setdefault(match[1], []).append(entry.name)
    if len(_listings) >= 1024:  # forget the expired listings of folders written long ago
        for old in [folder_key for folder_key, (when, _) in _listings.items() if now - when >= LISTING_LIFETIME]:
            del _listings[old]
    _listings[key] = (now, by_stem)
    return by_stem


#: Temp files :func:`write_atomic` makes before it gives up, each removed by another run's cleanup
#: between its creation and its lock.
TEMP_TRIES = 5


def _locked_and_named(fd: int) -> bool:
    """Hold an advisory lock on the open temp file ``fd`` (released when it is closed, or when its
    process dies), waiting for a cleanup that holds it; whether the file still has its name then
    (a cleanup removes only a file it holds locked, so once this holds it, it stays)."""
    if fcntl is None:
        return True
    with contextlib.suppress(OSError):  # a file system without locks: nothing to wait for
        fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fstat(fd).st_nlink > 0


def _removed_unless_in_use(path: Path) -> bool:
    """Remove the temp file ``path`` unless a live :func:`write_atomic` holds it locked (its lock
    cannot be taken); removed while this holds the lock, so that a write that has just made it and
    waits for its lock sees it gone and makes another. Whether it is gone."""
    if fcntl is None:
        _remove_quietly(path)
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone already
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _remove_quietly(path)
    os.close(fd)
    return True


def is_any_of(path: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``path`` names the same file as one of ``paths`` (links and ``..`` resolved; spellings
    that differ only as the file system folds them, on macOS and Windows: :func:`file_key`)."""
    target = file_key(path)
    return any(file_key(other) == target for other in paths)


def file_key(path: Path | str) -> str:
    """``path`` resolved (:func:`resolved`), as a key that two spellings of one file share where file
    names ignore case and Unicode normalisation: macOS's APFS and HFS+ by default (NFD, case folded;
    a case-sensitive volume then has two names refused as one, never one file written twice), and
    Windows (``os.path.normcase``). Elsewhere the path itself: on macOS, ``out/Beach.jpg`` and
    ``out/beach.jpg`` were two outputs for one file, and an input spelt in another case an output."""
    return _folded(str(resolved(Path(path))))


def spelling_key(path: Path | str) -> str:
    """A key that the spellings of one path share (``a.png``, ``./a.png``, its absolute path,
    ``lnk/../a.png`` where that is the folder, a trailing '/'): its folder resolved, links included,
    and its own name kept, so that a link to a file is another path (a path ending in ``.`` or ``..``
    resolved whole).  Not case-folded as :func:`file_key` is:
    on a case-sensitive volume ``A.jpg`` and ``a.jpg`` are two files, never one dropped."""
    path = Path(path)  # 'x/' as 'x'
    if path.name in ("", ".", ".."):  # '.', 'lnk/..': the folder itself, resolved
        return str(resolved(path))
    folder, own = os.path.split(os.fspath(path))  # not abspath's: it would take lnk/.. for . by its text
    return os.path.join(str(resolved(Path(folder or "."))), own)


def _folded(text: str) -> str:
    """A resolved path as the file system compares names (:func:`file_key`)."""
    if NAMES_FOLDED:
        return unicodedata.normalize("NFD", text).casefold()
    return os.path.normcase(text)


#: Whether file names are folded as macOS's file systems fold them (:func:`file_key`).
NAMES_FOLDED = sys.platform == "darwin"


def is_within(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, by :func:`file_key`."""
    inner, outer = file_key(path), file_key(folder)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def resolved(path: Path) -> Path:
    """``path`` absolute, with its links resolved; a link loop is left as it stands (reading it
    fails later, as that file's own error)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13's "Symlink loop"
        return Path(os.path.abspath(path))


def check_file_output(path: str | os.PathLike[str], inputs: list, *, replace: bool, flag: str, what: str,
                      folder_made: bool = False) -> None:
    """Refuse, before any work, a file output (a checkpoint, a LUT, a preview) that cannot or must
    not be written: an empty path, a folder, one of the run's ``inputs``, a file that exists unless
    ``replace`` (named by ``flag``), or a file in a folder that does not exist (unless the writer
    makes it: ``folder_made``)."""
    if not str(path).strip():
        raise ConfigError(f"an empty path was given for the {what}")
    named_as_folder = str(path).endswith(("/", os.sep))
    path = Path(path)
    if named_as_folder or path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name for the {what}")
    if is_any_of(path, inputs):
        raise ConfigError(f"the {what} {path} would overwrite an input or output of this run; name another file")
    if os.path.lexists(path) and not replace:  # a link to nothing too: the write could not take its name
        raise OutputExistsError(f"{path} already exists (use {flag} to replace it)")
    if not folder_made and not path.parent.is_dir():
        why = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise ConfigError(f"cannot write the {what} {path}: the folder {path.parent} {why}")
