"""Colour profiles: images whose codes stand for different colours are told apart, and a fit or a
match between them takes the target's colours into the source's space (colorot.profiles)."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms
from typer.testing import CliRunner

from _icc import _curve, rgb_profile, shown_in_srgb
from colorot import ColorTransfer, load, profiles
from colorot.cli import app
from colorot.errors import ImageMetadataWarning
from colorot.imageio import quantize
from colorot.matching import Matcher
from colorot.metrics import sliced_w2
from colorot.profiles import UNTAGGED, _transform, apart, colour_space, convert, image_colour_space
from conftest import smooth_rgb

ADOBE = rgb_profile("Adobe RGB (1998)")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
FAST = {"steps": 2, "max_pixels": 500}
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def tagged(path: Path, icc: bytes | None, seed: int = 0) -> Path:
    PILImage.fromarray(smooth_rgb(24, 32, seed)).save(path, **({"icc_profile": icc} if icc else {}))
    return path


def test_spaces_are_told_by_where_their_codes_land_shown_in_srgb() -> None:
    assert colour_space(None) == UNTAGGED
    adobe = colour_space(ADOBE)
    assert adobe.name == "Adobe RGB (1998)" and apart(adobe, UNTAGGED) and apart(UNTAGGED, adobe)
    assert not apart(colour_space(SRGB), UNTAGGED)  # an sRGB profile is what an untagged image is shown as
    assert not apart(colour_space(rgb_profile("sRGB primaries, gamma 2.2")), UNTAGGED)  # within 3 codes
    grey = ADOBE[:16] + b"GRAY" + ADOBE[20:]  # the header of a greyscale image's profile
    assert colour_space(grey) == UNTAGGED and apart(colour_space(grey), adobe)  # its pixels are read as sRGB codes
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


def _photo(path: Path, icc: bytes | None) -> Path:
    """A 160 × 100 cut of samples/day.jpg, its colours written as codes of the profile ``icc``."""
    with PILImage.open(SAMPLES / "day.jpg") as day:
        image = day.convert("RGB").resize((160, 100))
    if icc is not None:
        image = ImageCms.applyTransform(image, _transform(None, icc))
    image.save(path, **({"icc_profile": icc} if icc else {}))
    return path


def test_convert_gives_littlecms_s_codes_and_clips_what_the_target_space_cannot_hold() -> None:
    codes = np.random.default_rng(0).integers(0, 256, (5000, 3)).astype(np.uint8)  # two rows of 4096, one padded
    adobe = colour_space(ADOBE)
    expected = np.asarray(ImageCms.applyTransform(PILImage.fromarray(codes[None]), _transform(None, ADOBE)))[0]
    np.testing.assert_array_equal(convert(codes / np.float32(255), UNTAGGED, adobe) * 255, expected)
    assert convert(np.ones((1, 3)) * [0, 1, 0], adobe, UNTAGGED).tolist() == [[0, 1, 0]]  # Adobe's green, clipped
    assert convert(np.zeros((0, 3)), UNTAGGED, adobe).shape == (0, 3)


def test_a_fit_takes_the_target_into_the_source_s_space_so_the_output_shows_the_target_s_colours(tmp_path) -> None:
    source, target = _photo(tmp_path / "source.png", ADOBE), tmp_path / "target.jpg"
    with PILImage.open(SAMPLES / "sunset.jpg") as sunset:
        sunset.convert("RGB").resize((160, 100)).save(target)
    shown_target = shown_in_srgb(np.asarray(PILImage.open(target)), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = ColorTransfer(random_state=0).fit(source, target)
    assert fitted.train_info_["target_converted"] == "sRGB (untagged) → Adobe RGB (1998)"
    codes_only = ColorTransfer(random_state=0).fit(np.asarray(PILImage.open(source)), np.asarray(PILImage.open(target)))
    assert "target_converted" not in codes_only.train_info_  # arrays carry no profile
    errors = {}
    for name, estimator in (("converted", fitted), ("codes", codes_only)):
        output = quantize(estimator.transform(np.asarray(PILImage.open(source))), 8)
        errors[name] = sliced_w2(shown_in_srgb(output, ADOBE), shown_target)
    assert errors["converted"] < 0.6 * errors["codes"], errors


def test_pooled_images_are_each_taken_from_their_own_space(tmp_path: Path) -> None:
    """Pooled images in different spaces were all read as their first one's: an untagged target
    pooled after an Adobe RGB one went through the Adobe → sRGB conversion too (outputs moved by
    10 to 12 codes on average here).  Each is now taken from its own space, so a pool of the same
    photo in two spaces fits as a pool of one space does."""
    from colorot.transfer import pooled_in_space

    plain, adobe = _photo(tmp_path / "plain.png", None), _photo(tmp_path / "adobe.png", ADOBE)
    pooled, converted = pooled_in_space([adobe, plain], None, "target", None, ("x", UNTAGGED))
    assert [space.name for space in converted] == ["Adobe RGB (1998)"]
    alike, _ = pooled_in_space([plain, plain], None, "target", None, ("x", UNTAGGED))
    assert np.abs(pooled - alike).mean() * 255 < 0.5  # the photo's 8-bit round trip through Adobe RGB codes
    other = tmp_path / "other.png"
    with PILImage.open(SAMPLES / "sunset.jpg") as sunset:
        sunset.convert("RGB").resize((160, 100)).save(other)
    for role, pairs in (("target", {"one space": (other, [plain, plain]), "two spaces": (other, [adobe, plain])}),
                        ("source", {"one space": ([plain, plain], other), "two spaces": ([plain, adobe], other)})):
        fits = {name: ColorTransfer(**FAST).fit(*pair) for name, pair in pairs.items()}
        assert fits["two spaces"].train_info_[f"{role}_converted"] == "Adobe RGB (1998) → sRGB (untagged)"
        assert f"{role}_converted" not in fits["one space"].train_info_
        pixels = np.asarray(PILImage.open(plain if role == "source" else other))
        outputs = {name: quantize(fitted.transform(pixels), 8).astype(int) for name, fitted in fits.items()}
        assert np.abs(outputs["two spaces"] - outputs["one space"]).mean() < 2, role  # 2-step fits on 500 pixels


def test_a_pooled_reference_takes_each_image_from_its_own_space(tmp_path: Path) -> None:
    """A Reference (Matcher) pooled from images in several spaces took them all into the first's,
    then that block into each source's: an Adobe RGB image's colours went through sRGB (clipped to
    its gamut) on their way to an Adobe RGB source.  Each image now goes from its own space, as a fit
    of the pool itself takes it, and the spaces converted are recorded."""
    from colorot.transfer import named_space, pooled_in_space

    plain, adobe = tagged(tmp_path / "plain.png", None, 1), _photo(tmp_path / "adobe.png", ADOBE)
    source = tagged(tmp_path / "source.png", ADOBE, 2)
    matcher = Matcher([plain, adobe], **FAST)
    assert [space.name for space in matcher.reference.converted_from] == ["Adobe RGB (1998)"]  # into the first's
    taken = matcher.reference.in_space(named_space(source), ColorTransfer(**FAST)._fit_density)
    direct, converted = pooled_in_space([plain, adobe], None, "target", None, named_space(source))
    np.testing.assert_array_equal(taken.pixels, direct)  # the Adobe image's codes as they are, the other converted
    assert [space.name for space in taken.converted_from] == [space.name for space in converted] == ["sRGB (untagged)"]
    fitted = matcher.fit(source)
    assert fitted.train_info_["target_converted"] == "sRGB (untagged) → Adobe RGB (1998)"
    assert matcher.fit(plain).train_info_["target_converted"] == "Adobe RGB (1998) → sRGB (untagged)"


def test_a_match_takes_the_reference_into_each_input_s_space_once(tmp_path: Path) -> None:
    """Once per space, and into each input's own: an input in a third space must not be given the
    reference as converted for an earlier input's space."""
    from colorot.transfer import named_space, pooled_in_space

    reference = tagged(tmp_path / "reference.png", ADOBE, 1)
    matcher = Matcher(reference, **FAST)
    plain = matcher.fit(tagged(tmp_path / "plain.png", None, 2))
    assert plain.train_info_["target_converted"] == "Adobe RGB (1998) → sRGB (untagged)"
    gamma = tagged(tmp_path / "gamma.png", rgb_profile("sRGB primaries, gamma 2.2", _curve(1.4)), 4)
    taken = matcher.reference.in_space(named_space(gamma), ColorTransfer(**FAST)._fit_density)
    direct, _ = pooled_in_space(reference, None, "target", None, named_space(gamma))
    np.testing.assert_array_equal(taken.pixels, direct)
    assert "target_converted" not in matcher.fit(tagged(tmp_path / "adobe.png", ADOBE, 3)).train_info_
    converted = matcher.reference.in_space(("x", UNTAGGED), None)  # cached: no fit_density needed again
    assert converted is not matcher.reference and converted.space == (str(reference), UNTAGGED)
    assert matcher.reference.in_space(("y", colour_space(ADOBE)), None) is matcher.reference
    inputs = tmp_path / "in"
    inputs.mkdir()
    tagged(inputs / "plain.png", None, 2), tagged(inputs / "adobe.png", ADOBE, 3)
    result = CliRunner().invoke(app, ["match", str(reference), str(inputs), str(tmp_path / "out"), "--steps", "2",
                                      "--jobs", "2", "--save-maps", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    infos = {name: load(tmp_path / "maps" / f"{name}.pt").train_info_ for name in ("plain", "adobe")}
    assert infos["plain"]["target_converted"] == "Adobe RGB (1998) → sRGB (untagged)"
    assert "target_converted" not in infos["adobe"]


def test_python_match_of_a_path_fits_it_in_its_own_colour_space(tmp_path: Path) -> None:
    """colorot.match reads a path once, and still takes the reference into that image's space."""
    from colorot import match
    from colorot.transfer import to_pixels

    reference, source = tagged(tmp_path / "reference.png", None, 1), tagged(tmp_path / "adobe.png", ADOBE, 3)
    [out] = match(reference, [source], **FAST)
    fitted = Matcher(reference, **FAST).fit(source)
    assert fitted.train_info_["target_converted"] == "sRGB (untagged) → Adobe RGB (1998)"
    np.testing.assert_array_equal(out, fitted.transform(source))
    codes_only = Matcher(reference, **FAST).fit(to_pixels(source))  # no space known: the codes as they are
    assert not np.array_equal(out, codes_only.transform(source))


def test_profiles_lcms_cannot_convert_leave_the_codes_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args):
        raise ImageCms.PyCMSError("cannot build transform")

    monkeypatch.setattr(profiles, "convert", refuse)
    source, target = tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
    with pytest.warns(ImageMetadataWarning, match=rf"{source} \(Adobe RGB \(1998\)\) and {target} \(sRGB "
                                                  r"\(untagged\)\) are in different colour spaces and cannot be "
                                                  r"converted \(cannot build transform\)"):
        fitted = ColorTransfer(**FAST).fit(source, target)
    assert "target_converted" not in fitted.train_info_


def test_a_profile_is_read_once_per_process() -> None:
    assert colour_space(ADOBE) is colour_space(bytes(ADOBE))  # cached: a folder of one camera's photos reads it once


def test_reading_a_profile_leaves_the_pixel_limit_to_the_image_s_own_read(tmp_path: Path, monkeypatch) -> None:
    path = tagged(tmp_path / "a.png", ADOBE)  # 24 × 32 pixels
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # 768 pixels: Pillow warns on opening it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_colour_space(path).name == "Adobe RGB (1998)"
    assert PILImage.MAX_IMAGE_PIXELS == 500


def test_apply_warns_for_an_image_outside_the_space_its_map_was_fitted_in(tmp_path: Path) -> None:
    source, target = tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
    model = tmp_path / "m.pt"
    ColorTransfer(**FAST).fit(source, target).save(model)
    assert load(model).train_info_["colour_space"] == "Adobe RGB (1998)"
    info = CliRunner().invoke(app, ["info", str(model)])
    assert "colour_space=Adobe RGB (1998)" in info.stdout and "colour_space_codes" not in info.stdout
    plain, adobe = tagged(tmp_path / "plain.png", None, 3), tagged(tmp_path / "adobe.png", ADOBE, 4)
    result = CliRunner().invoke(app, ["apply", str(model), str(plain), str(adobe), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: {plain} (sRGB (untagged)) is not in the colour space the map was fitted in (Adobe RGB (1998)): its "
        "codes stand for other colours; pass --convert-space (convert_space=True) to take it into that space and "
        "back, convert it first, or fit a map on an image in its own"]
    piped = CliRunner().invoke(app, ["apply", str(model), "-", "-", "--format", "png"], input=plain.read_bytes())
    assert piped.exit_code == 0 and "warning: <stdin> (sRGB (untagged)) is not in the colour space" in piped.stderr
    unrecorded = tmp_path / "arrays.pt"  # fitted on arrays: no space recorded, nothing to check against
    ColorTransfer(**FAST).fit(np.asarray(PILImage.open(source)), np.asarray(PILImage.open(target))).save(unrecorded)
    assert "colour_space" not in load(unrecorded).train_info_
    quiet = CliRunner().invoke(app, ["apply", str(unrecorded), str(plain), str(tmp_path / "out2")])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_apply_path_warns_as_colorot_apply_does(tmp_path: Path) -> None:
    from colorot.distributed import apply_path

    model = tmp_path / "m.pt"
    ColorTransfer(**FAST).fit(tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
                              ).save(model)
    plain, adobe = tagged(tmp_path / "plain.png", None, 3), tagged(tmp_path / "adobe.png", ADOBE, 4)
    with pytest.warns(ImageMetadataWarning, match=r"plain\.png \(sRGB \(untagged\)\) is not in the colour space"):
        apply_path(model.read_bytes(), plain, tmp_path / "out" / "plain.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_path(model, adobe, tmp_path / "out" / "adobe.png")


def _apply(model: Path, *args: object) -> object:
    return CliRunner().invoke(app, ["apply", str(model), *map(str, args)])


def _shown(path: Path) -> np.ndarray:
    with PILImage.open(path) as image:
        return shown_in_srgb(np.asarray(image.convert("RGB")), image.info.get("icc_profile")) * 255


@pytest.fixture(scope="module")
def srgb_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A map fitted on untagged (sRGB) images, an untagged input, and its colours in Adobe RGB codes."""
    root = tmp_path_factory.mktemp("srgb_fit")
    plain = smooth_rgb(48, 64, 5)
    PILImage.fromarray(plain).save(root / "plain.png")
    PILImage.fromarray(smooth_rgb(40, 60, 6)).save(root / "target.png")
    PILImage.fromarray(profiles.convert_codes(plain, UNTAGGED, colour_space(ADOBE))).save(root / "adobe.png",
                                                                                           icc_profile=ADOBE)
    ColorTransfer(max_pixels=3000).fit(root / "plain.png", root / "target.png").save(root / "m.pt")
    return {"root": root, "model": root / "m.pt", "plain": root / "plain.png", "adobe": root / "adobe.png"}


def test_apply_convert_space_gives_an_input_in_another_space_the_colours_the_map_gives(srgb_fit, tmp_path) -> None:
    """The same colours in Adobe RGB codes, taken into the map's sRGB and back: shown, the output
    is the untagged input's output to within the 8-bit roundings; mapped code for code it is not."""
    out = tmp_path / "out"
    assert _apply(srgb_fit["model"], srgb_fit["plain"], out / "plain.png").exit_code == 0
    converted = _apply(srgb_fit["model"], srgb_fit["adobe"], out / "converted.png", "--convert-space", "--json")
    assert converted.exit_code == 0 and "warning" not in converted.stderr, converted.output
    assert json.loads(converted.stdout)["convert_space"] is True
    as_codes = _apply(srgb_fit["model"], srgb_fit["adobe"], out / "codes.png")
    assert as_codes.exit_code == 0 and "pass --convert-space" in as_codes.stderr
    with PILImage.open(out / "converted.png") as written:
        assert written.info["icc_profile"] == ADOBE  # back in its own space, its profile kept
    reference = _shown(out / "plain.png")
    converted_error = np.abs(_shown(out / "converted.png") - reference).mean()
    codes_error = np.abs(_shown(out / "codes.png") - reference).mean()
    assert converted_error < 1.0 and converted_error < 0.1 * codes_error, (converted_error, codes_error)
    piped = CliRunner().invoke(app, ["apply", str(srgb_fit["model"]), "-", "-", "--convert-space"],
                               input=srgb_fit["adobe"].read_bytes())
    assert piped.exit_code == 0 and piped.stdout_bytes == (out / "converted.png").read_bytes()


def test_convert_space_uses_the_profile_a_checkpoint_keeps(tmp_path) -> None:
    """A map fitted in Adobe RGB keeps that profile; an untagged input is converted with it, and by
    colorot.distributed.apply_path as by the CLI."""
    from colorot.distributed import apply_path

    source, target = tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
    model = tmp_path / "m.pt"
    ColorTransfer(**FAST).fit(source, target).save(model)
    assert profiles.recorded_space(load(model).train_info_).icc == ADOBE
    assert "colour_space_icc" not in CliRunner().invoke(app, ["info", str(model)]).stdout
    plain = tagged(tmp_path / "plain.png", None, 3)
    result = _apply(model, plain, tmp_path / "cli.png", "--convert-space")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_path(model, plain, tmp_path / "engine.png", convert_space=True)
    assert (tmp_path / "engine.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    assert _apply(model, plain, tmp_path / "codes.png").exit_code == 0
    assert (tmp_path / "codes.png").read_bytes() != (tmp_path / "cli.png").read_bytes()  # it did convert


def _sixteen_bit(path: Path, eight_bit: Path, icc: bytes) -> Path:
    """``eight_bit``'s codes as a 16-bit PNG (the same colours) tagged with ``icc``."""
    from colorot.imageio import Image, write_image

    codes = np.asarray(PILImage.open(eight_bit)).astype(np.uint16) * 257
    write_image(path, Image(codes, None, 16, "RGB", "PNG", icc_profile=icc), codes)
    return path


def test_convert_space_takes_a_16_bit_image_through_the_profiles_in_floating_point(srgb_fit, tmp_path) -> None:
    """LittleCMS converts 8-bit codes only; a 16-bit image between matrix/TRC profiles is converted in
    floating point (colorot.icc_matrix): its output stays 16-bit, with its profile, and lands where
    the 8-bit image of the same colours does, to within that path's 8-bit roundings."""
    from colorot.imageio import read_image

    deep = _sixteen_bit(tmp_path / "deep.png", srgb_fit["adobe"], ADOBE)
    converted = _apply(srgb_fit["model"], deep, tmp_path / "converted16.png", "--convert-space")
    assert converted.exit_code == 0 and "warning" not in converted.stderr, converted.output
    assert _apply(srgb_fit["model"], srgb_fit["adobe"], tmp_path / "converted8.png", "--convert-space").exit_code == 0
    assert _apply(srgb_fit["model"], deep, tmp_path / "codes16.png").exit_code == 0
    written = read_image(tmp_path / "converted16.png")
    assert written.bit_depth == 16 and written.icc_profile == ADOBE
    assert min(len(np.unique(written.codes[..., c])) for c in range(3)) > 256  # not rounded to 8 bits on the way
    eight = read_image(tmp_path / "converted8.png").codes.astype(float)
    difference = np.abs(written.codes / 257 - eight)
    as_codes = np.abs(read_image(tmp_path / "codes16.png").codes / 257 - eight).mean()
    assert difference.mean() < 1.0 and difference.max() <= 6 and difference.mean() < 0.1 * as_codes, \
        (difference.mean(), difference.max(), as_codes)


def test_convert_space_warns_where_it_cannot_convert(srgb_fit, tmp_path) -> None:
    from _icc import lut_tag

    model = srgb_fit["model"]
    tables = rgb_profile("Adobe RGB (1998)", extra=((b"A2B0", lut_tag()),))  # LittleCMS reads it by its tables
    deep = _sixteen_bit(tmp_path / "deep.png", srgb_fit["adobe"], tables)
    result = _apply(model, deep, tmp_path / "out16.png", "--convert-space")
    assert result.exit_code == 0 and ("it is mapped as it is (16-bit images are converted between matrix/TRC "
                                      "profiles") in " ".join(result.stderr.split()), result.output
    older = tmp_path / "older.pt"  # a map fitted in Adobe RGB by an earlier colorot: no profile kept
    fitted = ColorTransfer(**FAST).fit(tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "t.png", None, 2))
    del fitted.train_info_["colour_space_icc"]
    fitted.save(older)
    result = _apply(older, srgb_fit["plain"], tmp_path / "old.png", "--convert-space")
    assert result.exit_code == 0 and "the checkpoint does not hold the profile of its colour space" in \
        " ".join(result.stderr.split()), result.output
    refused = _apply(model, srgb_fit["adobe"], tmp_path / "inv.png", "--convert-space", "--inverse")
    assert refused.exit_code == 1 and "not made for --inverse" in refused.stderr


def test_transform_of_a_file_in_another_space_warns_as_apply_does(tmp_path: Path, srgb_fit: dict) -> None:
    """``transform`` of a path or PIL image mapped another space's codes without the warning
    ``colorot apply`` gives; an array carries no profile, and a match fits each image in its own space."""
    from colorot import match

    fitted = load(srgb_fit["model"])
    with pytest.warns(ImageMetadataWarning, match=rf"{srgb_fit['adobe']} \(Adobe RGB \(1998\)\) is not in the colour "
                                                  r"space the map was fitted in \(sRGB \(untagged\)\)"):
        fitted.transform(srgb_fit["adobe"])
    with PILImage.open(srgb_fit["adobe"]) as pil, pytest.warns(ImageMetadataWarning, match="the PIL image"):
        fitted.transform(pil)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.transform(srgb_fit["plain"])
        fitted.transform(np.asarray(PILImage.open(srgb_fit["adobe"])))
        match(srgb_fit["plain"], [srgb_fit["adobe"]], **FAST)


def test_preview_sheets_show_each_image_s_colours_in_srgb(tmp_path: Path, monkeypatch) -> None:
    """A sheet is untagged, and showed an Adobe RGB image's codes as sRGB's (other colours); each
    panel is now its image's colours in sRGB codes, a map's output taken from the source's space."""
    from colorot import preview

    plain, adobe = _photo(tmp_path / "plain.png", None), _photo(tmp_path / "adobe.png", ADOBE)
    shown, own = preview.thumbnail_codes(adobe).astype(int), preview.thumbnail_codes(plain).astype(int)
    assert np.abs(shown - own).mean() < 1  # the photo's 8-bit round trip through Adobe RGB codes
    assert np.abs(preview.thumbnail_and_sample(adobe)[0].astype(int) - own).mean() > 5  # its codes as they are
    panels = {}

    def kept(before, after, target, losses, samples, steps):
        panels.update(before=before, after=after)
        return PILImage.new("RGB", (4, 4))

    monkeypatch.setattr(preview, "fit_sheet", kept)
    fitted = {name: ColorTransfer(**FAST).fit(source, tmp_path / "plain.png") for name, source in
              (("plain", plain), ("adobe", adobe))}
    shown_panels = {}
    for name, source in (("plain", plain), ("adobe", adobe)):
        preview.fit_preview(tmp_path / f"{name}_sheet.png", fitted[name].map_, source, plain, [1.0])
        shown_panels[name] = {key: value.astype(int) for key, value in panels.items()}
    # the source as sRGB shows it (6.6 codes off before), and its output under a map fitted in Adobe RGB
    # codes as sRGB shows it, near the plain map's (two 2-step fits on 500 pixels: 2.1 codes apart)
    for key, codes in (("before", 1), ("after", 3)):
        assert np.abs(shown_panels["adobe"][key] - shown_panels["plain"][key]).mean() < codes, key


def test_a_large_profile_is_kept_and_one_too_large_is_said_so(tmp_path: Path, srgb_fit: dict) -> None:
    """A profile over 256 KiB (a camera's or scanner's lookup tables) was dropped from the checkpoint
    without a word, and --convert-space then blamed "an earlier colorot"."""
    from colorot.checkpoint import MAX_RECORD_TEXT

    assert len(base64.b64encode(bytes(profiles.MAX_RECORDED_PROFILE))) == MAX_RECORD_TEXT  # its text fits a record
    large = rgb_profile("Adobe RGB (1998)", extra=((b"zzzz", b"data" + bytes(4) + bytes(300_000)),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = ColorTransfer(**FAST).fit(tagged(tmp_path / "large.png", large, 1), tagged(tmp_path / "t.png", None, 2))
    kept.save(tmp_path / "kept.pt")
    assert profiles.recorded_space(load(tmp_path / "kept.pt").train_info_).icc == large
    too_large = rgb_profile("Adobe RGB (1998)", extra=((b"zzzz", b"data" + bytes(4) + bytes(800_000)),))
    source = tagged(tmp_path / "too_large.png", too_large, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fit, or a match, that keeps no map says nothing
        fitted = ColorTransfer(**FAST).fit(source, tmp_path / "t.png")
        Matcher(tmp_path / "t.png", **FAST).fit_and_transform(source)
    with pytest.warns(ImageMetadataWarning, match=rf"an ICC profile of {len(too_large)} bytes, more than a "
                                                  r"checkpoint keeps \(786432\)"):
        fitted.save(tmp_path / "left_out.pt")
    assert fitted.train_info_["colour_space_icc_bytes"] == len(too_large)
    result = _apply(tmp_path / "left_out.pt", srgb_fit["plain"], tmp_path / "out.png", "--convert-space")
    assert result.exit_code == 0 and (f"the checkpoint does not hold the profile of its colour space ({len(too_large)} "
                                      "bytes, over the 786432 a checkpoint keeps)") in " ".join(result.stderr.split())


@pytest.mark.parametrize("size", [1, 10])
def test_a_recorded_space_whose_codes_are_not_the_grid_s_names_no_space(size: int) -> None:
    """A crafted checkpoint's codes of another length broadcast (1 byte: every image warned of as in
    another space) or crashed apply and eval with a traceback (10 bytes)."""
    record = profiles.space_record(colour_space(ADOBE))
    assert profiles.recorded_space(record).name == "Adobe RGB (1998)"
    assert profiles.recorded_space({**record, "colour_space_codes": "00" * size}) is None


def test_a_header_pillow_cannot_open_has_no_profile(tmp_path, monkeypatch) -> None:
    """Pillow's AVIF plugin raises RuntimeError on a damaged file: fit and eval, which read the
    profile before the pixels, printed a traceback instead of the read's one-line error."""
    from colorot.imageio import read_icc_profile

    path = tagged(tmp_path / "a.png", ADOBE)

    def damaged(*args, **kwargs):
        raise RuntimeError("Failed to decode image: Missing or empty image item")

    monkeypatch.setattr(PILImage, "open", damaged)
    assert read_icc_profile(path) is None


def test_convert_space_with_a_map_that_records_no_space_says_so(tmp_path) -> None:
    """A map fitted on arrays (or by colorot 0.2.0) records no colour space: --convert-space took the
    flag, reported "convert_space": true and mapped every image as it was, without a word."""
    from colorot.distributed import apply_path

    rng = np.random.default_rng(0)
    model = tmp_path / "arrays.pt"
    ColorTransfer(**FAST).fit(rng.random((40, 50, 3)), rng.random((40, 50, 3)) * [1.0, 0.6, 0.3]).save(model)
    adobe = tagged(tmp_path / "adobe.png", ADOBE)
    plain = _apply(model, adobe, tmp_path / "plain.png")
    asked = _apply(model, adobe, tmp_path / "asked.png", "--convert-space", "--json")
    assert asked.exit_code == 0 and asked.stderr.count("records no colour space") == 1, asked.output
    assert "each is mapped as it is" in " ".join(asked.stderr.split())  # an image's words, not a table's
    assert json.loads(asked.stdout)["convert_space"] is False and "records no colour space" not in plain.stderr
    table = CliRunner().invoke(app, ["export-lut", str(model), str(tmp_path / "t.cube"), "--size", "5", "--convert-space"])
    assert table.exit_code == 0 and "has no space to bake the table from" in " ".join(table.stderr.split())
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "asked.png").read_bytes()
    with pytest.warns(ImageMetadataWarning, match="records no colour space"):
        apply_path(model, adobe, tmp_path / "python.png", convert_space=True)


def test_export_lut_names_the_maps_colour_space_and_bakes_it_for_srgb_with_convert_space(tmp_path) -> None:
    """A map fitted in Adobe RGB made a .cube of Adobe RGB codes while every word said sRGB, without a
    warning; it is said now, and --convert-space bakes the table for sRGB codes: at its grid points
    the table gives what `colorot apply --convert-space` gives an untagged image of those colours."""
    from colorot.cube import read_cube
    from colorot.lut import lut_grid

    source, target = tagged(tmp_path / "source.png", ADOBE, 1), tagged(tmp_path / "target.png", None, 2)
    model = tmp_path / "m.pt"
    ColorTransfer(**FAST).fit(source, target).save(model)
    runner = CliRunner()
    plain = runner.invoke(app, ["export-lut", str(model), str(tmp_path / "codes.cube"), "--size", "17", "--json"])
    assert plain.exit_code == 0 and "pass --convert-space (convert_space=True) to bake it for sRGB codes" in \
        " ".join(plain.stderr.split()), plain.output
    assert json.loads(plain.stdout)["colour_space"] == "Adobe RGB (1998)"
    assert "codes Adobe RGB (1998)" in (tmp_path / "codes.cube").read_text().splitlines()[0]
    baked = runner.invoke(app, ["export-lut", str(model), str(tmp_path / "srgb.cube"), "--size", "17",
                                "--convert-space", "--json"])
    assert baked.exit_code == 0 and "warning" not in baked.stderr, baked.output
    document = json.loads(baked.stdout)
    assert (document["colour_space"], document["converted_from"]) == ("sRGB", "Adobe RGB (1998)")
    grid = (lut_grid(17) * 255).round().astype(np.uint8)
    PILImage.fromarray(grid.reshape(17, 17 * 17, 3)).save(tmp_path / "grid.png")
    assert _apply(model, tmp_path / "grid.png", tmp_path / "applied.png", "--convert-space").exit_code == 0
    applied = np.asarray(PILImage.open(tmp_path / "applied.png"), float).reshape(-1, 3)
    srgb, codes = (read_cube(tmp_path / name).table.reshape(-1, 3).clip(0, 1) * 255 for name in ("srgb.cube", "codes.cube"))
    # apply rounds to 8-bit codes on the way in and out (LittleCMS), which the map's slope magnifies
    assert np.abs(srgb - applied).mean() < 0.75 and np.abs(srgb - applied).max() <= 6
    assert np.abs(codes - applied).mean() > 4 * np.abs(srgb - applied).mean()  # the unconverted table is further
    refused = runner.invoke(app, ["export-lut", str(model), str(tmp_path / "i.cube"), "--inverse", "--convert-space"])
    assert refused.exit_code == 1 and "bakes the forward map's table for sRGB codes; it is not made for --inverse" \
        in " ".join(refused.stderr.split())
    fitted = load(model)  # ColorTransfer.export_lut writes the same files, and says the same
    with pytest.warns(ImageMetadataWarning, match=r"this map was fitted in Adobe RGB \(1998\): the table takes"):
        fitted.export_lut(tmp_path / "python_codes.cube", size=17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.export_lut(tmp_path / "python_srgb.cube", size=17, convert_space=True)
    for name in ("codes", "srgb"):
        assert (tmp_path / f"python_{name}.cube").read_bytes() == (tmp_path / f"{name}.cube").read_bytes()
    missing = runner.invoke(app, ["export-lut", str(tmp_path / "missing.pt"), str(tmp_path / "m.cube"), "--inverse",
                                  "--convert-space"])  # the options refused before the checkpoint is read
    assert missing.exit_code == 1 and "not made for --inverse" in missing.stderr, missing.output
    arrays = ColorTransfer(**FAST).fit(np.asarray(PILImage.open(source)), np.asarray(PILImage.open(target)))
    with pytest.warns(ImageMetadataWarning, match="records no colour space") as caught:
        arrays.export_lut(tmp_path / "arrays.cube", size=5, convert_space=True)
    assert caught[0].filename == __file__  # named at the caller's line


def test_a_colour_space_named_outside_ascii_names_its_lut_in_ascii(tmp_path) -> None:
    """A localised profile's name ("Écran …") crashed export-lut in the ASCII .cube writer with a
    traceback, after its warning."""
    name = "Écran Adobe RGB « 色 »"
    source = tagged(tmp_path / "source.png", rgb_profile("Adobe RGB (1998)", description=name), 1)
    model = tmp_path / "m.pt"
    ColorTransfer(**FAST).fit(source, tagged(tmp_path / "target.png", None, 2)).save(model)
    result = CliRunner().invoke(app, ["export-lut", str(model), str(tmp_path / "t.cube"), "--size", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["colour_space"] == name  # JSON keeps the name as the profile gives it
    title = (tmp_path / "t.cube").read_bytes().splitlines()[0].decode("ascii")
    assert title == 'TITLE "colorot ridge codes Ecran Adobe RGB ? ? ?"'
    with pytest.warns(ImageMetadataWarning, match="Écran"):
        load(model).export_lut(tmp_path / "python.cube", size=3)
    assert (tmp_path / "python.cube").read_bytes() == (tmp_path / "t.cube").read_bytes()


def test_a_colour_space_name_from_a_file_stays_on_the_title_line(tmp_path) -> None:
    """A name holding a newline (a crafted checkpoint or profile) wrote a second LUT_3D_SIZE into the
    header, which colorot's own reader then refused."""
    from colorot.cube import cube_text, read_cube
    from colorot.lut import Lut, lut_grid

    text = cube_text(Lut(2, lut_grid(2)), 'colorot ridge codes Adobe\nLUT_3D_SIZE 3\r\n"X"')
    assert text.splitlines()[0] == "TITLE \"colorot ridge codes Adobe LUT_3D_SIZE 3  'X'\""
    (tmp_path / "t.cube").write_text(text)
    assert read_cube(tmp_path / "t.cube").size == 2
