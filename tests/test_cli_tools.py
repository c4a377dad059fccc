"""The CLI's tool-facing parts: several sources/targets, masks, strength, inverse, pipes, shards, previews."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot.cli import app

runner = CliRunner()
TINY = ["--steps", "5", "--max-pixels", "500", "--components", "2"]


def _codes(path) -> np.ndarray:
    return np.asarray(PILImage.open(path).convert("RGB"), dtype=int)


def _ok(args, **kwargs):
    result = runner.invoke(app, [str(a) for a in args], **kwargs)
    assert result.exit_code == 0, result.output
    return result


# --- fit: several sources and targets, masks, preview ---------------------------------


def test_fit_pools_several_sources_and_targets_with_preview(tiny_fit, tmp_path):
    folder = tiny_fit["folder"]
    model, sheet = tmp_path / "m.pt", tmp_path / "sheet.png"
    result = _ok(["fit", folder / "a.png", folder / "b.png", "--target", tiny_fit["target"],
                  "-t", folder / "e.png", "-o", model, "--preview", sheet, "--json", "--steps", "5",
                  "--max-pixels", "5000", "--components", "2"])
    doc = json.loads(result.stdout)
    assert doc["training_pixels"] == 2 * 12 * 16  # both sources, all pixels
    assert len(doc["sources"]) == 2 and len(doc["targets"]) == 2
    assert len(doc["source_sha256"]) == 2 and len(doc["target_sha256"]) == 2
    with PILImage.open(sheet) as image:
        assert image.width > 3 * 256 and image.height > 256
    lines = _ok(["info", model]).stdout.splitlines()  # each pooled image's hash on a line of its own
    for label, hashes in (("source      ", doc["source_sha256"]), ("target img  ", doc["target_sha256"])):
        start = lines.index(f"{label}sha256 {hashes[0]}")  # was one line: a Python list's repr
        assert lines[start + 1] == f"{' ' * len(label)}sha256 {hashes[1]}"


def test_fit_masks_select_pixels(tiny_fit, tmp_path):
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[:, :10] = 255
    PILImage.fromarray(mask).save(tmp_path / "mask.png")
    result = _ok(["fit", tiny_fit["source"], "--target", tiny_fit["target"], "--mask", tmp_path / "mask.png",
                  "-o", tmp_path / "m.pt", "--json", *TINY])
    assert json.loads(result.stdout)["training_pixels"] == 24 * 10
    wrong = runner.invoke(app, ["fit", str(tiny_fit["source"]), "--target", str(tiny_fit["target"]), "--mask",
                                str(tmp_path / "mask.png"), "--mask", str(tmp_path / "mask.png"),
                                "-o", str(tmp_path / "n.pt"), *TINY])
    assert wrong.exit_code == 1 and "one mask per source" in wrong.output


def test_a_mask_s_transparent_pixels_select_nothing(tiny_fit, tmp_path):
    """Editors export a mask painted on transparency with white under it: it selected every pixel."""
    mask = np.zeros((24, 32, 4), dtype=np.uint8)
    mask[..., :3] = 255
    mask[:10, :12, 3] = 255  # only this corner is painted (opaque)
    PILImage.fromarray(mask, "RGBA").save(tmp_path / "painted.png")
    result = _ok(["fit", tiny_fit["source"], "--target", tiny_fit["target"], "--mask", tmp_path / "painted.png",
                  "-o", tmp_path / "m.pt", "--json", *TINY])
    assert json.loads(result.stdout)["training_pixels"] == 10 * 12
    from colorot.transfer import _mask_of  # the same rule for a PIL image given to the Python API
    assert _mask_of(PILImage.open(tmp_path / "painted.png"), None).sum() == 10 * 12


def test_a_mask_must_have_its_image_s_shape_and_keeps_transparency_out(tiny_fit, tmp_path):
    """A transposed mask of the same pixel count was taken in flattened order; with a mask, fully
    transparent pixels were fitted."""
    transposed = np.full((32, 24), 255, dtype=np.uint8)
    PILImage.fromarray(transposed).save(tmp_path / "transposed.png")
    wrong = runner.invoke(app, ["fit", str(tiny_fit["source"]), "--target", str(tiny_fit["target"]), "--mask",
                                str(tmp_path / "transposed.png"), "-o", str(tmp_path / "t.pt"), *TINY])
    assert wrong.exit_code == 1 and "mask 1 is 24×32 pixels but its source is 32×24" in wrong.output
    rgba = np.asarray(PILImage.open(tiny_fit["source"]).convert("RGBA")).copy()
    rgba[:10, :, 3] = 0
    PILImage.fromarray(rgba).save(tmp_path / "half_hidden.png")
    PILImage.fromarray(np.full((24, 32), 255, dtype=np.uint8)).save(tmp_path / "all.png")
    result = _ok(["fit", tmp_path / "half_hidden.png", "--target", tiny_fit["target"], "--mask", tmp_path / "all.png",
                  "-o", tmp_path / "m.pt", "--json", *TINY])
    assert json.loads(result.stdout)["training_pixels"] == 14 * 32


def test_fit_old_syntax_and_target_distribution_alias(tiny_fit, tmp_path):
    result = _ok(["fit", tiny_fit["source"], tiny_fit["target"], "-o", tmp_path / "m.pt", "--target",
                  "gaussian", "--model", "affine", "--json"])
    assert json.loads(result.stdout)["target"] == "gaussian"
    assert "deprecated" in result.stderr
    bad = runner.invoke(app, ["fit", str(tiny_fit["source"]), "-o", str(tmp_path / "x.pt")])
    assert bad.exit_code == 2 and "1 image given" in bad.output  # a usage error
    both = runner.invoke(app, ["fit", str(tiny_fit["source"]), str(tiny_fit["target"]), "-o", str(tmp_path / "y.pt"),
                               "--target", "gaussian", "--distribution", "gmm"])
    assert both.exit_code == 1 and "contradicts --distribution gmm" in both.output


# --- apply: strength, inverse, preview ------------------------------------------------


def test_apply_strength_zero_half_full(tiny_fit, tmp_path):
    src = tiny_fit["source"]
    outs = {}
    for t in ("0", "0.5", "1"):
        outs[t] = tmp_path / f"out_{t}.png"
        _ok(["apply", tiny_fit["model"], src, outs[t], "--strength", t])
    np.testing.assert_array_equal(_codes(outs["0"]), _codes(src))
    full, half, orig = _codes(outs["1"]), _codes(outs["0.5"]), _codes(src)
    unclipped = (full > 0).all(-1) & (full < 255).all(-1)
    assert np.abs(half - (orig + full) / 2)[unclipped].max() <= 1.5
    assert runner.invoke(app, ["apply", str(tiny_fit["model"]), str(src), str(tmp_path / "x.png"),
                               "--strength", "1.5"]).exit_code == 2


def test_apply_inverse_round_trip(tiny_fit, tmp_path):
    """The inverse undoes the map; over several inputs the report is the worst one's (round trip: the
    max, ill-conditioned: any of them), not the best's."""
    graded, back = tmp_path / "graded.png", tmp_path / "back.png"
    _ok(["apply", tiny_fit["model"], tiny_fit["source"], graded, "--exact"])
    result = _ok(["apply", tiny_fit["model"], graded, back, "--inverse", "--exact", "--json"])
    assert json.loads(result.stdout)["round_trip_error"] < 1e-5
    forward = _codes(graded)
    inside = (forward > 0).all(-1) & (forward < 255).all(-1)
    assert inside.mean() > 0.5
    assert np.abs(_codes(back) - _codes(tiny_fit["source"]))[inside].max() <= 3
    PILImage.new("RGB", (8, 8), (255, 0, 255)).save(tmp_path / "magenta.png")  # a colour the map never gives
    both = json.loads(_ok(["apply", tiny_fit["model"], graded, tmp_path / "magenta.png", tmp_path / "back/",
                           "--inverse", "--exact", "--json"]).stdout)
    checks = {Path(c["input"]).name: c for c in both["inverse_checks"]}
    assert not checks["graded.png"]["ill_conditioned"] and checks["magenta.png"]["ill_conditioned"]
    assert both["inverse_ill_conditioned"] is True  # any input's: was all of them
    assert both["round_trip_error"] == max(c["round_trip_max"] for c in checks.values())  # the worst input's
    assert checks["graded.png"]["round_trip_max"] != checks["magenta.png"]["round_trip_max"]


