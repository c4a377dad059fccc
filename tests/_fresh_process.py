"""colorot run in a fresh interpreter, to see which modules it imports (imported, not collected)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = ("import sys\n"
           "from typer.testing import CliRunner\n"
           "from colorot.cli import app\n"
           "result = CliRunner().invoke(app, sys.argv[1:])\n"
           "assert result.exit_code == 0, result.output\n"
           "print('torch' in sys.modules)\n")


def cli_imports_torch(*args: str) -> bool:
    """Run ``colorot ARGS`` in a fresh Python process (it must succeed): did it import torch?"""
    return last_line_of(_SCRIPT, *args) == "True"


def last_line_of(code: str, *args: str) -> str:
    """Run the Python ``code`` (``sys.argv[1:]``: ``args``) in a fresh process with this checkout
    first on the path (it must succeed): the last line it prints."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]
