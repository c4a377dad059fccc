"""Issue item 6: fuzzing the image reader, the checkpoint loader and the CLI arguments.

The only failures allowed are the documented ones (ImageReadError,
CheckpointError, a one-line ``error:`` with exit 1, a usage error 2, a batch
failure 3). No example has a deadline: hypothesis measures one only after the example returns, so
a deadline caught no hang and failed slow examples on a busy machine.
(Plain random bytes into ``decode_image`` are fuzzed in test_imageio.py.)
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _robust_helpers import EXIT_CODES, cli, png, write_checkpoint
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from colorot import checkpoint
from colorot.errors import CheckpointError, ImageReadError
from colorot.imageio import decode_image, encode_image, has_avif, has_heif

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- the image reader -------------------------------------------------------------------------

MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF", *(["AVIF"] if has_avif() else []),
           *(["HEIF"] if has_heif() else [])]


#: Formats Pillow saves with several frames (an animation, or a multi-page TIFF).
ANIMATED = {"PNG", "WEBP", "TIFF", "GIF", "AVIF"}


@st.composite
def encoded_images(draw) -> bytes:
    """A small random image in a random mode, saved in a format that can hold that mode; in a
    format that animates, sometimes with two or three frames."""
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    count = draw(st.integers(1, 3)) if fmt in ANIMATED else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frames = [PILImage.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)
              for _ in range(count)]
    buffer = io.BytesIO()
    try:
        frames[0].save(buffer, format=fmt, **({"save_all": True, "append_images": frames[1:]} if count > 1 else {}))
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: pick again
        draw(st.just(None).filter(lambda _: False))
    return buffer.getvalue()


#: The decompression-bomb limit of the fuzzed decodes. The fuzzed images have at most 36 pixels, but
#: a damaged header can claim any size: a GIF cut after its signature claimed 23 440 × 2 781, which
#: decoded (under Pillow's default limit) in 1–4 s on 2 cores. Above this limit a claimed size is refused (ImageReadError) before any pixel is decoded.
FUZZ_MAX_PIXELS = 2**20


def _decode_or_refuse(data: bytes) -> None:
    """Decoding gives a sane image or ImageReadError, and so does decoding every frame (as ``apply``
    does), which then encodes again; anything else propagates and fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on odd EXIF or palettes
        try:
            image = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
            every = decode_image(data, max_pixels=FUZZ_MAX_PIXELS, frames=True)
        except ImageReadError:
            return
        for picture in (image, every, *every.frames):
            assert picture.rgb.dtype == np.float32 and picture.rgb.ndim == 3 and picture.rgb.shape[2] == 3
            assert np.isfinite(picture.rgb).all() and picture.rgb.min() >= 0 and picture.rgb.max() <= 1
            assert picture.rgb.shape == image.rgb.shape
            if picture.alpha is not None:
                assert picture.alpha.shape == image.rgb.shape[:2]
        assert all((frame.alpha is None) == (every.alpha is None) for frame in every.frames)
        encode_image(every, every.rgb, "PNG", frames=[frame.rgb for frame in every.frames])


@FUZZ
@given(encoded_images())
def test_random_small_images_decode_or_are_refused(data: bytes) -> None:
    _decode_or_refuse(data)


@FUZZ
@given(encoded_images(), st.data())
def test_damaged_images_decode_or_are_refused(data: bytes, edits: st.DataObject) -> None:
    """Bit flips, cuts and insertions anywhere in a valid file (headers included)."""
    damaged = bytearray(data)
    for _ in range(edits.draw(st.integers(1, 4))):
        position = edits.draw(st.integers(0, max(len(damaged) - 1, 0)))
        action = edits.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip" and damaged:
            damaged[position] ^= 1 << edits.draw(st.integers(0, 7))
        elif action == "cut":
            del damaged[position : position + edits.draw(st.integers(1, 16))]
        elif action == "insert":
            damaged[position:position] = edits.draw(st.binary(min_size=1, max_size=16))
        else:
            del damaged[position:]
    _decode_or_refuse(bytes(damaged))


def test_a_damaged_header_claiming_a_huge_size_is_refused_by_the_limit() -> None:
    """The example that hit the deadline: a 5 × 2 GIF drawn by :func:`encoded_images` with 12 bytes
    cut after its signature (under Pillow's own limit it decodes to 23 440 × 2 781 pixels)."""
    drawn = (b"GIF89a\x05\x00\x02\x00\x83\x00\x00!\xcd\rFI\x90[\xdd\nkV%|Pp\x87:\xfb\x99s\x14\xaegO\xd6 \xc5\xc1=\x93"
             + bytes(18) + b"!\xf9\x04\x01\x00\x00\t\x00,\x00\x00\x00\x00\x05\x00\x02\x00\x00\x08\x0e\x00\x01\x10\x10p"
             b"\x00\x81\x81\x01\t\x02\x14\x08\x08\x00;")
    damaged = drawn[:6] + drawn[18:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageReadError, match="decompression-bomb limit"):
            decode_image(damaged, max_pixels=FUZZ_MAX_PIXELS)


