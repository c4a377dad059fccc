"""Draw the README's pictures from the bundled samples (run by hand; the JPEGs are committed).

    python docs/make_figures.py            # writes docs/front.jpg and docs/match.jpg

* ``docs/front.jpg``: source | result | target for three pairs of ``samples/``, each map fitted
  with the defaults through the Python API (``ColorTransfer().fit(source, target)``) and
  applied exactly (``transform``), the output rule (clip, round) as ``colorot apply`` writes it.
* ``docs/match.jpg``: ``colorot.match(reference, images)``: a reference and three inputs cut
  from the samples, each input with its own map onto the reference, over their outputs.

Both are small JPEGs (panels 320 pixels wide, quality 85).  Seeded: a rerun draws the same
maps, up to the platform's floating-point rounding.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PANEL = 320          # panel width in pixels
GAP = 6              # white space between panels
LABEL = 22           # height of a caption strip
QUALITY = 85

PAIRS = [("day.jpg", "sunset.jpg"), ("storm.jpg", "day.jpg"), ("sunset.jpg", "storm.jpg")]


def load(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("RGB")


def as_image(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Float pixels (N, 3) or (H, W, 3) → an 8-bit image by the output rule (clip, round)."""
    codes = np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(codes.reshape(size[1], size[0], 3))


def thumb(image: Image.Image, width: int = PANEL) -> Image.Image:
    return image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)


def sheet(rows: list[list[Image.Image]], captions: list[str]) -> Image.Image:
    """A grid of panels (every panel of a row scaled to PANEL wide) under one caption strip."""
    rows = [[thumb(p) for p in row] for row in rows]
    columns = max(len(r) for r in rows)
    heights = [max(p.height for p in row) for row in rows]
    width = columns * PANEL + (columns + 1) * GAP
    height = LABEL + sum(heights) + (len(rows) + 1) * GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(captions):
        draw.text((GAP + c * (PANEL + GAP) + PANEL // 2, LABEL // 2 + 2), text, fill="black", anchor="mm")
    y = LABEL + GAP
    for row, h in zip(rows, heights):
        for c, panel in enumerate(row):
            canvas.paste(panel, (GAP + c * (PANEL + GAP), y))
        y += h + GAP
    return canvas


def front() -> Image.Image:
    from colorot import ColorTransfer

    rows = []
    for source_name, target_name in PAIRS:
        source, target = load(source_name), load(target_name)
        ct = ColorTransfer(random_state=0).fit(source, target)
        result = ct.transform(np.asarray(source))            # (H, W, 3) float32: same shape as the array
        rows.append([source, as_image(result, source.size), target])
        print(f"{source_name} -> {target_name}: {ct.train_info_['fit_seconds']:.1f} s", file=sys.stderr)
    return sheet(rows, ["source", "result (colorot)", "target"])


def cuts() -> tuple[Image.Image, list[Image.Image]]:
    """The reference (sunset.jpg) and three inputs cut from the other samples."""
    day, storm = load("day.jpg"), load("storm.jpg")
    inputs = [day.crop((0, 0, 640, 400)), day.crop((640, 400, 1280, 800)), storm.crop((320, 200, 960, 600))]
    return load("sunset.jpg"), inputs


def match_sheet() -> Image.Image:
    from colorot import match

    reference, inputs = cuts()
    outputs = match(reference, [np.asarray(i) for i in inputs])   # each input's own map onto the reference
    outputs = [as_image(o, i.size) for o, i in zip(outputs, inputs)]
    blank = Image.new("RGB", inputs[0].size, "white")
    ref = reference.resize(inputs[0].size, Image.Resampling.LANCZOS)
    return sheet([[ref, *inputs], [blank, *outputs]], ["reference", "input 1 / output", "input 2 / output",
                                                      "input 3 / output"])


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no options
    front().save(ROOT / "docs" / "front.jpg", quality=QUALITY, optimize=True)
    match_sheet().save(ROOT / "docs" / "match.jpg", quality=QUALITY, optimize=True)
    for name in ("front.jpg", "match.jpg"):
        print(f"wrote docs/{name}: {(ROOT / 'docs' / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
