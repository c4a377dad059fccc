"""Tests for colorot.apply: mapping arrays, planning folder runs and running them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from colorot.apply import Job, Plan, apply_to_file, map_pixels, plan, run, shard
from colorot.errors import ConfigError, DestinationError


class Affine(torch.nn.Module):
    """A stand-in fitted map: x ↦ scale·x + shift, pixel by pixel."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and x.shape[1:] == (3,)
        return self.scale * x + self.shift


class Square(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x**2


INVERT = Affine(-1.0, 1.0)


def _image(path: Path, shape: tuple[int, ...] = (4, 5, 3), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    codes = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    PILImage.fromarray(codes).save(path)
    return path


def _pairs(result: Plan) -> list[tuple[Path, Path]]:
    return [(job.src, job.dst) for job in result.jobs]


# --- map_pixels ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 5, 3), (11, 3)])
def test_chunked_mapping_equals_unchunked(shape: tuple[int, ...]) -> None:
    rgb = np.random.default_rng(1).random(shape, dtype=np.float32)
    whole = map_pixels(Square(), rgb, chunk_pixels=10_000)
    chunked = map_pixels(Square(), rgb, chunk_pixels=4)
    assert whole.shape == shape and whole.dtype == np.float32
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_allclose(whole, rgb**2, rtol=1e-6)


def test_map_pixels_returns_unclipped_float32_and_accepts_read_only_float64() -> None:
    rgb = np.linspace(0, 1, 12).reshape(2, 2, 3)
    rgb.flags.writeable = False
    out = map_pixels(Affine(3.0, -1.0), rgb, chunk_pixels=5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 3 * rgb - 1, rtol=1e-6)
    assert out.min() < 0 and out.max() > 1


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_map_pixels_takes_codes_as_the_floats_an_image_reads_as(dtype, top: int) -> None:
    """uint8 / uint16 codes are taken to [0, 1] a chunk at a time (a 16-bit image's float copy is
    not held whole): the values of Image.rgb, codes / top in float32, each chunk included."""
    codes = np.random.default_rng(2).integers(0, top + 1, (9, 7, 3)).astype(dtype)
    floats = codes.astype(np.float32)
    floats /= top
    out = map_pixels(Square(), codes, chunk_pixels=4)
    np.testing.assert_array_equal(out, map_pixels(Square(), floats, chunk_pixels=4))
    np.testing.assert_allclose(out, floats**2, rtol=1e-6)


def test_map_pixels_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        map_pixels(INVERT, np.zeros((4, 4)))
    with pytest.raises(ValueError):
        map_pixels(INVERT, np.zeros((4, 3)), chunk_pixels=0)


def test_apply_to_file(tmp_path: Path) -> None:
    src = _image(tmp_path / "a.png")
    apply_to_file(INVERT, src, tmp_path / "b.png", chunk_pixels=3)
    before = np.asarray(PILImage.open(src)).astype(int)
    after = np.asarray(PILImage.open(tmp_path / "b.png")).astype(int)
    np.testing.assert_array_equal(after, 255 - before)


# --- plan ---------------------------------------------------------------------------


def test_folder_tree_is_mirrored(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for name in ["a.jpg", "sub/b.png", "sub/deep/c.png"]:
        _image(src / name)
    (src / "notes.txt").write_text("not an image")
    result = plan([src], tmp_path / "out")
    assert _pairs(result) == [
        (src / "a.jpg", tmp_path / "out" / "a.jpg"),
        (src / "sub" / "b.png", tmp_path / "out" / "sub" / "b.png"),
        (src / "sub" / "deep" / "c.png", tmp_path / "out" / "sub" / "deep" / "c.png"),
    ]
    assert result.skipped == [] and not (tmp_path / "out").exists()
    flat = plan([src], tmp_path / "out", recursive=False)
    assert _pairs(flat) == [(src / "a.jpg", tmp_path / "out" / "a.jpg")]


def test_shards_split_by_the_output_path_whatever_the_inputs_spelling(tmp_path: Path, monkeypatch) -> None:
    """--shard i/N is "the same split on every machine": the key is the output path relative to the
    output folder, so the same tree under another root, or spelt relative rather than absolute, gives
    each shard the same files (a key from the input path would split them differently)."""
    names = [f"{letter}.png" for letter in "abcdefgh"] + ["sub/i.png", "sub/j.png"]
    for root in ("here", "there/deeper"):
        for name in names:
            _image(tmp_path / root / "in" / name)
    monkeypatch.chdir(tmp_path)

    def split(folder, output) -> list[list[str]]:
        whole = plan([folder], output)
        return [sorted(job.dst.relative_to(output).as_posix() for job in shard(whole, i, 3, output).jobs)
                for i in range(3)]

    expected = split(tmp_path / "here" / "in", tmp_path / "here" / "out")
    assert sorted(sum(expected, [])) == sorted(names) and all(expected)
    assert split(Path("here/in"), Path("here/out")) == expected
    assert split(tmp_path / "there" / "deeper" / "in", tmp_path / "there" / "out") == expected


def test_several_inputs_each_go_under_the_output(tmp_path: Path) -> None:
    one, two = _image(tmp_path / "x" / "one.png").parent, _image(tmp_path / "y" / "two.png").parent
    loose = _image(tmp_path / "loose.jpg")
    result = plan([one, two, loose], tmp_path / "out", suffix="png")
    assert _pairs(result) == [
        (one / "one.png", tmp_path / "out" / "x" / "one.png"),
        (two / "two.png", tmp_path / "out" / "y" / "two.png"),
        (loose, tmp_path / "out" / "loose.png"),
    ]


def test_single_file_to_file_and_to_folder(tmp_path: Path) -> None:
    src = _image(tmp_path / "a.jpg")
    (tmp_path / "existing").mkdir()
    cases = {
        tmp_path / "b.png": tmp_path / "b.png",
        tmp_path / "existing": tmp_path / "existing" / "a.jpg",
        f"{tmp_path / 'new'}/": tmp_path / "new" / "a.jpg",
        tmp_path / "noext": tmp_path / "noext" / "a.jpg",
    }
    for output, expected in cases.items():
        assert _pairs(plan([src], output)) == [(src, expected)]
    assert _pairs(plan([src], tmp_path / "existing", suffix=".TIF")) == [  # the case given, as an input's .JPG stays
        (src, tmp_path / "existing" / "a.TIF")
    ]
    assert _pairs(plan([src], tmp_path / "existing", suffix="jpeg")) == [(src, tmp_path / "existing" / "a.jpeg")]
    with pytest.raises(ConfigError, match="suffix"):
        plan([src], tmp_path / "b.png", suffix=".jpg")


@pytest.mark.parametrize(
    "inputs, output, message",
    [
        (["a.png"], "a.png", "overwrite an input"),
        (["in"], "in", "overwrite an input|inside an input folder"),
        (["in"], "in/out", "inside an input folder"),
        (["a.png", "in/a.png"], "out", "both be written"),
        (["in", "other/in"], "out", "both be written"),
        (["missing.png"], "out", "not found"),
        (["empty"], "out", "no images"),
        (["in", "a.png"], "a.png", "must be a folder"),
        (["a.png"], "out", "cannot write"),
        (["anim.gif"], "out", "choose one with --suffix"),
    ],
)
def test_unsafe_plans_are_refused(
    tmp_path: Path, inputs: list[str], output: str, message: str
) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "in" / "a.png")
    _image(tmp_path / "other" / "in" / "a.png")
    (tmp_path / "empty").mkdir()
    PILImage.new("RGB", (2, 2)).save(tmp_path / "anim.gif")
    suffix = ".gif" if message == "cannot write" else None
    with pytest.raises(ConfigError, match=message):
        plan([tmp_path / name for name in inputs], tmp_path / output, suffix=suffix)


def test_a_sibling_whose_name_extends_an_input_folder_s_is_not_inside_it(tmp_path: Path) -> None:
    """``in2`` begins with ``in`` but is no folder of it: a test of the path's text without its
    separator would refuse ``in/`` → ``in2/`` as an output inside an input folder."""
    from colorot.atomic import is_within

    _image(tmp_path / "in" / "a.png")
    assert _pairs(plan([tmp_path / "in"], tmp_path / "in2")) == [(tmp_path / "in" / "a.png", tmp_path / "in2" / "a.png")]
    assert not is_within(tmp_path / "a" / "bc", tmp_path / "a" / "b") and is_within(tmp_path / "a" / "b" / "c",
                                                                                  tmp_path / "a" / "b")


def test_output_inside_an_input_folder_is_allowed_in_place(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "a.png")
    _image(src / "graded" / "a.png")  # an output of an earlier run, not an input
    result = plan([src], src / "graded", in_place=True, overwrite=True)
    assert _pairs(result) == [(src / "a.png", src / "graded" / "a.png")]
    beside = plan([src / "a.png"], src, in_place=True, suffix=".jpg")
    assert _pairs(beside) == [(src / "a.png", src / "a.jpg")]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "a.png")
    _image(src / "b.png")
    _image(tmp_path / "out" / "a.png")
    result = plan([src], tmp_path / "out")
    assert result.jobs == [Job(src / "b.png", tmp_path / "out" / "b.png")]
    assert result.skipped == [Job(src / "a.png", tmp_path / "out" / "a.png")]
    assert len(plan([src], tmp_path / "out", overwrite=True).jobs) == 2


# --- run ----------------------------------------------------------------------------


def test_run_continues_after_a_corrupt_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "a.png", shape=(6, 8, 4))
    _image(src / "sub" / "c.jpg")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _image(tmp_path / "out" / "old.png")
    _image(src / "old.png")
    calls: list[tuple[Job, str | None]] = []

    report = run(
        plan([src], tmp_path / "out"),
        INVERT,
        on_file_done=lambda job, err: calls.append((job, err)),
    )

    assert report.exit_code == 3
    assert [job.src.name for job in report.written] == ["a.png", "c.jpg"]
    assert [job.src.name for job in report.skipped] == ["old.png"]
    assert [(job.src.name, "b.png" in message) for job, message in report.failed] == [
        ("b.png", True)
    ]
    assert [(job.src.name, err is None) for job, err in calls] == [
        ("a.png", True),
        ("b.png", False),
        ("c.jpg", True),
    ]
    assert report.seconds >= 0
    for job in report.written:
        with PILImage.open(job.dst) as out, PILImage.open(job.src) as original:
            out.load()
            assert (out.size, out.mode) == (original.size, original.mode)
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert written == ["a.png", "old.png", "sub", "sub/c.jpg"]


def test_run_reports_success_with_exit_code_0(tmp_path: Path) -> None:
    src = _image(tmp_path / "a.png")
    report = run(plan([src], tmp_path / "out" / "b.png"), INVERT, chunk_pixels=7)
    assert report.exit_code == 0 and report.failed == []
    assert report.written == [Job(src, tmp_path / "out" / "b.png")]


def test_run_stops_at_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    src = _image(tmp_path / "a.png")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(DestinationError, match="blocker"):
        run(Plan(jobs=[Job(src, tmp_path / "blocker" / "b.png")], skipped=[]), INVERT)