# --- the checkpoint loader --------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", "cmgn", hidden=3, layers=2)
    return path.read_bytes()


def _load_or_refuse(data: bytes) -> None:
    """Loading gives a model with finite outputs on the RGB cube, or CheckpointError."""
    try:
        loaded = checkpoint.from_bytes(data, "fuzzed.pt")
    except CheckpointError:
        return
    with torch.no_grad():
        out = loaded.model(torch.rand(64, 3))
    assert out.shape == (64, 3) and bool(torch.isfinite(out).all())


@FUZZ
@given(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"\x93NUMPY"]),
       st.binary(max_size=2048))
def test_random_bytes_never_load_as_a_checkpoint(prefix: bytes, data: bytes) -> None:
    with pytest.raises(CheckpointError):
        checkpoint.from_bytes(prefix + data, "fuzzed.pt")


def _damaged(data: bytes, edits: st.DataObject) -> bytes:
    """``data`` with 1–6 bytes changed, and cut short half of the time."""
    damaged = bytearray(data)
    for _ in range(edits.draw(st.integers(1, 6))):
        position = edits.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = edits.draw(st.integers(0, 255))
    if edits.draw(st.booleans()):
        del damaged[edits.draw(st.integers(0, len(damaged) - 1)):]
    return bytes(damaged)


@FUZZ
@given(st.data())
def test_damaged_checkpoint_files_load_validly_or_are_refused(
    valid_checkpoint: bytes, edits: st.DataObject
) -> None:
    _load_or_refuse(_damaged(valid_checkpoint, edits))


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.builds(torch.tensor, st.lists(st.floats(width=32), max_size=4)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=3),
    max_leaves=8,
)
"""Any value a weights-only checkpoint can hold: plain values, tensors, lists and dicts."""


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts (lists are leaves)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    return found


def _with_random_values(data: bytes, choices: st.DataObject) -> bytes:
    """The checkpoint ``data`` re-saved with 1–3 of its fields replaced by PLAIN values or removed."""
    payload = torch.load(io.BytesIO(data), weights_only=True)
    for _ in range(choices.draw(st.integers(1, 3))):
        path = choices.draw(st.sampled_from(_paths(payload)))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if choices.draw(st.booleans()):
            parent[path[-1]] = choices.draw(PLAIN)
        else:
            parent.pop(path[-1])
        if not _paths(payload):
            break
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


@FUZZ
@given(st.data())
def test_checkpoints_with_random_values_anywhere_load_validly_or_are_refused(
    valid_checkpoint: bytes, choices: st.DataObject
) -> None:
    _load_or_refuse(_with_random_values(valid_checkpoint, choices))


# --- the torch-free reader of ridge maps ------------------------------------------------------


@pytest.fixture(scope="module")
def valid_ridge_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_checkpoint(tmp_path_factory.mktemp("ck") / "r.pt", "ridge", hidden=3).read_bytes()


def _assert_parameters(read: checkpoint.RidgeParameters, data: bytes) -> None:
    """``read`` holds the parameters ``checkpoint.from_bytes`` loads from ``data``."""
    loaded = checkpoint.from_bytes(data, "fuzzed.pt").model
    assert loaded.name == "ridge" and read.eps == loaded.eps
    for key, tensor in loaded.state_dict().items():
        np.testing.assert_array_equal(read.state[key], tensor.double().numpy())


@FUZZ
@given(st.data())
def test_damaged_ridge_checkpoints_are_read_intact_or_declined(valid_ridge_checkpoint: bytes,
                                                               edits: st.DataObject) -> None:
    """Every member's CRC-32 is checked: a damaged file gives the intact parameters or None."""
    read = checkpoint.ridge_map_from_bytes(_damaged(valid_ridge_checkpoint, edits))
    if read is not None:
        _assert_parameters(read, valid_ridge_checkpoint)


@FUZZ
@given(st.data())
def test_ridge_checkpoints_with_random_values_are_read_only_as_load_reads_them(
    valid_ridge_checkpoint: bytes, choices: st.DataObject
) -> None:
    data = _with_random_values(valid_ridge_checkpoint, choices)
    read = checkpoint.ridge_map_from_bytes(data)
    if read is not None:
        _assert_parameters(read, data)  # load accepts it too, with the same values


