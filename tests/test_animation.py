"""Animations and multi-page images: `colorot apply` and `colorot match` map every frame and write
them back as one animated WebP, PNG (APNG) or AVIF, or multi-page TIFF, with the frames' durations
and loop count; a format that holds one picture gets the first, with a warning; a fit reads the
first frame, with a warning, as before."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from _robust_helpers import cli, half_map_checkpoint, half_map_codes
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import load
from colorot.cli import app
from colorot.imageio import decode_image, encode_image, has_avif, read_image, visible_pixels
from conftest import smooth_rgb

VALUES = (40, 120, 200)
DURATIONS = [100, 200, 300]


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return half_map_checkpoint(tmp_path_factory.mktemp("ckpt") / "half.pt")


def _frames(alpha: bool = False) -> list[PILImage.Image]:
    """Three 6×8 frames of one grey each; with ``alpha``, the second half transparent, the third clear."""
    frames = []
    for value, opacity in zip(VALUES, (255, 128, 0)):
        rgb = np.full((6, 8, 3), value, np.uint8)
        frames.append(PILImage.fromarray(np.dstack((rgb, np.full((6, 8), opacity, np.uint8))) if alpha else rgb))
    return frames


def _save(path: Path, fmt: str, frames: list[PILImage.Image], **options: object) -> Path:
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0, **options)
    return path


def _pictures(path: Path) -> list[tuple[np.ndarray, object]]:
    """Each frame of the file at ``path`` as RGBA codes, with its duration."""
    with PILImage.open(path) as image:
        pictures = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()
            pictures.append((np.asarray(image.convert("RGBA")).astype(int), image.info.get("duration")))
        return pictures


@pytest.mark.parametrize("fmt, suffix, out_suffix, tolerance", [
    ("WEBP", ".webp", ".webp", 0), ("PNG", ".png", ".png", 0), ("TIFF", ".tif", ".tif", 0),
    ("GIF", ".gif", ".webp", 3),  # GIF is read, not written: WebP, lossy from a GIF
    pytest.param("AVIF", ".avif", ".avif", 3, marks=pytest.mark.skipif(not has_avif(), reason="no AVIF support"))])
def test_every_frame_is_mapped_and_written_back_with_its_timing(
        tmp_path: Path, half: Path, fmt: str, suffix: str, out_suffix: str, tolerance: int) -> None:
    """Only the first frame was read and written, with a warning: an animation came out a still."""
    options = {"lossless": True} if fmt == "WEBP" else {}
    src = _save(tmp_path / f"anim{suffix}", fmt, _frames(), **options)
    dst = tmp_path / "out" / f"anim{out_suffix}"
    extra = ("--suffix", out_suffix) if out_suffix != suffix else ()
    outcome = cli("apply", half, src, tmp_path / "out", *extra)
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr
    pictures = _pictures(dst)
    assert len(pictures) == 3
    for (codes, duration), value, expected_duration in zip(pictures, VALUES, DURATIONS):
        assert np.abs(codes[..., :3] - half_map_codes(np.full((6, 8, 3), value))).max() <= tolerance
        assert (codes[..., 3] == 255).all()
        if fmt != "TIFF":  # pages have no durations
            assert duration == expected_duration
    if fmt in ("WEBP", "PNG", "GIF"):
        with PILImage.open(dst) as written:
            assert written.info.get("loop") == 0


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_an_apng_default_image_stays_outside_its_animation(tmp_path: Path, half: Path, suffix: str) -> None:
    """An APNG's default image (what viewers that do not animate show; no frame of the animation) has
    no duration: every frame's timing was dropped, and it became the animation's first frame."""
    frames = _frames()
    src = tmp_path / "anim.png"
    frames[0].save(src, save_all=True, append_images=frames[1:], default_image=True, duration=DURATIONS[1:], loop=0)
    outcome = cli("apply", half, src, tmp_path / "out", *(("--suffix", suffix) if suffix != ".png" else ()))
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr
    dst = tmp_path / "out" / f"anim{suffix}"
    pictures = _pictures(dst)
    if suffix == ".png":  # kept as the default image
        with PILImage.open(dst) as written:
            assert written.info.get("default_image") is True
        default, pictures = pictures[0], pictures[1:]
        assert int(default[0][0, 0, 0]) == int(half_map_codes(np.array([VALUES[0]]))[0])
    assert [duration for _, duration in pictures] == DURATIONS[1:]
    firsts = np.array([int(codes[0, 0, 0]) for codes, _ in pictures])
    assert np.abs(firsts - half_map_codes(np.array(VALUES[1:]))).max() <= (0 if suffix == ".png" else 3)  # WebP: lossy


def test_each_frame_keeps_its_own_transparency(tmp_path: Path, half: Path) -> None:
    src = _save(tmp_path / "anim.png", "PNG", _frames(alpha=True))
    outcome = cli("apply", half, src, tmp_path / "out.png")
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr
    pictures = _pictures(tmp_path / "out.png")
    assert [int(codes[0, 0, 3]) for codes, _ in pictures] == [255, 128, 0]
    assert int(pictures[1][0][0, 0, 0]) == int(half_map_codes(np.array([120]))[0])


def test_stdin_to_stdout_and_match_keep_every_frame(tmp_path: Path, half: Path) -> None:
    src = _save(tmp_path / "anim.webp", "WEBP", _frames(), lossless=True)
    piped = CliRunner().invoke(app, ["apply", str(half), "-", "-"], input=src.read_bytes())
    assert piped.exit_code == 0, piped.stderr
    assert len(decode_image(piped.stdout_bytes, frames=True).frames) == 2
    reference = tmp_path / "reference.png"
    PILImage.fromarray(smooth_rgb(12, 16, 3)).save(reference)
    matched = cli("match", reference, src, tmp_path / "matched", "--steps", "2", "--save-maps", tmp_path / "maps")
    assert matched.code == 0 and "warning" not in matched.stderr, matched.stderr
    assert len(read_image(tmp_path / "matched" / "anim.webp", frames=True).frames) == 2
    assert load(tmp_path / "maps" / "anim.pt").train_info_["training_pixels"] == 3 * 48  # fitted on every frame


def test_a_preview_of_animations_shows_first_frames_without_a_warning(tmp_path: Path, half: Path) -> None:
    """The contact sheet read the input and the output as stills, each with the "reads only the
    first" warning, though the output kept every frame."""
    src = _save(tmp_path / "anim.webp", "WEBP", _frames(), lossless=True)
    outcome = cli("apply", half, src, tmp_path / "out", "--preview", tmp_path / "sheet.png")
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr
    assert (tmp_path / "sheet.png").is_file() and len(_pictures(tmp_path / "out" / "anim.webp")) == 3


