"""AVIF in and out (where Pillow has AVIF support), its CICP colours, and clear messages for AVIF
without that support (HEIC: tests/test_heif.py)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms
from typer.testing import CliRunner

import colorot.apply
from colorot import imageio
from colorot.cli import app
from colorot.errors import ImageMetadataWarning, ImageReadError, ImageWriteError
from colorot.imageio import decode_image, encode_image, has_avif, list_images, read_image
from conftest import smooth_rgb

needs_avif = pytest.mark.skipif(not has_avif(), reason="this Pillow has no AVIF support")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _avif(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="AVIF", quality=95, **options)
    return buffer.getvalue()


def _with_primaries(data: bytes, primaries: int) -> bytes:
    """``data`` with its nclx box's colour primaries set to ``primaries`` (12: Display P3)."""
    at = data.index(b"colrnclx")
    return data[:at + 8] + primaries.to_bytes(2, "big") + data[at + 10:]


@needs_avif
def test_an_avif_is_read_and_written_back_as_avif_with_its_metadata_and_alpha(tmp_path: Path) -> None:
    pixels = np.dstack((smooth_rgb(24, 32, 1), np.full((24, 32), 120, np.uint8)))
    exif = PILImage.Exif()
    exif[0x010F] = "Maker"  # Make
    src = tmp_path / "in" / "photo.avif"
    src.parent.mkdir()
    src.write_bytes(_avif(pixels, icc_profile=SRGB, exif=exif.tobytes(), xmp=b"<x:xmpmeta>kept</x:xmpmeta>"))
    assert list(list_images(src.parent, recursive=False)) == [src]  # a folder's AVIFs are taken
    model = tmp_path / "m.pt"
    assert CliRunner().invoke(app, ["fit", str(src), str(src), "-o", str(model), "--steps", "2"]).exit_code == 0
    result = CliRunner().invoke(app, ["apply", str(model), str(src.parent), str(tmp_path / "out"), "--strength", "0"])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    out = tmp_path / "out" / "photo.avif"
    with PILImage.open(out) as written:
        assert written.format == "AVIF" and written.mode == "RGBA"
        assert written.info["icc_profile"] == SRGB and b"kept" in written.info["xmp"]
        assert written.getexif()[0x010F] == "Maker"
    image, again = read_image(src), read_image(out)
    assert np.abs(again.codes.astype(int) - image.codes).mean() < 2  # lossy at quality 95, twice
    np.testing.assert_array_equal(again.alpha, image.alpha)


@needs_avif
def test_a_png_is_written_as_avif_by_suffix_keeping_its_transparency(tmp_path: Path) -> None:
    pixels = np.dstack((smooth_rgb(16, 20, 2), np.where(np.arange(20) < 10, 0, 255).astype(np.uint8)[None].repeat(16, 0)))
    src = tmp_path / "in.png"
    PILImage.fromarray(pixels).save(src)
    model = tmp_path / "m.pt"
    assert CliRunner().invoke(app, ["fit", str(src), str(src), "-o", str(model), "--steps", "2"]).exit_code == 0
    result = CliRunner().invoke(app, ["apply", str(model), str(src), str(tmp_path / "out.avif")])
    assert result.exit_code == 0 and "transparency" not in result.stderr, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "out.avif").alpha, pixels[..., 3])


@needs_avif
def test_an_avif_with_colours_by_cicp_other_than_srgb_is_warned_about() -> None:
    plain = _avif(smooth_rgb(16, 16, 3))  # Pillow writes nclx 1/13: sRGB's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(plain)
        decode_image(_with_primaries(_avif(smooth_rgb(16, 16, 3), icc_profile=SRGB), 12))  # its ICC profile rules
    with pytest.warns(ImageMetadataWarning, match=r"p3\.avif: an AVIF whose colours are given by CICP codes "
                                                   r"\(primaries 12, transfer 13\), not an ICC profile"):
        decode_image(_with_primaries(plain, 12), name="p3.avif")


@needs_avif
def test_a_truncated_avif_is_named_as_damaged() -> None:
    data = _avif(smooth_rgb(16, 16, 3))
    with pytest.raises(ImageReadError, match=r"^c\.avif: an AVIF file that cannot be read \(truncated or damaged\)$"):
        decode_image(data[:len(data) // 2], name="c.avif")


def test_an_avif_that_pillow_cannot_read_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    PILImage.init()  # every plugin registered first: one registered during the test would be lost after it
    monkeypatch.setattr(PILImage, "ID", [plugin for plugin in PILImage.ID if plugin != "AVIF"])  # as without it
    monkeypatch.setattr(imageio, "has_avif", lambda: False)
    avif = b"\x00\x00\x00\x1cftypavif" + bytes(40)
    with pytest.raises(ImageReadError, match=r"^b\.avif: an AVIF image, which this Pillow cannot read \(no AVIF "
                                             r"support\); a recent Pillow reads and writes AVIF: pip install -U"):
        decode_image(avif, name="b.avif")


def test_avif_is_refused_by_name_where_pillow_cannot_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "has_avif", lambda: False)
    image = decode_image(_png(smooth_rgb(4, 4, 4)))
    with pytest.raises(ImageWriteError, match="cannot write AVIF: this Pillow has no AVIF support"):
        encode_image(image, image.rgb, "AVIF")


def test_an_avif_suffix_is_refused_before_any_work_where_pillow_cannot_write_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(_png(smooth_rgb(8, 8, 5)))
    model = tmp_path / "m.pt"
    assert CliRunner().invoke(app, ["fit", str(src), str(src), "-o", str(model), "--steps", "2"]).exit_code == 0
    monkeypatch.setattr(colorot.apply, "has_avif", lambda: False)
    result = CliRunner().invoke(app, ["apply", str(model), str(src), str(tmp_path / "out"), "--suffix", ".avif"])
    assert result.exit_code == 1 and "cannot write '.avif' images: this Pillow has no AVIF support" in result.stderr
    assert not (tmp_path / "out").exists()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
