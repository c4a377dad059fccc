"""An output named like an image file is refused where a folder is needed (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from colorot.apply import plan, plan_listed
from colorot.cli import app
from colorot.errors import ConfigError


@pytest.fixture
def folder(tmp_path: Path, make_png) -> Path:
    make_png(tmp_path / "in" / "a.png", height=6, width=8, seed=1)
    make_png(tmp_path / "in" / "b.png", height=6, width=8, seed=2)
    return tmp_path / "in"


def test_a_folder_input_refuses_an_image_named_output(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(ConfigError, match="named like an image file"):
        plan([folder], tmp_path / "file.jpg")
    with pytest.raises(ConfigError, match="named like an image file"):
        plan([folder / "a.png", folder / "b.png"], tmp_path / "file.PNG")
    with pytest.raises(ConfigError, match="named like an image file"):
        plan_listed([folder / "a.png"], tmp_path / "file.jpg")


def test_an_existing_folder_or_a_trailing_slash_makes_it_a_folder(tmp_path: Path, folder: Path) -> None:
    assert {job.dst for job in plan([folder], f"{tmp_path / 'new.jpg'}/").jobs} == {
        tmp_path / "new.jpg" / "a.png", tmp_path / "new.jpg" / "b.png"}
    (tmp_path / "old.jpg").mkdir()
    assert len(plan([folder], tmp_path / "old.jpg").jobs) == 2
    assert len(plan([folder], tmp_path / "out").jobs) == 2  # no suffix: a folder, as before


@pytest.mark.parametrize("command", ["apply", "match"])
def test_the_cli_refuses_it_and_creates_nothing(tmp_path: Path, folder: Path, make_png, command: str) -> None:
    if command == "apply":
        first = tmp_path / "m.pt"
        fitted = CliRunner().invoke(app, ["fit", str(folder / "a.png"), str(folder / "b.png"), "-o", str(first),
                                          "--model", "affine"])
        assert fitted.exit_code == 0, fitted.output
    else:
        first = make_png(tmp_path / "ref.png", height=6, width=8, seed=3)
    result = CliRunner().invoke(app, [command, str(first), str(folder), str(tmp_path / "file.jpg")])
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "file.jpg is named like an image file" in line
    assert not (tmp_path / "file.jpg").exists()
