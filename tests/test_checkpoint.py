"""Tests for colorot.checkpoint: exact round trips, safe loading, validation, atomic saves."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from colorot import __version__, checkpoint
from colorot.distributions import Gaussian, GaussianMixture
from colorot.errors import CheckpointError, OutputExistsError
from colorot.models import CMGN, MMGN, MODELS, AffineMap, build_model

from _robust_helpers import checkpoint_payload, save_payload

PREPROCESS = {"colour_space": "sRGB", "range": [0.0, 1.0]}
TRAIN = {"steps": 3, "final_loss": -1.5, "seed": 7, "source_sha256": None}


def random_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    config = {"cmgn": {"hidden": 5, "layers": 2, "activation": "sigmoid"},
              "mmgn": {"hidden": 3, "modules": 2, "activation": "softplus"},
              "ridge": {"hidden": 5}, "affine": {}}[name]
    model = build_model(name, {**config, "eps": 0.01})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


@pytest.fixture
def target() -> GaussianMixture:
    return GaussianMixture(np.array([0.25, 0.75]), np.array([[0.2, 0.3, 0.4], [0.6, 0.5, 0.4]]),
                           np.stack([np.eye(3) * 0.01, np.diag([0.02, 0.01, 0.03])]))


@pytest.fixture
def saved(tmp_path, target) -> Path:
    path = tmp_path / "model.pt"
    checkpoint.save(path, random_model("cmgn"), target, PREPROCESS, TRAIN)
    return path


# ------------------------------------------------------------- round trip
@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_is_bit_identical(tmp_path, target, name) -> None:
    model = random_model(name)
    path = tmp_path / f"{name}.pt"
    checkpoint.save(path, model, target, PREPROCESS, TRAIN)
    loaded = checkpoint.load(path)
    assert type(loaded.model) is type(model) and loaded.model.config == model.config
    x = torch.rand(1000, 3, generator=torch.Generator().manual_seed(1)) * 1.4 - 0.2
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
        assert torch.equal(loaded.model.jacobian(x), model.jacobian(x))
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.target.kind == "gmm"
    xt = x.double()
    assert torch.equal(loaded.target.log_prob(xt), target.log_prob(xt))
    assert loaded.preprocess == PREPROCESS and loaded.train == TRAIN
    assert loaded.colorot_version == __version__


def test_round_trip_of_a_gaussian_target(tmp_path) -> None:
    g = Gaussian(np.array([0.1, 0.5, 0.9]), np.diag([0.01, 0.02, 0.03]))
    checkpoint.save(tmp_path / "g.pt", AffineMap(), g, PREPROCESS, TRAIN)
    loaded = checkpoint.load(tmp_path / "g.pt").target
    assert isinstance(loaded, Gaussian)
    np.testing.assert_array_equal(loaded.covariance, g.covariance)


def test_bytes_round_trip_and_schema(target) -> None:
    data = checkpoint.to_bytes(random_model("mmgn"), target, PREPROCESS, TRAIN)
    payload = torch.load(io.BytesIO(data), weights_only=True)
    assert payload["format"] == "colorot" and payload["format_version"] == checkpoint.FORMAT_VERSION
    assert payload["model"]["name"] == "mmgn"
    assert set(payload) == {"format", "format_version", "colorot_version", "model", "target", "preprocess", "train"}
    assert checkpoint.from_bytes(data).model.name == "mmgn"


def test_count_parameters() -> None:
    assert checkpoint.count_parameters(AffineMap()) == 9 + 3
    assert checkpoint.count_parameters(CMGN(hidden=4, layers=2)) == 9 + 3 + 4 * 3 + 2 * 4
    assert checkpoint.count_parameters(MMGN(hidden=2, modules=3)) == 9 + 3 + 3 * 2 * 3 + 3 * 2


# ------------------------------------------------------------ safe loading
class _CreatesFile:
    """Unpickling this calls open(path, 'w'): arbitrary code execution in miniature."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_objects_are_refused_and_never_executed(tmp_path, saved) -> None:
    payload = checkpoint_payload(saved)
    victim = tmp_path / "pwned.txt"
    payload["train"] = {"note": _CreatesFile(victim)}
    evil = save_payload(tmp_path / "evil.pt", payload)
    with pytest.raises(CheckpointError, match="other than tensors and plain values"):
        checkpoint.load(evil)
    assert not victim.exists()
    # Control: an unsafe load of the same file does run the payload.
    torch.load(evil, weights_only=False)
    assert victim.exists()


