"""Contact sheets to look at a transfer (Pillow only, no plotting library).

:func:`fit_sheet`: source | result | target thumbnails, under each its RGB
distribution (per-channel histograms of the full images' code values, 64 bins, each curve
scaled to its own peak), and the training loss curve below.
:func:`batch_sheet`: input | output pairs for a sample of a batch (and the reference of a match).
A sheet is untagged: each panel's colours are shown as sRGB codes (:func:`shown_in_srgb`), whatever
the colour space of its image.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from colorot.apply import make_folder, map_pixels
from colorot.atomic import check_file_output, write_atomic
from colorot.errors import ConfigError, ImageWriteError
from colorot.imageio import quantize, read_image
from colorot.profiles import UNTAGGED, ColourSpace, apart, colour_space, convert_codes

if TYPE_CHECKING:
    import torch

THUMB = 256
PAD = 8
LABEL = 16
HIST_HEIGHT = 96
LOSS_HEIGHT = 140
BACKGROUND = (24, 24, 24)
INK = (230, 230, 230)
CHANNEL_INK = ((235, 70, 70), (70, 200, 90), (80, 130, 250))
#: Pixels of the full image a histogram counts (every k-th): a thumbnail's pixels are averages
#: of its neighbours, narrower than the image's (a noisy image's spread shrank tenfold).
HIST_PIXELS = 1 << 16


def thumbnail_codes(path: str | os.PathLike, box: int = THUMB) -> np.ndarray:
    """An image file (an animation's first frame) as uint8 sRGB codes of its colours, shrunk to fit a
    ``box``² square; without warnings about the file, which the run that wrote or read it gave."""
    thumbnail, _, space = thumbnail_and_sample(path, box)
    return shown_in_srgb(thumbnail, space)


def thumbnail_and_sample(path: str | os.PathLike, box: int = THUMB) -> tuple[np.ndarray, np.ndarray, ColourSpace]:
    """An image file's thumbnail (as :func:`thumbnail_codes`, but in its own codes), about
    :data:`HIST_PIXELS` of the full image's pixels (every k-th, uint8 (N, 3)) for its histograms,
    and the colour space of their codes (:func:`shown_in_srgb` takes them to the sheet's)."""
    image = read_image(path, metadata_warning=False)
    codes = image.codes if image.bit_depth == 8 else quantize(image.rgb, 8)
    pil = PILImage.fromarray(codes, "RGB")
    pil.thumbnail((box, box), PILImage.Resampling.BILINEAR)
    pixels = codes.reshape(-1, 3)
    return np.asarray(pil), pixels[:: max(1, len(pixels) // HIST_PIXELS)].copy(), colour_space(image.icc_profile)


def shown_in_srgb(codes: np.ndarray, space: ColourSpace) -> np.ndarray:
    """uint8 codes (…, 3) of ``space`` as the sRGB codes of the same colours (a sheet is untagged, so
    viewers show it as sRGB; relative colorimetric, :func:`colorot.profiles.convert_codes`); as they
    are where the spaces agree, or where LittleCMS cannot convert between them."""
    from PIL import ImageCms

    if not apart(space, UNTAGGED):
        return codes
    try:
        return convert_codes(codes.reshape(1, -1, 3), space, UNTAGGED).reshape(codes.shape)
    except (OSError, ValueError, ImageCms.PyCMSError):
        return codes


def _histogram_panel(codes: np.ndarray, width: int) -> PILImage.Image:
    panel = PILImage.new("RGB", (width, HIST_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for channel, ink in enumerate(CHANNEL_INK):
        counts, _ = np.histogram(codes[..., channel], bins=64, range=(0, 256))
        heights = counts / max(int(counts.max()), 1)
        xs = np.linspace(2, width - 3, len(heights))
        draw.line([(float(x), float(HIST_HEIGHT - 3 - h * (HIST_HEIGHT - 8))) for x, h in zip(xs, heights)],
                  fill=ink, width=1)
    return panel


def loss_label(value: float) -> str:
    """A loss as the sheet prints it: 3 significant digits, in scientific notation below 10⁻⁴ and
    from 1000, the sign kept (a KL may be negative): 0.000123, -2.35, 1.2e-05, 1.23e+04."""
    return f"{value:.3g}"


def _loss_panel(losses: Sequence[float], width: int, steps: int | None = None) -> PILImage.Image:
    """The loss curve, its top and bottom labelled with the largest and smallest loss; ``steps``: how
    many steps it spans (default: one a value; the sliced solver's first value is its start's)."""
    panel = PILImage.new("RGB", (width, LOSS_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    values = np.asarray([v for v in losses if np.isfinite(v)], dtype=np.float64)
    if len(values) < 2:
        draw.text((PAD, PAD), "loss: closed-form map, no training" if not len(values)
                  else f"loss {loss_label(values[-1])}", fill=INK)
        return panel
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    top, bottom, left, right = 2 * LABEL, LOSS_HEIGHT - PAD, PAD, width - PAD
    xs = np.linspace(left, right, len(values))
    ys = bottom - (values - low) / span * (bottom - top)
    draw.rectangle((left, top, right, bottom), outline=(90, 90, 90))
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(250, 200, 80), width=2)
    draw.text((PAD, 4), f"training loss: {loss_label(values[0])} -> {loss_label(values[-1])} over "
                        f"{len(values) if steps is None else steps} steps", fill=INK)
    draw.text((left + 3, top + 2), loss_label(high), fill=INK)
    draw.text((left + 3, bottom - LABEL + 2), loss_label(low), fill=INK)
    return panel


def _labelled(codes: np.ndarray, label: str, width: int) -> PILImage.Image:
    tile = PILImage.new("RGB", (width, LABEL + THUMB), BACKGROUND)
    image = PILImage.fromarray(codes, "RGB")
    scale = min(THUMB / image.width, THUMB / image.height)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         PILImage.Resampling.BILINEAR if scale < 1 else PILImage.Resampling.NEAREST)
    tile.paste(image, ((width - image.width) // 2, LABEL + (THUMB - image.height) // 2))
    ImageDraw.Draw(tile).text((2, 2), label, fill=INK)
    return tile


def fit_sheet(source: np.ndarray, result: np.ndarray, target: np.ndarray,
              losses: Sequence[float], counted: Sequence[np.ndarray] | None = None,
              steps: int | None = None) -> PILImage.Image:
    """source | result | target (uint8 RGB codes), their RGB histograms (of ``counted``, the three
    images' pixels (N, 3), else of the thumbnails), and the loss curve."""
    columns = [(source, "source"), (result, "result"), (target, "target")]
    counted = counted if counted is not None else [codes.reshape(-1, 3) for codes, _ in columns]
    width = PAD + 3 * (THUMB + PAD)
    sheet = PILImage.new("RGB", (width, PAD + LABEL + THUMB + PAD + HIST_HEIGHT + PAD + LOSS_HEIGHT + PAD),
                         BACKGROUND)
    for index, ((codes, label), pixels) in enumerate(zip(columns, counted)):
        x = PAD + index * (THUMB + PAD)
        sheet.paste(_labelled(codes, label, THUMB), (x, PAD))
        sheet.paste(_histogram_panel(pixels, THUMB), (x, PAD + LABEL + THUMB + PAD))
    sheet.paste(_loss_panel(losses, width - 2 * PAD, steps), (PAD, PAD + LABEL + THUMB + PAD + HIST_HEIGHT + PAD))
    return sheet


def batch_sheet(pairs: Sequence[tuple[np.ndarray, np.ndarray, str]],
                reference: tuple[np.ndarray, str] | None = None) -> PILImage.Image:
    """One row per (input codes, output codes, name): input | output; a ``reference`` (codes, name),
    the image every output was matched to, in a third column beside the first row."""
    width = PAD + (2 if reference is None else 3) * (THUMB + PAD)
    row = LABEL + THUMB + PAD
    sheet = PILImage.new("RGB", (width, PAD + row * max(len(pairs), 1)), BACKGROUND)
    for index, (before, after, name) in enumerate(pairs):
        y = PAD + index * row
        sheet.paste(_labelled(before, f"in: {name}"[:40], THUMB), (PAD, y))
        sheet.paste(_labelled(after, "out", THUMB), (PAD + THUMB + PAD, y))
    if reference is not None:
        codes, name = reference
        sheet.paste(_labelled(codes, f"reference: {name}"[:40], THUMB), (PAD + 2 * (THUMB + PAD), PAD))
    return sheet


def check_preview_path(path: str | os.PathLike, protected: Iterable[str | os.PathLike], *, replace: bool,
                       flag: str, folder_made: bool = False) -> None:
    """Refuse, before any work, a preview ``path`` that names no image format, is one of the run's
    ``protected`` files (its inputs and outputs), or exists unless ``replace`` (the ``flag`` that
    replaces the run's outputs), as :func:`colorot.atomic.check_file_output` says (a batch's
    preview gets its folder made, as its outputs do: ``folder_made``)."""
    if _sheet_format(Path(path)) is None:
        raise ConfigError(f"cannot write preview {path}: unknown file extension {Path(path).suffix!r}, or one Pillow "
                          "cannot write an RGB image in (use e.g. .png)")
    check_file_output(path, list(protected), replace=replace, flag=flag, what="preview", folder_made=folder_made)


def _sheet_format(path: Path) -> str | None:
    """Pillow's format for the suffix of ``path``, or None where Pillow cannot write an RGB sheet in
    it (it reads .psd, .xpm, .pcd and more, writes none of them: a KeyError after the whole run;
    .xbm and .msp take 1-bit images only)."""
    image_format = PILImage.registered_extensions().get(path.suffix.lower())
    return image_format if image_format is not None and _writes_rgb(image_format) else None


@functools.lru_cache(maxsize=None)
def _writes_rgb(image_format: str) -> bool:
    """Whether Pillow writes an RGB image in ``image_format`` (tried on one pixel, in memory)."""
    try:
        PILImage.new("RGB", (1, 1)).save(io.BytesIO(), format=image_format)
    except Exception:  # noqa: BLE001 (Pillow's writers refuse with many exception types)
        return False
    return True


#: The EXIF Software tag of a batch's sheet, which lets a rerun replace it and nothing else
#: (:func:`is_batch_sheet`); PNG, JPEG, WebP, TIFF and AVIF keep it, other formats none.
BATCH_SHEET_MARK = "colorot batch preview"
_SOFTWARE_TAG = 0x0131


#: The formats that keep :data:`BATCH_SHEET_MARK` (Pillow's names): a batch's sheet is written in one.
MARKED_SHEET_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "AVIF")


def check_batch_sheet_format(path: str | os.PathLike) -> None:
    """ConfigError for a batch's sheet in a format that keeps no EXIF: a rerun could not tell it
    from another file, so it could never replace it without ``--overwrite``."""
    if _sheet_format(Path(path)) not in MARKED_SHEET_FORMATS:
        raise ConfigError(f"cannot write a batch's preview {path} in its format: it keeps no EXIF, where the sheet is "
                          "marked as colorot's so that a rerun replaces it; use .png, .jpg, .webp, .tif or .avif")


def is_batch_sheet(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sheet an earlier batch wrote: a regular file (a pipe would wait for a
    writer) whose EXIF Software tag is :data:`BATCH_SHEET_MARK` (only the header is read)."""
    if not os.path.isfile(path):
        return False
    try:
        with PILImage.open(path) as image:
            return image.getexif().get(_SOFTWARE_TAG) == BATCH_SHEET_MARK
    except Exception:  # noqa: BLE001 (not an image Pillow reads, or damaged: not a sheet of ours)
        return False


def _mark_exif() -> bytes:
    exif = PILImage.Exif()
    exif[_SOFTWARE_TAG] = BATCH_SHEET_MARK
    return exif.tobytes()


def save_sheet(sheet: PILImage.Image, path: str | os.PathLike, before_naming: Callable[[], None] | None = None,
               *, marked: bool = False, replace: bool = True) -> None:
    """Write a sheet atomically (:func:`colorot.atomic.write_atomic`, ``before_naming`` and ``replace``
    too: unless ``replace``, a file another run wrote at ``path`` meanwhile is kept, OutputExistsError),
    PNG or any format its suffix names; ``marked``: with :data:`BATCH_SHEET_MARK` where the format
    keeps EXIF."""
    path = Path(path)
    image_format = _sheet_format(path)
    if image_format is None:
        raise ImageWriteError(f"cannot write preview {path}: unknown file extension {path.suffix!r}, or one Pillow "
                              "cannot write an RGB image in")
    try:
        mark = {"exif": _mark_exif()} if marked else {}
        write_atomic(path, lambda file: sheet.save(file, format=image_format, **mark), ImageWriteError,
                     "the preview", replace=replace, before_naming=before_naming)
    except ValueError as exc:  # a format that cannot hold the sheet
        raise ImageWriteError(f"cannot write preview {path}: {exc}") from exc


def fit_preview(path: str | os.PathLike, fitted_map: torch.nn.Module, source: str | os.PathLike,
                target: str | os.PathLike, losses: Sequence[float],
                before_naming: Callable[[], None] | None = None, steps: int | None = None,
                replace: bool = True) -> None:
    """Write the :func:`fit_sheet` of a fitted map for one source and one target file, the histograms
    of their full images' pixels (:func:`thumbnail_and_sample`); ``before_naming``, ``replace``: as
    :func:`colorot.atomic.write_atomic`'s (``colorot fit``'s checkpoint, ``--force``)."""
    (before, source_pixels, source_space), (target_thumb, target_pixels, target_space) = (
        thumbnail_and_sample(source), thumbnail_and_sample(target))
    after, mapped = (quantize(map_pixels(fitted_map, codes / np.float32(255)), 8) for codes in (before, source_pixels))
    # the map takes and gives the source's codes; the sheet shows every panel's colours in sRGB
    before, after, source_pixels, mapped = (shown_in_srgb(codes, source_space)
                                            for codes in (before, after, source_pixels, mapped))
    target_thumb, target_pixels = (shown_in_srgb(codes, target_space) for codes in (target_thumb, target_pixels))
    save_sheet(fit_sheet(before, after, target_thumb, losses, [source_pixels, mapped, target_pixels], steps), path,
               before_naming, replace=replace)


def batch_preview(path: str | os.PathLike, pairs: Sequence[tuple[Path, Path]], *, limit: int = 6,
                  reference: str | os.PathLike | None = None, replace: bool = True) -> list:
    """Write a :func:`batch_sheet` of up to ``limit`` (input, output) files spread over ``pairs``,
    with the ``reference`` image file they were matched to, if any (``replace``: as :func:`save_sheet`'s).

    Returns the sampled pairs.
    """
    if not pairs:
        return []
    count = min(limit, len(pairs))
    picks = sorted({round(i * (len(pairs) - 1) / max(count - 1, 1)) for i in range(count)})
    sample = [pairs[i] for i in picks]
    make_folder(Path(path).parent)
    shown = None if reference is None else (thumbnail_codes(reference), Path(reference).name)
    save_sheet(batch_sheet([(thumbnail_codes(src), thumbnail_codes(dst), Path(src).name)
                            for src, dst in sample], shown), path, marked=True, replace=replace)
    return sample
