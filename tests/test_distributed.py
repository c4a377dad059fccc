"""The pure per-file function and the Dask recipe give the CLI's results."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from colorot.apply import plan
from colorot.cli import app
from colorot.controls import Controls
from colorot.distributed import apply_path, prepared
from colorot.errors import CheckpointError, ConfigError, OutputExistsError

runner = CliRunner()


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cli_output(tiny_fit, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), f"{out}/",
                                 "--strength", "0.7"])
    assert result.exit_code == 0, result.output
    return out


def test_apply_path_with_bytes_or_path_equals_cli(tiny_fit, cli_output, tmp_path):
    data = tiny_fit["model"].read_bytes()
    for job in plan([tiny_fit["folder"]], tmp_path / "out").jobs:
        model = data if job.src.suffix == ".png" else tiny_fit["model"]
        assert apply_path(model, job.src, job.dst, strength=0.7) == str(job.dst)
    assert _files(tmp_path / "out") == _files(cli_output)


CONTROLS = Controls(keep_luminance=True, saturation=0.8, neutral=0.5)
CONTROL_FLAGS = ["--keep-luminance", "--saturation", "0.8", "--neutral", "0.5"]


@pytest.mark.parametrize("exact", [False, True], ids=["table", "exact"])
def test_apply_path_with_colour_controls_equals_cli(tiny_fit, tmp_path, exact):
    flags = ["--strength", "0.7", *CONTROL_FLAGS, *(["--exact"] if exact else [])]
    result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), f"{tmp_path / 'cli'}/", *flags])
    assert result.exit_code == 0, result.output
    for job in plan([tiny_fit["folder"]], tmp_path / "out").jobs:
        apply_path(tiny_fit["model"], job.src, job.dst, strength=0.7, controls=CONTROLS, exact=exact)
    assert _files(tmp_path / "out") == _files(tmp_path / "cli")
    plain = tmp_path / "plain.png"
    apply_path(tiny_fit["model"], job.src, plain, strength=0.7, exact=exact)
    assert plain.read_bytes() != job.dst.read_bytes()  # the controls did change the image


def test_apply_path_keeps_a_file_at_its_output_unless_it_may_replace_it(tiny_fit, tmp_path):
    src = plan([tiny_fit["folder"]], tmp_path / "out").jobs[0].src
    dst = tmp_path / "theirs.png"
    dst.write_bytes(b"theirs")
    with pytest.raises(OutputExistsError, match="theirs.png exists and is left as it is"):  # it said "appeared while…"
        apply_path(tiny_fit["model"], src, dst, replace=False)
    assert dst.read_bytes() == b"theirs"
    apply_path(tiny_fit["model"], src, dst)
    assert dst.read_bytes() != b"theirs"


@pytest.mark.parametrize(("option", "value"), [("quality", 0), ("quality", 101), ("quality", 95.5), ("quality", True),
                                               ("max_pixels", -1), ("max_pixels", "many"),
                                               ("strength", "0.5"), ("strength", True), ("strength", None),  # read, or a TypeError
                                               ("inverse", "False"), ("exact", 1), ("replace", "no"),  # "False" was true
                                               ("convert_space", None)])
def test_apply_path_refuses_what_colorot_apply_refuses_before_any_work(tiny_fit, tmp_path, option, value):
    src = plan([tiny_fit["folder"]], tmp_path / "out").jobs[0].src
    with pytest.raises(ConfigError, match=f"^{option} "):
        apply_path(tiny_fit["model"], src, tmp_path / "o.jpg", **{option: value})
    assert not (tmp_path / "o.jpg").exists()


def test_apply_path_never_writes_over_its_input_or_checkpoint(tiny_fit, tmp_path):
    """It replaced its source with the graded image, where colorot apply refuses."""
    src = tmp_path / "a.png"
    shutil.copy(plan([tiny_fit["folder"]], tmp_path / "out").jobs[0].src, src)
    model = tmp_path / "m.pt"
    shutil.copy(tiny_fit["model"], model)
    before = src.read_bytes(), model.read_bytes()
    for dst in (src, model):
        with pytest.raises(ConfigError, match="output would overwrite an input"):
            apply_path(model, src, dst)
    assert (src.read_bytes(), model.read_bytes()) == before


def test_a_checkpoint_fault_names_its_file(tiny_fit, tmp_path):
    """The file was called "checkpoint": the map is prepared from its bytes."""
    src = plan([tiny_fit["folder"]], tmp_path / "out").jobs[0].src
    with pytest.raises(CheckpointError, match=f"^{src} is not a valid colorot checkpoint: it is a PNG image"):
        apply_path(src, src, tmp_path / "y.png")


def test_a_ridge_map_is_prepared_without_loading_it(tiny_fit):
    """The tiny fit is a ridge map: its table comes from the bytes without torch, and no map is built;
    --exact and --inverse still load it."""
    data = tiny_fit["model"].read_bytes()
    fitted, table, _ = prepared(data, strength=0.7)
    assert fitted is None and table is not None
    assert prepared(data, exact=True)[0] is not None
    assert prepared(data, inverse=True)[0] is not None


def test_dask_refuses_what_every_file_would_refuse_before_sending_a_task(tiny_fit, tmp_path):
    """Each file failed alone with the same message (N lines), or a worker logged a TypeError per task."""
    pytest.importorskip("dask.distributed")
    from colorot.distributed import apply_with_dask

    class NoCluster:  # any task sent would fail the test
        def __getattr__(self, name):
            pytest.fail(f"client.{name} was used before the options were checked")

    job_plan = plan([tiny_fit["folder"]], tmp_path / "out")
    for options, error, message in (({"bogus": 1}, ConfigError, "options apply_path does not take: bogus"),
                                    ({"strength": 2}, ConfigError, "strength"),
                                    ({"inverse": True, "convert_space": True}, ConfigError, "convert-space"),
                                    ({"quality": -5}, ConfigError, "quality"),  # it wrote JPEGs of quality 1 or 100
                                    ({"quality": "high"}, ConfigError, "quality"),  # Pillow's 75, silently
                                    ({"max_pixels": 0}, ConfigError, "max_pixels"),  # every file failed
                                    ({"controls": {"saturation": 0.5}}, ConfigError, "Controls"),  # TypeError
                                    ({"strength": None}, ConfigError, "strength"),  # a bare TypeError
                                    ({"inverse": "False"}, ConfigError, "inverse must be True or False")):
        with pytest.raises(error, match=message):
            apply_with_dask(NoCluster(), job_plan, tiny_fit["model"], **options)
    with pytest.raises(CheckpointError, match="not a valid colorot checkpoint"):
        apply_with_dask(NoCluster(), job_plan, b"not a checkpoint")


def test_dask_local_cluster_equals_cli(tiny_fit, cli_output, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from colorot.distributed import apply_with_dask

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        job_plan = plan([tiny_fit["folder"]], tmp_path / "out")
        report = apply_with_dask(client, job_plan, tiny_fit["model"], strength=0.7)
        controlled = apply_with_dask(client, plan([tiny_fit["folder"]], tmp_path / "controlled"), tiny_fit["model"],
                                     strength=0.7, controls=CONTROLS)
        # A corrupt input and an output already there, as `colorot apply` reports them: the corrupt file
        # in `failed` with its message (a task's error was dropped: reported written, exit code 0), the
        # kept output in `skipped` (it was reported nowhere).
        mixed = tmp_path / "mixed"
        mixed.mkdir()
        shutil.copy(tiny_fit["folder"] / "a.png", mixed / "a.png")
        shutil.copy(tiny_fit["folder"] / "b.png", mixed / "b.png")
        (mixed / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        (tmp_path / "mixed_out").mkdir()
        (tmp_path / "mixed_out" / "b.png").write_bytes(b"kept")
        partial = apply_with_dask(client, plan([mixed], tmp_path / "mixed_out"), tiny_fit["model"])
    assert [job.src.name for job in partial.written] == ["a.png"]
    assert [job.src.name for job in partial.skipped] == ["b.png"]
    assert [job.src.name for job, _ in partial.failed] == ["bad.png"] and partial.failed[0][1]
    assert partial.exit_code == 3
    assert (tmp_path / "mixed_out" / "b.png").read_bytes() == b"kept"
    assert not (tmp_path / "mixed_out" / "bad.png").exists()
    assert not report.failed and len(report.written) == 5
    assert _files(tmp_path / "out") == _files(cli_output)
    assert not controlled.failed
    result = runner.invoke(app, ["apply", str(tiny_fit["model"]), str(tiny_fit["folder"]), f"{tmp_path / 'cli'}/",
                                 "--strength", "0.7", *CONTROL_FLAGS])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "controlled") == _files(tmp_path / "cli")
