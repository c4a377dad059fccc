"""Every ColorTransfer parameter (= ``colorot fit`` option) that a fit would not use is refused.

The table below is the specification, written out independently of
:data:`colorot.transfer.APPLICABILITY`: for each parameter set to a non-default value, the fits
(model/solver/target kind) that use it.  Every parameter × fit combination is tried; the check
runs before any image is read, so each case stops at a sentinel instead of fitting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from colorot import train, transfer
from colorot.cli import app
from colorot.errors import ConfigError
from colorot.transfer import ColorTransfer

#: How each combination is asked for (model, solver, target) → the fit it resolves to.
COMBINATIONS = {
    ("ridge", "kl", "gmm"): "ridge/kl/gmm",
    ("ridge", "kl", "gaussian"): "ridge/kl/gaussian",
    ("ridge", "auto", "auto"): "ridge/kl/gmm",
    ("ridge", "sliced", "pixels"): "ridge/sliced/pixels",
    ("ridge", "sliced", "auto"): "ridge/sliced/pixels",
    ("ridge", "sliced", "gmm"): "ridge/sliced/gmm",
    ("ridge", "sliced", "gaussian"): "ridge/sliced/gaussian",
    ("ridge", "adam", "gmm"): "ridge/adam/gmm",
    ("ridge", "adam", "gaussian"): "ridge/adam/gaussian",
    ("cmgn", "adam", "gmm"): "cmgn/adam/gmm",
    ("cmgn", "auto", "auto"): "cmgn/kl/gmm",
    ("mmgn", "auto", "auto"): "mmgn/kl/gmm",
    ("cmgn", "kl", "gaussian"): "cmgn/kl/gaussian",
    ("cmgn", "adam", "gaussian"): "cmgn/adam/gaussian",
    ("mmgn", "adam", "gmm"): "mmgn/adam/gmm",
    ("mmgn", "adam", "gaussian"): "mmgn/adam/gaussian",
    ("affine", "auto", "auto"): "affine/closed-form/gaussian",
    ("affine", "auto", "gaussian"): "affine/closed-form/gaussian",
}
FITS = set(COMBINATIONS.values())
ADAM = {fit for fit in FITS if "/adam/" in fit}
KL = {fit for fit in FITS if "/kl/" in fit}
AFFINE = {"affine/closed-form/gaussian"}

#: (parameter, a non-default value, its CLI flag) → the fits that use it.
APPLIES_TO = {
    ("n_components", 3, "--components"): {fit for fit in FITS if fit.endswith("/gmm")},
    ("n_components", "auto", "--components"): {fit for fit in FITS if fit.endswith("/gmm")},
    ("loss", "moment", "--loss"): ADAM,
    ("sw_weight", 10.0, "--sw-weight"): ADAM | KL,
    ("sw_weight", 0.0, "--sw-weight"): ADAM | KL,
    ("sw_directions", 8, "--sw-directions"): ADAM,
    ("transport_weight", 0.1, "--transport-weight"): ADAM,
    ("steps", 2, "--steps"): FITS - AFFINE,
    ("lr", 0.01, "--lr"): ADAM,
    ("batch_size", 256, "--batch-size"): ADAM,
    ("max_pixels", 500, "--max-pixels"): FITS,
    ("ridge", 1e-3, "--ridge"): FITS - {"ridge/sliced/pixels"},
    ("eps", 1e-2, "--eps"): FITS,
    ("hidden", 4, "--hidden"): ADAM | {fit for fit in KL if fit.startswith(("cmgn/", "mmgn/"))},
    ("layers", 2, "--layers"): {fit for fit in FITS if fit.startswith("cmgn/")},
    ("modules", 2, "--modules"): {fit for fit in FITS if fit.startswith("mmgn/")},
    ("device", "cuda", "--device"): ADAM,
    ("device", "cpu", "--device"): FITS,  # where the other solvers run anyway
    ("random_state", 3, "--seed"): FITS,
    ("progress", True, None): FITS,
    ("max_image_pixels", 10**6, "--max-image-pixels"): FITS,
}

PIXELS = np.random.default_rng(0).random((64, 3))


class Reached(Exception):
    """Raised where fit would first read an image: every check has passed."""


@pytest.fixture(autouse=True)
def stop_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(transfer, "pooled_in_space", reached)
    monkeypatch.setattr(train, "resolve_device", lambda device: "cpu")  # --device cuda without a GPU


def outcome(**params) -> str | None:
    """None when ``fit`` gets as far as reading the images, else its ConfigError's message."""
    try:
        ColorTransfer(**params).fit(PIXELS, PIXELS)
    except Reached:
        return None
    except ConfigError as exc:
        return str(exc)
    raise AssertionError("fit returned without reading the images")


