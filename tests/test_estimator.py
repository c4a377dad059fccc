"""ColorTransfer in the scikit-learn style: parameters, lists of images, strength, inverse, module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot import ColorTransfer, load
from colorot.errors import ConfigError
from colorot.metrics import min_jacobian_eigenvalue
from colorot.transforms import ColorAugment


def test_params_and_repr():
    ct = ColorTransfer(model="cmgn", steps=7)
    params = ct.get_params()
    assert params["model"] == "cmgn" and params["steps"] == 7 and params["random_state"] == 0
    assert ct.set_params(steps=3) is ct and ct.steps == 3
    assert "steps=3" in repr(ct)
    with pytest.raises(ConfigError):
        ct.set_params(nope=1)


def test_fit_lists_transform_inverse_save_load(tiny_fit, tmp_path):
    folder = tiny_fit["folder"]
    ct = ColorTransfer(steps=5, max_pixels=500, n_components=2)
    assert ct.fit([folder / "a.png", folder / "b.png"], [tiny_fit["target"], folder / "e.png"]) is ct
    assert ct.train_info_["training_pixels"] == 2 * 12 * 16
    pixels = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32) * 0.6 + 0.2
    full = ct.transform(pixels)
    np.testing.assert_allclose(ct.transform(pixels, strength=0.0), pixels, atol=1e-6)
    np.testing.assert_allclose(ct.transform(pixels, strength=0.5), (pixels + full) / 2, atol=1e-5)
    back = ct.inverse_transform(full)
    np.testing.assert_allclose(ct.transform(back), full, atol=2e-6)  # it solves T(x) = y
    # x itself as far as the float32 outputs pin it: an error e in y moves x by up to e / λ_min(J_T)
    floor = min_jacobian_eigenvalue(ct.map_, pixels.reshape(-1, 3))
    np.testing.assert_allclose(back, pixels, atol=4e-7 / floor)
    ct.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(load(tmp_path / "m.pt").transform(pixels), full)
    module = ct.as_module(strength=(0.0, 1.0))
    assert isinstance(module, ColorAugment)
    assert module(torch.rand(2, 3, 4, 4)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("params", [{"model": "affine"}, {"model": "cmgn", "steps": 2}, {"model": "mmgn", "steps": 2},
                                    {"solver": "adam", "steps": 5}])
def test_a_fit_neither_moves_nor_follows_torch_s_random_stream(params):
    """Fits seeded torch's global generator (torch.manual_seed), resetting the caller's stream,
    ColorAugment's draws included; the map still comes out the same whatever that stream was."""
    rng = np.random.default_rng(0)
    source, target = rng.random((300, 3)).astype(np.float32), (rng.random((300, 3)) ** 2).astype(np.float32)
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    torch.rand(2)
    first = ColorTransfer(**params, max_pixels=300).fit(source, target).transform(source)
    assert torch.equal(torch.rand(2), expected[2:])
    torch.manual_seed(99)
    np.testing.assert_array_equal(ColorTransfer(**params, max_pixels=300).fit(source, target).transform(source), first)


def test_loading_a_map_and_building_its_module_leave_torch_s_random_stream(tmp_path):
    """A transform of a loaded ridge map's colours outside the cube built its module lazily, drawing
    initial weights from the caller's stream: its next draws depended on the image's content."""
    rng = np.random.default_rng(0)
    source, target = rng.random((300, 3)).astype(np.float32), (rng.random((300, 3)) ** 2).astype(np.float32)
    ColorTransfer(max_pixels=300).fit(source, target).save(tmp_path / "ridge.pt")
    ColorTransfer(model="cmgn", steps=2, max_pixels=300).fit(source, target).save(tmp_path / "cmgn.pt")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load(tmp_path / "ridge.pt").transform(np.full((4, 3), 1.2, np.float32))  # outside the cube: the module
    assert torch.equal(torch.rand(1), expected[:1])
    load(tmp_path / "cmgn.pt")
    assert torch.equal(torch.rand(2), expected[1:])


def test_an_unfitted_estimator_has_no_fitted_attributes():
    """ridge_parameters_ raised a ConfigError, which hasattr and getattr(..., default) let through."""
    from colorot.errors import NotFittedError

    estimator = ColorTransfer()
    assert not hasattr(estimator, "ridge_parameters_") and not hasattr(estimator, "map_")
    with pytest.raises(NotFittedError):
        estimator.map_
    with pytest.raises(NotFittedError, match="not fitted yet"):
        estimator.transform(np.zeros((2, 3), np.float32))
    assert issubclass(NotFittedError, ConfigError)  # what it was: callers catching that still do


