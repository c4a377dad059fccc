"""``colorot match`` and the colour controls on the command line (CliRunner, small images in tmp_path)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from colorot import load
from colorot.cli import app
from colorot.controls import luma
from colorot.imageio import Image, read_image, write_image
from colorot.preview import BACKGROUND, LABEL, PAD, THUMB
from _fresh_process import cli_imports_torch
from conftest import smooth_rgb

runner = CliRunner()
FAST = ["--steps", "3"]


def codes(path: Path) -> np.ndarray:
    with PILImage.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """A warm reference and a folder of three inputs (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("match")
    reference = root / "reference.png"
    PILImage.fromarray((smooth_rgb(20, 30, 9) * np.asarray([1.0, 0.7, 0.4])).astype(np.uint8)).save(reference)
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        PILImage.fromarray(smooth_rgb(16, 24, i)).save(folder / name)
    return {"reference": reference, "folder": folder}


def match(scene, *args: str):
    return runner.invoke(app, ["match", str(scene["reference"]), *args, *FAST])


def test_a_map_never_replaces_an_input_or_the_reference(scene, tmp_path):
    """An image named x.pt, input or reference, was replaced by a checkpoint under --overwrite."""
    photo, reference = tmp_path / "photo.pt", tmp_path / "reference.pt"
    shutil.copy(scene["folder"] / "a.png", photo)
    shutil.copy(scene["reference"], reference)
    namesake = tmp_path / "in" / "reference.png"  # its map: reference.pt
    namesake.parent.mkdir()
    shutil.copy(scene["folder"] / "a.png", namesake)
    before = photo.read_bytes(), reference.read_bytes()
    for args in ([str(scene["reference"]), str(photo), str(tmp_path / "o1/"), "--suffix", ".png"],
                 [str(reference), str(namesake), str(tmp_path / "o2/")]):
        result = runner.invoke(app, ["match", *args, "--save-maps", str(tmp_path), "--overwrite", *FAST])
        assert result.exit_code == 1, result.output
        assert "would overwrite an input or output of this run" in result.stderr
    assert (photo.read_bytes(), reference.read_bytes()) == before


def test_save_maps_onto_a_file_is_refused_before_any_work(scene, tmp_path):
    """It fitted and wrote the first image, then stopped: "cannot create folder (… is a file)", exit 1."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for maps in (notes, notes / "maps"):
        result = match(scene, str(scene["folder"]), str(tmp_path / "out"), "--save-maps", str(maps))
        assert result.exit_code == 1 and f"{notes} is a file, not a folder" in result.stderr
        assert not (tmp_path / "out").exists() and notes.read_text() == "mine"


def test_a_preview_inside_an_input_folder_needs_in_place(scene, tmp_path):
    """The sheet landed among the photos, and the next run matched it as one."""
    folder = tmp_path / "photos"
    shutil.copytree(scene["folder"], folder)
    result = match(scene, str(folder), str(tmp_path / "out"), "--preview", str(folder / "sheet.png"))
    assert result.exit_code == 1 and "is inside an input folder" in result.stderr
    assert not (folder / "sheet.png").exists() and not (tmp_path / "out").exists()
    result = match(scene, str(folder), str(tmp_path / "out"), "--preview", str(folder / "sheet.png"), "--in-place")
    assert result.exit_code == 0 and (folder / "sheet.png").is_file(), result.output


def test_empty_arguments_are_refused_before_any_work(scene, tmp_path):
    """typer reads an empty path as ".": --save-maps "" kept maps in the current folder."""
    src = str(scene["folder"] / "a.png")
    for args in ([str(scene["reference"]), src, str(tmp_path / "o/"), "--save-maps", ""],
                 [str(scene["reference"]), src, str(tmp_path / "o/"), "--preview", ""],
                 [str(scene["reference"]), src, str(tmp_path / "o/"), "--suffix", " "],
                 ["", src, str(tmp_path / "o/")]):
        result = runner.invoke(app, ["match", *args, *FAST])
        assert result.exit_code == 1 and result.stderr.strip() == "error: an empty argument was given (an unset variable?)"
    assert not (tmp_path / "o").exists()


def test_match_preview_shows_the_reference_beside_the_first_pair(scene, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = match(scene, str(scene["folder"]), str(tmp_path / "out"), "--preview", str(sheet), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["preview"] == str(sheet)
    row, column = LABEL + THUMB + PAD, PAD + 2 * (THUMB + PAD)  # batch_sheet's layout: a third column
    with PILImage.open(sheet) as image:
        assert image.size == (column + THUMB + PAD, PAD + 3 * row)  # three inputs, one row each
        third = np.asarray(image.convert("RGB"))[:, column:column + THUMB]
    first = third[PAD + LABEL:PAD + LABEL + THUMB].reshape(-1, 3)
    shown = first[(first != BACKGROUND).any(axis=1)]  # the reference's thumbnail, scaled up
    assert len(shown) > THUMB * THUMB // 2
    np.testing.assert_allclose(shown.mean(axis=0), codes(scene["reference"]).reshape(-1, 3).mean(axis=0), atol=3)
    assert (third[PAD + row:] == BACKGROUND).all()  # beside the first pair only


def test_match_mirrors_the_tree_and_keeps_each_map(scene, tmp_path):
    out, maps = tmp_path / "out", tmp_path / "maps"
    result = match(scene, str(scene["folder"]), str(out), "--save-maps", str(maps), "--json", "--jobs", "2")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted(Path(p).relative_to(out).as_posix() for p in document["written"]) == ["a.png", "b.png", "sub/c.png"]
    assert sorted(Path(p).relative_to(maps).as_posix() for p in document["maps"]) == ["a.pt", "b.pt", "sub/c.pt"]
    # A kept map applied later gives the same image (the same map, the same colour table).
    again = tmp_path / "again.png"
    assert runner.invoke(app, ["apply", str(maps / "sub/c.pt"), str(scene["folder"] / "sub/c.png"), str(again)]).exit_code == 0
    assert np.abs(codes(again).astype(int) - codes(out / "sub/c.png")).max() <= 1
    assert load(maps / "a.pt").train_info_["target_sha256"] is not None


def test_match_runs_as_many_jobs_as_the_cpus_this_process_may_use_by_default(scene, tmp_path, monkeypatch):
    """--jobs' documented default is the CPUs this process may use (docs/cli.md), not one file at a time."""
    import colorot.cli as cli

    seen, real = [], cli._run_each_with_progress
    monkeypatch.setattr(cli, "_CPUS", 3)
    monkeypatch.setattr(cli, "_run_each_with_progress", lambda *a, **k: seen.append(k["jobs"]) or real(*a, **k))
    result = match(scene, str(scene["folder"]), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    result = match(scene, str(scene["folder"]), str(tmp_path / "out2"), "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert seen == [3, 1]


def test_kept_maps_are_never_lost_or_left_behind(scene, tmp_path):
    """--save-maps crashed for one file written to a file name, let two inputs share one map file,
    replaced an earlier run's map, and a rerun after a kill between image and map kept no map."""
    src = scene["folder"] / "a.png"
    result = match(scene, str(src), str(tmp_path / "one.png"), "--save-maps", str(tmp_path / "m1"))
    assert result.exit_code == 0 and (tmp_path / "m1" / "one.pt").is_file(), result.output
    twins = tmp_path / "twins"
    twins.mkdir()
    shutil.copy(src, twins / "a.png")
    PILImage.open(src).save(twins / "a.tif")
    result = match(scene, str(twins), str(tmp_path / "o2"), "--save-maps", str(tmp_path / "m2"))
    assert result.exit_code == 1 and "would both keep their map in" in result.stderr
    assert "separate runs, each with its own --save-maps folder" in " ".join(result.stderr.split())
    assert not (tmp_path / "o2").exists()
    maps = tmp_path / "m3"
    assert match(scene, str(src), str(tmp_path / "first/"), "--save-maps", str(maps)).exit_code == 0
    kept = (maps / "a.pt").read_bytes()
    first_map = load(maps / "a.pt").transform(src)
    result = match(scene, str(src), str(tmp_path / "second/"), "--save-maps", str(maps), "--seed", "3")
    assert result.exit_code == 1 and "already exists" in result.stderr and (maps / "a.pt").read_bytes() == kept
    (maps / "a.pt").unlink()  # as a run killed between the image and its map leaves it
    image = (tmp_path / "first" / "a.png").read_bytes()
    result = match(scene, str(src), str(tmp_path / "first/"), "--save-maps", str(maps), "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 0 and document["maps"] == [str(maps / "a.pt")], result.output
    assert (document["written"], document["skipped"]) == ([], [str(tmp_path / "first" / "a.png")])
    np.testing.assert_array_equal(load(maps / "a.pt").transform(src), first_map)  # the same map again (seeded)
    assert (tmp_path / "first" / "a.png").read_bytes() == image  # and the image left as it was
    (maps / "a.pt").unlink()  # the summary says so: it read as if nothing had been done
    result = match(scene, str(src), str(tmp_path / "first/"), "--save-maps", str(maps))
    assert "1 skipped (exist; --overwrite to redo), 1 of them given the map they lacked" in result.stdout


def test_the_reference_is_never_overwritten(scene, tmp_path):
    reference = tmp_path / "reference.png"
    shutil.copy(scene["reference"], reference)
    before = reference.read_bytes()
    for args in ([str(scene["folder"] / "a.png"), str(reference), "--overwrite"], ["-", str(reference), "--overwrite"]):
        result = runner.invoke(app, ["match", str(reference), *args, *FAST], input=(scene["folder"] / "a.png").read_bytes())
        assert result.exit_code == 1 and "overwrite the reference" in result.stderr, result.output
    assert reference.read_bytes() == before


def test_a_default_match_never_imports_torch(scene, tmp_path):
    def torch_imported(*options: str) -> bool:
        return cli_imports_torch("match", str(scene["reference"]), str(scene["folder"]), str(tmp_path / "out"),
                                 "--overwrite", *FAST, *options)

    assert torch_imported("--jobs", "2") is False
    assert torch_imported("--jobs", "2", "--save-maps", str(tmp_path / "maps")) is False
    assert torch_imported("--jobs", "2", "--exact") is True  # the check does see torch when it is there


def test_each_input_gets_its_own_map(scene, tmp_path):
    out, maps = tmp_path / "out", tmp_path / "maps"
    assert match(scene, str(scene["folder"]), str(out), "--save-maps", str(maps)).exit_code == 0
    a, b = load(maps / "a.pt"), load(maps / "b.pt")
    assert a.train_info_["source_sha256"] == hashlib.sha256((scene["folder"] / "a.png").read_bytes()).hexdigest()
    assert a.train_info_["source_sha256"] != b.train_info_["source_sha256"]
    assert a.train_info_["target_sha256"] == b.train_info_["target_sha256"]


def test_existing_outputs_are_skipped_until_overwrite(scene, tmp_path):
    out = tmp_path / "out"
    assert match(scene, str(scene["folder"]), str(out)).exit_code == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    result = match(scene, str(scene["folder"]), str(out), "--json")
    assert json.loads(result.stdout)["written"] == [] and len(json.loads(result.stdout)["skipped"]) == 3
    assert (out / "a.png").stat().st_mtime_ns == stamp
    assert len(json.loads(match(scene, str(scene["folder"]), str(out), "--overwrite", "--json").stdout)["written"]) == 3


def test_a_broken_input_fails_alone_with_exit_3_and_a_rerun_resumes(scene, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(scene["folder"], folder)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = match(scene, str(folder), str(out), "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert len(document["written"]) == 3 and [f["input"] for f in document["failed"]] == [str(folder / "broken.png")]
    (out / "b.png").unlink()  # as if the run had been stopped before it
    (folder / "broken.png").unlink()
    resumed = json.loads(match(scene, str(folder), str(out), "--json").stdout)
    assert resumed["written"] == [str(out / "b.png")] and len(resumed["skipped"]) == 2


def test_an_input_with_one_pixel_fails_by_name(scene, tmp_path):
    """Its failure named no file ("the source image has 1 usable pixel(s)"), where ``colorot fit``
    and a fully transparent input name theirs; from stdin it is named ``<stdin>``."""
    one = tmp_path / "one.png"
    PILImage.new("RGB", (1, 1), (10, 200, 30)).save(one)
    result = match(scene, str(one), str(tmp_path / "out") + "/", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["failed"] == [
        {"input": str(one), "error": f"the source image {one} has 1 usable pixel(s); fitting needs at least 2"}]
    piped = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", *FAST], input=one.read_bytes())
    assert piped.exit_code == 1 and "the source image <stdin> has 1 usable pixel(s)" in piped.stderr


def test_a_file_written_to_stdout_fails_by_its_name(scene, tmp_path):
    """Its failure was named <stdin> and ended the run with exit 1, not a failed file's 3."""
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    result = match(scene, str(empty), "-")
    assert result.exit_code == 3 and f"failed: {empty}: empty file" in result.stderr and "<stdin>" not in result.stderr
    assert result.stdout_bytes == b""


def test_stdin_to_stdout(scene):
    data = (scene["folder"] / "a.png").read_bytes()
    result = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", "--format", "png", *FAST], input=data)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"


def test_stdin_to_a_file_is_written_once_then_skipped(scene, tmp_path):
    """``match REF - FILE`` raised a TypeError (the atomic write's arguments); it also follows the
    batch rule for an existing file."""
    data = (scene["folder"] / "a.png").read_bytes()
    out = tmp_path / "new" / "a.png"
    result = runner.invoke(app, ["match", str(scene["reference"]), "-", str(out), *FAST], input=data)
    assert result.exit_code == 0, result.output
    written = out.read_bytes()
    to_stdout = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", *FAST], input=data).stdout_bytes
    with PILImage.open(io.BytesIO(to_stdout)) as image:
        assert np.array_equal(codes(out), np.asarray(image)) and image.size == (24, 16)
    result = runner.invoke(app, ["match", str(scene["reference"]), "-", str(out), *FAST], input=b"")
    assert result.exit_code == 0 and "1 skipped" in result.output and out.read_bytes() == written


def test_stdin_to_a_file_of_a_format_colorot_cannot_write_is_refused_before_the_reference(scene, tmp_path,
                                                                                        monkeypatch):
    """It fitted the reference and read stdin, then said "cannot write the '.gif' format" (naming no file)."""
    import colorot.matching

    def not_reached(*args, **kwargs):
        raise AssertionError("the reference was fitted")

    monkeypatch.setattr(colorot.matching.Matcher, "__init__", not_reached)
    data = (scene["folder"] / "a.png").read_bytes()
    result = runner.invoke(app, ["match", str(scene["reference"]), "-", str(tmp_path / "o.gif"), *FAST], input=data)
    assert result.exit_code == 1
    assert f"{tmp_path / 'o.gif'}: colorot cannot write the format of its suffix '.gif'" in " ".join(result.stderr.split())


def test_stdin_is_fitted_without_its_transparent_pixels_as_a_file_is(scene, tmp_path):
    """From stdin the fit took the colours hidden under fully transparent pixels (up to 81 codes
    off on the visible ones), and a fully transparent image was matched instead of refused."""
    rgb = smooth_rgb(16, 24, 5)
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, :8] = 255
    rgb[alpha == 0] = (0, 255, 0)  # a hidden pure green that a fit must not see
    src = tmp_path / "hidden.png"
    PILImage.fromarray(np.dstack([rgb, alpha])).save(src)
    from_file = tmp_path / "file.png"
    assert match(scene, str(src), str(from_file)).exit_code == 0
    piped = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", *FAST], input=src.read_bytes())
    assert piped.exit_code == 0, piped.stderr
    with PILImage.open(io.BytesIO(piped.stdout_bytes)) as image:
        assert np.array_equal(np.asarray(image), codes(from_file))
    clear = io.BytesIO()
    PILImage.fromarray(np.zeros((4, 4, 4), np.uint8)).save(clear, format="PNG")
    refused = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", *FAST], input=clear.getvalue())
    assert refused.exit_code == 1 and "every pixel is fully transparent" in refused.stderr


def test_sixteen_bit_and_alpha_are_kept(scene, tmp_path):
    rgb = smooth_rgb(16, 24, 4).astype(np.uint16) * 257
    alpha = np.linspace(0, 65535, rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]).astype(np.uint16)
    src = tmp_path / "deep.png"
    write_image(src, Image(rgb, alpha, 16, "RGBA", "PNG"), rgb / np.float32(65535))
    assert read_image(src).bit_depth == 16
    out = tmp_path / "out.png"
    assert match(scene, str(src), str(out)).exit_code == 0
    image = read_image(out)
    assert image.bit_depth == 16 and image.alpha is not None
    np.testing.assert_array_equal(image.alpha, alpha)


@pytest.mark.parametrize("args, message", [
    (["--model", "affine"], "steps (--steps)"),
    (["--keep-luminance", "--saturation", "-1"], "saturation"),
])
def test_refused_combinations(scene, tmp_path, args, message):
    result = match(scene, str(scene["folder"]), str(tmp_path / "out"), *args)
    assert result.exit_code in (1, 2) and message in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, option", [
    ("match", ["--save-maps", "maps"]), ("match", ["--shard", "0/2"]), ("match", ["--preview", "sheet.png"]),
    ("match", ["--sequence"]), ("apply", ["--shard", "0/2"]), ("apply", ["--preview", "sheet.png"]),
])
def test_a_stream_refuses_the_batch_options(scene, tiny_fit, tmp_path, monkeypatch, command, option):
    """'-' streams one image: a map kept, a shard, a contact sheet or a clip's blend have nothing to
    work on, and would be silently dropped; each is refused, as docs/cli.md says, before any work."""
    monkeypatch.chdir(tmp_path)
    first = tiny_fit["model"] if command == "apply" else scene["reference"]
    result = runner.invoke(app, [command, str(first), "-", "out.png", *option, *(FAST if command == "match" else [])],
                           input=(scene["folder"] / "a.png").read_bytes())
    assert result.exit_code == 1, result.output
    assert "error: '-' works with exactly one input and one output (no --shard, --preview" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_cannot_share_stdout_with_the_image(scene):
    result = runner.invoke(app, ["match", str(scene["reference"]), "-", "-", "--json", *FAST], input=b"")
    assert result.exit_code == 1 and "--json cannot share stdout" in result.stderr


def test_keep_luminance_on_apply_keeps_each_pixels_luma(tiny_fit, tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    PILImage.fromarray((smooth_rgb(16, 24, 3) * 0.6 + 50).astype(np.uint8)).save(src)  # mid-tones: nothing clips
    result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(src), str(out), "--keep-luminance", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["controls"]["keep_luminance"] is True
    before, after = codes(src) / 255.0, codes(out) / 255.0
    assert np.abs(luma(after) - luma(before)).max() <= 1.0 / 255
    plain = tmp_path / "plain.png"
    assert runner.invoke(app, ["apply", str(tiny_fit["model"]), str(src), str(plain)]).exit_code == 0
    assert np.abs(codes(plain).astype(int) - codes(out)).max() > 2  # the control did something


def test_controls_do_not_apply_to_the_inverse(tiny_fit, tmp_path):
    result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["source"]), str(tmp_path / "o.png"),
                                 "--inverse", "--saturation", "0.5"])
    assert result.exit_code == 1 and "do not apply to --inverse" in result.stderr


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (CI installs it)")
@pytest.mark.parametrize("controls", [["--keep-luminance"], ["--saturation", "1.5", "--neutral", "1"],
                                      ["--strength", "0.6", "--keep-luminance", "--saturation", "0.5"]])
def test_a_cube_with_controls_gives_what_apply_gives(tiny_fit, tmp_path, controls):
    """ffmpeg -vf lut3d with the exported .cube matches colorot apply with the same controls within 1 code value
    (on smooth images: a LUT interpolates between its 65³ grid colours)."""
    cube, ours, theirs, src = (tmp_path / n for n in ("grade.cube", "ours.png", "theirs.png", "in.png"))
    PILImage.fromarray(smooth_rgb(40, 64, 5)).save(src)
    assert runner.invoke(app, ["export-lut", str(tiny_fit["model"]), str(cube), "--size", "65", *controls]).exit_code == 0
    assert runner.invoke(app, ["apply", str(tiny_fit["model"]), str(src), str(ours), *controls]).exit_code == 0
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-vf", f"lut3d={cube}",
                    str(theirs)], check=True, timeout=60)
    diff = np.abs(codes(ours).astype(int) - np.asarray(PILImage.open(theirs).convert("RGB"), dtype=int))
    assert diff.max() <= 1, diff.max()
