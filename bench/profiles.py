"""A fit between colour spaces: the target taken into the source's space, against codes matched as they are.

    python bench/profiles.py

For each pair of the bundled samples (source → target), the source is written as an Adobe RGB (1998)
PNG (its colours kept: converted by LittleCMS and tagged with tests/_icc.py's hand-built profile)
and fitted to the untagged (sRGB) target three ways, each `ColorTransfer(random_state=0)`:

* **converted**: from the files, so colorot takes the target's pixels into Adobe RGB first;
* **codes**: from the same files' arrays, which carry no profile: Adobe RGB codes matched to sRGB codes;
* **sRGB**: the untagged source, the baseline of one colour space.

Each output is shown as a viewer shows it (through its profile into sRGB) and its SW2 to the target
printed (``colorot.metrics.sliced_w2``, as bench/quality.py).

Then ``colorot apply``'s side: the sRGB fit, saved, applied (``colorot.apply.apply_to_file``, as the
CLI does) to the Adobe RGB source with ``convert_space`` (``--convert-space``: taken into sRGB, mapped,
taken back) and without (code for code, with a warning), each shown in sRGB against the same map
applied to the untagged source: mean and 99th percentile of |difference| in 8-bit code values, and
each output's SW2 to the target beside the untagged one's. *convert16*: the same colours as a 16-bit
Adobe RGB PNG (the sRGB source converted in floating point, ``colorot.profiles.convert_deep``), applied
with ``convert_space``, its 16-bit output shown in sRGB the same way (LittleCMS here converts 8 bits).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _icc import rgb_profile, shown_in_srgb as shown  # noqa: E402  (the tests' hand-built profile)

from colorot import ColorTransfer  # noqa: E402
from colorot import imageio  # noqa: E402
from colorot.apply import apply_to_file, map_space, prepare  # noqa: E402
from colorot.imageio import quantize  # noqa: E402
from colorot.metrics import sliced_w2  # noqa: E402
from colorot.profiles import UNTAGGED, _transform, colour_space, convert_deep  # noqa: E402

PAIRS = [("day", "sunset"), ("storm", "sunset"), ("sunset", "day"), ("day", "storm")]
ADOBE = rgb_profile("Adobe RGB (1998)")


def shown_file(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return shown(np.asarray(image.convert("RGB")), image.info.get("icc_profile"))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no options
    print(f"{'pair':<18}{'converted':>11}{'codes':>9}{'sRGB':>9}")
    applied = []
    with tempfile.TemporaryDirectory() as tmp:
        for source_name, target_name in PAIRS:
            source, target = ROOT / "samples" / f"{source_name}.jpg", ROOT / "samples" / f"{target_name}.jpg"
            with Image.open(source) as image:
                plain = np.asarray(image.convert("RGB"))
            adobe = Path(tmp) / f"{source_name}_adobe.png"
            ImageCms.applyTransform(Image.fromarray(plain), _transform(None, ADOBE)).save(adobe, icc_profile=ADOBE)
            with Image.open(adobe) as image, Image.open(target) as goal:
                adobe_codes, target_codes = np.asarray(image.convert("RGB")), np.asarray(goal.convert("RGB"))
            reference = shown(target_codes, None)
            runs = {"converted": (ColorTransfer(random_state=0).fit(adobe, target), adobe_codes, ADOBE),
                    "codes": (ColorTransfer(random_state=0).fit(adobe_codes, target_codes), adobe_codes, ADOBE),
                    "sRGB": (ColorTransfer(random_state=0).fit(source, target), plain, None)}
            sw2 = {name: sliced_w2(shown(quantize(fitted.transform(codes), 8), icc), reference)
                   for name, (fitted, codes, icc) in runs.items()}
            print(f"{source_name + ' → ' + target_name:<18}{sw2['converted']:>11.4f}{sw2['codes']:>9.4f}"
                  f"{sw2['sRGB']:>9.4f}")
            model = Path(tmp) / f"{source_name}_{target_name}.pt"
            runs["sRGB"][0].save(model)
            fitted, table = prepare(model)
            deep = Path(tmp) / f"{source_name}_adobe16.png"
            deep_codes = quantize(convert_deep(plain / 255, UNTAGGED, colour_space(ADOBE)), 16)
            imageio.write_image(deep, imageio.Image(deep_codes, None, 16, "RGB", "PNG", icc_profile=ADOBE), deep_codes)
            outputs = {name: Path(tmp) / f"{source_name}_{target_name}_{name}.png"
                       for name in ("untagged", "convert", "codes", "convert16")}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the code-for-code run's: its point
                for name, src, convert in (("untagged", source, False), ("convert", adobe, True),
                                           ("codes", adobe, False), ("convert16", deep, True)):
                    apply_to_file(fitted, src, outputs[name], table=table, space=map_space(model),
                                  convert_space=convert)
            seen = {name: shown_file(path) for name, path in outputs.items() if name != "convert16"}
            written = imageio.read_image(outputs["convert16"])
            assert written.bit_depth == 16
            seen["convert16"] = convert_deep(written.rgb, colour_space(ADOBE), UNTAGGED).reshape(-1, 3)
            row = [f"{source_name} → {target_name}"]
            for name in ("convert", "codes", "convert16"):
                difference = 255 * np.abs(seen[name] - seen["untagged"])
                row += [f"{difference.mean():.2f}", f"{np.percentile(difference, 99):.0f}"]
            row += [f"{sliced_w2(seen[name], reference):.4f}" for name in ("untagged", "convert", "codes", "convert16")]
            applied.append(row)
    print("\ncolorot apply of the sRGB map to the Adobe RGB source, against it applied to the untagged source")
    print(f"{'pair':<18}{'convert: mean':>14}{'p99':>5}{'codes: mean':>12}{'p99':>5}{'convert16: mean':>16}{'p99':>5}"
          f"{'SW2 untagged':>13}{'convert':>9}{'codes':>9}{'convert16':>10}")
    for row in applied:
        print(f"{row[0]:<18}{row[1]:>14}{row[2]:>5}{row[3]:>12}{row[4]:>5}{row[5]:>16}{row[6]:>5}"
              f"{row[7]:>13}{row[8]:>9}{row[9]:>9}{row[10]:>10}")


if __name__ == "__main__":
    main()