def test_apply_preview_samples_the_batch(tiny_fit, tmp_path):
    sheet = tmp_path / "batch.png"
    result = _ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "out/", "--preview", sheet,
                  "--json"])
    assert json.loads(result.stdout)["preview"] == str(sheet)
    with PILImage.open(sheet) as image:
        assert image.height > 5 * 256  # five files, one row each
    before = sheet.read_bytes()
    again = _ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "out/", "--preview", sheet])
    assert f"preview {sheet} not written: this run wrote no image" in again.stdout  # it said nothing
    assert sheet.read_bytes() == before
    inode = sheet.stat().st_ino
    _ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "out/", "--preview", sheet, "--overwrite"])
    assert sheet.stat().st_ino != inode  # a rerun that writes images replaces its own sheet (written anew)


def test_a_batch_preview_in_a_format_without_exif_or_at_a_pipe_is_refused_before_any_work(tiny_fit, tmp_path):
    """A .bmp sheet keeps no mark, so its batch could never be rerun without --overwrite; a pipe at
    the preview's path hung the batch (the check for the mark opened it and waited for a writer)."""
    import os

    refused = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), str(tmp_path / "out/"),
                                  "--preview", str(tmp_path / "sheet.bmp")])
    assert refused.exit_code == 1 and "keeps no EXIF" in refused.output and not (tmp_path / "out").exists()
    import signal

    os.mkfifo(tmp_path / "pipe.png")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the batch waited on the pipe"))
    signal.alarm(60)
    try:
        piped = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), str(tmp_path / "out/"),
                                    "--preview", str(tmp_path / "pipe.png")])
    finally:
        signal.alarm(0)
    assert piped.exit_code == 1 and "not a preview sheet" in piped.output and not (tmp_path / "out").exists()


