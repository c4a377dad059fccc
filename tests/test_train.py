"""Tests for colorot.train: determinism, the non-finite guard, callbacks, settings, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot.distributions import Gaussian, GaussianMixture
from colorot.errors import ConfigError, TrainingError
from colorot.losses import exact_kl, moment_kl, quantiles_at_levels, transport_cost
from colorot.models import CMGN, MMGN, AffineMap
import colorot.train as train_module
from colorot.train import (LOSSES_READ_EVERY, History, TrainSettings, batch_loss, direction_bank, resolve_device,
                           train)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def pixels(rng) -> np.ndarray:
    return rng.uniform(0.1, 0.9, size=(300, 3)).astype(np.float32)


@pytest.fixture
def target() -> GaussianMixture:
    return GaussianMixture(
        np.array([0.5, 0.5]),
        np.array([[0.3, 0.4, 0.5], [0.7, 0.5, 0.3]]),
        np.stack([np.eye(3) * 0.01, np.eye(3) * 0.02]),
    )


def small_model(seed: int = 0) -> CMGN:
    torch.manual_seed(seed)
    return CMGN(hidden=4, layers=2)


def settings(**kw) -> TrainSettings:
    return TrainSettings(**{"steps": 5, "batch_size": 64, "lr": 1e-2, "device": "cpu", **kw})


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_identical_losses_and_parameters(pixels, target) -> None:
    a, b = small_model(), small_model()
    assert all(torch.equal(x, y) for x, y in zip(params(a).values(), params(b).values()))
    ha = train(a, pixels, target, settings(seed=3))
    hb = train(b, pixels, target, settings(seed=3))
    assert len(ha.losses) == 5 and ha.losses == hb.losses
    pa, pb = params(a), params(b)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert ha.final_loss == ha.losses[-1] and ha.seconds > 0


def test_different_seed_gives_different_training(pixels, target) -> None:
    a, b = small_model(), small_model()
    ha = train(a, pixels, target, settings(seed=1))
    hb = train(b, pixels, target, settings(seed=2))
    assert ha.losses != hb.losses
    assert any(not torch.equal(params(a)[k], params(b)[k]) for k in params(a))


def test_training_changes_parameters_and_lowers_the_loss(pixels, target) -> None:
    model = small_model()
    before = params(model)
    history = train(model, pixels, target, settings(steps=40, lr=3e-2, batch_size=128))
    after = params(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert np.mean(history.losses[-5:]) < np.mean(history.losses[:5]) - 0.1
    assert not model.training  # left in eval mode


def test_zero_steps_is_a_no_op(pixels, target) -> None:
    model = small_model()
    before = params(model)
    history = train(model, pixels, target, settings(steps=0))
    assert history.losses == [] and history.final_loss is None
    assert all(torch.equal(before[k], v) for k, v in params(model).items())


# --------------------------------------------------------- non-finite guard
def test_nan_parameters_raise_training_error(pixels, target) -> None:
    model = small_model()
    with torch.no_grad():
        model.b.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite"):
        train(model, pixels, target, settings())


@pytest.mark.parametrize("bad_step, steps", [(3, 5), (LOSSES_READ_EVERY + 7, LOSSES_READ_EVERY + 20)])
def test_map_producing_nan_mid_training_raises_at_that_step(pixels, target, monkeypatch, bad_step, steps) -> None:
    """The losses are read in blocks of LOSSES_READ_EVERY steps, in the first block or a later one:
    the error names the step whose loss was NaN, and the callback saw every step before it."""
    model = small_model()
    original = model.forward_and_jacobian
    calls = {"n": 0}

    def flaky(x):
        if not torch.is_grad_enabled():  # the initial map's loss, measured before step 1
            return original(x)
        calls["n"] += 1
        out, jac = original(x)
        return (out * float("nan"), jac) if calls["n"] == bad_step else (out, jac)

    monkeypatch.setattr(model, "forward_and_jacobian", flaky)
    seen = []
    with pytest.raises(TrainingError, match=f"step {bad_step};"):
        train(model, pixels, target, settings(steps=steps), callback=lambda s, v: seen.append(s))
    assert seen == list(range(1, bad_step))


def test_infinite_pixels_raise_training_error(pixels, target) -> None:
    pixels = pixels.copy()
    pixels[:] = np.inf
    with pytest.raises(TrainingError):
        train(small_model(), pixels, target, settings(loss="moment"))


# ------------------------------------------------------------ the sliced term's data
def test_each_step_compares_its_directions_with_their_own_quantiles(pixels, target, monkeypatch) -> None:
    """Every step's sliced term gets, for each of its directions, the reference's quantiles along
    that same direction at the batch's levels (i + ½)/n: what the bank holds for it, read at n."""
    calls = []
    real = train_module.batch_loss

    def recording(model, x, target, settings, directions=None, quantiles=None):
        if torch.is_grad_enabled():  # a training step, not the starting loss
            calls.append((x.shape[0], directions, quantiles))
        return real(model, x, target, settings, directions, quantiles)

    monkeypatch.setattr(train_module, "batch_loss", recording)
    run = settings(steps=3, sw_weight=10.0, sw_directions=8)
    train(small_model(), pixels, target, run, target_pixels=pixels)
    bank_directions, bank_sorted = direction_bank(pixels, run, torch.device("cpu"))
    assert len(calls) == 3
    for n, directions, quantiles in calls:
        assert n == 64 and directions.shape == (3, 8) and quantiles.shape == (64, 8)
        for column in range(8):
            (match,) = [j for j in range(bank_directions.shape[1])
                        if torch.equal(bank_directions[:, j], directions[:, column])]
            assert torch.equal(quantiles[:, column], quantiles_at_levels(bank_sorted[:, match:match + 1], n)[:, 0])


