#!/usr/bin/env python3
"""Run the README's examples literally and in order, as a new user would, in a temporary folder.

Each ```bash block runs with bash (``set -e``) and each ```python block with this Python, in one
temporary folder holding a copy of ``samples/``, from the top of the README down.  A block
preceded by ``<!-- ci: slow -->`` (Adam, C-MGN, M-MGN: minutes) is skipped; its command lines
are still checked against the CLI by tests/test_docs_examples.py.  A block preceded by
``<!-- ci: install -->`` creates a virtual environment and installs: CI has done that already,
so only its ``colorot ...`` steps run, in their order.  Exits 1 at the first example that fails.

    python .ci/readme_examples.py [README.md]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?:<!--\s*ci:\s*(?P<mark>[\w-]+)\s*-->\s*\n)?^```(?P<lang>bash|sh|python)\s*\n(?P<body>.*?)^```",
                   re.M | re.S)


def examples(readme: str) -> list[tuple[str, str, str]]:
    """(mark, language, code) of each bash/sh/python block, in order."""
    return [(m["mark"] or "", m["lang"], m["body"]) for m in BLOCK.finditer(readme)]


def colorot_steps(code: str) -> str:
    """The ``colorot ...`` steps of an install block's ``&&`` chains, in order, as one chain."""
    steps = [part.strip() for line in code.splitlines() for part in line.split("&&")]
    return " && ".join(step for step in steps if step.startswith("colorot "))


def main() -> int:
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "README.md").read_text(encoding="utf-8")
    start, ran, skipped = time.perf_counter(), 0, 0
    with tempfile.TemporaryDirectory(prefix="colorot-readme-") as folder:
        shutil.copytree(ROOT / "samples", Path(folder) / "samples")
        for mark, lang, code in examples(readme):
            if mark == "slow":
                skipped += 1
                continue
            if mark == "install":
                code = colorot_steps(code)
                if not code:
                    continue
            command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
            print(f"$ {code.strip()}" if lang != "python" else f">>> python block ({len(code.splitlines())} lines)",
                  flush=True)
            began = time.perf_counter()
            result = subprocess.run(command, cwd=folder)
            print(f"  ({time.perf_counter() - began:.1f} s)", flush=True)
            if result.returncode != 0:
                print(f"error: this README example failed with exit code {result.returncode}:\n{code}", file=sys.stderr)
                return 1
            ran += 1
    print(f"README examples: {ran} ran, {skipped} slow ones skipped, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