def test_the_table_covers_every_parameter() -> None:
    covered = {name for name, _, _ in APPLIES_TO} | {"model", "solver", "target"}
    assert covered == set(ColorTransfer().get_params())


@pytest.mark.parametrize("combination", list(COMBINATIONS), ids="/".join)
@pytest.mark.parametrize("parameter, value, flag", list(APPLIES_TO), ids=lambda v: str(v))
def test_a_parameter_is_refused_exactly_where_it_does_not_apply(combination, parameter, value, flag) -> None:
    model, solver, target = combination
    message = outcome(model=model, solver=solver, target=target, **{parameter: value})
    if COMBINATIONS[combination] in APPLIES_TO[parameter, value, flag]:
        assert message is None
    else:
        assert message is not None and f"{parameter} ({flag}) does not apply to " in message
        assert "\n" not in message


@pytest.mark.parametrize("combination", list(COMBINATIONS), ids="/".join)
def test_the_defaults_apply_everywhere(combination) -> None:
    model, solver, target = combination
    assert outcome(model=model, solver=solver, target=target) is None


@pytest.mark.parametrize("solver", ["kl", "sliced", "adam"])
def test_the_affine_model_refuses_a_solver(solver) -> None:
    message = outcome(model="affine", solver=solver)
    assert message is not None and "solver (--solver) does not apply to the affine model" in message


@pytest.mark.parametrize("target", ["gmm", "pixels"])
def test_the_affine_model_refuses_a_target_other_than_the_gaussian(target) -> None:
    message = outcome(model="affine", target=target)
    assert message is not None and "target (--distribution) does not apply to the affine model" in message


@pytest.mark.parametrize("solver, target", [("kl", "pixels"), ("adam", "pixels")])
def test_the_pixels_target_needs_the_sliced_solver(solver, target) -> None:
    message = outcome(solver=solver, target=target)
    assert message is not None and "(--distribution pixels) needs solver='sliced'" in message


def test_sw_directions_need_an_sw_term() -> None:
    assert outcome(solver="adam", sw_weight=10.0, sw_directions=8) is None
    message = outcome(solver="adam", sw_weight=0.0, sw_directions=8)
    assert message is not None and "sw_directions (--sw-directions) does not apply" in message


def test_every_refused_parameter_is_named_with_what_it_needs() -> None:
    message = outcome(loss="moment", transport_weight=0.1, batch_size=256)
    assert message == ("loss (--loss), transport_weight (--transport-weight) and batch_size (--batch-size) do not "
                       "apply to the kl solver (ridge model, gmm target): only solver='adam' (--solver adam) has a "
                       "choice of loss; only solver='adam' (--solver adam) adds λ·E‖T(x) − x‖²; only "
                       "solver='adam' (--solver adam) trains in batches")


def test_a_reason_shared_by_several_refused_parameters_is_given_once() -> None:
    message = outcome(model="affine", solver="adam", steps=5)
    assert message is not None and message.endswith(
        "do not apply to the affine model (closed form, gaussian target): the affine map is fitted in closed form")


def test_fit_reference_refuses_before_reading_the_target() -> None:
    with pytest.raises(ConfigError, match=r"n_components \(--components\) does not apply to the affine model"):
        ColorTransfer(model="affine", n_components=3).fit_reference(Path("no-such-image.png"))


def test_the_cli_refuses_options_the_default_solver_ignores(tmp_path: Path, make_png) -> None:
    source, target = make_png(tmp_path / "s.png", seed=1), make_png(tmp_path / "t.png", seed=2)
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, ["fit", str(source), str(target), "-o", str(out), "--loss", "moment",
                                      "--transport-weight", "0.1"])
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: loss (--loss) and transport_weight (--transport-weight) do not apply to the kl "
                           "solver") and "--solver adam" in line
    assert not out.exists()


def test_match_refuses_an_option_its_maps_would_ignore(tmp_path: Path, make_png) -> None:
    reference = make_png(tmp_path / "ref.png", seed=1)
    make_png(tmp_path / "in" / "a.png", seed=2)
    result = CliRunner().invoke(app, ["match", str(reference), str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--model", "affine", "--steps", "3"])
    assert result.exit_code == 1 and "steps (--steps) does not apply to the affine model" in result.stderr
    assert not (tmp_path / "out").exists()
