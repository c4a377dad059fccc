"""Tests for the ``colorot`` command line (Typer app driven by CliRunner).

Results must go to stdout and messages to stderr; this Typer version's
CliRunner keeps them apart (``result.stdout`` / ``result.stderr``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
import typer
from typer.testing import CliRunner

import colorot
from colorot import checkpoint
from colorot.cli import app
from _fresh_process import cli_imports_torch

FAST = ["--steps", "5", "--max-pixels", "500", "--components", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def images(tmp_path_factory, make_png) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    return {name: make_png(root / f"{name}.png", height=24, width=32, seed=seed)
            for name, seed in (("source", 1), ("target", 2))}


@pytest.fixture(scope="module")
def model_file(images, tmp_path_factory) -> Path:
    """One small fitted checkpoint shared by the apply/info tests."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    result = CliRunner().invoke(app, ["fit", str(images["source"]), str(images["target"]), "-o", str(path), *FAST])
    assert result.exit_code == 0, result.output
    return path


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_error(result, code: int = 1) -> str:
    """A user error: the given exit code, one message line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert result.stdout == ""
    return lines[0]


# ------------------------------------------------------------------- fit
def test_fit_writes_a_checkpoint_and_reports(images, tmp_path) -> None:
    out = tmp_path / "m.pt"
    result = run("fit", images["source"], images["target"], "-o", out, "--model", "cmgn", "--hidden", "4", *FAST)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert result.stdout.startswith(f"wrote {out}: cmgn map (kl), gmm target (K=2), 1 source(s), 1 target(s), 5 iterations")
    assert "Traceback" not in result.output
    loaded = colorot.load(out)
    assert loaded.map_.name == "cmgn" and loaded.train_info_["steps"] == 5
    assert loaded.train_info_["training_pixels"] == 500
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


@pytest.mark.parametrize("command", ["fit source", "fit target", "match reference"])
def test_stdin_where_a_file_is_needed_is_a_clear_error(images, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)  # no file named '-' here
    source, target = str(images["source"]), str(images["target"])
    args = {"fit source": ["fit", "-", target, "-o", "m.pt"], "fit target": ["fit", source, "-", "-o", "m.pt"],
            "match reference": ["match", "-", source, "out"]}[command]
    line = assert_clean_error(CliRunner().invoke(app, args, input=b"not read"))
    assert line == "error: -: stdin is read only as the input of 'colorot apply' or 'colorot match'; give an image file here"
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_or_lut_named_as_an_image_is_refused(images, model_file, tmp_path) -> None:
    line = assert_clean_error(run("fit", images["source"], images["target"], "-o", tmp_path / "out.PNG"))
    assert line.startswith(f"error: {tmp_path / 'out.PNG'} names an image, but the map is saved as a checkpoint")
    assert line.endswith(f"colorot match TARGET SOURCE {tmp_path / 'out.PNG'}")
    line = assert_clean_error(run("export-lut", model_file, tmp_path / "grade.jpg"))
    assert line.startswith(f"error: {tmp_path / 'grade.jpg'} names an image, but the LUT is a .cube text file")
    line = assert_clean_error(run("fit", images["source"], images["target"], "-o", tmp_path / "out.gif"))
    assert line.startswith(f"error: {tmp_path / 'out.gif'} names an image")  # a format colorot reads, not writes
    assert list(tmp_path.iterdir()) == []


def test_export_lut_never_writes_over_its_own_checkpoint(model_file, tmp_path) -> None:
    """Even with --force the .cube must not replace the map it is baked from (the map would be lost)."""
    import shutil

    model = tmp_path / "m.pt"
    shutil.copy(model_file, model)
    before = model.read_bytes()
    line = assert_clean_error(run("export-lut", model, model, "--force", "--size", "3"))
    assert "would overwrite an input" in line
    assert model.read_bytes() == before


def test_fit_json_is_exactly_one_document(images, tmp_path) -> None:
    out = tmp_path / "m.pt"
    result = run("fit", images["source"], images["target"], "-o", out, "--json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # fails on anything else on stdout
    assert document["checkpoint"] == str(out) and document["solver"] == "kl" and document["target"] == "gmm"
    assert document["model"] == "ridge" and document["steps"] == 5 and isinstance(document["final_loss"], float)
    assert document["loss"] == "kl" and isinstance(document["kl_nats"], float)
    assert len(document["source_sha256"]) == 64


def test_fit_with_adam_trains_on_a_mixture(images, tmp_path) -> None:
    result = run("fit", images["source"], images["target"], "-o", tmp_path / "m.pt", "--solver", "adam",
                 "--json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["solver"] == "adam" and document["target"] == "gmm" and document["components"] == 2


def test_fit_adam_refuses_the_pixels_target(images, tmp_path) -> None:
    result = run("fit", images["source"], images["target"], "-o", tmp_path / "m.pt", "--solver", "adam",
                 "--distribution", "pixels", *FAST)
    assert result.exit_code == 1 and "needs a density" in result.output


def test_fit_refuses_stdout_as_its_checkpoint(images, tmp_path, monkeypatch) -> None:
    """`fit -o -` wrote a file named '-', where apply and export-lut take '-' for stdout."""
    monkeypatch.chdir(tmp_path)
    result = run("fit", images["source"], images["target"], "-o", "-", "--model", "affine")
    assert result.exit_code == 1 and "not to stdout" in result.stderr and not (tmp_path / "-").exists()


def test_fit_reports_why_it_has_no_final_loss(images, tmp_path) -> None:
    result = run("fit", images["source"], images["target"], "-o", tmp_path / "a.pt", "--model", "affine")
    assert result.exit_code == 0, result.output
    assert "n/a (closed form)" in result.stdout
    result = run("fit", images["source"], images["target"], "-o", tmp_path / "s.pt", "--steps", "0", "--max-pixels", "500")
    assert result.exit_code == 0, result.output
    assert "0 iterations, final loss n/a (no iterations: the start map)" in " ".join(result.stdout.split())  # "closed form"


def test_fit_refuses_an_output_named_as_a_folder(images, tmp_path) -> None:
    """`-o maps/` (a folder yet to be made) wrote a checkpoint named `maps`: the '/' was lost."""
    line = assert_clean_error(run("fit", images["source"], images["target"], "-o", f"{tmp_path / 'maps'}/"))
    assert "is a folder; give a file name for the checkpoint" in line
    assert not (tmp_path / "maps").exists()
    (tmp_path / "afile").write_text("x")
    line = assert_clean_error(run("fit", images["source"], images["target"], "-o", tmp_path / "afile" / "m.pt"))
    assert line.endswith(f"the folder {tmp_path / 'afile'} is a file, not a folder")  # was "does not exist"


@pytest.mark.parametrize(("count", "named"), [(1, False), (3, True)])
def test_fit_given_a_wrong_count_of_images_is_a_usage_error_saying_so(images, model_file, tmp_path, count, named) -> None:
    """It was exit 1 with no count; a checkpoint among three images (the order of `colorot apply`)
    is named as what goes after -o."""
    given = [model_file, images["source"], images["target"]][-count:]
    result = CliRunner().invoke(app, ["fit", *map(str, given), "-o", str(tmp_path / "m.pt")], env={"COLUMNS": "300"})
    message = " ".join(result.stderr.replace("│", " ").split())
    assert result.exit_code == 2 and f"{count} image{'s' if count > 1 else ''} given: give SOURCE TARGET" in message
    assert (f"{model_file} is a checkpoint's name: it goes after -o" in message) == named
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("command", ["apply", "match"])
def test_a_skipped_single_output_is_named(images, model_file, tmp_path, command) -> None:
    """`colorot apply model.pt day.jpg sunset.jpg` (the output forgotten) said "1 skipped (exist;
    --overwrite to redo)" without naming sunset.jpg, which --overwrite then replaced."""
    first = images["target"] if command == "match" else model_file
    photo = tmp_path / "photo.png"
    photo.write_bytes(images["source"].read_bytes())
    result = CliRunner().invoke(app, [command, str(first), str(images["source"]), str(photo)], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert f"skipped: {photo} exists (--overwrite replaces it)" in result.stdout
    folder = tmp_path / "out"
    assert CliRunner().invoke(app, [command, str(first), str(images["source"]), str(folder)]).exit_code == 0
    again = CliRunner().invoke(app, [command, str(first), str(images["source"]), str(photo), str(folder)])
    assert again.exit_code == 0 and "skipped:" not in again.stdout  # several outputs: the counts say it


def test_fit_refuses_to_overwrite_without_force(images, tmp_path) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    result = run("fit", images["source"], images["target"], "-o", out, *FAST)
    message = assert_clean_error(result, 1)
    assert "--force" in message and str(out) in message
    assert out.read_bytes() == b"keep me"
    forced = run("fit", images["source"], images["target"], "-o", out, "--force", "--model", "affine")
    assert forced.exit_code == 0, forced.output
    assert colorot.load(out).map_.name == "affine"


def test_components_is_a_positive_integer_or_auto_in_any_case(images, tmp_path) -> None:
    """Bad values were exit 1, unlike every other value out of range; "AUTO" was refused."""
    for value in ("many", "0", "-1", "2.5", " 3"):
        result = run("fit", images["source"], images["target"], "-o", tmp_path / "m.pt", *FAST[:4], "--components", value)
        assert result.exit_code == 2 and "must be a positive integer or 'auto'" in " ".join(result.stderr.split())
    result = run("fit", images["source"], images["target"], "-o", tmp_path / "m.pt", *FAST[:4], "--components", "AUTO")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--model", "affine", "--hidden", "4"], "--hidden"),
        (["--solver", "adam", "--lr", "0"], "lr"),
    ],
)
def test_fit_option_errors_are_clean(images, tmp_path, extra, fragment) -> None:
    args = ["fit", images["source"], images["target"], "-o", tmp_path / "m.pt", *FAST, *extra]
    message = assert_clean_error(run(*args), 1)
    assert fragment in message
    assert not (tmp_path / "m.pt").exists()


