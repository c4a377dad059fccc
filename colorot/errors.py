"""The one exception tree of colorot.

Every error a user can cause or fix is a :class:`ColorotError`; the CLI turns
each into a one-line message on stderr and the exit code in ``exit_code``.
Anything else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations


class ColorotError(Exception):
    """Base class: an error the user can act on (exit code 1)."""

    exit_code = 1


class ImageReadError(ColorotError):
    """An image could not be read or decoded (missing, corrupt, unsupported)."""


class ImageWriteError(ColorotError):
    """An output image could not be written (permissions, disk full, format)."""


class DestinationError(ImageWriteError):
    """The file system refused an output (read-only, full, a file where a folder should be):
    a batch stops at the first, since every further file would fail the same way."""


class CheckpointError(ColorotError):
    """A checkpoint is missing, corrupt, of an unknown version or invalid."""


class TrainingError(ColorotError):
    """Training failed: non-finite loss, divergence, unusable data."""


class ConfigError(ColorotError):
    """An invalid combination of options or parameter values."""


class NotFittedError(ConfigError, AttributeError):
    """A fitted attribute or method of an estimator not fitted yet; an AttributeError too, so that
    ``hasattr(estimator, "ridge_parameters_")`` is False before ``fit``, as for ``map_``."""


class OutputExistsError(ColorotError):
    """An output already exists and overwriting was not allowed."""


class ImageMetadataWarning(UserWarning):
    """An image's metadata is damaged (a truncated EXIF block, say): its pixels are read in full,
    its metadata carried as far as it could be read; or its output's format cannot hold what it
    carries (transparency in a JPEG or BMP). The CLI prints it as a one-line warning."""
