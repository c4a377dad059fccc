"""The KL solver for the C-MGN and M-MGN (colorot.mgn_solver): it lowers the objective, stays
monotone, is seeded, refuses Adam's options and reports what it did; its separable start
(colorot.mgn_start) is the network's fit of per-channel histogram matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colorot import ColorTransfer
from colorot.errors import ConfigError
from _fresh_process import last_line_of


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


def _bands(colours: list[tuple[int, int, int]], height: int = 32, width: int = 32) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        image[:, i * width // len(colours):(i + 1) * width // len(colours)] = colour
    return image


#: Two source colours, two target colours, and the target colour each source colour goes to.
_TWO = ([(10, 20, 30), (240, 200, 100)], [(200, 10, 10), (10, 10, 200)], [(10, 10, 200), (200, 10, 10)])
_TWO_MORE = ([(166, 178, 222), (74, 240, 0)], [(19, 249, 241), (76, 35, 80)], [(19, 249, 241), (76, 35, 80)])


@pytest.mark.parametrize("model, size, colours", [("cmgn", 32, _TWO), ("mmgn", 32, _TWO), ("cmgn", 320, _TWO_MORE)])
def test_two_colours_land_on_the_target_s_two_colours(model, size, colours) -> None:
    """The separable start sent (10, 20, 30) and (240, 200, 100) to (10, 10, 10) and (200, 10, 200)
    for the target's (200, 10, 10) and (10, 10, 200), and L-BFGS stayed between them (the C-MGN's
    outputs (157, 0, 0) and (52, 36, 217)); the Gaussian start's loss is 2 700 times lower there, so
    the fit starts from it (bench/EXPERIMENTS.md, E66). Over 100 000 pixels the source comes in colour
    order, and a Gaussian start built on its first rows alone (its darkest colours) was not taken."""
    source_colours, target_colours, (first, last) = colours
    source, target = _bands(source_colours, size, size), _bands(target_colours, size, size)
    out = ColorTransfer(model=model).fit(source, target, measure_kl=False).transform(source)
    codes = np.clip(out, 0, 1).reshape(-1, 3) * 255
    assert np.abs(codes[0] - first).max() < 3 and np.abs(codes[-1] - last).max() < 3


def test_a_photograph_keeps_the_separable_start_and_its_fit_bit_for_bit(monkeypatch) -> None:
    """The choice of start touches no generator: where the separable start is kept (every photograph
    measured, E66) the map is the one fitted without the choice."""
    from pathlib import Path

    from PIL import Image as PILImage

    from colorot import mgn_solver

    samples = Path(__file__).resolve().parents[1] / "samples"
    source, target = (np.asarray(PILImage.open(samples / name).convert("RGB").resize((80, 50)))
                      for name in ("day.jpg", "sunset.jpg"))
    ratios = []
    real_loss_at = mgn_solver._Problem.loss_at

    def loss_at(problem, model):
        value = real_loss_at(problem, model)
        ratios.append(value)
        return value

    monkeypatch.setattr(mgn_solver._Problem, "loss_at", loss_at)
    chosen = ColorTransfer(model="cmgn", steps=6).fit(source, target, measure_kl=False)
    gaussian, separable = ratios
    assert gaussian > mgn_solver.GAUSSIAN_START_MARGIN * separable  # it was weighed, and kept the separable start
    monkeypatch.setattr(mgn_solver, "_gaussian_start_where_far_lower", lambda *args: None)
    alone = ColorTransfer(model="cmgn", steps=6).fit(source, target, measure_kl=False)
    assert chosen.history_.losses == alone.history_.losses
    assert np.array_equal(chosen.transform(source), alone.transform(source))


# ------------------------------------------------------------------ the separable start
def _squares(n: int = 6000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Uniform source; target its per-channel square: each axis's 1-D optimal map is g(t) = t²."""
    source = np.random.default_rng(seed).random((n, 3))
    return source, source ** 2


@pytest.mark.parametrize("name,config,tolerance", [
    ("cmgn", {"hidden": 16, "layers": 3}, 0.01), ("cmgn", {"hidden": 7, "layers": 1}, 0.025),  # 2–3 units an axis
    ("mmgn", {"hidden": 8, "modules": 3}, 0.01), ("mmgn", {"hidden": 6, "modules": 4}, 0.015)])