def test_the_visible_pixels_of_an_animation_are_every_frame_s(tmp_path: Path) -> None:
    image = decode_image(_save(tmp_path / "anim.png", "PNG", _frames(alpha=True)).read_bytes(), frames=True)
    pixels = visible_pixels(image, "anim.png")  # the third frame is fully transparent
    assert pixels.shape == (96, 3) and sorted(set(np.rint(pixels[:, 0] * 255).astype(int))) == [40, 120]


def test_a_format_that_holds_one_picture_gets_the_first_frame_with_a_warning(tmp_path: Path, half: Path) -> None:
    src = _save(tmp_path / "anim.webp", "WEBP", _frames(), lossless=True)
    outcome = cli("apply", half, src, tmp_path / "out.jpg")
    assert outcome.code == 0
    assert (f"warning: {tmp_path / 'out.jpg'}: the input has 3 frames, but JPEG holds one picture: only the first is "
            "written") in " ".join(outcome.stderr.split())
    codes = read_image(tmp_path / "out.jpg").codes.astype(int)
    assert np.abs(codes - half_map_codes(np.full((6, 8, 3), VALUES[0]))).max() <= 2


def test_a_one_picture_output_leaves_the_later_frames_undecoded(tmp_path: Path) -> None:
    """Every frame was decoded (and mapped, and by `match` fitted) only for the first to be written:
    a 60-frame WebP to JPEG took 1.5 s and 350 MB to apply, 7.7 s and 1.9 GB to match."""
    data = _save(tmp_path / "anim.webp", "WEBP", _frames(), lossless=True).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the writer warns, not the decode
        one = decode_image(data, frames=True, written_as="JPEG")
    assert one.frames == () and one.unread_frames == 2 and int(one.codes[0, 0, 0]) == VALUES[0]
    assert len(decode_image(data, frames=True, written_as="WEBP").frames) == 2
    with pytest.warns(UserWarning, match="the input has 3 frames, but BMP holds one picture"):
        encode_image(one, one.codes, "BMP")
    with pytest.raises(ValueError, match="2 later frames were not read, but PNG would hold them"):
        encode_image(one, one.codes, "PNG")


