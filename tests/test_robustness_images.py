"""Issue item 2: bad and unusual images, end to end through ``colorot apply`` (and ``fit``).

Each kind is either handled (its output is checked against the known map
x ↦ 0.5·x + 0.25) or refused with a one-line message naming the file; in a
folder run the rest of the batch completes and exit code 3 lists the failures.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from _robust_helpers import (
    assert_one_line_error,
    cli,
    half_map_checkpoint,
    half_map_codes,
    temp_files,
)
from PIL import Image as PILImage
from PIL import ImageOps

from colorot.imageio import Image, read_image, write_image

RNG = np.random.default_rng(7)


def _codes(height: int = 5, width: int = 7, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return half_map_checkpoint(tmp_path_factory.mktemp("ckpt") / "half.pt")


def _apply_one(half: Path, src: Path, dst: Path, *extra: str) -> np.ndarray:
    """Apply the half map to one file; the output's codes (H, W, 3 or 4) at its bit depth."""
    outcome = cli("apply", half, src, dst, *extra)
    assert outcome.crash is None and outcome.code == 0, (outcome.stdout, outcome.stderr)
    out = read_image(dst, max_pixels=10**6)
    codes = np.rint(out.rgb.astype(np.float64) * (65535 if out.bit_depth == 16 else 255))
    return codes if out.alpha is None else np.dstack((codes, out.alpha))


