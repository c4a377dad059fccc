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
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _icc import rgb_profile, shown_in_srgb as shown  # noqa: E402  (the tests' hand-built profile)

from colorot import ColorTransfer  # noqa: E402
from colorot.imageio import quantize  # noqa: E402
from colorot.metrics import sliced_w2  # noqa: E402
from colorot.profiles import _transform  # noqa: E402

PAIRS = [("day", "sunset"), ("storm", "sunset"), ("sunset", "day"), ("day", "storm")]
ADOBE = rgb_profile("Adobe RGB (1998)")


def main() -> None:
    print(f"{'pair':<18}{'converted':>11}{'codes':>9}{'sRGB':>9}")
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


if __name__ == "__main__":
    main()