def test_fit_on_an_unreadable_image_is_a_clean_error(images, tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    message = assert_clean_error(run("fit", bad, images["target"], "-o", tmp_path / "m.pt", *FAST), 1)
    assert "bad.png" in message


# ----------------------------------------------------------------- apply
def test_apply_to_one_file_keeps_size_and_maps_the_pixels(model_file, images, tmp_path) -> None:
    out = tmp_path / "graded.png"
    result = run("apply", model_file, images["source"], out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 written, 0 skipped")
    with PILImage.open(images["source"]) as a, PILImage.open(out) as b:
        assert b.size == a.size and b.mode == a.mode
        got = np.asarray(b).astype(int)
        codes = np.asarray(a)
    # The written image is the fitted map, clipped and rounded (the colour table: within one code value).
    mapped = colorot.load(model_file).transform(codes)
    want = np.round(np.clip(mapped, 0, 1) * 255).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - codes.astype(int)).max() > 5  # the map did change the colours


def test_apply_exact_matches_the_map(model_file, images, tmp_path) -> None:
    out = tmp_path / "exact.png"
    result = run("apply", model_file, images["source"], out, "--exact")
    assert result.exit_code == 0, result.output
    with PILImage.open(images["source"]) as a, PILImage.open(out) as b:
        codes, got = np.asarray(a), np.asarray(b).astype(int)
    want = np.round(np.clip(colorot.load(model_file).transform(codes), 0, 1) * 255).astype(int)
    # Same float32 maths; only a value within rounding of a .5 boundary may differ (by 1).
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.01


def test_apply_fast_path_matches_the_exact_map(model_file, images, tmp_path) -> None:
    fast = run("apply", model_file, images["source"], tmp_path / "fast.png", "--json")
    exact = run("apply", model_file, images["source"], tmp_path / "exact.png", "--exact")
    assert fast.exit_code == 0 and exact.exit_code == 0, fast.output + exact.output
    with PILImage.open(tmp_path / "fast.png") as a, PILImage.open(tmp_path / "exact.png") as b:
        got, want = np.asarray(a).astype(int), np.asarray(b).astype(int)
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.001
    assert "lut_max_difference" not in json.loads(fast.stdout)  # no sampled check any more


@pytest.mark.parametrize("strength", [1.0, 0.4])
def test_apply_without_torch_writes_what_the_loaded_map_gives(model_file, images, tmp_path, strength) -> None:
    """A ridge checkpoint goes into the colour table read without torch: the same output as the
    table of the map checkpoint.load builds."""
    from colorot import checkpoint
    from colorot.apply import apply_to_file, checkpoint_table, colour_table
    from colorot.transforms import prepare_map

    assert checkpoint_table(model_file, strength=strength) is not None  # the fixture is a ridge map
    result = run("apply", model_file, images["source"], tmp_path / "fast.png", "--strength", strength)
    assert result.exit_code == 0, result.output
    fitted = prepare_map(checkpoint.load(model_file).model, strength=strength)
    apply_to_file(fitted, images["source"], tmp_path / "loaded.png", table=colour_table(fitted))
    with PILImage.open(tmp_path / "fast.png") as a, PILImage.open(tmp_path / "loaded.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_apply_of_an_affine_map_without_torch_writes_what_the_loaded_map_gives(images, tmp_path) -> None:
    from colorot import checkpoint
    from colorot.apply import apply_to_file, checkpoint_table, colour_table

    model = tmp_path / "affine.pt"
    assert run("fit", images["source"], images["target"], "-o", model, "--model", "affine").exit_code == 0
    assert checkpoint_table(model) is not None
    result = run("apply", model, images["source"], tmp_path / "fast.png")
    assert result.exit_code == 0, result.output
    fitted = checkpoint.load(model).model
    apply_to_file(fitted, images["source"], tmp_path / "loaded.png", table=colour_table(fitted))
    with PILImage.open(tmp_path / "fast.png") as a, PILImage.open(tmp_path / "loaded.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_apply_of_a_ridge_map_never_imports_torch(model_file, images, tmp_path) -> None:
    def torch_imported(*options: str) -> bool:
        return cli_imports_torch("apply", str(model_file), str(images["source"]), str(tmp_path / "out.png"),
                                 "--overwrite", *options)

    assert torch_imported() is False
    assert torch_imported("--exact") is True  # the check does see torch when it is there


def test_a_default_fit_never_imports_torch_and_saves_what_torch_loads(images, tmp_path) -> None:
    """The KL solver's ridge map is fitted, scored (kl_nats) and saved in numpy; torch.load reads it."""
    def torch_imported(*options: str) -> bool:
        return cli_imports_torch("fit", str(images["source"]), str(images["target"]), "-o", str(tmp_path / "m.pt"),
                                 "--force", "--steps", "2", *options)

    assert torch_imported() is False
    assert torch_imported("--solver", "sliced") is False
    from colorot import checkpoint

    loaded = checkpoint.load(tmp_path / "m.pt")
    assert loaded.model.name == "ridge" and loaded.train["solver"] == "sliced"
    assert torch_imported("--model", "mmgn") is True  # the check does see torch when it is there


def test_apply_to_a_nested_folder_mirrors_the_tree(model_file, tmp_path, make_png) -> None:
    src = tmp_path / "in"
    shapes = {"a.png": (10, 12), "sub/b.png": (7, 9), "sub/deeper/c.png": (5, 6)}
    for i, (name, (h, w)) in enumerate(shapes.items()):
        make_png(src / name, h, w, seed=10 + i)
    (src / "sub" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = run("apply", model_file, src, out, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted(document["written"]) == sorted(str(out / n) for n in shapes)
    assert document["failed"] == [] and document["skipped"] == []
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(shapes)
    for name, (h, w) in shapes.items():
        with PILImage.open(out / name) as im:
            assert im.size == (w, h)
    # Nothing was written into the input tree.
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()) == sorted(
        [*shapes, "sub/notes.txt"])
    # A second run skips the finished outputs.
    again = run("apply", model_file, src, out)
    assert again.exit_code == 0 and again.stdout.startswith("0 written, 3 skipped")


def test_apply_with_a_corrupt_input_exits_3_and_writes_the_others(model_file, tmp_path, make_png) -> None:
    src = tmp_path / "in"
    make_png(src / "good1.png", 6, 8, seed=1)
    make_png(src / "sub" / "good2.png", 6, 8, seed=2)
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    result = run("apply", model_file, src, out)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert (out / "good1.png").is_file() and (out / "sub" / "good2.png").is_file()
    assert not (out / "sub" / "broken.png").exists()
    assert result.stdout.startswith("2 written, 0 skipped") and "1 failed" in result.stdout
    assert "broken.png" in result.stdout and "broken.png" in result.stderr
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_damaged_exif_is_a_one_line_warning_for_each_image(model_file, tmp_path, jobs) -> None:
    """Pillow's bare "UserWarning: Truncated File Read" came once per run, with its source line
    and no file name; the images are written all the same."""
    src = tmp_path / "in"
    src.mkdir()
    exif = PILImage.Exif()
    exif[0x010F], exif[0x0110] = "camera", "a model name long enough to be stored after the directory"
    for name in ("a.jpg", "b.jpg"):
        PILImage.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(src / name, exif=exif.tobytes()[:-30])
    result = run("apply", model_file, src, tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 0, result.output
    warned = sorted(line for line in result.stderr.splitlines() if line.strip())
    assert warned == [f"warning: {src / name}: damaged metadata (Truncated File Read, says Pillow): the pixels "
                      "are read in full, the EXIF is carried as far as it could be read" for name in ("a.jpg", "b.jpg")]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.jpg", "b.jpg"]


def test_a_batch_failure_whose_error_names_no_file_is_named_by_its_input(model_file, tmp_path, make_png,
                                                                         monkeypatch) -> None:
    """A file's error that names neither its input nor its output (a map's, a fit's) is prefixed with
    its input in the batch's report, so the report says which file failed."""
    import colorot.apply
    from colorot.errors import ConfigError

    real = colorot.apply.apply_to_file

    def fails_for_b(fitted_map, src, dst, **kwargs):
        if Path(src).name == "b.png":
            raise ConfigError("the map gave no colour")
        return real(fitted_map, src, dst, **kwargs)

    monkeypatch.setattr(colorot.apply, "apply_to_file", fails_for_b)
    for name in ("a.png", "b.png"):
        make_png(tmp_path / "in" / name, 6, 8)
    result = run("apply", model_file, tmp_path / "in", tmp_path / "out", "--jobs", "1")
    assert result.exit_code == 3, result.output
    assert f"failed: {tmp_path / 'in' / 'b.png'}: the map gave no colour" in result.stderr
    assert (tmp_path / "out" / "a.png").is_file()


def test_apply_json_is_exactly_one_document_even_with_failures(model_file, tmp_path, make_png) -> None:
    src = tmp_path / "in"
    make_png(src / "ok.png", 5, 5, seed=3)
    (src / "bad.png").write_bytes(b"nope")
    result = run("apply", model_file, src, tmp_path / "out", "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["written"] == [str(tmp_path / "out" / "ok.png")]
    assert [f["input"] for f in document["failed"]] == [str(src / "bad.png")]


# ------------------------------------------------------------------ info
def test_info_human_readable(model_file) -> None:
    result = run("info", model_file)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model       ridge (dim=3, ")
    assert "gmm target (K=2)" in result.stdout and colorot.__version__ in result.stdout
    final_loss = checkpoint.load(model_file).train["final_loss"]
    assert f"final_loss={final_loss:.6g}," in lines[3]


def test_info_json(model_file) -> None:
    result = run("info", model_file, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    for key in ("model", "parameters", "target", "components", "train", "colorot_version"):
        assert key in document
    assert document["model"] == "ridge" and document["target"] == "gmm" and document["components"] == 2
    assert document["train"]["solver"] == "kl" and document["train"]["loss"] == "kl"
    assert isinstance(document["train"]["kl_nats"], float)
    assert document["parameters"] == sum(p.numel() for p in colorot.load(model_file).map_.parameters())
    assert document["train"]["steps"] == 5 and document["colorot_version"] == colorot.__version__


def test_a_pixels_target_has_no_components_in_the_json(images, tmp_path) -> None:
    """A sliced fit onto the target's pixels reported "components": 256, its kept pixels' count."""
    model = tmp_path / "sliced.pt"
    fitted = json.loads(run("fit", images["source"], images["target"], "-o", model, "--solver", "sliced",
                            "--steps", "2", "--json").stdout)
    assert fitted["target"] == "pixels" and fitted["components"] is None
    assert json.loads(run("info", model, "--json").stdout)["components"] is None


# ------------------------------------------------------- errors and usage
@pytest.mark.parametrize("command", ["info", "apply"])
@pytest.mark.parametrize("kind", ["garbage", "missing", "image"])
def test_bad_checkpoint_is_a_clean_error(images, tmp_path, command, kind) -> None:
    bad = {"garbage": tmp_path / "bad.pt", "missing": tmp_path / "missing.pt", "image": images["source"]}[kind]
    if kind == "garbage":
        bad.write_bytes(b"\x00" * 100)
    args = ["info", bad] if command == "info" else ["apply", bad, images["source"], tmp_path / "o.png"]
    message = assert_clean_error(run(*args), 1)
    assert str(bad) in message
    assert not (tmp_path / "o.png").exists()


def test_unknown_option_is_a_usage_error(model_file) -> None:
    for args in (["info", model_file, "--bogus"], ["fit", "--nope"], ["frobnicate"]):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("option, value, message", [
    ("--strength", "nan", "must be a number in [0, 1], got nan"),
    ("--strength", "1.5", "must be a number in [0, 1], got 1.5"),
    ("--neutral", "nan", "must be a number in [0, 1], got nan"),
    ("--neutral", "-0.1", "must be a number in [0, 1], got -0.1"),
    ("--strength", "1.0000001", "got 1.0000001"),  # was "got 1": refused, and seemingly in range
    ("--saturation", "nan", "must be a finite number ≥ 0 (at most 3.4028234663852886e+38), got nan"),
    ("--saturation", "-1", "must be a finite number ≥ 0 (at most 3.4028234663852886e+38), got -1.0"),
    ("--saturation", "inf", "got inf"),
    ("--saturation", "1e39", "got 1e+39"),  # ∞ in float32
    ("--saturation", "3.40282357e38", "got 3.40282357e+38"),  # was "got 3.40282e+38", under the bound shown
])
@pytest.mark.parametrize("command", ["apply", "match", "export-lut"])
def test_a_colour_control_out_of_its_range_is_refused_by_its_range(command, option, value, message, images,
                                                                   model_file, tmp_path) -> None:
    """NaN too: it is in no range, and the message says which (not "should be ≤ 1")."""
    first = images["target"] if command == "match" else model_file
    output = tmp_path / ("o.cube" if command == "export-lut" else "o.png")
    inputs = [] if command == "export-lut" else [images["source"]]
    result = CliRunner().invoke(app, [command, str(first), *map(str, inputs), str(output), option, value],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert not output.exists()


@pytest.mark.parametrize("command", ["fit", "apply", "match", "export-lut", "info", "eval"])
def test_every_command_has_help_with_an_example(command) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"colorot {command}" in result.stdout


def test_help_paragraphs_wrap_to_the_terminal_and_examples_keep_their_lines() -> None:
    result = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any("subsamples of SOURCE and TARGET and f" in line for line in lines)  # a docstring line break
    assert "colorot eval day.jpg out/day.jpg sunset.jpg" in lines


@pytest.mark.parametrize("command", [None, "fit", "apply", "match", "export-lut", "info", "eval"])
def test_help_examples_fit_on_one_line_of_an_80_column_terminal_and_flags_show_no_value(command) -> None:
    """A wrapped example pasted line by line ran without its last options; Typer 0.29 showed each
    flag as taking a value ("--overwrite <bool>") and a bounded number as "<int range>" beside its
    printed bounds, and cut a long word of help short."""
    group = typer.main.get_command(app)
    written = (group if command is None else group.commands[command]).help  # the examples as written
    examples = [line.strip() for line in written.split("Examples:")[1].split("\n\n")[0].splitlines() if line.strip()]
    result = CliRunner().invoke(app, [*([command] if command else []), "--help"], env={"COLUMNS": "80"})
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert len(examples) >= 2 and all(example in lines for example in examples), (examples, lines)
    assert "<bool>" not in result.stdout and "<list[" not in result.stdout and " range>" not in result.stdout
    assert "…" not in result.stdout  # no word cut short


def test_fit_help_states_the_defaults_the_code_uses() -> None:
    """fit --help writes the solvers' defaults as text (the CLI does not import the solvers): a
    changed constant would have left the help wrong without a word."""
    from colorot import kl_solver, sliced
    from colorot.defaults import ADAM_SW_WEIGHT, DEFAULT_LR, DEFAULT_STEPS, NETWORK_KL_ITERATIONS
    from colorot.distributions import AUTO_COMPONENTS, DEFAULT_RIDGE

    helps = {param.name: " ".join(param.help.split()) for param in typer.main.get_command(app).commands["fit"].params}
    assert f"{kl_solver.DEFAULT_SW_WEIGHT:.0f} for the kl solver, {ADAM_SW_WEIGHT:.0f} for adam" in helps["sw_weight"]
    assert (f"{kl_solver.DEFAULT_ITERATIONS} for kl, {NETWORK_KL_ITERATIONS} for kl with cmgn/mmgn, "
            f"{sliced.DEFAULT_ITERATIONS} for sliced, {DEFAULT_STEPS} for adam") in helps["steps"]
    assert f"{kl_solver.DEFAULT_RIDGE} for the kl solver, {DEFAULT_RIDGE} otherwise" in helps["ridge"]
    assert ", ".join(f"{DEFAULT_LR[name]:g} for {name}" for name in ("ridge", "mmgn", "cmgn")) in helps["lr"]
    assert f"{kl_solver.DEFAULT_COMPONENTS} for the kl solver" in helps["components"]
    assert AUTO_COMPONENTS == (1, 2, 3, 4, 5, 6, 8, 10) and "1–6, 8 and 10" in helps["components"]


def test_text_from_files_cannot_drive_the_terminal(model_file, tmp_path) -> None:
    """A checkpoint's record reached stdout with its ESC sequences (a screen clear, a clipboard
    write), and Rich turned ``:cat:`` in a file name into an emoji, naming a file that does not exist."""
    payload = torch.load(model_file, weights_only=True)
    payload["train"]["source_sha256"] = "\x1b[2J\x1b]52;c;cHduZWQ=\x07FAKE"
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    result = run("info", crafted)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "sha256 \\x1b[2J\\x1b]52;c;cHduZWQ=\\x07FAKE" in result.stdout
    missing = run("apply", model_file, tmp_path / "x:cat:.jpg", tmp_path / "out.jpg")
    assert missing.exit_code == 1 and "x:cat:.jpg" in missing.stderr and "\N{CAT FACE}" not in missing.stderr
    reversed_name = run("apply", model_file, tmp_path / "rtl\u202eGPJ.jpg", tmp_path / "out.jpg")  # shown as rtlgpj.JPG
    assert reversed_name.exit_code == 1 and "rtl\\u202eGPJ.jpg" in reversed_name.stderr
    assert "\u202e" not in reversed_name.stderr
    arabic_mark = run("apply", model_file, tmp_path / "a\u061cb.jpg", tmp_path / "out.jpg")
    assert arabic_mark.exit_code == 1 and "a\\u061cb.jpg" in arabic_mark.stderr


def test_force_and_overwrite_are_one_option_on_every_command_that_writes(model_file, images, tmp_path) -> None:
    """`apply --force` and `fit --overwrite` were "No such option" (suggesting --format and --solver)."""
    (tmp_path / "out.png").write_bytes(b"old")
    (tmp_path / "m.pt").write_bytes(b"old")
    (tmp_path / "t.cube").write_text("old")
    for args in (["apply", model_file, images["source"], tmp_path / "out.png", "--force"],
                 ["match", images["target"], images["source"], tmp_path / "out.png", "--force"],
                 ["fit", images["source"], images["target"], "-o", tmp_path / "m.pt", "--overwrite", *FAST],
                 ["export-lut", model_file, tmp_path / "t.cube", "--overwrite", "--size", "3"]):
        result = run(*args)
        assert result.exit_code == 0, (args[0], result.output)
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "m.pt").read_bytes()[:2] == b"PK"
    assert (tmp_path / "t.cube").read_text().startswith("TITLE")


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("fit", "apply", "info"):
        assert command in result.stdout


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"colorot {colorot.__version__}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [("--version",), ("apply", "--help")])
def test_version_and_help_into_a_full_stdout_are_one_line(args) -> None:
    """They print before any command's body, where the full disk's OSError came out as a traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "colorot", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == "error: cannot write to stdout (No space left on device)"
