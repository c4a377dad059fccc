"""Helpers shared by the tests/test_robustness_*.py suites (imported, not collected).

The suites drive the real CLI (``typer.testing.CliRunner``) on tiny files made in
``tmp_path``; checkpoints are built directly from a model and a target, so no
test pays for a fit it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import checkpoint
from colorot.cli import app
from colorot.distributions import Gaussian
from colorot.models import build_model
from colorot.transfer import PREPROCESS

EXIT_CODES = {0, 1, 2, 3}
"""Every exit code the CLI documents."""


@dataclass
class Outcome:
    """One CLI run: exit code, stdout, stderr, and the exception if it was not an exit."""

    code: int
    stdout: str
    stderr: str
    crash: BaseException | None


def cli(*args: object) -> Outcome:
    """Run ``colorot ARGS`` in-process; ``crash`` is any exception other than a clean exit."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    exc = result.exception
    crash = None if exc is None or isinstance(exc, SystemExit) else exc
    return Outcome(result.exit_code, result.stdout, result.stderr, crash)


def assert_one_line_error(outcome: Outcome, *fragments: str, code: int = 1) -> None:
    """The run failed cleanly: ``code``, no traceback, one ``error:`` line naming ``fragments``."""
    assert outcome.crash is None, repr(outcome.crash)
    assert outcome.code == code, (outcome.code, outcome.stdout, outcome.stderr)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    assert "Traceback" not in outcome.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_checkpoint(path: Path, model: str = "affine", **config: object) -> Path:
    """A valid checkpoint: a freshly built ``model`` (affine ≈ x ↦ x) and a Gaussian target."""
    torch.manual_seed(0)
    net = build_model(model, config or None)
    target = Gaussian(np.full(3, 0.5), np.eye(3) * 0.05)
    checkpoint.save(path, net, target, PREPROCESS, {"steps": 0, "seed": 0})
    return path


def checkpoint_payload(path: Path) -> dict:
    """The checkpoint's dict, to alter and re-save in tests."""
    return torch.load(path, weights_only=True)


def save_payload(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def png(path: Path, height: int = 6, width: int = 8, seed: int = 0, mode: str = "RGB") -> Path:
    """A small random image at ``path`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codes = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    PILImage.fromarray(codes).convert(mode).save(path)
    return path


def decodes_fully(path: Path) -> bool:
    """Whether ``path`` is a complete image: Pillow decodes every pixel without error."""
    try:
        with PILImage.open(path) as image:
            image.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means "not complete"
        return False


def temp_files(folder: Path) -> list[Path]:
    """Leftover hidden ``*.tmp`` files anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(".*.tmp"))


HALF = (0.5, 0.25)
"""The known map of :func:`half_map_checkpoint`: x ↦ 0.5·x + 0.25 on every channel."""


def half_map_checkpoint(path: Path) -> Path:
    """A checkpoint whose affine map is exactly x ↦ 0.5·x + 0.25 (VᵀV + εI = 0.5·I)."""
    write_checkpoint(path)
    payload = checkpoint_payload(path)
    eps = payload["model"]["config"]["eps"]
    payload["model"]["state_dict"]["V"] = torch.eye(3) * float(np.sqrt(HALF[0] - eps))
    payload["model"]["state_dict"]["b"] = torch.full((3,), HALF[1])
    return save_payload(path, payload)


def half_map_codes(codes: np.ndarray, top: int = 255) -> np.ndarray:
    """The expected output codes of the half map for input codes at ``top`` full scale."""
    return np.rint((HALF[0] * codes.astype(np.float64) / top + HALF[1]) * top)
