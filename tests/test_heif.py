"""HEIC/HEIF in and out where pillow-heif is installed (colorot's ``heif`` extra; the ``test`` extra
installs it): metadata, alpha, orientation, CICP colours; and clear messages without it."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms
from typer.testing import CliRunner

import colorot.apply
from _icc import rgb_profile
from colorot import ColorTransfer, imageio
from colorot.cli import app
from colorot.errors import ImageMetadataWarning, ImageReadError, ImageWriteError
from colorot.imageio import decode_image, encode_image, has_heif, list_images, read_image
from conftest import smooth_rgb

needs_heif = pytest.mark.skipif(not has_heif(), reason="pillow-heif is not installed")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ADOBE = rgb_profile("Adobe RGB (1998)")
ORIENTATION = 0x0112


def _heic(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="HEIF", quality=95, **options)
    return buffer.getvalue()


def _fit(tmp_path: Path, image: Path) -> Path:
    model = tmp_path / "m.pt"
    assert CliRunner().invoke(app, ["fit", str(image), str(image), "-o", str(model), "--steps", "2"]).exit_code == 0
    return model


@needs_heif
def test_a_heic_is_read_and_written_back_as_heic_with_its_metadata_and_alpha(tmp_path: Path) -> None:
    pixels = np.dstack((smooth_rgb(24, 32, 1), np.full((24, 32), 120, np.uint8)))
    exif = PILImage.Exif()
    exif[0x010F] = "Maker"  # Make
    src = tmp_path / "in" / "IMG_0001.HEIC"
    src.parent.mkdir()
    src.write_bytes(_heic(pixels, icc_profile=SRGB, exif=exif.tobytes(), xmp=b"<x:xmpmeta>kept</x:xmpmeta>"))
    assert list(list_images(src.parent, recursive=False)) == [src]  # a folder's HEICs are taken
    model = _fit(tmp_path, src)
    result = CliRunner().invoke(app, ["apply", str(model), str(src.parent), str(tmp_path / "out"), "--strength", "0"])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    out = tmp_path / "out" / "IMG_0001.HEIC"
    with PILImage.open(out) as written:
        assert written.format == "HEIF" and written.mode == "RGBA"
        assert written.info["icc_profile"] == SRGB and b"kept" in written.info["xmp"]
        assert written.getexif()[0x010F] == "Maker"
    image, again = read_image(src), read_image(out)
    assert image.codes.shape == (24, 32, 3) and image.bit_depth == 8
    assert np.abs(again.codes.astype(int) - image.codes).mean() < 2  # lossy at quality 95, twice
    assert np.abs(again.alpha.astype(int) - image.alpha).max() <= 2


@needs_heif
def test_a_heic_is_turned_upright_once() -> None:
    """pillow-heif stores an EXIF orientation as the HEIF's own rotation and reports EXIF orientation 1;
    the pixels come upright, as a JPEG with the same orientation does, and are not turned again."""
    pixels = smooth_rgb(12, 20, 3)
    exif = PILImage.Exif()
    exif[ORIENTATION] = 6  # turn 90° clockwise to view
    image = decode_image(_heic(pixels, exif=exif.tobytes(), chroma=444))
    assert image.codes.shape == (20, 12, 3)
    assert np.abs(image.codes.astype(int) - np.rot90(pixels, -1)).mean() < 2
    kept = PILImage.Exif()
    kept.load(image.exif or b"")
    assert kept.get(ORIENTATION, 1) == 1


@needs_heif
def test_a_png_is_written_as_heic_by_suffix_and_to_stdout_by_format(tmp_path: Path) -> None:
    pixels = smooth_rgb(16, 20, 2)
    src = tmp_path / "in.png"
    PILImage.fromarray(pixels).save(src)
    model = _fit(tmp_path, src)
    result = CliRunner().invoke(app, ["apply", str(model), str(src), str(tmp_path / "out"), "--suffix", ".heif",
                                      "--strength", "0"])
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "out" / "in.heif")
    error = np.abs(written.codes.astype(int) - pixels).mean()  # written with 4:2:0 chroma: 3–4 code values
    assert written.format == "HEIF" and error < 6 < 30 < np.abs(written.codes.astype(int) - pixels[::-1]).mean()
    result = CliRunner().invoke(app, ["apply", str(model), str(src), "-", "--format", "heic", "--strength", "0"])
    assert result.exit_code == 0 and result.stdout_bytes[4:12] == b"ftypheic"


@needs_heif
def test_a_heic_s_colour_space_is_known_before_it_is_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit reads its images' ICC profiles from their headers before decoding them; in a process
    that had not met a HEIC yet, Pillow could not open one there, so a HEIC in Adobe RGB was taken
    as untagged sRGB and the target's colours were not taken into its space."""
    source, target = tmp_path / "adobe.heic", tmp_path / "plain.png"
    source.write_bytes(_heic(smooth_rgb(24, 32, 1), icc_profile=ADOBE))
    PILImage.fromarray(smooth_rgb(24, 32, 2)).save(target)
    PILImage.init()  # every plugin registered first: one registered during the test would be lost after it
    monkeypatch.setattr(PILImage, "ID", [plugin for plugin in PILImage.ID if plugin != "HEIF"])  # a fresh process
    imageio.has_heif.cache_clear()
    try:
        fitted = ColorTransfer(random_state=0, steps=2, max_pixels=500).fit(source, target)
    finally:
        imageio.has_heif.cache_clear()
    assert fitted.train_info_["target_converted"] == "sRGB (untagged) → Adobe RGB (1998)"