def test_match_to_a_one_picture_format_fits_the_frame_it_writes(tmp_path: Path) -> None:
    src = _save(tmp_path / "anim.webp", "WEBP", [PILImage.fromarray(smooth_rgb(6, 8, seed)) for seed in range(3)],
                lossless=True)
    reference = tmp_path / "reference.png"
    PILImage.fromarray(smooth_rgb(12, 16, 3)).save(reference)
    matched = cli("match", reference, src, tmp_path / "matched", "--suffix", ".jpg", "--steps", "2",
                  "--save-maps", tmp_path / "maps")
    assert matched.code == 0
    assert " ".join(matched.stderr.split()).count("the input has 3 frames, but JPEG holds one picture") == 1
    assert load(tmp_path / "maps" / "anim.pt").train_info_["training_pixels"] == 48  # the first frame's


def test_matcher_fit_of_an_animation_is_colorot_match_s_map(tmp_path: Path) -> None:
    """Matcher.fit(path) read the first frame alone, where colorot match fits every frame's pixels:
    a map far from the one match saved for the same file."""
    from colorot.matching import Matcher

    src = _save(tmp_path / "anim.webp", "WEBP", [PILImage.fromarray(smooth_rgb(6, 8, seed)) for seed in range(3)],
                lossless=True)
    reference = tmp_path / "reference.png"
    PILImage.fromarray(smooth_rgb(12, 16, 3)).save(reference)
    assert cli("match", reference, src, tmp_path / "matched", "--steps", "2", "--save-maps", tmp_path / "maps").code == 0
    saved = load(tmp_path / "maps" / "anim.pt")
    fitted = Matcher(reference, steps=2).fit(src)
    assert saved.train_info_["training_pixels"] == fitted.train_info_["training_pixels"] == 3 * 48
    for key, value in saved.ridge_parameters_.state.items():
        np.testing.assert_array_equal(fitted.ridge_parameters_.state[key], value)


def test_a_pipe_to_a_one_picture_format_writes_the_first_frame_with_one_warning(tmp_path: Path, half: Path) -> None:
    src = _save(tmp_path / "anim.webp", "WEBP", _frames(), lossless=True)
    piped = CliRunner().invoke(app, ["apply", str(half), "-", "-", "--format", "bmp"], input=src.read_bytes())
    assert piped.exit_code == 0, piped.stderr
    assert " ".join(piped.stderr.split()).count("the input has 3 frames, but BMP holds one picture") == 1
    out = decode_image(piped.stdout_bytes)
    assert np.abs(out.codes.astype(int) - half_map_codes(np.full((6, 8, 3), VALUES[0]))).max() == 0


def test_a_fit_still_reads_the_first_frame_and_says_so(tmp_path: Path) -> None:
    src = _save(tmp_path / "anim.png", "PNG", [PILImage.fromarray(smooth_rgb(6, 8, seed)) for seed in range(3)])
    outcome = cli("fit", src, src, "-o", tmp_path / "m.pt", "--steps", "2")
    assert outcome.code == 0
    assert (f"warning: {src}: 3 frames (an animation or a multi-page image): colorot reads only the first here "
            "(apply and match map every frame)") in " ".join(outcome.stderr.split())