# ------------------------------------------------------------ bad files
def _truncated(path: Path, tmp: Path) -> Path:
    data = path.read_bytes()
    out = tmp / "truncated.pt"
    out.write_bytes(data[: len(data) // 2])
    return out


def _random_bytes(path: Path, tmp: Path) -> Path:
    out = tmp / "random.pt"
    out.write_bytes(np.random.default_rng(0).bytes(4096))
    return out


def _empty(path: Path, tmp: Path) -> Path:
    out = tmp / "empty.pt"
    out.write_bytes(b"")
    return out


def _edited(edit):
    def make(path: Path, tmp: Path) -> Path:
        payload = checkpoint_payload(path)
        edit(payload)
        return save_payload(tmp / "edited.pt", payload)

    return make


def _set(keys, value):
    def edit(payload):
        d = payload
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return edit


def _nan_tensor(payload):
    payload["model"]["state_dict"]["W"][0, 0] = float("nan")


def _inf_tensor(payload):
    payload["model"]["state_dict"]["V"][1, 1] = float("inf")


def _wrong_shape(payload):
    payload["model"]["state_dict"]["W"] = torch.zeros(3, 3)


def _missing_tensor(payload):
    del payload["model"]["state_dict"]["b"]


def _extra_tensor(payload):
    payload["model"]["state_dict"]["extra"] = torch.zeros(3)


def _not_a_tensor(payload):
    payload["model"]["state_dict"]["b"] = [0.0, 0.0, 0.0]


def _integer_tensor(payload):
    payload["model"]["state_dict"]["W"] = (payload["model"]["state_dict"]["W"] * 100).to(torch.int32)


BAD = {
    "truncated": _truncated,
    "random-bytes": _random_bytes,
    "missing-file": lambda path, tmp: tmp / "nope.pt",
    "a-folder": lambda path, tmp: tmp,
    "empty": _empty,
    "future-version": _edited(_set(["format_version"], checkpoint.FORMAT_VERSION + 1)),
    "old-version": _edited(_set(["format_version"], 0)),
    "no-version": _edited(lambda p: p.pop("format_version")),
    "wrong-format-tag": _edited(_set(["format"], "something-else")),
    "not-a-dict": lambda path, tmp: save_payload(tmp / "list.pt", [1, 2, 3]),
    "nan-tensor": _edited(_nan_tensor),
    "inf-tensor": _edited(_inf_tensor),
    "wrong-shape-tensor": _edited(_wrong_shape),
    "missing-tensor": _edited(_missing_tensor),
    "extra-tensor": _edited(_extra_tensor),
    "non-tensor-parameter": _edited(_not_a_tensor),
    "integer-tensor": _edited(_integer_tensor),  # the right shape; `apply`'s torch-free read took it
    "unknown-model": _edited(_set(["model", "name"], "icnn")),
    "bad-model-config": _edited(_set(["model", "config", "activation"], "relu")),
    "unknown-config-key": _edited(_set(["model", "config", "depth"], 3)),
    "no-model": _edited(lambda p: p.pop("model")),
    "bad-target": _edited(_set(["target", "weights"], [0.9, 0.9])),
    "unknown-target": _edited(_set(["target", "kind"], "poisson")),
    "no-target": _edited(lambda p: p.pop("target")),
    "bad-metadata": _edited(_set(["train"], [1, 2])),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_checkpoints_raise_checkpoint_error(tmp_path, saved, case) -> None:
    path = BAD[case](saved, tmp_path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert str(path) in message or path.name in message
    if case == "future-version":
        assert "upgrade" in message and str(checkpoint.FORMAT_VERSION + 1) in message


def test_unhashable_model_name_is_a_checkpoint_error(tmp_path, saved) -> None:
    path = _edited(_set(["model", "name"], ["cmgn"]))(saved, tmp_path)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_nan_eps_in_config_is_a_checkpoint_error(tmp_path, saved) -> None:
    path = _edited(_set(["model", "config", "eps"], float("nan")))(saved, tmp_path)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


# ------------------------------------------------------------ saving
def test_save_refuses_to_overwrite_when_asked(tmp_path, saved, target) -> None:
    before = saved.read_bytes()
    with pytest.raises(OutputExistsError):
        checkpoint.save(saved, random_model("affine"), target, PREPROCESS, TRAIN, overwrite=False)
    assert saved.read_bytes() == before
    checkpoint.save(saved, random_model("affine"), target, PREPROCESS, TRAIN, overwrite=True)
    assert checkpoint.load(saved).model.name == "affine"


def test_save_leaves_no_temporary_files(tmp_path, target) -> None:
    for i in range(3):
        checkpoint.save(tmp_path / "m.pt", random_model("cmgn", seed=i), target, PREPROCESS, TRAIN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_failed_save_cleans_up_and_keeps_the_old_file(tmp_path, saved, target, monkeypatch) -> None:
    before = saved.read_bytes()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.save(saved, random_model("affine"), target, PREPROCESS, TRAIN)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_save_into_a_missing_folder_is_a_checkpoint_error(tmp_path, target) -> None:
    with pytest.raises(CheckpointError):
        checkpoint.save(tmp_path / "no" / "such" / "m.pt", AffineMap(), target, PREPROCESS, TRAIN)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_leaves_no_temporary_file(tmp_path, target, monkeypatch) -> None:
    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "m.pt", AffineMap(), target, PREPROCESS, TRAIN)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_saved_checkpoint_respects_the_umask(tmp_path, target) -> None:
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "m.pt", AffineMap(), target, PREPROCESS, TRAIN)
    finally:
        os.umask(old)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------ reading a ridge map without torch
@pytest.fixture
def saved_ridge(tmp_path, target) -> Path:
    path = tmp_path / "ridge.pt"
    checkpoint.save(path, random_model("ridge"), target, PREPROCESS, TRAIN)
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["ridge", "affine"])
def test_read_ridge_map_gives_the_parameters_load_gives(tmp_path, target, dtype, name) -> None:
    model = random_model(name).to(dtype)
    path = tmp_path / f"{name}.pt"
    checkpoint.save(path, model, target, PREPROCESS, TRAIN)
    read = checkpoint.read_ridge_map(path)
    loaded = checkpoint.load(path).model
    assert read is not None and read.eps == loaded.eps == 0.01
    assert set(read.state) == {"V", "b", "W", "biases", "rho"}
    for key, tensor in loaded.state_dict().items():
        assert read.state[key].dtype == np.float64
        np.testing.assert_array_equal(read.state[key], tensor.double().numpy())
    if name == "affine":  # a ridge map with no units
        assert read.state["W"].shape == (0, 3) and read.state["rho"].shape == (0,)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"ridge", "affine"}))
