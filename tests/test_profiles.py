"""Colour profiles: images whose codes stand for different colours are told apart, and a fit or a
match between them warns (colorot.profiles)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms
from typer.testing import CliRunner

from _icc import rgb_profile
from colorot import ColorTransfer
from colorot.cli import app
from colorot.errors import ImageMetadataWarning
from colorot.matching import Matcher
from colorot.profiles import UNTAGGED, apart, colour_space, image_colour_space
from conftest import smooth_rgb

ADOBE = rgb_profile("Adobe RGB (1998)")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
FAST = {"steps": 2, "max_pixels": 500}


def tagged(path: Path, icc: bytes | None, seed: int = 0) -> Path:
    PILImage.fromarray(smooth_rgb(24, 32, seed)).save(path, **({"icc_profile": icc} if icc else {}))
    return path


def test_spaces_are_told_by_where_their_codes_land_in_srgb() -> None:
    assert colour_space(None) == UNTAGGED
    adobe = colour_space(ADOBE)
    assert adobe.name == "Adobe RGB (1998)" and apart(adobe, UNTAGGED) and apart(UNTAGGED, adobe)
    assert not apart(colour_space(SRGB), UNTAGGED)  # an sRGB profile is what an untagged image is shown as
    assert not apart(colour_space(rgb_profile("sRGB primaries, gamma 2.2")), UNTAGGED)  # within 3 codes
    unreadable = colour_space(b"not a profile" * 20)
    assert unreadable.srgb_codes is None and not apart(unreadable, adobe)  # nothing can be said
    assert not apart(None, adobe)  # an array: no profile known


def test_an_image_s_space_comes_from_its_file_or_pil_image(tmp_path: Path) -> None:
    path = tagged(tmp_path / "a.png", ADOBE)
    assert image_colour_space(path).name == "Adobe RGB (1998)"
    with PILImage.open(path) as pil:
        assert image_colour_space(pil).name == "Adobe RGB (1998)"
    assert image_colour_space(tagged(tmp_path / "b.png", None)) == UNTAGGED
    assert image_colour_space(np.zeros((2, 2, 3))) is None
    assert image_colour_space(tmp_path / "missing.png") is None


def test_a_fit_between_spaces_warns_once_naming_both(tmp_path: Path) -> None:
    source, target = tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
    with pytest.warns(ImageMetadataWarning) as caught:
        ColorTransfer(**FAST).fit([source, source], target)
    assert [str(w.message).split(": colorot")[0] for w in caught] == [
        f"{source} (Adobe RGB (1998)) and {target} (sRGB (untagged)) are in different colour spaces"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ColorTransfer(**FAST).fit(tagged(tmp_path / "srgb.png", SRGB, 3), target)  # one space: no warning


def test_a_match_warns_for_each_input_in_another_space_than_the_reference(tmp_path: Path) -> None:
    reference = tagged(tmp_path / "reference.png", ADOBE, 1)
    matcher = Matcher(reference, **FAST)
    with pytest.warns(ImageMetadataWarning, match=rf"plain.png \(sRGB \(untagged\)\) and {reference} \(Adobe RGB"):
        matcher.fit(tagged(tmp_path / "plain.png", None, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matcher.fit(tagged(tmp_path / "adobe.png", ADOBE, 3))
    inputs = tmp_path / "in"
    inputs.mkdir()
    tagged(inputs / "plain.png", None, 2), tagged(inputs / "adobe.png", ADOBE, 3)
    result = CliRunner().invoke(app, ["match", str(reference), str(inputs), str(tmp_path / "out"), "--steps", "2",
                                      "--jobs", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: {inputs / 'plain.png'} (sRGB (untagged)) and {reference} (Adobe RGB (1998)) are in "
                     "different colour spaces: colorot matches code values, not colours, so convert both to one "
                     "profile first for a faithful match"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adobe.png", "plain.png"]


def test_a_profile_is_read_once_per_process() -> None:
    assert colour_space(ADOBE) is colour_space(bytes(ADOBE))  # cached: a folder of one camera's photos reads it once


def test_reading_a_profile_leaves_the_pixel_limit_to_the_image_s_own_read(tmp_path: Path, monkeypatch) -> None:
    path = tagged(tmp_path / "a.png", ADOBE)  # 24 × 32 pixels
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # 768 pixels: Pillow warns on opening it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_colour_space(path).name == "Adobe RGB (1998)"
    assert PILImage.MAX_IMAGE_PIXELS == 500
