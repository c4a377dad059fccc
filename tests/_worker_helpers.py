"""Work for :mod:`colorot.workers`' tests: module-level, so that worker processes can unpickle it
(imported, not collected)."""

from __future__ import annotations

import os
import signal
import warnings

from colorot.errors import ConfigError, DestinationError, ImageMetadataWarning


def write_process(job) -> None:
    """Write, to the job's output, the process that ran it and how it treats Ctrl-C."""
    ignores = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    job.dst.write_text(f"{os.getpid()} {ignores}")


def warn_then_write(job) -> None:
    warnings.warn(f"{job.src.name}: damaged metadata", ImageMetadataWarning)
    job.dst.write_text("done")


def fail_on_bad(job) -> None:
    """``bad*`` inputs fail alone; a ``refused*`` input's destination is refused; others are written."""
    if job.src.name.startswith("bad"):
        raise ConfigError(f"{job.src.name} is bad")
    if job.src.name.startswith("refused"):
        raise DestinationError(f"{job.dst} refused")
    job.dst.write_text("done")


def die(job) -> None:
    """The worker process ends abruptly (killed, say)."""
    os._exit(1)


def name_and_process(job) -> tuple[str, int]:
    """What a job's work returns: its input's name and the process that ran it."""
    job.dst.write_text("done")
    return job.src.name, os.getpid()


def sleep_then_write(job) -> None:
    """A file that takes a second."""
    import time

    time.sleep(1.0)
    job.dst.write_text("done")
