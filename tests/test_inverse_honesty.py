"""``--inverse`` tells the truth: its round trip on each image's own colours, a warning and a JSON
field where the inverse is ill-conditioned for the image, and the share of an inverse LUT outside the cube."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import ColorTransfer, checkpoint
from colorot.cli import _INVERSE_HELP, _INVERSE_LUT_HELP, app
from colorot.imageio import read_pixels
from colorot.models import AffineMap
from colorot.transforms import (INVERSE_BAD_SHARE, INVERSE_LUT_BAD_SHARE, INVERSE_MAX_GAIN, INVERSE_TOLERANCE,
                                InverseMap, check_inverse, distance_outside_cube, lut_outside)

from conftest import smooth_rgb


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> dict[str, Path]:
    """A source, a mild affine map (a slightly warmer target) and one onto a near-monochrome target."""
    root = tmp_path_factory.mktemp("inverse")
    paths = {name: root / f"{name}.png" for name in ("source", "warm", "grey")}
    source = smooth_rgb(16, 20, 1)
    PILImage.fromarray(source).save(paths["source"])
    warm = np.clip(source.astype(int) + [12, 4, -8], 0, 255).astype(np.uint8)
    PILImage.fromarray(warm).save(paths["warm"])
    grey = np.full((16, 20, 3), 128, np.uint8) + np.random.default_rng(0).integers(0, 2, (16, 20, 1), np.uint8)
    PILImage.fromarray(grey).save(paths["grey"])
    for name in ("warm", "grey"):
        paths[f"{name}.pt"] = root / f"{name}.pt"
        ColorTransfer(model="affine", target="gaussian").fit(paths["source"], paths[name]).save(paths[f"{name}.pt"])
    return paths


def _invert(model: Path, image: Path, tmp_path: Path):
    return CliRunner().invoke(app, ["apply", str(model), str(image), str(tmp_path / "back.png"), "--inverse",
                                    "--json", "--jobs", "1"])


def test_the_thresholds_are_the_documented_ones() -> None:
    assert (INVERSE_TOLERANCE, INVERSE_BAD_SHARE, INVERSE_LUT_BAD_SHARE, INVERSE_MAX_GAIN) == (2 / 255, 0.01, 0.10, 4)
    assert all(text in _INVERSE_HELP for text in ("2/255", "1 %", "over 4"))
    assert "10 %" in _INVERSE_LUT_HELP and "2/255" in _INVERSE_LUT_HELP


def test_distance_outside_cube_is_the_max_norm_excess() -> None:
    x = np.array([[0.5, 0.5, 0.5], [0.0, 1.0, 0.2], [-0.3, 0.5, 1.1], [2.0, -5.0, 0.5]])
    np.testing.assert_allclose(distance_outside_cube(x), [0.0, 0.0, 0.3, 5.0])


def test_check_inverse_of_a_mild_map_is_well_conditioned_on_the_images_colours(maps) -> None:
    inverse = InverseMap(checkpoint.load(maps["warm.pt"]).model)
    check = check_inverse(inverse, read_pixels(maps["warm"]))
    assert check.round_trip_max < 1e-6 and check.outside_share == 0.0 and check.gain_share == 0.0
    assert check.gain_max < INVERSE_MAX_GAIN and not check.ill_conditioned


def test_check_inverse_flags_a_gain_that_magnifies_rounding_into_banding(rng) -> None:
    """T = 0.5 + diag(1, 1, 1/8)(x − 0.5): every preimage is in the cube, but blue's noise is magnified 8×."""
    cov = np.eye(3) * 0.04
    squeeze = AffineMap.from_gaussians(np.full(3, 0.5), cov, np.full(3, 0.5), cov * np.diag([1, 1, 1 / 64]), eps=1e-9)
    y = np.column_stack([rng.random((300, 2)), 0.5 + (rng.random(300) - 0.5) / 9])  # inside T(cube)
    check = check_inverse(InverseMap(squeeze), y)
    assert check.outside_share == 0.0 and check.round_trip_max < 1e-6
    assert check.gain_max == pytest.approx(8.0, rel=1e-4) and check.gain_share == 1.0 and check.ill_conditioned


def test_check_inverse_of_a_map_onto_near_grey_finds_preimages_far_outside_the_cube(maps) -> None:
    """T squeezes the source's colours around one grey: a colourful image has its preimages far out."""
    inverse = InverseMap(checkpoint.load(maps["grey.pt"]).model)
    check = check_inverse(inverse, read_pixels(maps["source"]))
    assert check.round_trip_max < INVERSE_TOLERANCE  # the solve itself is accurate ...
    assert check.outside_share > 0.5 and check.outside_max > 1.0 and check.ill_conditioned  # ... its answer is not