def test_a_batch_preview_inside_an_input_folder_needs_in_place(tiny_fit, tmp_path):
    """The sheet would land among the photos, and the next run would apply the map to it as one."""
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(tiny_fit["folder"], folder)
    refused = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(folder), str(tmp_path / "out/"),
                                  "--preview", str(folder / "sub" / "sheet.png")])
    assert refused.exit_code == 1 and "is inside an input folder" in refused.stderr
    assert not (folder / "sub" / "sheet.png").exists() and not (tmp_path / "out").exists()
    _ok(["apply", tiny_fit["model"], folder, folder / "graded/", "--in-place", "--preview", folder / "sheet.png"])
    assert (folder / "sheet.png").is_file()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_a_batch_preview_replaces_only_a_sheet_of_an_earlier_batch(tiny_fit, tmp_path, suffix):
    """A batch's --preview replaced any file at its path (a photo of another run: gone, without
    --overwrite); now only a sheet an earlier batch wrote (marked in its EXIF), other files with --overwrite."""
    photo = tmp_path / f"precious{suffix}"
    PILImage.new("RGB", (4, 4), (9, 99, 199)).save(photo)
    kept = photo.read_bytes()
    refused = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), str(tmp_path / "out/"),
                                  "--preview", str(photo)])
    assert refused.exit_code == 1 and "not a preview sheet of a colorot batch" in refused.output
    assert photo.read_bytes() == kept and not (tmp_path / "out").exists()  # refused before any work
    _ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "out/", "--preview", photo, "--overwrite"])
    assert photo.read_bytes() != kept
    inode = photo.stat().st_ino
    rerun = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), str(tmp_path / "out2/"),
                                "--preview", str(photo)])
    assert rerun.exit_code == 0, rerun.output
    assert photo.stat().st_ino != inode  # the second batch's sheet, written anew


# --- pipes ------------------------------------------------------------------------------


def test_stdin_to_stdout_matches_file_apply(tiny_fit, tmp_path):
    reference = tmp_path / "ref.png"
    _ok(["apply", tiny_fit["model"], tiny_fit["source"], reference])
    piped = _ok(["apply", tiny_fit["model"], "-", "-", "--format", "png"],
                input=tiny_fit["source"].read_bytes())
    with PILImage.open(io.BytesIO(piped.stdout_bytes)) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB"), dtype=int), _codes(reference))
    _ok(["apply", tiny_fit["model"], "-", tmp_path / "from_stdin.png"], input=tiny_fit["source"].read_bytes())
    np.testing.assert_array_equal(_codes(tmp_path / "from_stdin.png"), _codes(reference))
    jpeg = _ok(["apply", tiny_fit["model"], tiny_fit["source"], "-", "--format", "jpg"])
    assert jpeg.stdout_bytes[:2] == b"\xff\xd8"
    refused = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["source"]), "-", "--json"])
    assert refused.exit_code == 1
    ignored = runner.invoke(app, ["apply", str(tiny_fit["model"]), "-", str(tmp_path / "named.png"), "--format", "jpg"],
                            input=tiny_fit["source"].read_bytes())  # a file's format is its suffix's: was silently PNG
    assert ignored.exit_code == 1 and "--format names the format of an image written to stdout" in ignored.output
    for args in ([str(tiny_fit["source"]), "-"], ["-", str(tmp_path / "other.png")]):  # --suffix was ignored here
        ignored = runner.invoke(app, ["apply", str(tiny_fit["model"]), *args, "--suffix", ".jpg"],
                                input=tiny_fit["source"].read_bytes())
        assert ignored.exit_code == 1 and "--suffix names the format of a batch's output files" in ignored.output


