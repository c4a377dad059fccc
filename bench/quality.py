"""Colour-transfer quality of colorot against its peers, over real photograph pairs.

    python bench/quality.py [--pairs N] [--methods a,b,...] [--out bench/RESULTS.md]
                            [--sheet bench/quality_sheet.png] [--cache DIR] [--threads 1]

Regenerates the quality section of ``bench/RESULTS.md`` (between the markers
``<!-- quality:begin -->`` and ``<!-- quality:end -->``; the rest of the file is
kept), ``bench/PAIRS.md`` (image credits, beside ``--out``) and a contact sheet.

Images: photographs from Debian's wallpaper packages ``mate-backgrounds`` and
``plasma-workspace-wallpapers``, fetched with ``apt-get download`` into the cache
folder (default ``~/.cache/colorot-bench``), unpacked with ``dpkg -x``, centre-cropped
to 16:10 and resized to 1920×1200 (Lanczos), cached as JPEG quality 95, 4:4:4.

Methods (``--methods``, comma-separated; default all):

* ``colorot-default``: ``ColorTransfer()`` with no arguments, whatever the package
  default is when the bench runs (recorded in the output);
* ``colorot-sliced`` (``solver="sliced"``), ``colorot-kl-alone`` (``sw_weight=0``: the KL
  solver without its mass-covering term), ``colorot-cmgn``, ``colorot-mmgn``, ``colorot-affine``
  (``model=...``): ``ColorTransfer`` with that one argument, every other at its default
  (run ``colorot-default`` first: the others' KL is measured against its fitted density);
* color-matcher 0.6.0 (``pip install color-matcher``): ``reinhard``, ``mkl``, ``hm``,
  ``hm-mkl-hm``;
* scikit-image (``pip install scikit-image``): ``skimage-hm``, ``match_histograms``.

The peers and POT (``pip install POT``, the exact W2 estimate) are needed by this
script only, never by the package.

Measures (each output in [0, 1] units, as float, unclipped unless said):

* SW2 = ``colorot.metrics.sliced_w2(clip(output, 0, 1), target)`` (256 directions,
  60 000 pixels of each, seed 0: the same directions and pixels for every method);
* RMS displacement = ``colorot.metrics.rms_displacement(source, output)``;
* W2 = sqrt(POT ``ot.emd2(a, b, M)``): exact discrete OT between seeded 4000-pixel
  subsamples of source and target, uniform weights, ``M = ot.dist(xs, xt)``
  (squared Euclidean); RMS/W2 − 1 says how far a map moves colours beyond the
  cheapest transport;
* detail gain = ``colorot.metrics.detail_gain(source, clip(output, 0, 1))``: the energy of the
  output luma's finest detail over the source's (above 1: detail, noise and grain amplified), and
  the same of its chroma (``of="chroma"``: the colour differences B − Y and R − Y);
* time per pair: wall time of fit + apply on the decoded images (decoding excluded);
* for colorot's maps: the smallest eigenvalue of the symmetric Jacobian over every
  pixel of the pair's two images (every distinct colour, which covers every pixel,
  since the Jacobian depends on the colour only), and the fraction of output pixels
  with a channel outside [0, 1] (clipped when written).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import hashlib
import inspect
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import colorot  # noqa: E402
from colorot import ColorTransfer  # noqa: E402
from colorot.metrics import (clipped_fraction, detail_gain, kl_to_target,  # noqa: E402
                             min_jacobian_eigenvalue, rms_displacement, sliced_w2)
from apt_data import deb_of, unpacked  # noqa: E402  (bench/apt_data.py)
from provenance import commit  # noqa: E402

SIZE = (1920, 1200)
PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")
MATE = "usr/share/backgrounds/mate/nature/{}.jpg"
PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"

#: name → (package, path inside the package). Every one checked by eye to be a photograph.
IMAGES = {
    **{n: ("mate-backgrounds", MATE.format(n)) for n in
       ("Dune", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "FreshFlower", "YellowFlower",
        "Garden", "TwoWings")},
    **{n: ("plasma-workspace-wallpapers", PLASMA.format(n)) for n in
       ("summer_1am", "FallenLeaf", "Path", "EveningGlow", "Kite", "DarkestHour", "BytheWater")},
}

#: (source, target): daylight scenes → sunset, night, autumn and flower palettes.
PAIRS = [
    ("Dune", "summer_1am"), ("GreenMeadow", "FallenLeaf"), ("Path", "EveningGlow"),
    ("Kite", "DarkestHour"), ("LadyBird", "FreshFlower"), ("RainDrops", "YellowFlower"),
    ("Dune", "EveningGlow"), ("Kite", "summer_1am"), ("Path", "DarkestHour"),
    ("GreenMeadow", "Garden"), ("Storm", "EveningGlow"), ("BytheWater", "TwoWings"),
]

BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
W2_PIXELS = 4000
THUMB = (320, 200)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- images
def fetch_packages(cache: Path) -> Path:
    """Download and unpack the wallpaper packages once; returns the unpacked root."""
    return unpacked(cache, PACKAGES)


def fit_16_10(image: Image.Image) -> Image.Image:
    """Centre-crop to 16:10, then resize to 1920×1200 (deterministic)."""
    w, h = image.size
    if w * 10 > h * 16:
        cw, ch = round(h * 1.6), h
    else:
        cw, ch = w, round(w / 1.6)
    x, y = (w - cw) // 2, (h - ch) // 2
    return image.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.LANCZOS)


def prepare_images(cache: Path, names: list[str]) -> dict[str, Path]:
    """The cached 1920×1200 JPEG of each named image, made on first use."""
    out_dir = cache / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, root = {}, None
    for name in names:
        path = out_dir / f"{name}.jpg"
        if not path.exists():
            root = root or fetch_packages(cache)
            with Image.open(root / IMAGES[name][1]) as image:
                resized = fit_16_10(image.convert("RGB"))
            tmp = path.with_suffix(".tmp.jpg")
            resized.save(tmp, quality=95, subsampling=0)
            tmp.replace(path)
        paths[name] = path
    return paths


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# ------------------------------------------------------------------ credits
def dep5_paragraphs(text: str) -> list[dict[str, str]]:
    """Parse a machine-readable debian/copyright file into field dicts."""
    paragraphs, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def credit(root: Path, package: str, path: str) -> dict[str, str]:
    """Copyright holders and licence of ``path`` from the package's copyright file (last match wins)."""
    text = (root / "usr/share/doc" / package / "copyright").read_text(encoding="utf-8", errors="replace")
    found = {}
    for para in dep5_paragraphs(text):
        patterns = para.get("Files", "").split()
        if any(p == "*" or fnmatch.fnmatch(path, "*/" + p) for p in patterns):
            found = para
    holders = [h.strip().rstrip("´") for h in found.get("Copyright", "").splitlines()]  # stray accent in mate's file
    info = {"copyright": " · ".join(filter(None, holders)),
            "license": found.get("License", "").splitlines()[0] if found.get("License") else ""}
    meta = root / Path(path).parents[2] / "metadata.json"  # Plasma wallpapers: per-image author
    if package == "plasma-workspace-wallpapers" and meta.exists():
        plugin = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
        info["author"] = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
        info["meta_license"] = plugin.get("License", "")
    return info