def test_an_open_file_is_refused_as_an_image_and_left_as_it_was(tmp_path, make_png):
    """Taken for a tensor (it has .detach), its raw stream was detached: the caller's file broken."""
    path = make_png(tmp_path / "a.png")
    with open(path, "rb") as file:
        with pytest.raises(ConfigError, match="not BufferedReader: for an open file or bytes, give PIL.Image.open"):
            ColorTransfer(solver="sliced", steps=2).fit(file, path)
        assert file.read(4) == b"\x89PNG"
    with pytest.raises(ConfigError, match="not bytes"):
        ColorTransfer(solver="sliced", steps=2).fit(path.read_bytes(), path)


def test_none_in_a_list_of_masks_leaves_its_image_unmasked(tmp_path, make_png):
    first, second = make_png(tmp_path / "a.png", seed=1), make_png(tmp_path / "b.png", seed=2)
    target = make_png(tmp_path / "t.png", seed=3)
    fitted = ColorTransfer(solver="sliced", steps=2).fit([first, second], target, source_mask=[None, None])
    plain = ColorTransfer(solver="sliced", steps=2).fit([first, second], target)
    assert fitted.train_info_["training_pixels"] == plain.train_info_["training_pixels"] == 2 * 24 * 32


def test_a_pil_image_or_mask_is_read_as_its_file(tmp_path, make_png):
    """A 16-bit grey PIL mask was converted to 8 bits, clipping every code over 255 to white; an RGB
    one was taken by its luma (pure green counted as white); a float (mode F) mask selected nothing;
    a 16-bit grey PIL image's transparent grey level was fitted."""
    from PIL import Image

    from colorot.transfer import pooled_pixels

    source = make_png(tmp_path / "s.png", seed=1)  # 32 × 24
    grey = np.zeros((24, 32), np.uint16)
    grey[:, :12], grey[:, 12:] = 1000, 40000  # 1000 is black in 16 bits, white once clipped to 8
    Image.fromarray(grey).save(tmp_path / "mask16.png")
    as_file = pooled_pixels(source, tmp_path / "mask16.png")
    with Image.open(tmp_path / "mask16.png") as mask:
        assert mask.mode.startswith("I;16")
        np.testing.assert_array_equal(pooled_pixels(source, mask), as_file)
    assert len(as_file) == 24 * 20
    green = np.zeros((24, 32, 3), np.uint8)
    green[:, :10] = (0, 255, 0)  # mean code 85: not selected
    green[:, 10:16] = 255
    Image.fromarray(green).save(tmp_path / "green.png")
    with Image.open(tmp_path / "green.png") as mask:
        assert len(pooled_pixels(source, mask)) == len(pooled_pixels(source, tmp_path / "green.png")) == 24 * 6
    floats = np.zeros((24, 32), np.float32)
    floats[:, :5] = 1.0
    assert len(pooled_pixels(source, Image.fromarray(floats, "F"))) == len(pooled_pixels(source, floats)) == 24 * 5
    with pytest.raises(ConfigError, match="mode I, 32-bit"):
        pooled_pixels(source, Image.fromarray(grey.astype(np.int32)))
    Image.fromarray(grey).save(tmp_path / "keyed16.png", transparency=1000)  # a grey level named transparent
    with Image.open(tmp_path / "keyed16.png") as keyed:
        assert len(pooled_pixels(keyed)) == len(pooled_pixels(tmp_path / "keyed16.png")) == 24 * 20
        assert len(pooled_pixels(source, keyed)) == 24 * 20  # a keyed mask reads too


def test_a_mask_of_mode_la_reads_and_a_float_mask_must_lie_in_the_unit_range(tmp_path, make_png) -> None:
    """A PIL mask of mode La raised Pillow's ValueError; a float mask of 0–255 values selected nearly
    every pixel (60 ≥ 0.5) without a word."""
    from PIL import Image

    from colorot.transfer import pooled_pixels

    source = make_png(tmp_path / "s.png", seed=1)  # 32 × 24
    grey = np.zeros((24, 32, 2), np.uint8)
    grey[:, :8] = 255
    la = Image.fromarray(grey, "LA").convert("La")
    assert len(pooled_pixels(source, la)) == 24 * 8
    scaled = np.zeros((24, 32), np.float32)
    scaled[:, :8] = 255
    scaled[:, 8:12] = 60
    for mask in (scaled, Image.fromarray(scaled, "F")):
        with pytest.raises(ConfigError, match=r"a mask of floats must lie in \[0, 1\], and this one runs from 0 to 255"):
            pooled_pixels(source, mask)
    assert len(pooled_pixels(source, scaled / 255)) == 24 * 8


