"""Where and when a bench figure was measured: the first line every bench script prints.

A figure copied into RESULTS.md carries the machine (CPUs this process may use, their model), the
Python, and the colorot commit it ran at, marked ``+changes`` when tracked files differ from that
commit, with the UTC time of the run.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), which is what a timing depends on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def commit() -> str:
    """The checkout's short commit, with ``+changes`` when a tracked file differs from it; "" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+changes" if changed else "")


def describe(detail: str = "") -> str:
    """``N CPUs (MODEL), Python X; colorot at COMMIT, DATE UTC`` and, after a semicolon, ``detail``."""
    at = commit()
    now = datetime.datetime.now(datetime.timezone.utc)
    line = (f"{usable_cpus()} CPUs ({cpu_model()}), Python {sys.version.split()[0]}; "
            f"colorot{f' at {at}' if at else ''}, {now:%Y-%m-%d %H:%M} UTC")
    return f"{line}; {detail}" if detail else line


def header(detail: str = "") -> str:
    """The line a bench script prints first: ``machine: `` and :func:`describe`."""
    return f"machine: {describe(detail)}"