def test_read_ridge_map_leaves_other_maps_to_load(tmp_path, target, name) -> None:
    path = tmp_path / f"{name}.pt"
    checkpoint.save(path, random_model(name), target, PREPROCESS, TRAIN)
    assert checkpoint.read_ridge_map(path) is None
    assert checkpoint.load(path).model.name == name


@pytest.mark.parametrize("case", list(BAD))
def test_read_ridge_map_declines_every_file_load_refuses(tmp_path, saved_ridge, case) -> None:
    path = BAD[case](saved_ridge, tmp_path)
    assert checkpoint.read_ridge_map(path) is None
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_read_ridge_map_refuses_pickled_objects_without_running_them(tmp_path, saved_ridge) -> None:
    payload = checkpoint_payload(saved_ridge)
    victim = tmp_path / "pwned.txt"
    payload["train"] = {"note": _CreatesFile(victim)}
    assert checkpoint.read_ridge_map(save_payload(tmp_path / "evil.pt", payload)) is None
    assert not victim.exists()


def test_read_ridge_map_declines_compressed_members(tmp_path, saved_ridge) -> None:
    """torch.save stores members uncompressed; a deflated one could inflate without bound."""
    import zipfile

    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(saved_ridge) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    assert checkpoint.read_ridge_map(deflated) is None