def test_a_tensor_that_requires_grad_fits_with_a_mask() -> None:
    """Without a mask it was detached and fitted; with one, numpy was asked for it whole: a RuntimeError."""
    source = torch.rand(20, 30, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = np.random.default_rng(0).random((20, 30, 3))
    keep = np.zeros((20, 30), bool)
    keep[:, :12] = True
    for mask in (keep, torch.as_tensor(keep, dtype=torch.float32).requires_grad_()):
        fitted = ColorTransfer(solver="sliced", steps=2).fit(source, target, source_mask=mask)
        assert fitted.train_info_["training_pixels"] == 20 * 12


@pytest.mark.parametrize("name", ["", ".", "/", "sub/.."])
def test_save_and_export_lut_to_a_folder_s_name_are_clear_errors(tmp_path, make_png, name) -> None:
    """They ended in pathlib's ValueError ("PosixPath('.') has an empty name")."""
    from colorot.errors import CheckpointError, ImageWriteError

    fitted = ColorTransfer(solver="sliced", steps=2).fit(make_png(tmp_path / "s.png", seed=1),
                                                          make_png(tmp_path / "t.png", seed=2))
    with pytest.raises(CheckpointError, match="give a file name, not a folder"):
        fitted.save(name)
    with pytest.raises(ImageWriteError, match="give a file name, not a folder"):
        fitted.export_lut(name)


def test_transform_checks_the_pixel_limit_and_controls_take_any_real_number(tmp_path, make_png) -> None:
    """A limit set after the fit ("100", -5) ended in a comparison TypeError or was quoted back as a
    limit of -5; a Fraction saturation raised a TypeError on a torch map."""
    from fractions import Fraction

    from colorot.controls import Controls

    source, target = make_png(tmp_path / "s.png", seed=1), make_png(tmp_path / "t.png", seed=2)
    fitted = ColorTransfer(model="affine").fit(source, target)
    for limit in ("100", -5, 2.5):
        fitted.max_image_pixels = limit
        with pytest.raises(ConfigError, match=r"max_image_pixels \(--max-image-pixels\) must be an integer"):
            fitted.transform(source)
    fitted.max_image_pixels = None
    with pytest.raises(ConfigError, match="saturation"):  # an int beyond float's range: no OverflowError
        Controls(saturation=10**400)
    np.testing.assert_array_equal(fitted.transform(source, controls=Controls(saturation=Fraction(1, 2))),
                                  fitted.transform(source, controls=Controls(saturation=0.5)))


def test_every_read_of_a_file_takes_the_estimator_s_pixel_limit(tmp_path, make_png, monkeypatch):
    """Only fit honoured max_image_pixels: transform, inverse_transform, masks and match's blended
    frames refused a file over Pillow's limit that fit had read."""
    from PIL import Image

    from colorot import match

    source, target = make_png(tmp_path / "s.png", seed=1), make_png(tmp_path / "t.png", seed=2)
    mask = tmp_path / "m.png"
    Image.new("L", (32, 24), 255).save(mask)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24 × 32 = 768 pixels: over Pillow's limit (2×)
    estimator = ColorTransfer(solver="sliced", steps=2, max_image_pixels=10_000).fit(source, target, source_mask=mask)
    assert estimator.transform(source).shape == estimator.inverse_transform(source).shape == (768, 3)
    assert len(match(target, [source, source], smooth=1.0, solver="sliced", steps=2, max_image_pixels=10_000)) == 2


@pytest.mark.parametrize("params", [{"model": "cmgn", "steps": 2}, {"solver": "adam", "steps": 3}, {"model": "affine"},
                                    {}])
def test_torch_s_default_dtype_set_to_float64_breaks_nothing(tmp_path, params):
    """With torch.set_default_dtype(torch.float64) in the caller's script, models were built in float64
    and met float32 pixels: "mat1 and mat2 must have the same dtype" from Adam's fit, an affine map,
    a loaded C-MGN, and a ridge map's colours outside the cube, its inverse and its LUT."""
    rng = np.random.default_rng(0)
    source, target = rng.random((300, 3)).astype(np.float32), (rng.random((300, 3)) ** 2).astype(np.float32)
    pixels = rng.random((20, 3)).astype(np.float32) * 1.4 - 0.2
    found = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ColorTransfer(**params, max_pixels=300).fit(source, target).save(tmp_path / "m.pt")
        fitted = load(tmp_path / "m.pt")
        mapped = fitted.transform(pixels)
        assert mapped.dtype == np.float32 and np.isfinite(mapped).all()
        assert np.isfinite(fitted.inverse_transform(np.clip(mapped, 0, 1) * 0.9 + 0.05)).all()
        assert fitted.export_lut(tmp_path / "m.cube", size=3).table.shape == (27, 3)
    finally:
        torch.set_default_dtype(found)