# --- CLI argument handling -----------------------------------------------------------------


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real files for the fuzzed command lines to name: a good and a bad checkpoint, a
    good and a bad image, a folder, and names that do not exist; and ``deep/cwd``, the working
    folder the command lines run in, deep enough that every relative stray stays inside."""
    root = tmp_path_factory.mktemp("arena")
    (root / "deep" / "cwd").mkdir(parents=True)
    good = write_checkpoint(root / "good.pt")
    (root / "bad.pt").write_bytes(b"not a checkpoint")
    png(root / "img.png", 4, 4)
    png(root / "folder" / "a.png", 3, 3)
    (root / "bad.png").write_bytes(b"GIF89a truncated")
    return {
        "good.pt": str(good), "bad.pt": str(root / "bad.pt"), "img.png": str(root / "img.png"),
        "bad.png": str(root / "bad.png"), "folder": str(root / "folder"),
        "missing": str(root / "missing.png"), "out/": str(root / "out") + "/",
        "out.png": str(root / "out.png"), "out.pt": str(root / "out.pt"),
    }


FLOATS = ["0", "1e-3", "0.03", "1", "-1", "nan", "inf", "-inf", "1e309", "1e-320", "abc"]
INTS = ["-1", "0", "1", "2", "3", "16", "5000", "4294967296", "99999999999999999999999", "1.5", ""]
FIT_VALUES: dict[str, list[str]] = {
    "--model": ["mmgn", "cmgn", "affine", "resnet"], "--distribution": ["gmm", "gaussian", "uniform"],
    "--components": ["auto", "0", "1", "2", "3", "99", "-1", "two"], "--loss": ["kl", "moment"],
    "--transport-weight": FLOATS, "--steps": ["0", "1", "2", "-1"], "--lr": FLOATS,
    "--batch-size": INTS, "--max-pixels": INTS, "--ridge": FLOATS, "--eps": FLOATS,
    "--hidden": INTS, "--layers": INTS, "--modules": INTS, "--device": ["cpu", "auto", "cuda", "tpu"],
    "--seed": INTS, "--max-image-pixels": INTS,
}
APPLY_VALUES: dict[str, list[str]] = {
    "--suffix": [".png", ".jpg", "png", ".PNG", ".tif", ".gif", "", ".", "..png"],
    "--quality": INTS, "--max-image-pixels": INTS,
}
FLAGS = {"fit": ["--force", "--json"], "apply": ["--recursive", "--no-recursive", "--overwrite",
                                                  "--in-place", "--json"], "info": ["--json"]}
STRAYS = ["--help", "--unknown", "-x", "--", "\x00", "é", "../..", "./", "nan"]
"""Stray tokens; a path among them is relative (run from the arena's ``cwd``, it stays inside)."""


def _tokens(arena: dict[str, str], command: str) -> st.SearchStrategy[list[str]]:
    """Mostly well-formed options with edgy values (so validation, not parsing, is
    exercised), sometimes a stray token."""
    table = {"fit": FIT_VALUES, "apply": APPLY_VALUES}.get(command, {})
    parts = [st.sampled_from(FLAGS.get(command, ["--json"])).map(lambda flag: [flag])]
    if table:
        parts.append(st.sampled_from(sorted(table)).flatmap(
            lambda option: st.sampled_from(table[option]).map(lambda value: [option, value])))
    parts.append(st.sampled_from(STRAYS + list(arena.values())).map(lambda token: [token]))
    weights = [parts[0]] + [parts[1]] * 4 if table else [parts[0]]
    choice = st.one_of(*weights, parts[-1])
    return st.lists(choice, max_size=5).map(lambda groups: [t for g in groups for t in g])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_command_lines_exit_with_a_documented_code(
    monkeypatch: pytest.MonkeyPatch, arena: dict[str, str], choices: st.DataObject
) -> None:
    """Every path a command line can name lies inside the arena: it runs from ``deep/cwd`` there."""
    monkeypatch.chdir(Path(arena["img.png"]).parent / "deep" / "cwd")
    command = choices.draw(st.sampled_from(["fit", "fit", "apply", "apply", "info", "--version",
                                            "nosuch"]))
    args = [command]
    paths = st.sampled_from(list(arena.values()))
    images = st.sampled_from([arena["img.png"]] * 6 + list(arena.values()))  # mostly usable
    if command == "fit":
        # two images and a cheap, bounded fit first; the random tokens may override any of it
        args += [choices.draw(images), choices.draw(images), "-o", arena["out.pt"], "--force",
                 "--distribution", "gaussian"]  # cheap: no EM; every option it takes applies
    elif command == "apply":
        args += [choices.draw(paths)] + [choices.draw(images)
                                         for _ in range(choices.draw(st.integers(0, 2)))]
        args += [choices.draw(st.sampled_from([arena["out/"], arena["out.png"]]))]
    elif command == "info":
        args += [choices.draw(paths)]
    args += choices.draw(_tokens(arena, command))
    if command == "fit" and _asks_for_a_long_fit(args):
        args += ["--steps", "2"]  # keep each example fast: the last --steps wins
    outcome = cli(*args)
    event(f"{command} exit {outcome.code}")
    assert outcome.crash is None, f"colorot {args!r} crashed: {outcome.crash!r}"
    assert outcome.code in EXIT_CODES, (args, outcome.code)
    assert "Traceback" not in outcome.stderr
    if outcome.code == 1:
        assert outcome.stderr.startswith("error: ") or outcome.stderr.startswith("interrupted")


def _asks_for_a_long_fit(args: list[str]) -> bool:
    """True unless the last --steps given is a small number (the default is 1500)."""
    steps = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--steps"]
    with contextlib.suppress(ValueError):
        return not steps or not (float(steps[-1]) <= 3 or math.isnan(float(steps[-1])))
    return False