def test_a_compressed_member_is_refused_before_anything_inflates_it(tmp_path, saved_ridge) -> None:
    """A 2 MB checkpoint whose deflated storage held 2 GiB of zeros took 2.3 GB and 30 s to refuse
    (the CRC check and torch.load inflated it); torch.save never compresses a member."""
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(saved_ridge) as source, zipfile.ZipFile(bomb, "w") as out:
        padded = next(info.filename for info in source.infolist() if "/data/" in info.filename)
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            if info.filename == padded:
                member.compress_type = zipfile.ZIP_DEFLATED
                with out.open(member, "w") as stream:
                    stream.write(source.read(info))
                    stream.write(bytes(64 << 20))
            else:
                out.writestr(member, source.read(info))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"member \S+ is compressed, as torch.save never writes one"):
        checkpoint.load(bomb)
    assert checkpoint.read_ridge_map(bomb) is None


def test_a_member_marked_a_folder_is_refused(tmp_path, saved_ridge) -> None:
    """One bit of a central-directory entry (the MS-DOS folder attribute) passes the CRC check, and
    torch.load then read that member as uninitialised memory: weights that changed from run to run,
    accepted or refused as NaN; torch.save never marks a member so."""
    import struct

    data = bytearray(saved_ridge.read_bytes())
    entry = 0
    while (entry := data.find(b"PK\x01\x02", entry)) >= 0:  # each central-directory entry
        length = struct.unpack_from("<H", data, entry + 28)[0]
        if b"/data/" in data[entry + 46:entry + 46 + length]:
            data[entry + 38] |= 0x10
        entry += 4
    marked = tmp_path / "marked.pt"
    marked.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"member \S+ is marked a folder"):
        checkpoint.load(marked)
    assert checkpoint.read_ridge_map(marked) is None


def test_a_member_without_a_name_is_refused(tmp_path, saved_ridge) -> None:
    """A member whose name is empty (a damaged central directory; found by the fuzz test) made the
    member check raise IndexError inside zipfile, a traceback instead of a CheckpointError."""
    import zipfile

    nameless = tmp_path / "nameless.pt"
    with zipfile.ZipFile(saved_ridge) as original, zipfile.ZipFile(nameless, "w", zipfile.ZIP_STORED) as copy:
        for info in original.infolist():
            copy.writestr(info, original.read(info))
        copy.writestr(zipfile.ZipInfo(""), b"1")
    with pytest.raises(CheckpointError, match="a member has no name"):
        checkpoint.load(nameless)
    assert checkpoint.read_ridge_map(nameless) is None


def _shared_under_itself(levels: int) -> list:
    """A list holding the one below it twice, ``levels`` times: a few bytes pickled (each list is
    stored once), 2^levels values once printed."""
    value: list = []
    for _ in range(levels):
        value = [value, value]
    return value


@pytest.mark.parametrize("record, fault", [
    ({"x": _shared_under_itself(40)}, "nested more than 4 deep"),
    ({"x": _shared_under_itself(3)}, "nested more than 4 deep"),  # the record and 4 levels of lists: one too many
    ({"x": list(range(100_001))}, "more than 100000 values"),
    ({(1, 2): 3}, "a key that is not text"),
    ({"x": 1 << 70}, "an integer beyond 64 bits"),
    ({"x": "a" * ((1 << 20) + 1)}, "a text of 1048577 characters"),
    ({"x": torch.zeros(2)}, "a value of type"),
])
def test_a_record_that_is_no_plain_summary_is_refused(tmp_path, saved_ridge, record, fault) -> None:
    """`colorot info` printed the train record: a 16 KB file with 40 levels of one list shared under
    the next never finished, and a tuple key ended --json in a TypeError traceback."""
    payload = checkpoint_payload(saved_ridge)
    payload["train"] = {**payload["train"], **record}
    path = save_payload(tmp_path / "record.pt", payload)
    assert path.stat().st_size < 3 << 20
    with pytest.raises(CheckpointError, match=f"its train record holds {fault}"):
        checkpoint.load(path)
    assert checkpoint.read_ridge_map(path) is None
    payload = checkpoint_payload(saved_ridge)
    payload["preprocess"] = {**payload["preprocess"], **record}
    with pytest.raises(CheckpointError, match=f"its preprocess record holds {fault}"):
        checkpoint.load(save_payload(tmp_path / "preprocess.pt", payload))


