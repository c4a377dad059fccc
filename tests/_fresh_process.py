"""The CLI run in a fresh interpreter, to see which modules it imports (imported, not collected)."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = ("import sys\n"
           "from typer.testing import CliRunner\n"
           "from colorot.cli import app\n"
           "result = CliRunner().invoke(app, sys.argv[1:])\n"
           "assert result.exit_code == 0, result.output\n"
           "print('torch' in sys.modules)\n")


def cli_imports_torch(*args: str) -> bool:
    """Run ``colorot ARGS`` in a fresh Python process (it must succeed): did it import torch?"""
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1] == "True"