def test_the_separable_start_is_the_networks_fit_of_per_channel_histogram_matching(name, config, tolerance) -> None:
    from colorot.mgn_start import separable_start
    from colorot.models import build_model

    source, target = _squares()
    model = build_model(name, config).double()
    errors = separable_start(model, source, target)
    weights = model.W.detach().reshape(-1, 3)
    used = weights[weights.abs().max(1).values > 1e-2]
    assert len(used) >= 3 and ((used.abs() > 1e-12).sum(1) == 1).all()  # every full-strength unit on one RGB axis
    probe = torch.as_tensor(np.random.default_rng(8).random((400, 3)))
    jac = model.jacobian(probe).detach()
    off_diagonal = jac - torch.diag_embed(torch.diagonal(jac, dim1=1, dim2=2))
    assert float(off_diagonal.abs().max()) < 1e-6  # separable: output j depends on x_j alone
    with torch.no_grad():
        mapped = model(torch.as_tensor(source)).numpy()
    rms = np.sqrt(np.mean((mapped - target) ** 2, axis=0))  # per axis, over the source
    assert rms.max() < tolerance and np.allclose(rms, errors, atol=0.003)
    assert float(torch.linalg.eigvalsh(jac).min()) >= model.eps * (1 - 1e-9)


@given(data=st.data())
@settings(max_examples=12, deadline=None)
def test_the_separable_start_is_monotone_on_any_pair(data) -> None:
    from colorot.mgn_start import separable_start
    from colorot.models import build_model

    name = data.draw(st.sampled_from(["cmgn", "mmgn"]))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = data.draw(st.integers(50, 400))
    spread_s, spread_t = data.draw(st.sampled_from([0.0, 0.01, 0.3])), data.draw(st.sampled_from([0.0, 0.01, 0.3]))
    source = np.clip(rng.random(3) + spread_s * rng.normal(size=(n, 3)), 0, 1)
    target = np.clip(rng.random(3) + spread_t * rng.normal(size=(n, 3)) ** 3, 0, 1)
    model = build_model(name)
    separable_start(model, source, target, max_evaluations=20)
    probe = torch.as_tensor(np.concatenate([source, rng.random((200, 3))]), dtype=torch.float32)
    mapped, jac = model.forward_and_jacobian(probe)
    assert torch.isfinite(mapped).all()
    assert float(torch.linalg.eigvalsh(jac.detach().double()).min()) >= model.eps * 0.999


def test_a_given_start_is_kept_and_zero_iterations_leave_the_separable_start() -> None:
    from colorot import mgn_solver
    from colorot.distributions import GaussianMixture
    from colorot.mgn_start import separable_start
    from colorot.models import build_model

    source, target = _squares(2000)
    source, target = source.astype(np.float32), target.astype(np.float32)
    mixture = GaussianMixture.fit(target, 2, random_state=0)
    given_model = build_model("cmgn")
    before = [p.detach().clone() for p in given_model.parameters()]
    mgn_solver.fit_network_kl(given_model, source, target, mixture,
                              mgn_solver.NetworkKLSettings(iterations=0, start="given"), entropy=0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, given_model.parameters()))
    started, expected = build_model("cmgn"), build_model("cmgn")
    mgn_solver.fit_network_kl(started, source, target, mixture, mgn_solver.NetworkKLSettings(iterations=0), entropy=0.0)
    separable_start(expected, source, target)
    assert all(torch.equal(a, b) for a, b in zip(expected.parameters(), started.parameters()))


@pytest.mark.parametrize("iterations", [0, 2])
def test_a_target_given_as_a_function_is_asked_for_once_after_the_start(iterations, monkeypatch) -> None:
    """So that EM can run while the start is fitted (colorot.em_process)."""
    from colorot import mgn_solver
    from colorot.distributions import GaussianMixture
    from colorot.models import build_model

    source, target = _squares(2000)
    source, target = source.astype(np.float32), target.astype(np.float32)
    mixture = GaussianMixture.fit(target, 2, random_state=0)
    events = []
    real_start = mgn_solver.separable_start
    monkeypatch.setattr(mgn_solver, "separable_start", lambda *a, **k: events.append("start") or real_start(*a, **k))

    def waited_for():
        events.append("target")
        return mixture

    lazy, eager = build_model("mmgn"), build_model("mmgn")
    settings = mgn_solver.NetworkKLSettings(iterations=iterations)
    lazy_result = mgn_solver.fit_network_kl(lazy, source, target, waited_for, settings, entropy=0.0)
    assert events == ["start", "target"]
    assert lazy_result.target is mixture
    eager_result = mgn_solver.fit_network_kl(eager, source, target, mixture, settings, entropy=0.0)
    assert eager_result.target is mixture
    assert lazy_result.history.losses == eager_result.history.losses
    assert all(torch.equal(a, b) for a, b in zip(lazy.parameters(), eager.parameters()))


