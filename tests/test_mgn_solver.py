"""The KL solver for the C-MGN and M-MGN (colorot.mgn_solver): it lowers the objective, stays
monotone, is seeded, refuses Adam's options and reports what it did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot import ColorTransfer
from colorot.errors import ConfigError


def _blobs(n: int, seed: int) -> np.ndarray:
    """Two tight colour clusters: a target no affine image of a one-cluster source can match."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.25, 0.3, 0.2], [0.75, 0.7, 0.8]])
    return np.clip(centres[rng.integers(0, 2, n)] + rng.normal(0, 0.04, (n, 3)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    source = np.clip(rng.normal([0.5, 0.45, 0.5], 0.12, (3000, 3)), 0, 1).astype(np.float32)
    return source, _blobs(3000, 2)


def _mapped(fit: ColorTransfer, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fit.map_(torch.as_tensor(pixels)).numpy()


@pytest.mark.parametrize("model", ["cmgn", "mmgn"])
def test_the_kl_solver_fits_a_monotone_float32_map_and_reports_it(pair, model) -> None:
    source, target = pair
    fit = ColorTransfer(model=model, solver="kl", steps=6, n_components=2).fit(source, target)
    probe = torch.as_tensor(np.random.default_rng(3).random((500, 3), dtype=np.float32))
    eigenvalues = torch.linalg.eigvalsh(fit.map_.jacobian(probe))
    assert float(eigenvalues.min()) >= fit.map_.eps * 0.999
    info = fit.train_info_
    assert (info["solver"], info["loss"], info["steps"]) == ("kl", "kl", 6)
    assert np.isfinite(info["kl_nats"]) and info["device"] == "cpu"
    assert next(fit.map_.parameters()).dtype == torch.float32
    assert len(fit.history_.losses) == 6 and all(np.isfinite(fit.history_.losses))


def test_the_kl_solver_lowers_its_objective_and_is_seeded(pair) -> None:
    source, target = pair
    settings = dict(model="cmgn", solver="kl", n_components=2, random_state=4)
    # Each recorded loss takes SW₂² from that iteration's random frames, so early iterations are noisy
    # (±10 %); on this pair the fall comes after ≈ 12 iterations (two clusters split: SW2 0.13 → 0.04).
    short = ColorTransfer(steps=1, **settings).fit(source, target)
    longer = ColorTransfer(steps=20, **settings).fit(source, target)
    again = ColorTransfer(steps=20, **settings).fit(source, target)
    assert longer.history_.losses[-1] < short.history_.losses[-1]
    assert longer.train_info_["kl_nats"] < short.train_info_["kl_nats"]
    assert np.array_equal(_mapped(longer, source), _mapped(again, source))


def test_adam_only_options_are_refused_with_the_kl_solver() -> None:
    with pytest.raises(ConfigError, match=r"lr \(--lr\) does not apply to the kl solver \(cmgn model"):
        ColorTransfer(model="cmgn", solver="kl", lr=0.1).fit(np.random.rand(50, 3), np.random.rand(50, 3))


@pytest.mark.parametrize("model", ["cmgn", "mmgn"])
def test_a_single_colour_target_gives_a_finite_map_onto_that_colour(model) -> None:
    source = np.random.default_rng(5).random((2000, 3), dtype=np.float32)
    target = np.tile(np.float32([0.2, 0.5, 0.7]), (500, 1))
    fit = ColorTransfer(model=model, solver="kl", steps=4, n_components=1).fit(source, target)
    mapped = _mapped(fit, source)
    assert np.isfinite(mapped).all()
    assert np.abs(np.median(mapped, axis=0) - target[0]).max() < 0.05


def test_a_step_to_a_non_finite_loss_is_undone_and_the_fit_stops(pair, monkeypatch) -> None:
    """The KL turns NaN once the first iteration has run: that iteration's weights are put back and
    the fit ends with the map it started the iteration from, still finite and monotone."""
    from colorot import mgn_solver

    source, target = pair
    real, calls = mgn_solver.exact_kl, {"n": 0, "poison_after": None}

    def exact_kl(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        poisoned = calls["poison_after"] is not None and calls["n"] > calls["poison_after"]
        return value * float("nan") if poisoned else value

    monkeypatch.setattr(mgn_solver, "exact_kl", exact_kl)
    one = ColorTransfer(model="cmgn", solver="kl", steps=1, n_components=2).fit(source, target)
    calls.update(n=0, poison_after=calls["n"])  # every call after those of a one-iteration fit
    stopped = ColorTransfer(model="cmgn", solver="kl", steps=5, n_components=2).fit(source, target)
    assert len(stopped.history_.losses) == 1 and np.isfinite(stopped.history_.losses).all()
    assert np.array_equal(_mapped(stopped, source), _mapped(one, source))
