"""Shared test set-up: one compute thread, seeded generators, tiny images.

torch and the BLAS under numpy / scikit-learn default to one thread per core;
on a small, shared machine those threads contend and tiny operations get about
ten times slower, so the whole suite runs single-threaded (set at import,
before any test runs).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from colorot.models import MMGN, gaussian_map_matrix  # noqa: E402

torch.set_num_threads(1)
threadpool_limits(1)  # in case numpy's BLAS was loaded before the variables above were set


@pytest.fixture(autouse=True)
def _torch_seeded() -> None:
    """Every test starts torch's global generator at one state, whatever ran before it (fits no
    longer reseed it)."""
    torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def smooth_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (H, W, 3): random smooth colour gradients plus a little noise."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    channels = []
    for _ in range(3):
        a, b, c, phase = g.uniform(0.5, 4.0, size=4)
        wave = 0.5 + 0.35 * np.sin(a * xx + b * yy + phase) * np.cos(c * yy - phase)
        channels.append(wave + g.normal(0.0, 0.02, size=wave.shape))
    rgb = np.clip(np.stack(channels, axis=-1), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_png() -> Callable[..., Path]:
    """make_png(path, height=24, width=32, seed=0) writes a smooth random RGB PNG."""

    def make(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(smooth_rgb(height, width, seed)).save(path)
        return path

    return make


@pytest.fixture(scope="session")
def curved_map():
    """An M-MGN with real curvature, started at a colour-shifting Gaussian map.

    Its size and α are pinned (4 modules, α = 0.1), so its curvature does not follow the M-MGN's
    defaults: with α = 0.05 the same weights make steps twice as sharp, 3 code values off a 65³
    LUT, which ``test_a_step_too_sharp_for_the_grid_is_missed_by_the_lut`` covers.
    """
    rng = np.random.default_rng(3)
    points = rng.random((2000, 3))
    a = gaussian_map_matrix(np.diag([0.05, 0.04, 0.06]), np.array(
        [[0.03, 0.01, 0.0], [0.01, 0.05, 0.01], [0.0, 0.01, 0.02]]))
    torch.manual_seed(0)
    model = MMGN(modules=4, scale=0.1)
    model.init_hidden(points)
    model.init_to_affine(a, np.array([0.2, 0.0, -0.1]), points)
    with torch.no_grad():  # grow the nonlinear part well past its near-affine start
        model.W.mul_(8.0)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def tiny_fit(tmp_path_factory) -> dict:
    """One tiny fitted checkpoint for the CLI tests: {"model", "source", "target", "folder"}.

    Fitted by the CLI with 5 Adam steps on 500 pixels and K = 2 (a few seconds): a smooth
    map, so the apply/export/inverse plumbing is tested apart from how sharp a sliced fit is.
    """
    from typer.testing import CliRunner

    from colorot.cli import app

    root = tmp_path_factory.mktemp("tiny_fit")
    source = root / "source.png"
    target = root / "target.png"
    PILImage.fromarray(smooth_rgb(24, 32, 0)).save(source)
    PILImage.fromarray(smooth_rgb(20, 30, 7)).save(target)
    folder = root / "photos"
    for index, name in enumerate(["a.png", "b.png", "sub/c.png", "sub/d.jpg", "e.png"]):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(smooth_rgb(12, 16, 20 + index)).save(folder / name)
    model = root / "model.pt"
    result = CliRunner().invoke(app, ["fit", str(source), str(target), "-o", str(model), "--steps", "5",
                                      "--max-pixels", "500", "--components", "2", "--solver", "adam"])
    assert result.exit_code == 0, result.output
    return {"model": model, "source": source, "target": target, "folder": folder}


# CI runs the property and fuzz tests with a fixed seed sequence (reproducible results);
# local runs keep hypothesis's random exploration, which is how new bugs are found.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.load_profile("ci")