def test_check_inverse_samples_n_pixels_seeded(maps) -> None:
    inverse = InverseMap(checkpoint.load(maps["grey.pt"]).model)
    pixels = read_pixels(maps["source"])
    chosen = pixels[np.random.default_rng(4).choice(len(pixels), 50, replace=False)]
    assert check_inverse(inverse, pixels, n=50, seed=4) == check_inverse(inverse, chosen, n=50)
    with torch.inference_mode():
        x = inverse(torch.as_tensor(chosen, dtype=torch.float64)).numpy()
    assert check_inverse(inverse, chosen).outside_share == np.mean(distance_outside_cube(x) > INVERSE_TOLERANCE)


def test_apply_inverse_of_a_well_conditioned_map_warns_of_nothing(maps, tmp_path) -> None:
    result = _invert(maps["warm.pt"], maps["warm"], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["inverse_ill_conditioned"] is False and doc["round_trip_error"] < 1e-6
    assert [c["input"] for c in doc["inverse_checks"]] == [str(maps["warm"])]


def test_apply_inverse_of_an_ill_conditioned_map_warns_in_one_line_and_says_so_in_json(maps, tmp_path) -> None:
    result = _invert(maps["grey.pt"], maps["source"], tmp_path)
    assert result.exit_code == 0, result.output  # the image is still written: the warning says what it is worth
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the inverse is ill-conditioned for")
    assert "outside the colour cube" in lines[0]
    doc = json.loads(result.stdout)
    assert doc["inverse_ill_conditioned"] is True
    (check,) = doc["inverse_checks"]
    assert check["ill_conditioned"] is True and check["outside_share"] > INVERSE_BAD_SHARE
    assert check == {"input": str(maps["source"]), "ill_conditioned": True,
                     **asdict(check_inverse(InverseMap(checkpoint.load(maps["grey.pt"]).model),
                                            read_pixels(maps["source"])))}
    plain = CliRunner().invoke(app, ["apply", str(maps["grey.pt"]), str(maps["source"]), str(tmp_path / "b2.png"),
                                     "--inverse", "--jobs", "1"])
    assert "ill-conditioned: yes" in plain.stdout


def test_an_image_from_stdin_is_not_reported_as_a_well_conditioned_inverse(maps, tmp_path) -> None:
    """Its bytes are spent by the time of the check: the JSON said ill_conditioned false, no word."""
    result = CliRunner().invoke(app, ["apply", str(maps["grey.pt"]), "-", str(tmp_path / "back.png"), "--inverse",
                                      "--json"], input=maps["source"].read_bytes())
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["inverse_ill_conditioned"] is None and doc["inverse_checks"] == [] and doc["round_trip_error"] is None
    assert "not checked on the image from stdin" in result.stderr


def test_export_lut_inverse_reports_entries_outside_the_cube_and_warns_above_the_threshold(maps, tmp_path) -> None:
    def export(model: Path, name: str, *extra: str):
        return CliRunner().invoke(app, ["export-lut", str(model), str(tmp_path / name), "--size", "9", "--json",
                                        *extra])

    bad = export(maps["grey.pt"], "bad.cube", "--inverse")
    assert bad.exit_code == 0, bad.output
    doc = json.loads(bad.stdout)
    assert doc["fraction_outside_by_2_codes"] > INVERSE_LUT_BAD_SHARE and doc["max_outside"] > 1.0
    assert doc["inverse_ill_conditioned"] is True
    assert bad.stderr.startswith("warning:") and len(bad.stderr.strip().splitlines()) == 1
    identity = tmp_path / "same.pt"
    ColorTransfer(model="affine", target="gaussian").fit(maps["source"], maps["source"]).save(identity)
    good = export(identity, "good.cube", "--inverse")
    assert good.exit_code == 0 and good.stderr == "", good.output
    assert json.loads(good.stdout)["inverse_ill_conditioned"] is False
    forward = export(maps["grey.pt"], "forward.cube")
    assert forward.stderr == "" and json.loads(forward.stdout)["inverse_ill_conditioned"] is None


def test_lut_outside_counts_entries_beyond_two_code_values() -> None:
    table = np.array([[0.5, 0.5, 0.5], [1.0 + 1 / 255, 0.5, 0.5], [-0.5, 0.2, 0.2], [0.1, 0.1, 3.0]])
    assert lut_outside(table) == (0.5, 2.0)
