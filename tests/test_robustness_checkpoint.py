"""Issue item 1: checkpoints are data, never code.

Every bad checkpoint goes through ``colorot info`` and ``colorot apply`` and must
give one ``error:`` line and exit 1, with nothing executed and nothing written.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image as PILImage
from _robust_helpers import (
    assert_one_line_error,
    checkpoint_payload,
    cli,
    png,
    save_payload,
    write_checkpoint,
)

from colorot import checkpoint
from colorot.errors import CheckpointError
from colorot.imageio import has_avif, has_heif


class _WritesAFile:
    """Unpickling this runs ``open(path, "w")``: the canary of code execution."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsAShellCommand:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "good.pt", "mmgn", hidden=2, modules=2)


def _both_commands_refuse(ckpt: Path, tmp_path: Path, *fragments: str) -> None:
    """``info`` and ``apply`` each fail with one line naming the file; apply writes nothing."""
    assert_one_line_error(cli("info", ckpt), str(ckpt), *fragments)
    src = png(tmp_path / "in" / "a.png")
    assert_one_line_error(cli("apply", ckpt, src, tmp_path / "out/"), str(ckpt), *fragments)
    assert not (tmp_path / "out").exists()


# --- code execution -----------------------------------------------------------------


@pytest.mark.parametrize("gadget", [_WritesAFile, _RunsAShellCommand])
@pytest.mark.parametrize("wrapping", ["torch.save", "raw pickle", "inside a valid checkpoint"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(
    tmp_path: Path, good: Path, gadget: type, wrapping: str
) -> None:
    canary = tmp_path / "PWNED"
    evil = gadget(canary)
    path = tmp_path / "evil.pt"
    if wrapping == "torch.save":
        torch.save({"format": "colorot", "format_version": 1, "x": evil}, path)
    elif wrapping == "raw pickle":
        path.write_bytes(pickle.dumps(evil))
    else:  # a real checkpoint with one extra field holding the gadget
        payload = checkpoint_payload(good)
        payload["train"]["note"] = evil
        torch.save(payload, path)
    _both_commands_refuse(path, tmp_path, "not a zip archive" if wrapping == "raw pickle" else "could run code")
    assert not canary.exists(), "unpickling ran code"


def test_the_refusal_does_not_advise_weights_only_false(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _WritesAFile(tmp_path / "PWNED")}, path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert "weights_only" not in str(info.value)


# --- damaged or foreign files ---------------------------------------------------------


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _last_byte_dropped(data: bytes) -> bytes:
    return data[:-1]


def _random(data: bytes) -> bytes:
    return os.urandom(len(data))


def _zip_of_text(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a checkpoint")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b"",
        _truncated,
        _last_byte_dropped,
        lambda d: d[:100],
        _random,
        lambda d: b"\x80\x02}q\x00." + os.urandom(200),  # pickle header, garbage after
        lambda d: b"PK\x03\x04" + os.urandom(500),  # zip magic, garbage after
        _zip_of_text,
        lambda d: b"hello, I am a text file\n",
        lambda d: pickle.dumps([1, 2, 3]),
    ],
    ids=["empty", "half", "minus-1-byte", "first-100-bytes", "random", "pickle-garbage",
         "zip-garbage", "zip-of-text", "text", "plain-list"],
)
def test_damaged_or_foreign_files_are_refused(
    tmp_path: Path, good: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(damage(good.read_bytes()))
    _both_commands_refuse(path, tmp_path, "not a valid colorot checkpoint")


@pytest.mark.parametrize("data", [b"some notes\n", b"\x80\x02]q\x00.", bytes(range(256))], ids=["text", "pickle", "binary"])
def test_a_file_that_is_no_zip_archive_is_named_as_such(tmp_path: Path, data: bytes) -> None:
    """torch.load's reading of it gave the reason: "(101)" for a text file (a KeyError's key), "(pop
    from empty list)"."""
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    _both_commands_refuse(path, tmp_path, "it is not a zip archive, as every checkpoint is (the file is something else)")


@pytest.mark.parametrize("suffix, kind", [(".jpg", "JPEG"), (".png", "PNG"), (".tif", "TIFF"), (".webp", "WebP"),
                                          (".bmp", "BMP"), (".gif", "GIF"),
                                          pytest.param(".avif", "AVIF", marks=pytest.mark.skipif(
                                              not has_avif(), reason="this Pillow has no AVIF support")),
                                          pytest.param(".heic", "HEIC", marks=pytest.mark.skipif(
                                              not has_heif(), reason="pillow-heif is not installed"))])
def test_an_image_given_as_the_checkpoint_is_named_as_one(tmp_path: Path, suffix: str, kind: str) -> None:
    image = tmp_path / f"photo{suffix}"
    PILImage.new("RGB", (4, 4), (200, 100, 50)).save(image)
    _both_commands_refuse(image, tmp_path, f"it is a {kind} image, not a map that colorot fit saved (colorot fit writes one with -o")


def test_a_checkpoint_given_as_the_reference_is_named_as_one(tmp_path: Path, good: Path) -> None:
    assert_one_line_error(cli("match", good, png(tmp_path / "a.png"), tmp_path / "out"),
                          f"{good}: a zip archive (a colorot checkpoint?), not an image")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_given_to_eval_as_an_image_points_to_model(tmp_path: Path, good: Path) -> None:
    image = png(tmp_path / "a.png")
    assert_one_line_error(cli("eval", good, image, image),
                          f"{good}: a zip archive (a colorot checkpoint?), not an image; eval compares three images, "
                          "SOURCE OUTPUT TARGET; give the map with --model")


def test_a_missing_checkpoint_and_a_folder_are_refused(tmp_path: Path) -> None:
    assert_one_line_error(cli("info", tmp_path / "nope.pt"), "nope.pt")
    assert_one_line_error(cli("info", tmp_path), str(tmp_path))


# --- valid pickles, invalid content ---------------------------------------------------


def _set(*keys_and_value: object) -> Callable[[dict], None]:
    *keys, value = keys_and_value

    def alter(payload: dict) -> None:
        node = payload
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return alter


def _fill(key: str, value: float) -> Callable[[dict], None]:
    return lambda p: p["model"]["state_dict"][key].fill_(value)


ALTERATIONS: dict[str, tuple[Callable[[dict], None], str]] = {
    "future-version": (_set("format_version", 2), "newer than this colorot supports"),
    "far-future-version": (_set("format_version", 10**6), "upgrade colorot"),
    "old-version": (_set("format_version", 0), "unsupported format version"),
    "version-as-text": (_set("format_version", "1"), "missing format version"),
    "no-format-tag": (lambda p: p.pop("format"), "format tag"),
    "other-format-tag": (_set("format", "keras"), "format tag"),
    "nan-weights": (_fill("W", float("nan")), "NaN or infinite"),
    "inf-weights": (_fill("V", float("inf")), "NaN or infinite"),
    "nan-bias": (_fill("b", float("nan")), "NaN or infinite"),
    "wrong-shape": (lambda p: p["model"]["state_dict"].update(V=torch.zeros(4, 4)), "wrong shape"),
    "transposed": (lambda p: p["model"]["state_dict"].update(
        W=p["model"]["state_dict"]["W"].transpose(1, 2).contiguous()), "wrong shape"),
    "integer-tensor": (lambda p: p["model"]["state_dict"].update(
        b=torch.zeros(3, dtype=torch.int64)), "wrong shape or type"),
    "not-a-tensor": (lambda p: p["model"]["state_dict"].update(b=[0.0, 0.0, 0.0]), "wrong shape"),
    "missing-parameter": (lambda p: p["model"]["state_dict"].pop("V"), "do not match"),
    "extra-parameter": (lambda p: p["model"]["state_dict"].update(Z=torch.zeros(1)), "do not match"),
    "unknown-model-kind": (_set("model", "name", "resnet50"), "unknown model kind"),
    "model-kind-as-list": (_set("model", "name", ["mmgn"]), "unknown model kind"),
    "nan-eps": (_set("model", "config", "eps", float("nan")), "eps"),
    "zero-eps": (_set("model", "config", "eps", 0.0), "eps"),  # eps is J_T's eigenvalue floor: 0 is not monotone
    "negative-eps": (_set("model", "config", "eps", -1.0), "eps"),
    "eps-as-text": (_set("model", "config", "eps", "0.001"), "eps"),
    "huge-eps": (_set("model", "config", "eps", 1e300), "eps"),  # infinite in float32: eval's eigh crashed
    "tiny-scale": (_set("model", "config", "scale", 1e-300), "activation scale"),  # every output infinite
    "version-as-list": (_set("colorot_version", [[[]]]), "colorot_version"),  # nested: a RecursionError
    "two-channel-model": (_set("model", "config", "dim", 2), "3 colour channels"),
    "dim-as-empty-tensor": (_set("model", "config", "dim", torch.zeros(0)), "3 colour channels"),  # no truth value
    "dim-as-tensor": (_set("model", "config", "dim", torch.tensor(3)), "3 colour channels"),
    "huge-model": (_set("model", "config", "hidden", 10**9), "model size"),
    "huge-product": (lambda p: p["model"]["config"].update(hidden=4096, modules=4096), "model size"),
    "unknown-config-key": (_set("model", "config", "depth", 3), "invalid configuration"),
    "no-model": (lambda p: p.pop("model"), "missing model section"),
    "no-target": (lambda p: p.pop("target"), "missing target section"),
    "target-as-list": (_set("target", [1, 2]), "missing target section"),
    "nan-target-mean": (_set("target", "mean", [float("nan"), 0.5, 0.5]), "NaN or infinite"),
    "huge-int-target-mean": (_set("target", "mean", [10**400, 0.5, 0.5]), "malformed target"),  # OverflowError
    "singular-target": (_set("target", "covariance", [[0.0] * 3] * 3), "positive definite"),
    "two-channel-target": (lambda p: p.update(target={"kind": "gaussian", "mean": [0.5, 0.5],
                                                     "covariance": [[1.0, 0.0], [0.0, 1.0]]}),
                           "RGB"),
    "scalar-target": (_set("target", "mean", 0.5), "target"),
    "unknown-target-kind": (_set("target", "kind", "uniform"), "unknown target kind"),
    "metadata-as-list": (_set("train", [1, 2]), "malformed metadata"),
    "payload-is-a-tensor": (None, "format tag"),
}


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_altered_checkpoints_are_refused_with_one_line(tmp_path: Path, good: Path, name: str) -> None:
    alter, fragment = ALTERATIONS[name]
    if alter is None:
        payload: object = torch.zeros(3)
    else:
        payload = copy.deepcopy(checkpoint_payload(good))
        alter(payload)
    path = save_payload(tmp_path / f"{name}.pt", payload)
    valid = () if "future" in name else ("is not a valid colorot checkpoint",)  # the target's faults lacked it
    _both_commands_refuse(path, tmp_path, *valid, fragment)


@pytest.mark.parametrize("eps", [0.0, float("nan"), -1.0, "0.001", 1e300], ids=["zero", "nan", "negative", "text", "huge"])
def test_a_ridge_map_s_eps_outside_its_range_is_refused_by_the_torch_free_reader_too(tmp_path: Path,
                                                                                      eps: object) -> None:
    """A ridge map is applied from its parameters read without torch (checkpoint.read_ridge_map):
    that reader must decline every eps load refuses, (0, MAX_EPS], so that load names the fault.
    Its eps = 0 passed a check written 0 <= eps (the table above held an M-MGN only)."""
    good_ridge = write_checkpoint(tmp_path / "ridge.pt", "ridge", hidden=3)
    assert checkpoint.read_ridge_map(good_ridge) is not None  # the control: read as it was saved
    payload = checkpoint_payload(good_ridge)
    _set("model", "config", "eps", eps)(payload)
    path = save_payload(tmp_path / "bad-eps.pt", payload)
    assert checkpoint.read_ridge_map(path) is None
    _both_commands_refuse(path, tmp_path, "is not a valid colorot checkpoint", "eps")


def test_the_unaltered_checkpoint_is_accepted(tmp_path: Path, good: Path) -> None:
    """The control for the table above: the same checkpoint, re-saved untouched, loads."""
    path = save_payload(tmp_path / "same.pt", checkpoint_payload(good))
    outcome = cli("info", path, "--json")
    assert outcome.code == 0 and '"model": "mmgn"' in outcome.stdout
