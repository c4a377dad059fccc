"""The .cube export, checked against a real consumer (ffmpeg's lut3d filter)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

import colorot
from colorot.cli import app
from colorot.controls import Controls
from colorot.cube import cube_text, read_cube, write_cube
from colorot.errors import ColorotError, ConfigError, OutputExistsError
from colorot.lut import Lut, bake, lut_grid

runner = CliRunner()


class Shift:
    def __call__(self, x):
        return 0.8 * x + 0.1


def test_cube_round_trip_and_layout(tmp_path):
    lut = bake(Shift(), 5)
    path = tmp_path / "grade.cube"
    write_cube(path, lut)
    lines = path.read_text().splitlines()
    assert lines[1:4] == ["LUT_3D_SIZE 5", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    assert len(lines) == 4 + 125
    # red varies fastest: the second row is the grid point (1/4, 0, 0)
    np.testing.assert_allclose([float(v) for v in lines[5].split()], [0.8 * 0.25 + 0.1, 0.1, 0.1], atol=1e-6)
    back = read_cube(path)
    assert back.size == 5
    np.testing.assert_allclose(back.table, lut.table, atol=1e-6)
    with pytest.raises(ColorotError):
        write_cube(path, lut)  # exists, no overwrite


@pytest.mark.parametrize("line", ["LUT_3D_SIZE x", "LUT_3D_SIZE", "0.1 0.2", "0.1 nope 0.3", "DOMAIN_MIN 0 0 zero"])
def test_read_cube_refuses_a_malformed_line_by_its_number(tmp_path, line):
    """A malformed number raised Python's bare ValueError ("invalid literal for int()")."""
    path = tmp_path / "bad.cube"
    write_cube(path, bake(Shift(), 2))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:5], line, *lines[5:]]) + "\n")
    with pytest.raises(ConfigError, match=r"bad\.cube, line 6: not a \.cube line"):
        read_cube(path)


def test_a_title_s_control_characters_become_spaces():
    """A title (a colour space's name comes from a file) keeps the header's lines: C0 and C1 controls,
    DEL and the Unicode line separators become spaces (not kept, nor turned to '?' as other non-ASCII)."""
    text = cube_text(Lut(2, lut_grid(2).astype(np.float32)), 'a\nb\x85c\x9fd\x7fe\u2028f"g"')
    assert text.splitlines()[0] == "TITLE \"a b c d e f'g'\"" and text.splitlines()[1] == "LUT_3D_SIZE 2"


def test_cube_text_keeps_values_outside_the_cube():
    table = lut_grid(2) * 1.5 - 0.25
    text = cube_text(Lut(2, table.astype(np.float32)))
    assert "-0.250000 -0.250000 -0.250000" in text and "1.250000 1.250000 1.250000" in text


def test_export_lut_cli(tiny_fit, tmp_path):
    out = tmp_path / "grade.cube"
    result = runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(out), "--size", "9", "--json"])
    assert result.exit_code == 0, result.output
    assert '"size": 9' in result.stdout and read_cube(out).size == 9
    error = json.loads(result.stdout)["interpolation_error_codes"]
    assert 0 <= error["p99"] <= error["max"]
    assert runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(out)]).exit_code == 1  # exists
    default = runner.invoke(app, ["export-lut", str(tiny_fit["model"]), "-"])  # 65³: the closest to the map
    assert default.exit_code == 0 and "LUT_3D_SIZE 65" in default.stdout
    assert default.stdout.startswith("TITLE") and len(default.stdout.splitlines()) == 4 + 65**3  # the .cube alone
    assert default.stdout.splitlines()[0] == 'TITLE "colorot ridge"'  # an untagged map's: no colour space named
    assert default.stderr.startswith("wrote stdout: 65³ .cube LUT") and "99 % of colours" in default.stderr
    half = runner.invoke(app, ["export-lut", str(tiny_fit["model"]), "-", "--size", "3", "--strength", "0"])
    rows = [list(map(float, line.split())) for line in half.stdout.splitlines()[4:]]
    np.testing.assert_allclose(rows, lut_grid(3), atol=1e-6)  # strength 0: the identity
    assert runner.invoke(app, ["export-lut", str(tiny_fit["model"]), "x.cube", "--size", "66"]).exit_code == 2
    inverse = runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(tmp_path / "inverse.cube"), "--size", "9",
                                  "--inverse", "--json"])
    assert inverse.exit_code == 0, inverse.output
    outside = (read_cube(tmp_path / "inverse.cube").table < 0) | (read_cube(tmp_path / "inverse.cube").table > 1)
    assert outside.all(-1).mean() < outside.any(-1).mean()  # entries with one channel out, not all three
    assert json.loads(inverse.stdout)["fraction_outside_unit_cube"] == pytest.approx(outside.any(-1).mean())


def test_export_lut_in_python_refuses_a_flag_that_is_not_a_bool(tiny_fit, tmp_path):
    """inverse="False" wrote the inverse LUT: a string is true."""
    fitted = colorot.load(tiny_fit["model"])
    for option in ({"inverse": "False"}, {"overwrite": "no"}):
        with pytest.raises(ConfigError, match="must be True or False"):
            fitted.export_lut(tmp_path / "x.cube", size=3, **option)
    assert not (tmp_path / "x.cube").exists()