def recorded_digests(path: Path) -> dict[str, str]:
    """Each image's SHA-256 prefix as an earlier run wrote it into ``path`` (PAIRS.md); {} without one."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[3].startswith("`") and cells[3].endswith("…`"):
            found[cells[0]] = cells[3].strip("`…")
    return found


def write_pairs_md(path: Path, cache: Path, names: list[str], images: dict[str, Path]) -> None:
    """Write the credits table, and say on stderr which images differ from the ones ``path`` recorded
    (apt-get downloads the registry's current version, which may not be the recorded one)."""
    recorded = recorded_digests(path)
    root = fetch_packages(cache)
    versions = {p: deb_of(cache, p).name.split("_")[1].replace("%3a", ":") for p in PACKAGES}
    lines = [
        "# Photo pairs of the quality bench",
        "",
        "Written by `bench/quality.py`. Every image is a photograph from a Debian wallpaper package,",
        "fetched with `apt-get download`, centre-cropped to 16:10 and resized to 1920×1200.",
        "Credits are those of the package's `/usr/share/doc/<package>/copyright` file; for the",
        "Plasma wallpapers, whose copyright file names one holder for the whole package, the",
        "photographer and licence declared in each wallpaper's `metadata.json` are given too.",
        "",
        "| # | source → target |",
        "| --- | --- |",
        *[f"| {i + 1} | {a} → {b} |" for i, (a, b) in enumerate(PAIRS)],
        "",
        "| image | package (version) | path in the package | SHA-256 of the file | copyright (copyright file) | licence | photographer, licence (metadata.json) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        package, rel = IMAGES[name]
        info = credit(root, package, rel)
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()[:16]
        if recorded.get(name, digest) != digest:
            log(f"note: {name} is not the file {path.name} recorded ({package} {versions[package]} here): "
                "figures measured on the recorded images are not comparable with this run's")
        meta = f"{info['author']}, {info['meta_license']}" if info.get("author") else "–"
        lines.append(f"| {name} | {package} ({versions[package]}) | `/{rel}` | `{digest}…` | "
                     f"{info['copyright']} | {info['license']} | {meta} |")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


# ------------------------------------------------------------------ methods
def _distribution_kw() -> str:
    """The constructor's name for the target distribution (renamed target → distribution)."""
    params = inspect.signature(ColorTransfer.__init__).parameters
    return "distribution" if "distribution" in params else "target"


def default_params() -> dict:
    return ColorTransfer().get_params()


@dataclass
class Output:
    pixels: np.ndarray               # (H, W, 3) float, [0, 1] units, unclipped
    estimator: ColorTransfer | None = None


def colorot_method(**kwargs):
    def run(src: np.ndarray, tgt: np.ndarray) -> Output:
        if "kind" in kwargs:
            kw = dict(kwargs)
            kw[_distribution_kw()] = kw.pop("kind")
        else:
            kw = kwargs
        ct = ColorTransfer(**kw).fit(src, tgt)
        return Output(ct.transform(src), ct)  # the map applied per pixel (a ridge map: its profiles, within 1e-7)
    return run


def color_matcher(method: str):
    def run(src: np.ndarray, tgt: np.ndarray) -> Output:
        from color_matcher import ColorMatcher

        if method == "reinhard":
            # Reinhard's zero guard (0 → 1/255 before a log) is written for floats in [0, 1]: on
            # uint8 it truncates to 0 and one black pixel turns the whole output into NaN. It also
            # writes into its inputs, hence the copies.
            out = ColorMatcher().transfer(src=src / 255.0, ref=tgt / 255.0, method=method)
            return Output(np.asarray(out, np.float64))
        out = ColorMatcher().transfer(src=src.copy(), ref=tgt.copy(), method=method)
        return Output(np.asarray(out, np.float64) / 255.0)  # code values (uint8 or unclipped float)
    return run


def skimage_hm(src: np.ndarray, tgt: np.ndarray) -> Output:
    from skimage.exposure import match_histograms

    return Output(np.asarray(match_histograms(src, tgt, channel_axis=-1), np.float64) / 255.0)


METHODS = {
    "colorot-default": colorot_method(),
    "colorot-sliced": colorot_method(solver="sliced"),
    "colorot-kl-alone": colorot_method(sw_weight=0.0),
    "colorot-cmgn": colorot_method(model="cmgn"),
    "colorot-mmgn": colorot_method(model="mmgn"),
    "colorot-affine": colorot_method(model="affine"),
    "reinhard": color_matcher("reinhard"),
    "mkl": color_matcher("mkl"),
    "hm": color_matcher("hm"),
    "hm-mkl-hm": color_matcher("hm-mkl-hm"),
    "skimage-hm": skimage_hm,
}
REQUIRES = {"reinhard": "color_matcher", "mkl": "color_matcher", "hm": "color_matcher",
            "hm-mkl-hm": "color_matcher", "skimage-hm": "skimage"}
PIP = {"color_matcher": "color-matcher==0.6.0", "skimage": "scikit-image", "ot": "POT"}


def is_colorot(method: str) -> bool:
    return method.startswith("colorot")


# ------------------------------------------------------------------ measures
def w2_exact(src: np.ndarray, tgt: np.ndarray, seed: int = 0) -> float:
    """sqrt(ot.emd2): exact OT between seeded 4000-pixel subsamples, uniform weights, squared cost."""
    import ot

    rng = np.random.default_rng(seed)
    xs = src[rng.choice(len(src), W2_PIXELS, replace=False)].astype(np.float64)
    xt = tgt[rng.choice(len(tgt), W2_PIXELS, replace=False)].astype(np.float64)
    a = np.full(W2_PIXELS, 1.0 / W2_PIXELS)
    return float(np.sqrt(ot.emd2(a, a.copy(), ot.dist(xs, xt), numItermax=10**7)))


def thumb(pixels01: np.ndarray) -> Image.Image:
    u8 = np.round(np.clip(pixels01, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(u8).resize(THUMB, Image.Resampling.LANCZOS)


@dataclass
class PairResult:
    pair: str
    w2: float
    rows: dict = field(default_factory=dict)       # method → measures
    refs: dict = field(default_factory=dict)       # reference row → SW2
    thumbs: dict = field(default_factory=dict)     # column → PIL thumbnail (sheet pairs only)


def pixels01(codes: np.ndarray) -> np.ndarray:
    """An 8-bit (H, W, 3) image as float32 pixels (H·W, 3) in [0, 1]."""
    return (codes.reshape(-1, 3) / np.float32(255)).astype(np.float32)


def output_scores(src_u8: np.ndarray, src: np.ndarray, tgt: np.ndarray, w2: float, pixels: np.ndarray) -> dict:
    """SW2 to the target, RMS displacement (and over ``w2``), clipped fraction and detail gains (luma,
    chroma) of one method's unclipped output ``pixels`` for the source ``src_u8`` (``src``, ``tgt``:
    :func:`pixels01`)."""
    out = pixels.reshape(-1, 3)
    source, image = src_u8 / 255.0, pixels.reshape(src_u8.shape)
    row = {"sw2": sliced_w2(np.clip(out, 0, 1), tgt), "rms": rms_displacement(src, out),
           "clipped": clipped_fraction(out), "detail_gain": detail_gain(source, image),
           "chroma_gain": detail_gain(source, image, of="chroma")}
    row["rms_w2"] = row["rms"] / w2 - 1
    return row


def run_pair(src_name: str, tgt_name: str, images: dict[str, Path], methods: list[str],
             keep_thumbs: bool) -> PairResult:
    src_u8, tgt_u8 = decode(images[src_name]), decode(images[tgt_name])
    src, tgt = pixels01(src_u8), pixels01(tgt_u8)
    result = PairResult(f"{src_name} → {tgt_name}", w2_exact(src, tgt))
    log(f"  exact W2 (4000-pixel subsamples) {result.w2:.4f}")
    if keep_thumbs:
        result.thumbs["source"], result.thumbs["target"] = thumb(src_u8 / 255.0), thumb(tgt_u8 / 255.0)

    default_target = None
    for method in methods:
        start = time.perf_counter()
        output = METHODS[method](src_u8, tgt_u8)
        seconds = time.perf_counter() - start
        row = {**output_scores(src_u8, src, tgt, result.w2, output.pixels), "seconds": seconds}
        if output.estimator is not None:
            ct = output.estimator
            row["min_eig"] = min_jacobian_eigenvalue(ct.map_, np.concatenate([src, tgt]))
            row["components"] = int(len(ct.target_dist_.weights))
            if method == "colorot-default":
                default_target = ct.target_dist_
            if default_target is not None:  # every map's KL to the default's fitted density, in nats
                row["kl"] = kl_to_target(ct.map_, src, default_target)
        result.rows[method] = row
        if keep_thumbs:
            result.thumbs[method] = thumb(output.pixels.reshape(src_u8.shape))
        extra = f"  min eig {row['min_eig']:.2e}  K={row['components']}" if "min_eig" in row else ""
        extra += f"  KL {row['kl']:.3f} nats" if "kl" in row else ""
        log(f"  {method:<22} SW2 {row['sw2']:.4f}  RMS {row['rms']:.4f} ({100 * row['rms_w2']:+.1f}% vs W2)  "
            f"clipped {100 * row['clipped']:.2f}%  {seconds:6.1f}s{extra}")

    # reference rows
    result.refs["no transfer"] = {"sw2": sliced_w2(src, tgt), "rms": 0.0}
    if default_target is None:
        from colorot.distributions import fit_target

        ct = ColorTransfer()
        default_target = fit_target(tgt, ct.resolved_target(), ct.resolved_components(), ridge=ct.resolved_ridge(),
                                    random_state=ct.random_state)
    samples = default_target.sample(len(tgt), random_state=0)
    result.refs["default target's own samples vs target"] = {"sw2": sliced_w2(np.clip(samples, 0, 1), tgt)}
    perm = np.random.default_rng(0).permutation(len(tgt))
    half = len(tgt) // 2
    result.refs["two disjoint halves of the target (metric floor)"] = {
        "sw2": sliced_w2(tgt[perm[:half]], tgt[perm[half:2 * half]])}
    log("  references: " + ", ".join(f"{k} {v['sw2']:.4f}" for k, v in result.refs.items()))
    return result


# ------------------------------------------------------------------- report
def med(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else float("nan")


def contact_sheet(path: Path, results: list[PairResult], ours: str | None, peer: str | None,
                  summary: dict) -> None:
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    cols = [("source", "source"), *([(ours, ours)] if ours else []),
            *([(peer, f"best peer: {peer}")] if peer else []), ("target", "target")]
    rows = [r for r in results if r.thumbs]
    pad, head, cap = 8, 24, 20
    tw, th = THUMB
    sheet = Image.new("RGB", (pad + len(cols) * (tw + pad), head + len(rows) * (th + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (_, title) in enumerate(cols):
        label = title if title in ("source", "target") else f"{title} (median SW2 {summary[title.split(': ')[-1]]:.4f})"
        draw.text((pad + c * (tw + pad), 6), label, fill="black", font=font)
    for r, res in enumerate(rows):
        y = head + r * (th + cap + pad)
        for c, (key, _) in enumerate(cols):
            x = pad + c * (tw + pad)
            sheet.paste(res.thumbs[key], (x, y))
            if key == "source":
                text = res.pair.replace("→", "->")  # the default font has no arrow
            elif key == "target":
                text = f"no transfer: SW2 {res.refs['no transfer']['sw2']:.4f}"
            else:
                text = f"SW2 {res.rows[key]['sw2']:.4f}   RMS {res.rows[key]['rms']:.3f}"
            draw.text((x, y + th + 2), text, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def markdown(args, results: list[PairResult], methods: list[str], summary: dict, sheet: Path, out: Path,
             pairs_md: Path, ours: str | None, peer: str | None, wall: float) -> str:
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    params = default_params()
    at = commit()
    versions = []
    for mod, label in (("color_matcher", "color-matcher"), ("skimage", "scikit-image"), ("ot", "POT")):
        try:
            versions.append(f"{label} {__import__(mod).__version__}")
        except (ImportError, AttributeError):
            pass
    cmd = "python bench/quality.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    n = len(results)
    lines = [
        BEGIN,
        "## Quality",
        "",
        f"`{cmd}` — {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, colorot {colorot.__version__}"
        f"{f' ({at})' if at else ''}, torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
        f"{', '.join(versions)}; {platform.platform()}, {os.cpu_count()} CPUs; whole run {wall / 60:.1f} min.",
        "",
        f"{n} photo pair(s) at 1920×1200 (credits: [{pairs_md.name}]({rel(pairs_md)})). "
        f"`colorot-default` is `ColorTransfer()` as it stood: "
        f"`{', '.join(f'{k}={v!r}' for k, v in params.items() if k != 'progress')}`.",
        "",
        "| method | median SW2 ↓ | median RMS displacement | median RMS/W2 − 1 | worst RMS/W2 − 1 | "
        "median detail gain (luma) | median detail gain (chroma) | median time per pair |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method in sorted(methods, key=lambda m: summary[m]):
        rows = [r.rows[method] for r in results]
        worst = max((x["rms_w2"] for x in rows), key=abs)
        lines.append(f"| {method} | {summary[method]:.4f} | {med(x['rms'] for x in rows):.4f} | "
                     f"{100 * med(x['rms_w2'] for x in rows):+.1f} % | {100 * worst:+.1f} % | "
                     f"{med(x['detail_gain'] for x in rows):.2f} | {med(x['chroma_gain'] for x in rows):.2f} | "
                     f"{med(x['seconds'] for x in rows):.2f} s |")
    for ref in results[0].refs:
        values = [r.refs[ref] for r in results]
        rms = f"{med(v['rms'] for v in values):.4f}" if "rms" in values[0] else "–"
        rel_w2 = f"{100 * med(v['rms_w2'] for v in values):+.1f} %" if "rms_w2" in values[0] else "–"
        lines.append(f"| *{ref}* | {med(v['sw2'] for v in values):.4f} | {rms} | {rel_w2} | – | – | – | – |")
    lines += [
        "",
        f"Median exact W2 estimate over the pairs: {med(r.w2 for r in results):.4f}.",
        "",
        "* **SW2** = `colorot.metrics.sliced_w2(clip(output, 0, 1), target)`: 256 random directions, "
        "60 000 pixels of each image, seed 0, so every method is scored on the same directions and pixels.",
        "* **RMS displacement** = `colorot.metrics.rms_displacement(source, output)` on the unclipped output.",
        "* **W2** = sqrt(POT `ot.emd2(a, b, M)`) between seeded 4000-pixel subsamples of source and target, "
        "uniform weights, `M = ot.dist(xs, xt)` (squared Euclidean). RMS/W2 − 1 is how much further than "
        "the cheapest transport a method moves colours; the subsample estimate is biased upwards, so a map "
        "that stops short of the target can read below 0.",
        "* **detail gain (luma)** = `colorot.metrics.detail_gain(source, clip(output, 0, 1))`: the energy of "
        "the output luma's finest detail (luma minus its 3×3 mean) over the source's; above 1 a method amplifies "
        "fine detail, noise and grain. **(chroma)**: the same with `of=\"chroma\"`, the energies of the two "
        "colour differences B − Y and R − Y summed: colour mottling.",
        "* **time per pair**: wall time of fit + apply on images already decoded (decoding excluded).",
        "* colorot outputs are the map applied to every pixel (`ct.transform`: a ridge map through its "
        "tabulated profiles, within 10⁻⁷ of the map; no LUT). "
        "color-matcher gets uint8 arrays (its documented input) and its code-value output is divided by "
        "255, except Reinhard, which gets floats in [0, 1] (its zero guard assumes them: on uint8 one "
        "black pixel makes the whole output NaN). scikit-image's `match_histograms(src, ref, channel_axis=-1)` "
        "gets uint8 arrays.",
        "* Reference rows: *no transfer* is the source itself; *default target's own samples* are as many "
        "pixels drawn from the target distribution colorot's default records as the target has (clipped to "
        "[0, 1] like every output): for a mixture, the SW2 a perfect map onto it would reach; for the sliced "
        "solver's `pixels` target, its 256-pixel kernel-density record (the solver itself aims at the "
        "pixels, so this row is no bound for it); *two disjoint halves* is SW2 between two "
        "random halves of the target: the metric's noise floor.",
        "",
    ]
    if any(is_colorot(m) for m in methods):
        lines += ["colorot's maps, per pair: smallest eigenvalue of the symmetric Jacobian over every pixel "
                  "of the pair's source and target (`model.jacobian` on every distinct colour of both, "
                  "`torch.linalg.eigvalsh` of (J + Jᵀ)/2; the floor by construction is eps), "
                  "fraction of output pixels outside [0, 1] (clipped when written), mixture components K, and "
                  "KL(T#α ‖ q) in nats to the **default's** fitted density q (the same q for every map, so the "
                  "column compares maps; `colorot.metrics.kl_to_target`: 20 000 dequantised source pixels, "
                  "H(α) exact for 8-bit sources).", "",
                  "| method | pair | exact W2 | RMS | RMS/W2 − 1 | min eigenvalue of J | clipped | K | KL (nats) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for method in [m for m in methods if is_colorot(m)]:
            for r in results:
                x = r.rows[method]
                lines.append(f"| {method} | {r.pair} | {r.w2:.4f} | {x['rms']:.4f} | {100 * x['rms_w2']:+.1f} % | "
                             f"{x['min_eig']:.2e} | {100 * x['clipped']:.2f} % | {x['components']} | "
                             f"{x['kl']:.3f} |")
            rows = [r.rows[method] for r in results]
            lines.append(f"| {method} | **median** (min eig: minimum) | {med(r.w2 for r in results):.4f} | "
                         f"{med(x['rms'] for x in rows):.4f} | {100 * med(x['rms_w2'] for x in rows):+.1f} % | "
                         f"{min(x['min_eig'] for x in rows):.2e} | {100 * med(x['clipped'] for x in rows):.2f} % | – | "
                         f"{med(x['kl'] for x in rows):.3f} |")
        lines.append("")
    refs = list(results[0].refs)
    lines += [f"![contact sheet]({rel(sheet)})", "",
              f"Contact sheet: source | {ours or '–'} | best peer by median SW2 ({peer or '–'}) | target.", "",
              "<details><summary>Per pair: SW2, RMS/W2 − 1, detail gains, time, clipped fraction</summary>", "",
              "SW2 ↓", "",
              "| pair | " + " | ".join(methods + refs) + " |",
              "| --- |" + " --- |" * (len(methods) + len(refs))]
    for r in results:
        lines.append(f"| {r.pair} | " + " | ".join([f"{r.rows[m]['sw2']:.4f}" for m in methods]
                                                   + [f"{r.refs[k]['sw2']:.4f}" for k in refs]) + " |")
    for title, key, fmt in (("RMS/W2 − 1", "rms_w2", lambda v: f"{100 * v:+.1f} %"),
                            ("detail gain (luma)", "detail_gain", lambda v: f"{v:.2f}"),
                            ("detail gain (chroma)", "chroma_gain", lambda v: f"{v:.2f}"),
                            ("time per pair (s)", "seconds", lambda v: f"{v:.2f}"),
                            ("pixels outside [0, 1]", "clipped", lambda v: f"{100 * v:.2f} %")):
        lines += ["", title, "", "| pair | exact W2 | " + " | ".join(methods) + " |",
                  "| --- | --- |" + " --- |" * len(methods)]
        for r in results:
            lines.append(f"| {r.pair} | {r.w2:.4f} | " + " | ".join(fmt(r.rows[m][key]) for m in methods) + " |")
    lines += ["", "</details>", END]
    return "\n".join(lines)


def write_section(out: Path, section: str) -> None:
    text = out.read_text(encoding="utf-8") if out.exists() else "# colorot benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help=f"first N of the {len(PAIRS)} pairs")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--sheet", type=Path, default=ROOT / "bench" / "quality_sheet.png")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("COLOROT_BENCH_CACHE",
                                                                          "~/.cache/colorot-bench")).expanduser())
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not 1 <= args.pairs <= len(PAIRS):
        parser.error(f"--pairs must be between 1 and {len(PAIRS)}")
    for module in {"ot", *(REQUIRES[m] for m in methods if m in REQUIRES)}:
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"{module} is missing: pip install {PIP[module]} (bench only, not a colorot dependency)")
    torch.set_num_threads(args.threads)
    log(f"colorot {colorot.__version__} from {Path(colorot.__file__).parent}; methods: {', '.join(methods)}")

    started = time.perf_counter()
    names = list(dict.fromkeys(n for pair in PAIRS for n in pair))
    images = prepare_images(args.cache, names)
    pairs_md = args.out.parent / "PAIRS.md"
    write_pairs_md(pairs_md, args.cache, names, images)

    pairs = PAIRS[:args.pairs]
    sheet_idx = set(np.unique(np.round(np.linspace(0, len(pairs) - 1, min(6, len(pairs)))).astype(int)).tolist())
    results = []
    for i, (a, b) in enumerate(pairs):
        log(f"[{i + 1}/{len(pairs)}] {a} → {b}")
        results.append(run_pair(a, b, images, methods, keep_thumbs=i in sheet_idx))

    summary = {m: med(r.rows[m]["sw2"] for r in results) for m in methods}
    ours = "colorot-default" if "colorot-default" in methods else next((m for m in methods if is_colorot(m)), None)
    peers = [m for m in methods if not is_colorot(m)]
    peer = min(peers, key=lambda m: summary[m]) if peers else None
    contact_sheet(args.sheet, results, ours, peer, summary)
    section = markdown(args, results, methods, summary, args.sheet, args.out, pairs_md, ours, peer,
                       time.perf_counter() - started)
    write_section(args.out, section)
    log(f"wrote {args.out}, {args.sheet}, {pairs_md}")


if __name__ == "__main__":
    main()
