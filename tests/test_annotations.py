"""colorot ships ``py.typed``, so users' type checkers trust its annotations: the documented uses
type-check under ``mypy --strict`` (tests/_typed_use.py), and the annotations of the calls that
take images resolve at run time too (``typing.get_type_hints``, for tools that read them; names
imported for type checkers only, such as torch's, do not)."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import colorot
from colorot.matching import Matcher
from colorot.sequence import FrameFit
from colorot.transfer import ColorTransfer, to_pixels

ROOT = Path(__file__).resolve().parent.parent


def test_documented_uses_type_check_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # the checkout's colorot, however it is installed
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-color-output",
         "--cache-dir", str(tmp_path / "cache"), str(ROOT / "tests" / "_typed_use.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("function", [
    ColorTransfer.fit, ColorTransfer.fit_reference, ColorTransfer.transform, ColorTransfer.inverse_transform,
    to_pixels, colorot.match, Matcher.__init__, Matcher.fit, FrameFit.of,
], ids=lambda function: function.__qualname__)
def test_image_annotations_resolve_at_run_time(function: typing.Callable[..., object]) -> None:
    hints = typing.get_type_hints(function)  # a name left undefined raises NameError
    named = set()
    pending = list(hints.values())
    while pending:
        hint = pending.pop()
        if isinstance(hint, list):  # a Callable's parameters
            pending.extend(hint)
            continue
        named.add(hint)
        pending.extend(typing.get_args(hint))
    assert {PIL.Image.Image, np.ndarray} <= named