@pytest.mark.parametrize("options, flags", [
    ({}, []),
    ({"strength": 0.5, "controls": Controls(saturation=1.3, neutral=0.5)},
     ["--strength", "0.5", "--saturation", "1.3", "--neutral", "0.5"]),
    ({"controls": Controls(keep_luminance=True)}, ["--keep-luminance"]),
    ({"inverse": True}, ["--inverse"]),
])
def test_export_lut_in_python_writes_what_the_cli_writes(tiny_fit, tmp_path, options, flags):
    fitted = colorot.load(tiny_fit["model"])
    lut = fitted.export_lut(tmp_path / "python.cube", size=9, **options)
    assert runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(tmp_path / "cli.cube"), "--size", "9",
                               *flags]).exit_code == 0
    assert (tmp_path / "python.cube").read_bytes() == (tmp_path / "cli.cube").read_bytes()
    np.testing.assert_allclose(read_cube(tmp_path / "python.cube").table, lut.table, atol=1e-6)


def test_export_lut_in_python_refuses_what_it_cannot_write(tiny_fit, tmp_path):
    fitted = colorot.load(tiny_fit["model"])
    path = tmp_path / "grade.cube"
    path.write_text("precious")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        fitted.export_lut(path, size=3, overwrite=False)
    assert path.read_text() == "precious"
    for options, message in [({"size": 9.5}, "whole number"), ({"size": 66}, "between 2 and 65"),
                             ({"inverse": True, "controls": Controls(neutral=1.0)}, "do not apply to --inverse"),
                             ({"controls": {"neutral": 1.0}}, "controls must be"), ({"strength": 2}, "strength")]:
        with pytest.raises(ConfigError, match=message):
            fitted.export_lut(path, **options)
    assert path.read_text() == "precious"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (CI installs it)")
@pytest.mark.parametrize("size", [33, 65])
def test_ffmpeg_lut3d_matches_colorot_apply(tiny_fit, tmp_path, size):
    """ffmpeg -vf lut3d=grade.cube gives colorot apply's result within 2 code values."""
    cube, ours, theirs = tmp_path / "grade.cube", tmp_path / "ours.png", tmp_path / "theirs.png"
    codes = np.random.default_rng(size).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    codes[:20] = np.asarray(PILImage.open(tiny_fit["source"]).resize((64, 20)))
    src = tmp_path / "in.png"
    PILImage.fromarray(codes).save(src)
    assert runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(cube), "--size", str(size)]).exit_code == 0
    assert runner.invoke(app, ["apply", str(tiny_fit["model"]), str(src), str(ours)]).exit_code == 0
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-vf", f"lut3d={cube}",
                    str(theirs)], check=True, timeout=60)
    diff = np.abs(np.asarray(PILImage.open(ours).convert("RGB"), dtype=int)
                  - np.asarray(PILImage.open(theirs).convert("RGB"), dtype=int))
    assert diff.max() <= 2, diff.max()


def test_a_cube_another_run_writes_meanwhile_is_kept_unless_force(tiny_fit, tmp_path, monkeypatch):
    """The .cube's path is checked before the table is baked; a file another run writes there before
    this run's write lands is kept without --force (exit 1), and --force replaces it."""
    import colorot.atomic

    other_run = colorot.atomic.remove_stale_temp_files  # called first by every atomic write

    def another_run_writes(path):
        if str(path).endswith(".cube"):
            Path(path).write_text("theirs")
        return other_run(path)

    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", another_run_writes)
    out = tmp_path / "grade.cube"
    args = ["export-lut", str(tiny_fit["model"]), str(out), "--size", "3"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "appeared while this run was writing it" in refused.stderr, refused.output
    assert out.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["grade.cube"]
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0 and read_cube(out).size == 3


def test_write_cube_is_atomic_and_clears_a_killed_write(tmp_path):
    """A temp file a killed earlier write left is removed; an unwritable folder is one ImageWriteError."""
    from colorot.errors import ImageWriteError

    lut = Lut(2, np.zeros((8, 3), np.float32))
    stale = tmp_path / ".grade.cube.0123abcd.tmp"
    stale.write_text("half a LUT")
    write_cube(tmp_path / "grade.cube", lut)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grade.cube"]
    with pytest.raises(ImageWriteError, match="cannot write the LUT"):
        write_cube(tmp_path / "missing" / "grade.cube", lut)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (CI installs it)")
@pytest.mark.parametrize("method", ["tetrahedral", "trilinear"])
def test_both_interpolations_are_ffmpegs(curved_map, tmp_path, method):
    """The error an export reports covers both ways a consumer interpolates: each is ffmpeg's own
    (tetrahedral is lut3d's default) to rounding, on a coarse table where the two differ by codes."""
    from colorot.lut import bake, interpolate

    lut = bake(curved_map, 9)
    write_cube(tmp_path / "coarse.cube", lut)
    codes = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PILImage.fromarray(codes).save(tmp_path / "in.png")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(tmp_path / "in.png"), "-vf",
                    f"lut3d=file={tmp_path / 'coarse.cube'}:interp={method}", "-pix_fmt", "rgb24",
                    str(tmp_path / "out.png")], check=True, timeout=60)
    theirs = np.asarray(PILImage.open(tmp_path / "out.png"), dtype=np.float64).reshape(-1, 3)
    ours = {m: np.clip(interpolate(lut, codes.reshape(-1, 3) / 255.0, m), 0, 1) * 255
            for m in ("tetrahedral", "trilinear")}
    other = "trilinear" if method == "tetrahedral" else "tetrahedral"
    assert np.abs(ours[method] - theirs).max() <= 1.0
    assert np.abs(ours[other] - theirs).max() > 1.0  # the two differ here, so the check above has teeth
