"""Tests for colorot.transfer.ColorTransfer, the estimator the CLI sits on."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import colorot
from colorot import ColorTransfer
from colorot.apply import map_pixels
from colorot.controls import Controls
from colorot.distributions import DEFAULT_RIDGE, Gaussian, GaussianMixture
from colorot.errors import CheckpointError, ConfigError, OutputExistsError
from colorot.models import AffineMap, MonotoneGradientMap
from _fresh_process import last_line_of

FAST = {"steps": 5, "n_components": 2, "device": "cpu"}


def sqrtm(m: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh(m)
    return (q * np.sqrt(w)) @ q.T


def brenier_affine(src: np.ndarray, mean_t: np.ndarray, cov_t: np.ndarray, ridge: float):
    """The Gaussian Brenier map x ↦ μt + A (x − μs), computed here from the pixels."""
    src = src.astype(np.float64)
    mean_s = src.mean(0)
    cov_s = np.cov(src.T, bias=True) + ridge * np.eye(3)
    root = sqrtm(cov_s)
    inv_root = np.linalg.inv(root)
    a = inv_root @ sqrtm(root @ cov_t @ root) @ inv_root
    return lambda x: mean_t + (x.astype(np.float64) - mean_s) @ a.T


@pytest.fixture
def source(rng) -> np.ndarray:
    """2000 source pixels, (N, 3) float32, with correlated channels."""
    base = rng.uniform(0, 1, size=(2000, 1))
    return np.clip(0.6 * base + 0.4 * rng.uniform(0, 1, size=(2000, 3)), 0, 1).astype(np.float32)


@pytest.fixture
def target_pixels(rng) -> np.ndarray:
    a = rng.normal([0.8, 0.4, 0.2], 0.05, size=(1000, 3))
    b = rng.normal([0.2, 0.3, 0.7], 0.08, size=(1000, 3))
    return np.clip(np.concatenate([a, b]), 0, 1).astype(np.float32)


@pytest.fixture
def fitted(source, target_pixels) -> ColorTransfer:
    return ColorTransfer(model="cmgn", hidden=4, layers=2, **FAST).fit(source, target_pixels)


# ------------------------------------------------------------------- fit
def test_fit_returns_self_and_sets_the_fitted_attributes(source, target_pixels) -> None:
    calls = []
    est = ColorTransfer(model="mmgn", hidden=3, modules=2, max_pixels=500, random_state=4, **FAST)
    assert not hasattr(est, "map_")
    assert est.fit(source, target_pixels, callback=lambda s, v: calls.append(s)) is est
    assert isinstance(est.map_, MonotoneGradientMap) and est.map_.name == "mmgn"
    assert not est.map_.training and not any(p.requires_grad for p in est.map_.parameters())
    assert isinstance(est.target_dist_, GaussianMixture) and est.target_dist_.n_components == 2
    assert len(est.history_.losses) == 5 and calls == [1, 2, 3, 4, 5]
    info = est.train_info_
    assert info["steps"] == 5 and info["training_pixels"] == 500 and info["seed"] == 4
    assert info["model"] == "mmgn" and info["target"] == "gmm" and info["loss"] == "kl"
    assert info["final_loss"] == est.history_.losses[-1]
    assert info["source_sha256"] is None and info["target_sha256"] is None  # arrays have no file hash


def test_init_only_stores_arguments() -> None:
    est = ColorTransfer(model="no-such-model", target="nor-this", steps=-3)
    assert est.model == "no-such-model" and est.steps == -3


@pytest.mark.parametrize(
    "kwargs",
    [{"model": "icnn"}, {"model": "affine", "hidden": 4}, {"model": "mmgn", "layers": 2},
     {"model": "cmgn", "modules": 2}, {"target": "poisson"}, {"model": "cmgn", "loss": "l2"},
     {"model": "cmgn", "device": "tpu"}],
)
def test_invalid_options_raise_config_error_at_fit(source, target_pixels, kwargs) -> None:
    est = ColorTransfer(**{**FAST, **kwargs})
    with pytest.raises(ConfigError):
        est.fit(source, target_pixels)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error(source, target_pixels) -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        ColorTransfer(model="cmgn", solver="adam", **{**FAST, "device": "cuda"}).fit(source, target_pixels)


def test_fit_is_deterministic_for_a_random_state(source, target_pixels) -> None:
    make = lambda seed: ColorTransfer(model="cmgn", hidden=4, layers=2, random_state=seed, **FAST)  # noqa: E731
    a, b, c = make(0).fit(source, target_pixels), make(0).fit(source, target_pixels), make(1).fit(source, target_pixels)
    assert a.history_.losses == b.history_.losses
    assert np.array_equal(a.transform(source), b.transform(source))
    assert not np.array_equal(a.transform(source), c.transform(source))


# --------------------------------------------------------------- affine
def test_affine_model_is_the_closed_form_gaussian_map(source, target_pixels) -> None:
    est = ColorTransfer(model="affine", target="gaussian", device="cpu").fit(source, target_pixels)
    assert isinstance(est.map_, AffineMap) and est.history_.losses == [] and est.train_info_["steps"] == 0
    tgt = target_pixels.astype(np.float64)
    expected = brenier_affine(source, tgt.mean(0), np.cov(tgt.T, bias=True) + DEFAULT_RIDGE * np.eye(3), DEFAULT_RIDGE)
    x = np.random.default_rng(5).uniform(0, 1, size=(500, 3)).astype(np.float32)
    # float32 parameters and evaluation: ~1e-6 on values of order 1.
    np.testing.assert_allclose(est.transform(x), expected(x), atol=2e-5)
    # It pushes the source's moments onto the target's: with Ŝ the source covariance and r the
    # ridge, A (Ŝ + rI) A = Σt, so the mapped pixels have covariance A Ŝ A = Σt − r A².
    out = est.transform(source).astype(np.float64)
    a = est.map_.linear_matrix().double().numpy()
    np.testing.assert_allclose(out.mean(0), tgt.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.cov(out.T, bias=True) + DEFAULT_RIDGE * a @ a,
                               np.cov(tgt.T, bias=True) + DEFAULT_RIDGE * np.eye(3), atol=1e-6)


def test_affine_model_refuses_a_mixture_target_it_would_not_use(source, target_pixels) -> None:
    with pytest.raises(ConfigError, match=r"target \(--distribution\) does not apply to the affine model"):
        ColorTransfer(model="affine", target="gmm", device="cpu").fit(source, target_pixels)


# -------------------------------------------------------------- transform
def test_transform_preserves_shape(fitted, rng) -> None:
    image = rng.uniform(0, 1, size=(6, 7, 3)).astype(np.float32)
    out = fitted.transform(image)
    assert out.shape == (6, 7, 3) and out.dtype == np.float32
    flat = fitted.transform(image.reshape(-1, 3))
    assert flat.shape == (42, 3)
    np.testing.assert_array_equal(out.reshape(-1, 3), flat)
    with torch.no_grad():
        direct = fitted.map_(torch.as_tensor(image.reshape(-1, 3))).numpy()
    np.testing.assert_allclose(flat, direct, rtol=1e-6, atol=1e-6)


def test_transform_accepts_uint8_pil_and_paths(fitted, tmp_path, make_png) -> None:
    path = make_png(tmp_path / "img.png", height=9, width=11, seed=2)
    codes = np.asarray(PILImage.open(path).convert("RGB"))
    reference = fitted.transform(codes.astype(np.float32) / 255)
    from_uint8 = fitted.transform(codes)
    assert from_uint8.shape == codes.shape
    np.testing.assert_array_equal(from_uint8, reference)
    np.testing.assert_array_equal(fitted.transform(PILImage.open(path)).reshape(codes.shape), reference)
    from_path = fitted.transform(path)
    assert from_path.shape == (9 * 11, 3)
    np.testing.assert_array_equal(from_path, reference.reshape(-1, 3))
    np.testing.assert_array_equal(fitted.transform(str(path)), from_path)


def test_a_pil_image_reads_as_its_file_does(fitted, tmp_path) -> None:
    """16-bit greyscale was clipped to 0–255 by convert("RGB"); fully transparent pixels were kept."""
    grey = np.linspace(0, 65535, 6 * 8).astype(np.uint16).reshape(6, 8)
    PILImage.fromarray(grey).save(tmp_path / "grey16.png")
    rgba = np.full((6, 8, 4), 120, np.uint8)
    rgba[:2, :, 3] = 0
    rgba[3:, :, 0] = 200
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name, rows in (("grey16.png", 6 * 8), ("rgba.png", 4 * 8)):
        with PILImage.open(tmp_path / name) as image:
            from_pil = fitted.transform(image)
        from_path = fitted.transform(tmp_path / name)
        assert from_pil.shape == from_path.shape == (rows, 3)
        np.testing.assert_array_equal(from_pil, from_path)


def test_pixels_of_unknown_range_or_not_finite_are_refused(fitted, source, target_pixels) -> None:
    with pytest.raises(ConfigError, match="uint8, uint16 or floats"):
        fitted.transform(np.zeros((4, 4, 3), np.int64))
    broken = np.array(source, np.float32)
    broken[0] = np.nan
    with pytest.raises(ConfigError, match="source pixels contain NaN"):
        ColorTransfer().fit(broken, target_pixels)


def test_nested_lists_keep_their_shape(fitted) -> None:
    pixels = np.random.default_rng(2).random((2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(fitted.transform(pixels.tolist()), fitted.transform(pixels))


def test_a_list_of_images_or_ragged_lists_are_refused_by_transform(fitted, tmp_path) -> None:
    """transform maps one image; a list of images reached numpy ("inhomogeneous shape") or named shape (2,)."""
    for images in ([np.zeros((4, 4, 3)), np.zeros((5, 5, 3))], [tmp_path / "a.png", tmp_path / "b.png"],
                   [torch.zeros(2, 3)]):
        with pytest.raises(ConfigError, match="transform maps one image, not a list of images"):
            fitted.transform(images)
    with pytest.raises(ConfigError, match="must be rectangular"):
        fitted.transform([[0.1, 0.2, 0.3], [0.1, 0.2]])
    pixels = [np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.5, 0.6])]  # pixels as 1-D arrays: (N, 3)
    np.testing.assert_array_equal(fitted.transform(pixels), fitted.transform(np.stack(pixels)))


def test_half_precision_tensors_are_mapped_as_float32(fitted) -> None:
    tensor = torch.rand(4, 5, 3)
    for half in (torch.bfloat16, torch.float16):
        np.testing.assert_array_equal(fitted.transform(tensor.to(half)), fitted.transform(tensor.to(half).float()))


def test_transform_rejects_non_rgb_input(fitted) -> None:
    with pytest.raises(ConfigError, match=r"got shape \(4, 4\)$"):
        fitted.transform(np.zeros((4, 4)))
    with pytest.raises(ConfigError, match=r"got shape \(2, 3, 4, 5\); channels first\? move them last"):
        fitted.transform(np.zeros((2, 3, 4, 5), np.float32))  # a (B, 3, H, W) batch
    with pytest.raises(ConfigError, match=r"got shape \(2, 5, 4\); RGBA\? give its colours \(a\[\.\.\., :3\]\)"):
        fitted.transform(np.zeros((2, 5, 4), np.uint8))


def test_fit_accepts_paths_and_records_their_hashes(tmp_path, make_png) -> None:
    src, tgt = make_png(tmp_path / "s.png", seed=1), make_png(tmp_path / "t.png", seed=2)
    est = ColorTransfer(model="cmgn", hidden=3, layers=1, **FAST).fit(src, PILImage.open(tgt))
    assert est.train_info_["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert est.train_info_["target_sha256"] is None
    assert est.train_info_["training_pixels"] == 24 * 32


def test_unfitted_estimator_refuses_transform_and_save(tmp_path) -> None:
    est = ColorTransfer()
    with pytest.raises(ConfigError, match="not fitted"):
        est.transform(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="not fitted"):
        est.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


# ------------------------------------------------------------- persistence
@pytest.mark.parametrize("model", ["cmgn", "mmgn", "affine"])
def test_save_and_load_round_trip(source, target_pixels, tmp_path, model) -> None:
    options = {} if model == "affine" else {"steps": 3, "device": "cpu"}  # the closed form has none
    est = ColorTransfer(model=model, target="gaussian", **options).fit(source, target_pixels)
    est.save(tmp_path / "m.pt")
    loaded = colorot.load(tmp_path / "m.pt")
    assert isinstance(loaded, ColorTransfer) and loaded.model == model and loaded.target == "gaussian"
    x = np.random.default_rng(9).uniform(-0.1, 1.1, size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.transform(x), est.transform(x))
    assert loaded.train_info_ == est.train_info_
    assert isinstance(loaded.target_dist_, Gaussian)
    np.testing.assert_array_equal(loaded.target_dist_.covariance, est.target_dist_.covariance)


def test_inverse_transform_solves_each_distinct_colour_once(fitted, source, monkeypatch) -> None:
    """Newton ran on every pixel: 15 s for a 240×160 8-bit image of 503 colours (0.26 s once each)."""
    import colorot.transfer as transfer_module

    colours = np.unique((np.asarray(source[:7]) * 255).round().astype(np.uint8), axis=0)
    which = np.random.default_rng(1).integers(0, len(colours), (30, 40))
    image = colours[which]  # 1 200 pixels, at most 7 colours
    solved = []
    evaluate = transfer_module.map_pixels
    monkeypatch.setattr(transfer_module, "map_pixels",
                        lambda f, rows, **options: solved.append(len(rows)) or evaluate(f, rows, **options))
    undone = fitted.inverse_transform(image)
    forward_on_the_grid = len(transfer_module._CUBE_GRID)  # the range of the map's outputs, then Newton per colour
    assert solved == [forward_on_the_grid, len(colours)] and undone.shape == (30, 40, 3) and undone.dtype == np.float32
    np.testing.assert_array_equal(undone, fitted.inverse_transform(colours)[which])


def test_a_loaded_ridge_map_keeps_its_numpy_parameters(source, target_pixels, tmp_path) -> None:
    """``ridge_parameters_`` was None after load, so a loaded map could not be blended
    (colorot.sequence) or tabulated without torch."""
    fitted = ColorTransfer(steps=2, max_pixels=500).fit(source, target_pixels)
    fitted.save(tmp_path / "m.pt")
    loaded = colorot.load(tmp_path / "m.pt")
    assert loaded.ridge_parameters_.eps == fitted.ridge_parameters_.eps
    for key, value in fitted.ridge_parameters_.state.items():
        np.testing.assert_array_equal(loaded.ridge_parameters_.state[key], value.astype(np.float32))
    loaded.save(tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == (tmp_path / "m.pt").read_bytes()


def test_save_and_load_through_file_objects_and_bytes(fitted, tmp_path) -> None:
    """A checkpoint goes into and out of an open file, a BytesIO, or its bytes, as into a path."""
    fitted.save(tmp_path / "m.pt")
    on_disk = (tmp_path / "m.pt").read_bytes()
    buffer = io.BytesIO()
    fitted.save(buffer)
    assert buffer.getvalue() == on_disk
    x = np.random.default_rng(3).uniform(0, 1, size=(50, 3)).astype(np.float32)
    with open(tmp_path / "m.pt", "rb") as file:
        from_file = colorot.load(file)
    for loaded in (from_file, colorot.load(io.BytesIO(on_disk)), colorot.load(on_disk)):
        np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
        assert loaded.train_info_ == fitted.train_info_


def test_a_text_or_closed_file_is_a_checkpoint_error(fitted, tmp_path) -> None:
    fitted.save(tmp_path / "m.pt")
    with open(tmp_path / "m.pt", encoding="latin-1") as text, pytest.raises(CheckpointError, match="'rb'"):
        colorot.load(text)
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        fitted.save(io.StringIO())
    closed = io.BytesIO()
    closed.close()
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        colorot.load(closed)


def test_save_without_overwrite_keeps_the_existing_file(fitted, tmp_path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        fitted.save(path, overwrite=False)
    assert path.read_bytes() == b"precious"


# ------------------------------------------------ inputs and parameters a user may hand over
def test_arrays_tensors_and_pil_modes_as_the_docs_say(fitted) -> None:
    codes = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 997
    np.testing.assert_array_equal(fitted.transform(codes.astype(">u2")), fitted.transform(codes))
    tensor = torch.rand(4, 5, 3, requires_grad=True)
    out = fitted.transform(tensor)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, fitted.transform(tensor.detach().numpy()))
    for mode_image in (PILImage.fromarray(np.full((3, 4), 0.5, np.float32)),
                       PILImage.fromarray(np.full((3, 4), 30000, np.int32))):
        with pytest.raises(ConfigError, match="unsupported pixel format"):
            fitted.transform(mode_image)  # convert("RGB") clipped them to 0 or 1
    grey_alpha = PILImage.fromarray(np.dstack([np.full((3, 4), 90, np.uint8), np.full((3, 4), 255, np.uint8)]), "LA")
    np.testing.assert_array_equal(fitted.transform(grey_alpha.convert("La")), fitted.transform(grey_alpha))  # a raw ValueError


def test_a_fit_on_8_bit_codes_as_floats_is_refused(source, target_pixels) -> None:
    with pytest.raises(ConfigError, match="divided by 255"):
        ColorTransfer(**FAST).fit(source * 255, target_pixels)


def test_transform_refuses_what_fit_refuses(fitted, source) -> None:
    """transform and inverse_transform mapped 8-bit codes given as floats, and NaN, without a word."""
    codes_as_floats = np.asarray(source, np.float32)[:10] * 255
    broken = np.asarray(source, np.float32)[:10].copy()
    broken[0, 1] = np.nan
    for method in (fitted.transform, fitted.inverse_transform):
        with pytest.raises(ConfigError, match="divided by 255"):
            method(codes_as_floats)
        with pytest.raises(ConfigError, match="NaN"):
            method(broken)
        method(np.asarray(source, np.float32)[:10] * 1.2 - 0.1)  # a processed image's overshoot is taken


def test_inverse_transform_takes_what_transform_gives() -> None:
    """A map that sends white past 1.5 (a dark source onto a bright target) had its own outputs
    refused by inverse_transform as "not over [0, 1]"; 8-bit codes as floats still are."""
    rng = np.random.default_rng(0)
    dark = rng.uniform(0, 0.3, (2000, 3)).astype(np.float32)
    stretched = ColorTransfer(model="affine", random_state=0).fit(dark, dark * 3)
    white = np.ones((1, 3), np.float32)
    graded = stretched.transform(white)
    assert graded.min() > 2.5
    np.testing.assert_allclose(stretched.inverse_transform(graded), white, atol=1e-4)
    with pytest.raises(ConfigError, match=r"not over \[0, [0-9.]+\] \(the map's outputs\)"):
        stretched.inverse_transform(white * 255)


@pytest.mark.parametrize("name, value", [("n_components", 2.5), ("steps", "3"), ("max_pixels", 100.5),
                                         ("random_state", None), ("device", torch.device("cpu")),
                                         ("eps", "small"), ("batch_size", True)])
def test_a_parameter_of_the_wrong_type_is_a_config_error(source, target_pixels, name, value) -> None:
    with pytest.raises(ConfigError, match="must be"):
        ColorTransfer(**{name: value}).fit(source, target_pixels)


@pytest.mark.parametrize("name, value, rule", [
    ("lr", math.nan, "a finite number > 0"), ("lr", 0.0, "a finite number > 0"),
    ("sw_weight", -1.0, "a finite number ≥ 0 (at most 1e+12)"),
    ("transport_weight", math.inf, "a finite number ≥ 0 (at most 1e+12)"),
    ("eps", 101.0, "a finite number > 0 (at most 100)"), ("ridge", 1.5, "a finite number ≥ 0 (at most 1)"),
    ("steps", -1, "at least 0"), ("batch_size", 1, "at least 2"), ("sw_directions", 0, "at least 1"),
    ("max_image_pixels", 0, "at least 1")])
def test_an_unusable_number_is_refused_by_name_before_any_image_is_read(name, value, rule) -> None:
    estimator = ColorTransfer(solver="adam", **{name: value})
    with pytest.raises(ConfigError) as caught:
        estimator.fit(Path("no-such-source.png"), Path("no-such-target.png"))
    assert str(caught.value) == f"{name} (--{name.replace('_', '-')}) must be {rule}, got {value}"


def test_the_sliced_solver_needs_an_iteration() -> None:
    with pytest.raises(ConfigError) as caught:
        ColorTransfer(solver="sliced", steps=0).fit(Path("no-such-source.png"), Path("no-such-target.png"))
    assert str(caught.value) == "steps (--steps) must be at least 1 for the sliced solver (its iterations), got 0"


def test_controls_of_another_type_are_refused_by_name(fitted, source) -> None:
    """A dict or the class itself reached Controls.bind ("'dict' object has no attribute 'bind'")."""
    for controls, what in (({"saturation": 0.5}, "a dict"), (Controls, "the class Controls")):
        with pytest.raises(ConfigError, match=f"controls must be a colorot.controls.Controls.*, not {what}$"):
            fitted.transform(source[:4], controls=controls)


def test_numpy_integers_are_integers(source, target_pixels) -> None:
    fitted = ColorTransfer(n_components=np.int64(2), random_state=np.int32(1), steps=np.int64(2)).fit(
        source, target_pixels)
    assert fitted.target_dist_.n_components == 2


def test_a_one_dimensional_mask_selects_pixels_of_an_n_by_3_array(source, target_pixels) -> None:
    keep = np.zeros(len(source), bool)
    keep[: len(source) // 2] = True
    fitted = ColorTransfer(model="affine", target="gaussian").fit(source, target_pixels, source_mask=keep)
    expected = ColorTransfer(model="affine", target="gaussian").fit(source[keep], target_pixels)
    np.testing.assert_allclose(fitted.transform(source), expected.transform(source), atol=1e-6)


def test_a_mask_at_exactly_half_selects_its_pixel() -> None:
    """A mask selects where it is at least half the maximum (docs/cli.md, ``≥ half``): a float mask's 0.5
    selects, as a 1-D one's does, in an (H, W) array and a PIL mode F image alike."""
    from colorot.transfer import pooled_pixels

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    mask = np.array([[0.5, 0.4999, 1.0], [0.0, 0.5, 0.75]], np.float32)
    expected = image[mask >= 0.5] / 255
    assert PILImage.fromarray(mask).mode == "F"
    for given in (mask, PILImage.fromarray(mask)):
        np.testing.assert_allclose(pooled_pixels(image, given, "source", None), expected, atol=1e-6)
    np.testing.assert_allclose(pooled_pixels(image.reshape(-1, 3), mask.ravel(), "source", None), expected, atol=1e-6)


