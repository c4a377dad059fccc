"""The Adam path on a CUDA device (``--device cuda``): every network, the sliced term's sort, and a
checkpoint fitted there that a machine without CUDA loads and applies.  Skipped without a GPU
(bench/cuda.py runs these and times the fits where one is at hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import colorot
from colorot.cli import app
from colorot.imageio import read_image
from colorot.losses import sort_columns
from colorot import train_step
from colorot.metrics import min_jacobian_eigenvalue
from colorot.train import LOSSES_READ_EVERY
from colorot.train_step import GRAPH_WARMUP_STEPS, TrainingStep
from colorot.transfer import ColorTransfer, to_pixels

DEVICE = "cuda"
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FEW_STEPS = {"solver": "adam", "steps": 3, "max_pixels": 500, "n_components": 2, "random_state": 0}
#: Past the warm-up, the capture and the first block of loss reads, into a second, partial one.
GRAPHED_STEPS = {**FEW_STEPS, "steps": LOSSES_READ_EVERY + 30}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, make_png):
    root = tmp_path_factory.mktemp("cuda")
    return make_png(root / "source.png", seed=1), make_png(root / "target.png", seed=2)


@pytest.mark.parametrize("model", ["ridge", "cmgn", "mmgn"])
def test_every_network_trains_on_the_gpu_to_the_cpu_s_objective(pair, model) -> None:
    """The same start, batches and noise on both devices (drawn by a CPU generator), so the first
    step's loss (KL + the sliced term) agrees to float32 reduction order; the fitted map comes back
    to the CPU, finite and monotone."""
    on_gpu = ColorTransfer(model=model, device=DEVICE, **FEW_STEPS).fit(*pair)
    on_cpu = ColorTransfer(model=model, device="cpu", **FEW_STEPS).fit(*pair)
    assert on_gpu.train_info_["device"].startswith(DEVICE) and on_gpu.resolved_sw_weight() > 0
    assert on_gpu.history_.losses[0] == pytest.approx(on_cpu.history_.losses[0], rel=1e-3)
    assert all(p.device.type == "cpu" for p in on_gpu.map_.parameters())
    assert np.isfinite(on_gpu.transform(pair[0])).all()
    assert min_jacobian_eigenvalue(on_gpu.map_, to_pixels(pair[0])) > 0


@pytest.fixture
def eager_steps(monkeypatch) -> list[int]:
    """Counts the steps TrainingStep runs (or, once, captures) eagerly rather than replaying a graph."""
    calls = []
    real = TrainingStep._eager_step

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(TrainingStep, "_eager_step", counting)
    return calls


@pytest.mark.parametrize("model", ["ridge", "cmgn", "mmgn"])
def test_the_captured_step_replays_what_eager_steps_compute(pair, model, eager_steps, monkeypatch) -> None:
    """After GRAPH_WARMUP_STEPS eager steps and one capture, every step is a graph replay; its losses
    and the fitted map's colours are those of the same fit with every step eager (the same Adam, on
    the same device), so the replays see each step's own draws and learning rate.  (The colours, not
    the weights: Adam's normalised update can move a weight whose gradient is nearly 0 by rounding.)"""
    graphed = ColorTransfer(model=model, device=DEVICE, **GRAPHED_STEPS).fit(*pair)
    assert len(eager_steps) == GRAPH_WARMUP_STEPS + 1
    monkeypatch.setattr(train_step, "GRAPH_WARMUP_STEPS", 10**9)
    eager = ColorTransfer(model=model, device=DEVICE, **GRAPHED_STEPS).fit(*pair)
    assert len(eager_steps) == GRAPH_WARMUP_STEPS + 1 + GRAPHED_STEPS["steps"]
    assert len(graphed.history_.losses) == GRAPHED_STEPS["steps"]
    np.testing.assert_allclose(graphed.history_.losses, eager.history_.losses, rtol=1e-4)
    np.testing.assert_allclose(graphed.transform(pair[0]), eager.transform(pair[0]), rtol=0, atol=1e-4)


def test_a_second_graphed_fit_holds_no_more_gpu_memory_than_the_first(pair) -> None:
    """Every fit of a thread warms up and captures on the same side stream: a stream of its own per
    fit left cuBLAS's workspaces for it allocated (64 MiB a fit on an H200, measured)."""
    ColorTransfer(model="ridge", device=DEVICE, **GRAPHED_STEPS).fit(*pair)
    after_first = torch.cuda.memory_allocated()
    ColorTransfer(model="ridge", device=DEVICE, **GRAPHED_STEPS).fit(*pair)
    assert torch.cuda.memory_allocated() <= after_first


def test_the_moment_loss_trains_eagerly_on_the_gpu(pair, eager_steps) -> None:
    """The moment loss copies the target's moments from the host each step, which a graph cannot
    hold: it runs every step eagerly, to the CPU's objective."""
    on_gpu = ColorTransfer(model="cmgn", loss="moment", device=DEVICE, **GRAPHED_STEPS).fit(*pair)
    assert len(eager_steps) == GRAPHED_STEPS["steps"] and np.isfinite(on_gpu.history_.losses).all()
    on_cpu = ColorTransfer(model="cmgn", loss="moment", device="cpu", **FEW_STEPS).fit(*pair)
    assert on_gpu.history_.losses[0] == pytest.approx(on_cpu.history_.losses[0], rel=1e-3)


def test_the_sliced_term_s_sort_on_the_gpu_is_the_cpu_s(rng) -> None:
    """sort_columns sorts with torch on the GPU and through numpy on the CPU: the same values and
    the same gradients."""
    values = torch.as_tensor(rng.normal(size=(257, 7)), dtype=torch.float32)
    weights = torch.as_tensor(rng.normal(size=(257, 7)), dtype=torch.float32)
    grads = []
    for device in ("cpu", DEVICE):
        leaf = values.clone().to(device).requires_grad_(True)  # not `values` itself, which .to("cpu") returns
        sorted_ = sort_columns(leaf)
        (sorted_ * weights.to(device)).sum().backward()
        torch.testing.assert_close(sorted_.detach().cpu(), torch.sort(values, dim=0).values)
        grads.append(leaf.grad.cpu())
    torch.testing.assert_close(grads[0], grads[1])


def test_a_map_fitted_on_the_gpu_is_saved_loaded_and_applied_without_it(pair, tmp_path) -> None:
    model, out = tmp_path / "m.pt", tmp_path / "out.png"
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit", *map(str, pair), "-o", str(model), "--model", "mmgn", "--solver", "adam",
                                 "--steps", "5", "--max-pixels", "500", "--components", "2", "--device", DEVICE])
    assert fitted.exit_code == 0, fitted.output
    info = json.loads(runner.invoke(app, ["info", str(model), "--json"]).stdout)
    assert info["train"]["device"].startswith(DEVICE)
    applied = runner.invoke(app, ["apply", str(model), str(pair[0]), str(out)])
    assert applied.exit_code == 0, applied.output
    loaded = colorot.load(model)
    assert all(p.device.type == "cpu" for p in loaded.map_.parameters())
    expected = np.clip(np.rint(loaded.transform(pair[0]) * 255), 0, 255)
    written = read_image(out).codes.reshape(-1, 3).astype(np.float64)
    assert np.abs(written - expected).max() <= 1