@pytest.mark.parametrize("change", [{"start": "affine"}, {"frames": 0}])
def test_bad_network_solver_settings_are_refused(change) -> None:
    from colorot import mgn_solver

    with pytest.raises(ConfigError):
        mgn_solver.NetworkKLSettings(**change).validate()


def test_the_written_out_lbfgs_takes_torch_s_steps() -> None:
    """mgn_solver.LBFGS is torch.optim.LBFGS(lr=1, strong Wolfe) written out (to skip its import cost):
    the same iterates on a non-convex problem, across several step() calls, to float rounding."""
    from colorot.mgn_solver import LBFGS

    def rosenbrock(p: torch.Tensor) -> torch.Tensor:
        return ((1 - p[:-1]) ** 2).sum() + 100 * ((p[1:] - p[:-1] ** 2) ** 2).sum()

    ours, theirs = torch.full((6,), -1.2, dtype=torch.float64, requires_grad=True), \
        torch.full((6,), -1.2, dtype=torch.float64, requires_grad=True)
    mine = LBFGS([ours], max_iter=10, history_size=5)
    reference = torch.optim.LBFGS([theirs], lr=1, max_iter=10, history_size=5, line_search_fn="strong_wolfe")
    start = float(rosenbrock(ours.detach()))
    for _ in range(4):
        def closure_ours():
            mine.zero_grad()
            loss = rosenbrock(ours)
            loss.backward()
            return loss

        def closure_theirs():
            reference.zero_grad()
            loss = rosenbrock(theirs)
            loss.backward()
            return loss

        mine.step(closure_ours)
        reference.step(closure_theirs)
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert float(rosenbrock(ours.detach())) < start / 100


def test_a_network_fit_does_not_import_torchs_compiler() -> None:
    """Constructing a torch.optim optimiser imports torch._dynamo (≈ 2 s in a fresh process); the
    network KL solver must not."""
    code = ("import sys, numpy as np\n"
            "from colorot import ColorTransfer\n"
            "rng = np.random.default_rng(0)\n"
            "ColorTransfer(model='cmgn', steps=2, n_components=2).fit(rng.random((500, 3)), rng.random((500, 3)) ** 2)\n"
            "print('torch._dynamo' in sys.modules)\n")
    assert last_line_of(code) == "False"


def test_a_line_search_step_to_a_non_finite_loss_is_stepped_back_from() -> None:
    """f(x) = Σ(x − 3)², undefined (NaN) beyond x = 2: the written-out L-BFGS bisects back into the
    finite region and still lowers f, where torch's L-BFGS would carry the NaN into the weights."""
    from colorot.mgn_solver import LBFGS

    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimiser = LBFGS([x], max_iter=10, history_size=5)

    def closure():
        optimiser.zero_grad()
        loss = ((x - 3) ** 2).sum()
        if bool((x > 2).any()):
            loss = loss * float("nan")
        loss.backward()
        return loss

    for _ in range(3):
        optimiser.step(closure)
    x = x.detach()
    assert torch.isfinite(x).all() and float(x.max()) <= 2
    assert float(((x - 3) ** 2).sum()) < 2.05  # from 18 at x = 0 to the edge of the finite region (2 at x = 2)


def test_the_checkpoint_says_how_many_pixels_the_network_kl_averages_over() -> None:
    from colorot import mgn_solver
    from colorot.transfer import ColorTransfer

    rng = np.random.default_rng(3)
    source, target = rng.random((6000, 3)), rng.random((6000, 3)) ** 2
    info = ColorTransfer(model="cmgn", steps=1).fit(source, target, measure_kl=False).train_info_
    assert info["training_pixels"] == mgn_solver.KL_PIXELS