# -------------------------------------------------------------- callback
def test_callback_is_called_once_per_step_with_step_and_loss(pixels, target) -> None:
    calls: list[tuple[int, float]] = []
    history = train(small_model(), pixels, target, settings(steps=6),
                    callback=lambda step, loss: calls.append((step, loss)))
    assert [s for s, _ in calls] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in calls] == history.losses
    assert all(isinstance(v, float) for _, v in calls)


# -------------------------------------------------------------- objective
def test_batch_loss_is_the_named_loss_plus_weighted_transport(target) -> None:
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    model = small_model()
    mapped, jac = model.forward_and_jacobian(x)
    kl = exact_kl(mapped, jac, target)
    cost = transport_cost(x, mapped)
    assert torch.allclose(batch_loss(model, x, target, settings(loss="kl")), kl, rtol=1e-6, atol=1e-6)
    assert torch.allclose(batch_loss(model, x, target, settings(loss="kl", transport_weight=0.5)),
                          kl + 0.5 * cost, rtol=1e-6, atol=1e-6)
    assert torch.allclose(batch_loss(model, x, target, settings(loss="moment")),
                          moment_kl(model(x), target), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: AffineMap(), lambda: MMGN(hidden=3, modules=2)], ids=["affine", "mmgn"])
@pytest.mark.parametrize("loss", ["kl", "moment"])
def test_every_model_and_loss_trains(pixels, target, make, loss) -> None:
    torch.manual_seed(0)
    history = train(make(), pixels, target, settings(steps=3, loss=loss, transport_weight=0.1))
    assert len(history.losses) == 3 and all(np.isfinite(history.losses))


# -------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "bad",
    [{"loss": "wasserstein"}, {"steps": -1}, {"batch_size": 1}, {"lr": 0.0}, {"lr": -1e-3},
     {"transport_weight": -0.1}, {"device": "tpu"}],
)
def test_invalid_settings_raise_config_error(pixels, target, bad) -> None:
    model = small_model()
    before = params(model)
    with pytest.raises(ConfigError):
        train(model, pixels, target, settings(**bad))
    assert all(torch.equal(before[k], v) for k, v in params(model).items())


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError):
        resolve_device("metal")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_resolve_device_cuda_without_cuda_is_a_config_error(name) -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_device(name)


@pytest.mark.cuda
@cuda
def test_training_on_cuda(pixels, target) -> None:
    model = small_model()
    history = train(model, pixels, target, settings(device="cuda"))
    assert len(history.losses) == 5 and all(np.isfinite(history.losses))
    assert next(model.parameters()).device.type == "cuda"
    # Same objective as on CPU at step 1 (same batch, same start), up to float32 reduction order.
    cpu_history = train(small_model(), pixels, target, settings(steps=1))
    assert history.losses[0] == pytest.approx(cpu_history.losses[0], rel=1e-4, abs=1e-4)


def test_history_defaults() -> None:
    h = History()
    assert h.losses == [] and h.final_loss is None and h.seconds == 0.0


def test_dequantisation_noise_depends_only_on_seed(pixels) -> None:
    """The step-1 loss depends on the seeded batch, not on global torch RNG state."""
    target = Gaussian(np.full(3, 0.5), np.eye(3) * 0.02)
    a, b = small_model(), small_model()
    torch.manual_seed(1)
    first = train(a, pixels, target, settings(steps=2, seed=9)).losses
    torch.manual_seed(2)
    again = train(b, pixels, target, settings(steps=2, seed=9)).losses
    assert first == again


def test_training_runs_single_threaded_and_restores_the_thread_count(pixels, target) -> None:
    from colorot.train import TRAIN_THREADS

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    try:
        train(small_model(), pixels, target, settings(), callback=lambda s, v: seen.append(torch.get_num_threads()))
        assert set(seen) == {TRAIN_THREADS}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_adam_trains_a_source_of_fewer_pixels_than_a_batch() -> None:
    """Each batch drew its pixels with replacement: the duplicates raised the SW₂ term over the start's
    (each pixel once) and every fit of a source under ~100 pixels stopped at "training diverged"."""
    from colorot.transfer import ColorTransfer

    rng = np.random.default_rng(5)
    source, target = rng.integers(0, 256, (4, 4, 3), np.uint8), rng.integers(0, 256, (32, 32, 3), np.uint8)
    fitted = ColorTransfer(solver="adam", steps=60, random_state=0).fit(source, target)
    assert fitted.train_info_["steps"] == 60 and np.isfinite(fitted.train_info_["final_loss"])