@needs_heif
def test_a_heic_with_colours_by_cicp_other_than_srgb_is_warned_about() -> None:
    plain = _heic(smooth_rgb(16, 16, 3))  # pillow-heif writes nclx 1/13: sRGB's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(plain)
    with pytest.warns(ImageMetadataWarning, match=r"p3\.heic: a HEIC/HEIF whose colours are given by CICP codes "
                                                   r"\(primaries 12, transfer 13\), not an ICC profile"):
        decode_image(_with_primaries(plain, 12), name="p3.heic")


@needs_heif
def test_a_truncated_heic_is_an_error_naming_it() -> None:
    data = _heic(smooth_rgb(16, 16, 3))
    for cut in (len(data) // 2, 40):
        with pytest.raises(ImageReadError, match=r"^c\.heic: "):
            decode_image(data[:cut], name="c.heic")


def test_a_heic_without_pillow_heif_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    PILImage.init()  # every plugin registered first: one registered during the test would be lost after it
    monkeypatch.setattr(PILImage, "ID", [plugin for plugin in PILImage.ID if plugin != "HEIF"])  # as without it
    monkeypatch.setattr(imageio, "has_heif", lambda: False)
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(40)
    with pytest.raises(ImageReadError, match=r"^a\.heic: a HEIC/HEIF image, which needs pillow-heif to be read: "
                                             r"pip install pillow-heif, or convert it"):
        decode_image(heic, name="a.heic")
    image = decode_image(_png(smooth_rgb(4, 4, 4)))
    with pytest.raises(ImageWriteError, match=r"cannot write HEIC: it needs pillow-heif \(pip install pillow-heif\)"):
        encode_image(image, image.rgb, "HEIF")


def test_a_heic_suffix_is_refused_before_any_work_without_pillow_heif(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(_png(smooth_rgb(8, 8, 5)))
    model = _fit(tmp_path, src)
    monkeypatch.setattr(colorot.apply, "has_heif", lambda: False)
    result = CliRunner().invoke(app, ["apply", str(model), str(src), str(tmp_path / "out"), "--suffix", "HEIC"])
    assert result.exit_code == 1
    assert "cannot write '.HEIC' images: they need pillow-heif (pip install pillow-heif)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_has_heif_is_false_where_pillow_heif_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import raises ImportError
    imageio.has_heif.cache_clear()
    try:
        assert imageio.has_heif() is False
    finally:
        imageio.has_heif.cache_clear()


def _with_primaries(data: bytes, primaries: int) -> bytes:
    """``data`` with its nclx box's colour primaries set to ``primaries`` (12: Display P3)."""
    at = data.index(b"colrnclx")
    return data[:at + 8] + primaries.to_bytes(2, "big") + data[at + 10:]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
