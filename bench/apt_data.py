"""Debian packages as bench data: fetched with ``apt-get download`` into a cache folder and unpacked
with ``dpkg -x`` once (the bench scripts' only downloads, from the package registry)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence


def unpacked(cache: Path, packages: Sequence[str], folder: str = "root") -> Path:
    """``packages`` downloaded into ``cache``/debs (once) and unpacked together into ``cache``/``folder``
    (once); returns that folder."""
    debs, root = cache / "debs", cache / folder
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        print(f"apt-get download {' '.join(missing)} → {debs}", file=sys.stderr, flush=True)
        proc = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"apt-get download failed (try `apt-get update` first):\n{proc.stderr.strip()}")
    stamp = root / ".unpacked"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for package in packages:
            subprocess.run(["dpkg", "-x", str(deb_of(cache, package)), str(root)], check=True)
        stamp.touch()
    return root


def deb_of(cache: Path, package: str) -> Path:
    """The downloaded ``.deb`` of ``package`` (the newest, if several)."""
    return sorted((cache / "debs").glob(f"{package}_*.deb"))[-1]