def test_frames_together_over_the_pixel_limit_give_the_first_with_a_warning(tmp_path: Path, half: Path) -> None:
    src = _save(tmp_path / "anim.png", "PNG", _frames())
    outcome = cli("apply", half, src, tmp_path / "out.png", "--max-image-pixels", 100)  # 48 a frame, 144 in all
    assert outcome.code == 0
    assert (f"warning: {src}: 3 frames (an animation or a multi-page image), together over the pixel limit of 100 "
            "(raise it with --max-image-pixels): colorot maps only the first") in " ".join(outcome.stderr.split())
    assert len(_pictures(tmp_path / "out.png")) == 1


def test_pages_of_different_sizes_give_the_first_with_a_warning(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    small = PILImage.fromarray(smooth_rgb(4, 4, 1))
    PILImage.fromarray(smooth_rgb(6, 8, 0)).save(buffer, format="TIFF", save_all=True, append_images=[small])
    with pytest.warns(UserWarning, match="x.tif: 2 frames .*pages of different sizes: colorot maps only the first"):
        image = decode_image(buffer.getvalue(), name="x.tif", frames=True)
    assert image.frames == () and image.codes.shape == (6, 8, 3)


@pytest.mark.parametrize("page", [
    lambda: PILImage.fromarray(np.full((6, 8), 30000, np.uint16)),  # I;16
    lambda: PILImage.fromarray(np.full((6, 8), 0.5, np.float32)),  # F
], ids=["16-bit", "float"])
def test_a_later_page_of_over_8_bits_gives_the_first_with_a_warning(page) -> None:
    """Only the first page's depth was checked: a later 16-bit page came out white and a float one
    black, without a word."""
    buffer = io.BytesIO()
    PILImage.fromarray(smooth_rgb(6, 8, 0)).save(buffer, format="TIFF", save_all=True, append_images=[page()])
    with pytest.warns(UserWarning, match="x.tif: 2 frames .*a later page of 16-bit, 32-bit or floating-point grey"):
        image = decode_image(buffer.getvalue(), name="x.tif", frames=True)
    assert image.frames == () and image.codes.shape == (6, 8, 3)


def _rgb_pages_tiff(*pages: np.ndarray) -> bytes:
    """A little-endian multi-page RGB TIFF written by hand: a page for each uint8 or uint16 array."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for index, codes in enumerate(pages):
        height, width, _ = codes.shape
        strip = codes.astype(f"<u{codes.dtype.itemsize}").tobytes()
        entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
                   (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, len(strip)), (284, 3, 1, 1)]
        bits_at = len(out) + 2 + 12 * len(entries) + 4
        strip_at = bits_at + 6
        following = 0 if index == len(pages) - 1 else strip_at + len(strip) + len(strip) % 2  # IFDs start even
        ifd = struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            value = {258: bits_at, 273: strip_at}.get(tag, value)
            ifd += struct.pack("<HHI", tag, kind, count) + (
                struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value))
        out += ifd + struct.pack("<I", following) + struct.pack("<3H", *[8 * codes.dtype.itemsize] * 3) + strip
        out += b"\x00" * (len(strip) % 2)
    return bytes(out)


def test_a_later_16_bit_rgb_page_is_kept_at_8_bits_as_before() -> None:
    """Pillow reads a later 16-bit RGB page at 8 bits (its high bytes): it was kept, and stays so."""
    first = smooth_rgb(6, 8, 0)
    data = _rgb_pages_tiff(first, first.astype(np.uint16) * 257 + 100)  # high bytes: first, or first + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = decode_image(data, name="x.tif", frames=True)
    assert image.bit_depth == 8 and len(image.frames) == 1
    np.testing.assert_array_equal(image.codes, first)
    np.testing.assert_array_equal(image.frames[0].codes, (first.astype(np.uint16) * 257 + 100) >> 8)


def test_an_animation_whose_frames_cannot_be_counted_gives_the_first_with_a_warning() -> None:
    """A GIF cut off in a later frame makes Pillow's frame count raise: it was written as a still
    image without a word."""
    noise = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    frames = [PILImage.fromarray(frame) for frame in noise]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    whole = buffer.getvalue()
    cut = next(whole[:end] for end in range(len(whole) - 1, 0, -1) if _count_raises(whole[:end]))  # in frame 3's header
    with pytest.warns(UserWarning, match="x.gif: an animation .* cannot be counted past the first .*maps only the first"):
        image = decode_image(cut, name="x.gif", frames=True)
    assert image.frames == () and image.codes.shape == (32, 32, 3)


def _count_raises(data: bytes) -> bool:
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            image.n_frames  # noqa: B018
    except Exception:  # Pillow raises several types here
        return True
    return False


def _psd(composite: np.ndarray, layers: list[np.ndarray]) -> bytes:
    """A minimal 8-bit RGB Photoshop file: the ``composite`` and full-canvas ``layers``, uncompressed."""
    import struct

    h, w, _ = composite.shape
    records, data = b"", b""
    for layer in layers:
        records += struct.pack(">iiiiH", 0, 0, h, w, 3) + b"".join(struct.pack(">hI", c, 2 + h * w) for c in range(3))
        extra = struct.pack(">II", 0, 0) + b"\x03abc"  # no mask, no blending ranges, the name "abc"
        records += b"8BIMnorm" + struct.pack(">BBBxI", 255, 0, 0, len(extra)) + extra
        data += b"".join(struct.pack(">H", 0) + layer[..., c].tobytes() for c in range(3))
    info = struct.pack(">h", len(layers)) + records + data
    info += bytes(len(info) % 2)
    section = struct.pack(">I", len(info)) + info + struct.pack(">I", 0)
    return (b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">II", 0, 0)
            + struct.pack(">I", len(section)) + section
            + struct.pack(">H", 0) + b"".join(composite[..., c].tobytes() for c in range(3)))


@pytest.mark.parametrize("layers", [0, 2])
def test_a_photoshop_file_is_its_composite_not_its_layers(tmp_path: Path, half: Path, layers: int) -> None:
    """Pillow opens a PSD at its composite as frame 1 of n_frames layers: seeking back to frame 0 failed
    ("cannot decode image (attempt to seek outside sequence)"), and layers are not frames."""
    composite = smooth_rgb(6, 8, 3)
    src = tmp_path / "art.psd"
    src.write_bytes(_psd(composite, [np.full((6, 8, 3), value, np.uint8) for value in VALUES[:layers]]))
    image = decode_image(src.read_bytes(), name="art.psd", frames=True)
    assert image.frames == () and np.array_equal(image.codes, composite)
    outcome = cli("apply", half, src, tmp_path / "art.png")
    assert outcome.code == 0 and "warning" not in outcome.stderr, outcome.stderr
    assert len(_pictures(tmp_path / "art.png")) == 1
    assert np.abs(read_image(tmp_path / "art.png").codes - half_map_codes(composite)).max() <= 1


def test_a_sequence_to_a_one_picture_format_fits_each_frame_it_writes(tmp_path: Path) -> None:
    """``--sequence`` fits each frame file on the pictures its write keeps, as ``match`` does."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(3):
        _save(folder / f"frame_{t:03d}.webp", "WEBP",
              [PILImage.fromarray(smooth_rgb(6, 8, 3 * t + seed)) for seed in range(3)], lossless=True)
    reference = tmp_path / "reference.png"
    PILImage.fromarray(smooth_rgb(12, 16, 9)).save(reference)
    matched = cli("match", reference, folder, tmp_path / "matched", "--sequence", "--suffix", ".jpg", "--steps", "2",
                  "--save-maps", tmp_path / "maps")
    assert matched.code == 0
    assert " ".join(matched.stderr.split()).count("the input has 3 frames, but JPEG holds one picture") == 3
    for t in range(3):
        assert load(tmp_path / "maps" / f"frame_{t:03d}.pt").train_info_["training_pixels"] == 48  # its first frame's