# --- refused: each a clear message, exit 1 for a single file -------------------------


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(_codes(32, 32)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(_codes(32, 32)).save(buffer, "PNG")
    return buffer.getvalue()


def _float_tiff() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(RNG.random((4, 4)).astype(np.float32)).save(buffer, "TIFF")
    return buffer.getvalue()


def _int32_tiff() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(RNG.integers(0, 2**31, (4, 4), dtype=np.int32)).save(buffer, "TIFF")
    return buffer.getvalue()


REFUSED: dict[str, tuple[str, bytes, str]] = {
    # name: (file name, content, what the message says)
    "zero-byte": ("zero.png", b"", "empty file"),
    "truncated-jpeg": ("trunc.jpg", _jpeg_bytes()[:300], "cannot decode image"),
    "truncated-jpeg-tail": ("tail.jpg", _jpeg_bytes()[:-40], "cannot decode image"),
    "truncated-png": ("trunc.png", _png_bytes()[:200], "cannot decode image"),
    "text-named-jpg": ("notes.jpg", b"shopping list: eggs, milk\n", "not an image"),
    "html-named-png": ("page.png", b"<!doctype html><html></html>", "not an image"),
    "heic-named-jpg": ("phone.jpg", b"\x00\x00\x00\x18ftypheic" + bytes(64), "phone.jpg: a HEIC/HEIF "),
    "float32-tiff": ("float.tif", _float_tiff(), "unsupported pixel format"),
    "int32-tiff": ("int.tif", _int32_tiff(), "unsupported pixel format"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_bad_single_image_is_refused_with_one_line(tmp_path: Path, half: Path, name: str) -> None:
    filename, content, message = REFUSED[name]
    src = tmp_path / filename
    src.write_bytes(content)
    outcome = cli("apply", half, src, tmp_path / "out/")
    # a single file that fails is a batch of one with a failure: exit 3, the file named
    assert outcome.crash is None and outcome.code == 3, (outcome.stdout, outcome.stderr)
    failures = [line for line in outcome.stdout.splitlines() if line.startswith("failed:")]
    assert failures == [failures[0]] and str(src) in failures[0] and message in failures[0]
    assert not (tmp_path / "out" / filename).exists() and temp_files(tmp_path) == []


@pytest.mark.parametrize("name", ["zero-byte", "truncated-png", "text-named-jpg", "float32-tiff"])
def test_a_bad_image_given_to_fit_is_one_line_exit_1(tmp_path: Path, name: str) -> None:
    filename, content, message = REFUSED[name]
    bad = tmp_path / filename
    bad.write_bytes(content)
    good = tmp_path / "good.png"
    PILImage.fromarray(_codes()).save(good)
    for source, target in ((bad, good), (good, bad)):
        outcome = cli("fit", source, target, "-o", tmp_path / "m.pt", "--model", "affine")
        assert_one_line_error(outcome, str(bad), message)
        assert not (tmp_path / "m.pt").exists()


def test_an_unwritable_format_is_refused_before_any_write(tmp_path: Path, half: Path) -> None:
    gif = tmp_path / "in" / "anim.gif"
    gif.parent.mkdir()
    PILImage.fromarray(_codes()).save(gif)
    outcome = cli("apply", half, gif, tmp_path / "out/")
    assert_one_line_error(outcome, "anim.gif", "--suffix")
    assert not (tmp_path / "out").exists()
    assert_one_line_error(cli("apply", half, gif, tmp_path / "out/", "--suffix", ".gif"), "'.gif'")


# --- decompression bombs ----------------------------------------------------------------


@pytest.fixture
def small_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pillow's decompression-bomb limit lowered to 100 pixels for this test."""
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)
    return 100


@pytest.mark.parametrize("side", [11, 20])  # 121 px: over the limit, under Pillow's 2x hard stop
def test_an_image_over_the_bomb_limit_is_refused_until_the_limit_is_raised(
    tmp_path: Path, half: Path, small_pillow_limit: int, side: int
) -> None:
    src = tmp_path / "big.png"
    PILImage.fromarray(_codes(side, side)).save(src)
    outcome = cli("apply", half, src, tmp_path / "out/")
    assert outcome.code == 3 and "decompression" in outcome.stdout
    assert "--max-image-pixels" in outcome.stdout and not (tmp_path / "out" / "big.png").exists()
    out = _apply_one(half, src, tmp_path / "out" / "big.png", "--max-image-pixels", "1000")
    assert out.shape == (side, side, 3)
    assert_one_line_error(
        cli("fit", src, src, "-o", tmp_path / "m.pt", "--model", "affine"), "--max-image-pixels"
    )
    outcome = cli("fit", src, src, "-o", tmp_path / "m.pt", "--model", "affine", "--max-image-pixels", "1000")
    assert outcome.code == 0, outcome.stderr


# --- handled: the output is checked -------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "CMYK", "1", "I;16"])
def test_unusual_modes_are_mapped_as_their_rgb_reading(tmp_path: Path, half: Path, mode: str) -> None:
    suffix = ".tif" if mode == "CMYK" else ".png"
    rgba = _codes(6, 9, 4)
    pil = PILImage.fromarray(rgba, "RGBA")
    if mode == "I;16":
        grey16 = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)
        pil = PILImage.fromarray(grey16)
    elif mode != "RGBA":
        pil = pil.convert(mode)
    src = tmp_path / f"in{suffix}"
    pil.save(src)
    with PILImage.open(src) as reread:
        if mode == "I;16":
            expected_rgb = np.repeat(half_map_codes(grey16, 65535)[..., None], 3, axis=2)
        else:
            expected_rgb = half_map_codes(np.asarray(reread.convert("RGB")))
        alpha = np.asarray(reread.getchannel("A")) if mode in ("LA", "RGBA") else None
    out = _apply_one(half, src, tmp_path / f"out{suffix}")
    assert out.shape[:2] == (6, 9)
    assert np.abs(out[..., :3] - expected_rgb).max() <= 1
    if alpha is not None:
        assert out.shape[2] == 4 and np.array_equal(out[..., 3], alpha)


def test_16_bit_rgb_png_stays_16_bit(tmp_path: Path, half: Path) -> None:
    codes = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    src = tmp_path / "deep.png"
    write_image(src, Image(codes / np.float32(65535), None, 16, "RGB", "PNG"), codes / 65535.0)
    dst = tmp_path / "out" / "deep.png"
    outcome = cli("apply", half, src, dst)
    assert outcome.code == 0, outcome.stderr
    out = read_image(dst)
    assert out.bit_depth == 16
    got = np.rint(out.rgb.astype(np.float64) * 65535)
    assert np.abs(got - half_map_codes(codes, 65535)).max() <= 1


def test_a_tiff_whose_page_chain_is_damaged_is_read_as_its_first_page(tmp_path: Path, half: Path) -> None:
    """Counting the pages fails past the first (Pillow raises): the first page is read, as before,
    and the output is said to be that page alone (a later page may be lost)."""
    import struct

    buffer, codes = io.BytesIO(), _codes(6, 8)
    PILImage.fromarray(codes).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    first_ifd = struct.unpack("<I", data[4:8])[0]
    next_pointer = first_ifd + 2 + 12 * struct.unpack("<H", data[first_ifd:first_ifd + 2])[0]
    data[next_pointer:next_pointer + 4] = struct.pack("<I", len(data) + 1000)  # a second page past the end
    src = tmp_path / "damaged.tif"
    src.write_bytes(bytes(data))
    with PILImage.open(src) as check, pytest.raises(Exception), pytest.warns(UserWarning, match="Corrupt EXIF"):
        check.n_frames  # noqa: B018 (the property is what raises)
    outcome = cli("apply", half, src, tmp_path / "out.tif")
    assert outcome.code == 0 and "frames cannot be counted past the first" in outcome.stderr, outcome.stderr
    assert np.abs(read_image(tmp_path / "out.tif").codes - half_map_codes(codes)).max() <= 1


def test_a_phones_multi_picture_jpeg_is_a_jpeg_without_a_frames_warning(tmp_path: Path, half: Path) -> None:
    """An MPO's second picture is a preview or a depth map, not a frame: no warning."""
    pictures = [PILImage.fromarray(np.full((6, 8, 3), value, np.uint8)) for value in (90, 160)]
    src = tmp_path / "phone.jpg"
    pictures[0].save(src, format="MPO", save_all=True, append_images=pictures[1:])
    with PILImage.open(src) as check:
        assert check.format == "MPO" and check.n_frames == 2
    outcome = cli("apply", half, src, tmp_path / "out.jpg")
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photos_come_out_upright(tmp_path: Path, half: Path, orientation: int) -> None:
    codes = _codes(4, 7)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "rotated.png"
    PILImage.fromarray(codes).save(src, exif=exif)
    with PILImage.open(src) as pil:
        upright = np.asarray(ImageOps.exif_transpose(pil))
    dst = tmp_path / "out.png"
    out = _apply_one(half, src, dst)
    assert out.shape == upright.shape
    assert np.abs(out - half_map_codes(upright)).max() <= 1
    with PILImage.open(dst) as written:
        assert written.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_a_1x1_image_is_mapped(tmp_path: Path, half: Path, suffix: str) -> None:
    src = tmp_path / f"dot{suffix}"
    PILImage.new("RGB", (1, 1), (10, 128, 250)).save(src)
    with PILImage.open(src) as pil:
        value = np.asarray(pil.convert("RGB"))
    out = _apply_one(half, src, tmp_path / f"out{suffix}")
    assert out.shape[:2] == (1, 1)
    tolerance = 3 if suffix in (".jpg", ".webp") else 0  # lossy re-encoding of one pixel
    assert np.abs(out[..., :3] - half_map_codes(value)).max() <= tolerance


def test_a_1x1_image_cannot_be_fitted_and_says_which(tmp_path: Path) -> None:
    dot, good = tmp_path / "dot.png", tmp_path / "good.png"
    PILImage.new("RGB", (1, 1), (1, 2, 3)).save(dot)
    PILImage.fromarray(_codes()).save(good)
    assert_one_line_error(cli("fit", dot, good, "-o", tmp_path / "m.pt"), "source image", "dot.png")
    assert_one_line_error(cli("fit", good, dot, "-o", tmp_path / "m.pt"), "target image", "dot.png")
    assert not (tmp_path / "m.pt").exists()


# --- a folder of everything: the batch completes, exit 3 lists exactly the failures ----------


def test_a_folder_of_bad_and_good_images_completes_with_exit_3(tmp_path: Path, half: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for filename, content, _ in REFUSED.values():
        (folder / filename).write_bytes(content)
    good = {
        "ok.png": PILImage.fromarray(_codes()),
        "sub/palette.png": PILImage.fromarray(_codes()).convert("P"),
        "grey.jpg": PILImage.fromarray(_codes()).convert("L"),
        "sub/cmyk.jpg": PILImage.fromarray(_codes()).convert("CMYK"),
        "dot.bmp": PILImage.new("RGB", (1, 1), (9, 9, 9)),
    }
    for name, pil in good.items():
        pil.save(folder / name)
    (folder / "readme.txt").write_text("not an image suffix: ignored")
    outcome = cli("apply", half, folder, tmp_path / "out", "--json")
    assert outcome.crash is None and outcome.code == 3, outcome.stderr
    report = json.loads(outcome.stdout)
    failed = sorted(Path(item["input"]).name for item in report["failed"])
    assert failed == sorted(filename for filename, _, _ in REFUSED.values())
    assert sorted(report["written"]) == sorted(str(tmp_path / "out" / name) for name in good)
    for name in good:
        with PILImage.open(tmp_path / "out" / name) as out:
            out.load()
    assert temp_files(tmp_path) == []
    # each failure is reported once on stderr too, naming its file
    for filename, _, _ in REFUSED.values():
        assert outcome.stderr.count(f"/{filename}:") == 1