def test_paths_from_stdin_are_mirrored(tiny_fit, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_fit["folder"].parent)
    listing = "photos/a.png\nphotos/sub/c.png\n\n"
    result = _ok(["apply", tiny_fit["model"], "--from-stdin", tmp_path / "out/", "--json"], input=listing)
    written = sorted(json.loads(result.stdout)["written"])
    assert written == [str(tmp_path / "out/photos/a.png"), str(tmp_path / "out/photos/sub/c.png")]



@pytest.mark.parametrize("command", ["apply", "match"])
def test_a_wrong_count_of_paths_is_a_usage_error(tiny_fit, tmp_path, command):
    first = str(tiny_fit["model"] if command == "apply" else tiny_fit["target"])
    for paths, message in ((["out/"], "give at least one input and an output"),
                           (["--from-stdin", str(tiny_fit["source"]), "out/"], "give only the output")):
        result = runner.invoke(app, [command, first, *paths], input="", terminal_width=200)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_shards_split_a_folder_exactly_once(tiny_fit, tmp_path):
    """Each shard writes its share; run again, a shard reports its own share skipped (its report once
    listed every shard's existing outputs as its skipped: a run of 1/3 said all of them)."""
    everything = json.loads(_ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "all/",
                                 "--json"]).stdout)["written"]
    parts, written = [], []
    for index in range(3):
        doc = json.loads(_ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "sharded/",
                              "--shard", f"{index}/3", "--json"]).stdout)
        assert doc["shard"] == f"{index}/3"
        written.append(doc["written"])
        parts.append([p.replace("sharded", "all") for p in doc["written"]])
    assert sorted(sum(parts, [])) == sorted(everything)
    assert max(map(len, written)) < len(everything)  # each a share, none the whole folder
    for index in range(3):
        rerun = json.loads(_ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "sharded/",
                                "--shard", f"{index}/3", "--json"]).stdout)
        assert rerun["written"] == [] and sorted(rerun["skipped"]) == sorted(written[index])
    again = json.loads(_ok(["apply", tiny_fit["model"], tiny_fit["folder"], tmp_path / "again/",
                            "--shard", "1/3", "--json"]).stdout)["written"]
    assert [p.replace("again", "all") for p in again] == parts[1]
    for bad in ("3/3", "x", "1/0", "-1/2"):  # a value out of range: a usage error, before any work
        result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]),
                                     str(tmp_path / "b/"), "--shard", bad])
        assert result.exit_code == 2 and "--shard" in result.output
    assert not (tmp_path / "b").exists()


# --- json everywhere, completion --------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "apply", "export-lut", "info"])
def test_every_command_has_json(command):
    assert "--json" in runner.invoke(app, [command, "--help"], terminal_width=200).stdout


def test_shell_completion_script(monkeypatch):
    # With shellingham installed, --show-completion is a flag and the shell is detected from the parent
    # process, which under a background job or CI runner may be no shell at all ("Shell  not supported").
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    result = _ok(["--show-completion", "bash"])
    assert "complete" in result.stdout and "_completion" in result.stdout


def test_json_has_no_nan():
    """A crafted checkpoint's NaN final loss made `info --json` print NaN, which strict parsers refuse."""
    from colorot.cli import _strict_json

    document = {"final_loss": float("nan"), "history": [1.0, float("inf")], "nested": {"x": -float("inf")}, "n": 3}
    assert json.loads(json.dumps(_strict_json(document), allow_nan=False)) == {
        "final_loss": None, "history": [1.0, None], "nested": {"x": None}, "n": 3}