@pytest.mark.parametrize("solver", ["sliced", "kl"])
def test_a_failed_fit_leaves_the_estimator_as_it_was(source, target_pixels, solver) -> None:
    """The sliced and Adam solvers set target_dist_ before solving: a failed refit saved a mix."""
    ct = ColorTransfer(solver=solver, target="gaussian", steps=3).fit(source, target_pixels)
    before = {key: value for key, value in ct.__dict__.items()}

    def stop(step: int, loss: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ct.fit(1 - source, 1 - target_pixels, callback=stop)
    assert ct.__dict__.keys() == before.keys() and all(ct.__dict__[key] is before[key] for key in before)


def test_a_ridge_map_transforms_in_numpy_as_colorot_apply_does(source, target_pixels) -> None:
    """transform of the default map went through the torch module, ~5× slower than apply's profiles;
    now through the profiles on the cube (within 10⁻⁷ of the map) and the map in numpy outside it."""
    from colorot.controls import Controls
    from colorot.transforms import prepare_map

    fitted = ColorTransfer(steps=3, max_pixels=800).fit(source, target_pixels)
    x = np.random.default_rng(5).uniform(-0.3, 1.3, (2000, 3)).astype(np.float32)  # in and out of the cube
    controls = Controls(saturation=0.7, neutral=0.5)
    for strength, given in ((1.0, None), (0.4, None), (0.7, controls)):
        module = prepare_map(fitted.map_, strength=strength)
        expected = map_pixels(module if given is None else given.bind(module, torch_map=True), x)
        np.testing.assert_allclose(fitted.transform(x, strength=strength, controls=given), expected, atol=2e-6)
    assert fitted.transform(x).dtype == np.float32


def test_transforming_with_a_ridge_map_does_not_import_torch() -> None:
    """Nor for colours a little outside the cube (a processed image's overshoot), evaluated by the
    module until they were evaluated by the ridge map's numpy form."""
    code = ("import sys, numpy as np\n"
            "from colorot import ColorTransfer\n"
            "rng = np.random.default_rng(0)\n"
            "ct = ColorTransfer(steps=2, n_components=2).fit(rng.random((500, 3)), rng.random((500, 3)) ** 2)\n"
            "ct.transform(rng.random((40, 30, 3)), strength=0.5)\n"
            "ct.transform(rng.random((40, 30, 3)) * 1.4 - 0.2)\n"
            "import io, colorot\n"
            "saved = io.BytesIO()\n"
            "ct.save(saved)\n"
            "colorot.load(saved.getvalue()).transform(rng.random((40, 30, 3)))  # loaded as colorot apply reads it\n"
            "print('torch' in sys.modules)\n")
    assert last_line_of(code) == "False"


def test_a_ridge_map_loaded_without_torch_is_the_one_torch_loads(source, target_pixels) -> None:
    """load() reads a ridge map's checkpoint without torch; nothing differs from the torch-read one."""
    from colorot import checkpoint

    saved = io.BytesIO()
    ColorTransfer(steps=2, n_components=2).fit(source, target_pixels).save(saved)
    loaded = colorot.load(saved.getvalue())
    assert "_module" not in loaded.__dict__  # built when first used
    by_torch = ColorTransfer.from_checkpoint(checkpoint.from_bytes(saved.getvalue()))
    assert loaded.get_params() == by_torch.get_params() and loaded.train_info_ == by_torch.train_info_
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded.target_dist_, name), getattr(by_torch.target_dist_, name))
    np.testing.assert_array_equal(loaded.transform(source), by_torch.transform(source))
    modules = loaded.map_, by_torch.map_
    assert [m.training for m in modules] == [False, False] and modules[0].eps == modules[1].eps
    for key, value in modules[1].state_dict().items():
        assert torch.equal(modules[0].state_dict()[key], value), key