def test_a_record_nested_to_the_limit_is_read(tmp_path, saved_ridge) -> None:
    """The deepest a record may nest (the record, then lists three levels deep: 4) is read by load and
    by the torch-free reader alike; one level more is refused (above)."""
    payload = checkpoint_payload(saved_ridge)
    payload["train"] = {**payload["train"], "x": _shared_under_itself(2)}
    path = save_payload(tmp_path / "record.pt", payload)
    assert checkpoint.load(path).train["x"] == _shared_under_itself(2)
    assert checkpoint.read_ridge_map(path) is not None


def test_a_damaged_member_is_refused_where_torch_load_would_read_it(tmp_path, saved_ridge) -> None:
    """torch.load checks no CRC-32: a flipped byte in a tensor's storage would load as a wrong value."""
    import zipfile

    data = bytearray(saved_ridge.read_bytes())
    with zipfile.ZipFile(saved_ridge) as archive:
        member = next(info for info in archive.infolist() if "/data/" in info.filename)
    local = member.header_offset  # the member's data follows its local header, name and extra field
    start = local + 30 + int.from_bytes(data[local + 26:local + 28], "little") \
        + int.from_bytes(data[local + 28:local + 30], "little")
    data[start] ^= 0x40
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    silently_read = torch.load(damaged, weights_only=True)["model"]["state_dict"]  # the control
    intact = torch.load(saved_ridge, weights_only=True)["model"]["state_dict"]
    assert any(not torch.equal(silently_read[key], intact[key]) for key in intact)
    with pytest.raises(CheckpointError, match="fails its CRC check"):
        checkpoint.load(damaged)
    assert checkpoint.read_ridge_map(damaged) is None


def test_ridge_parameters_save_as_the_ridge_map_they_hold(tmp_path, target) -> None:
    """A fit keeps a ridge map as numpy arrays (no torch); its checkpoint loads as that map, exactly."""
    from colorot.ridge_map import RidgeParameters

    model = random_model("ridge")
    state = {key: value.double().numpy() for key, value in model.state_dict().items()}
    parameters = RidgeParameters(state, model.eps)
    checkpoint.save(tmp_path / "p.pt", parameters, target, PREPROCESS, TRAIN)
    checkpoint.save(tmp_path / "m.pt", model, target, PREPROCESS, TRAIN)
    assert (tmp_path / "p.pt").read_bytes() == (tmp_path / "m.pt").read_bytes()
    loaded = checkpoint.load(tmp_path / "p.pt").model
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == torch.float32 and torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize("name", ["cmgn", "mmgn"])
def test_a_network_saved_before_the_activation_scale_loads_with_scale_one(tmp_path: Path, name: str) -> None:
    """colorot ≤ 0.2.0 wrote C-MGN/M-MGN configs without ``scale``; their activations were unscaled."""
    torch.manual_seed(0)
    model = build_model(name, {"hidden": 3, "scale": 1.0})
    path = tmp_path / "old.pt"
    path.write_bytes(checkpoint.to_bytes(model, Gaussian(np.full(3, 0.5), np.eye(3) * 0.01), {}, {}))
    payload = checkpoint_payload(path)
    del payload["model"]["config"]["scale"]
    save_payload(path, payload)
    loaded = checkpoint.load(path).model
    assert loaded.scale == 1.0
    x = torch.rand(16, 3)
    assert torch.equal(loaded(x), model(x))
    assert build_model(name, {"hidden": 3}).scale == {"cmgn": 0.1, "mmgn": 0.05}[name]  # what a new fit uses


def test_an_mmgn_saved_with_the_earlier_defaults_loads_with_them(tmp_path: Path) -> None:
    """The M-MGN's defaults changed (4 → 3 modules, α = 0.1 → 0.05, E41); a checkpoint keeps its own."""
    torch.manual_seed(0)
    model = build_model("mmgn", {"hidden": 8, "modules": 4, "scale": 0.1})
    path = tmp_path / "earlier.pt"
    path.write_bytes(checkpoint.to_bytes(model, Gaussian(np.full(3, 0.5), np.eye(3) * 0.01), {}, {}))
    loaded = checkpoint.load(path).model
    assert (loaded.modules_count, loaded.scale) == (4, 0.1)
    x = torch.rand(16, 3)
    assert torch.equal(loaded(x), model(x))
