"""The preview sheets: loss labels readable for small and negative losses, and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from colorot.preview import _loss_panel, loss_label


@pytest.mark.parametrize("value, label", [
    (0.000123, "0.000123"), (1.234e-5, "1.23e-05"), (-2.3456, "-2.35"), (-4e-5, "-4e-05"),
    (12.345, "12.3"), (12345.6, "1.23e+04"), (0.0, "0"),
])
def test_loss_labels_keep_three_significant_digits_and_the_sign(value, label) -> None:
    assert loss_label(value) == label


def test_a_curve_of_tiny_losses_is_drawn() -> None:
    """The curve, in its own colour, runs across the panel and falls from its top half to its bottom
    half (the frame and labels alone, drawn in any case, proved nothing)."""
    panel = np.asarray(_loss_panel(list(np.geomspace(3e-5, 1e-6, 50)), 400)).astype(int)
    rows, columns = np.nonzero((np.abs(panel - (250, 200, 80)).sum(axis=-1) == 0))
    assert columns.size and columns.max() - columns.min() > 0.8 * panel.shape[1]
    height = panel.shape[0]
    assert rows[columns == columns.min()].mean() < height / 2 < rows[columns == columns.max()].mean()


def test_save_sheet_writes_atomically_by_suffix(tmp_path):
    """The sheet lands under its name in the suffix's format, a killed write's temp file is cleared,
    and an unknown suffix is one ImageWriteError that leaves nothing behind."""
    from PIL import Image

    from colorot.errors import ImageWriteError
    from colorot.preview import save_sheet

    sheet = Image.new("RGB", (8, 4), (10, 200, 30))
    (tmp_path / ".sheet.jpg.89abcdef.tmp").write_bytes(b"half a sheet")
    save_sheet(sheet, tmp_path / "sheet.jpg")
    with Image.open(tmp_path / "sheet.jpg") as written:
        assert written.format == "JPEG" and written.size == (8, 4)
    with pytest.raises(ImageWriteError, match="unknown file extension"):
        save_sheet(sheet, tmp_path / "sheet.nope")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.jpg"]


def test_the_histograms_count_the_full_image_s_pixels_not_the_thumbnail_s(tmp_path) -> None:
    """A thumbnail's pixels average their neighbours: a noisy 1×20 000 image's spread shrank from
    74 code values to 7 in its histograms."""
    from PIL import Image

    from colorot.preview import HIST_PIXELS, thumbnail_and_sample

    codes = np.random.default_rng(0).integers(0, 256, (1, 20_000, 3), dtype=np.uint8)
    Image.fromarray(codes).save(tmp_path / "noise.png")
    thumbnail, sample, _ = thumbnail_and_sample(tmp_path / "noise.png")
    assert thumbnail.std() < 20 < 70 < sample.std()  # measured: about 7 and 74
    assert sample.shape == (20_000, 3) and HIST_PIXELS < 20_000 * 4
    wide = np.random.default_rng(1).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert len(thumbnail_and_sample(tmp_path / "wide.png")[1]) in range(HIST_PIXELS, 2 * HIST_PIXELS)


def test_the_loss_panel_counts_the_steps_not_the_values() -> None:
    """The sliced solver records its start's loss and then one a step: a 30-step fit's 31 values
    are labelled "over 30 steps", not 31."""
    from PIL import Image, ImageDraw

    from colorot.preview import BACKGROUND, INK, LABEL, PAD

    values = list(np.linspace(2.0, 1.0, 31))
    expected = Image.new("RGB", (400, 2 * LABEL), BACKGROUND)
    ImageDraw.Draw(expected).text((PAD, 4), "training loss: 2 -> 1 over 30 steps", fill=INK)
    title = np.asarray(_loss_panel(values, 400, steps=30))[:2 * LABEL]  # above the curve's frame
    np.testing.assert_array_equal(title, np.asarray(expected))
    assert not np.array_equal(np.asarray(_loss_panel(values, 400))[:2 * LABEL], title)  # 31 values: 31 steps


def test_the_fit_sheet_s_histograms_count_the_full_images(curved_map, tmp_path) -> None:
    """fit_preview's histograms are not the thumbnails' (their pixels average their neighbours,
    narrowing every spread); each column's is of its full image's pixels."""
    from PIL import Image

    from colorot.preview import HIST_HEIGHT, LABEL, PAD, THUMB, _histogram_panel, fit_preview, thumbnail_and_sample

    codes = np.random.default_rng(0).integers(0, 256, (1, 20_000, 3), dtype=np.uint8)
    Image.fromarray(codes).save(tmp_path / "noise.png")
    fit_preview(tmp_path / "sheet.png", curved_map, tmp_path / "noise.png", tmp_path / "noise.png", [2.0, 1.0])
    thumbnail, sample, _ = thumbnail_and_sample(tmp_path / "noise.png")
    x, y = PAD + 2 * (THUMB + PAD), PAD + LABEL + THUMB + PAD  # the target's column
    with Image.open(tmp_path / "sheet.png") as sheet:
        shown = np.asarray(sheet.convert("RGB"))[y:y + HIST_HEIGHT, x:x + THUMB]
    np.testing.assert_array_equal(shown, np.asarray(_histogram_panel(sample, THUMB)))
    assert not np.array_equal(shown, np.asarray(_histogram_panel(thumbnail.reshape(-1, 3), THUMB)))


@pytest.mark.parametrize("count, rows", [(10, [0, 2, 4, 5, 7, 9]), (3, [0, 1, 2])])
def test_a_batch_sheet_shows_at_most_six_files_spread_over_the_batch(tmp_path, count, rows) -> None:
    """docs/cli.md: "up to 6 written files spread over the batch", the first and the last among them;
    each row's input is that file (each input here one flat colour)."""
    from PIL import Image

    from colorot.preview import LABEL, PAD, THUMB, batch_preview

    colours = [(20 * i, 100, 250 - 20 * i) for i in range(count)]
    pairs = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (6, 4), colour).save(tmp_path / f"in{i}.png")
        pairs.append((tmp_path / f"in{i}.png", tmp_path / f"in{i}.png"))
    assert batch_preview(tmp_path / "sheet.png", pairs) == [pairs[i] for i in rows]
    row = LABEL + THUMB + PAD
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.height == PAD + len(rows) * row
        codes = np.asarray(sheet.convert("RGB"))
    shown = [tuple(codes[PAD + k * row + LABEL + THUMB // 2, PAD + THUMB // 2]) for k in range(len(rows))]
    assert shown == [colours[i] for i in rows]


def test_a_fit_whose_checkpoint_is_refused_leaves_no_preview(tmp_path, monkeypatch, make_png) -> None:
    """`fit --preview`: the sheet is written, then the checkpoint saved, then the sheet named; when the
    save is refused (another run wrote the checkpoint after the check) neither lands: no preview
    beside a checkpoint that is not this fit's."""
    from pathlib import Path

    from typer.testing import CliRunner

    import colorot.atomic
    from colorot.cli import app

    other_run = colorot.atomic.remove_stale_temp_files  # called first by every atomic write

    def another_run_writes_the_checkpoint(path):
        if Path(path).name == "m.pt":
            Path(path).write_bytes(b"theirs")
        return other_run(path)

    monkeypatch.setattr(colorot.atomic, "remove_stale_temp_files", another_run_writes_the_checkpoint)
    source, target = make_png(tmp_path / "in" / "s.png", seed=1), make_png(tmp_path / "in" / "t.png", seed=2)
    result = CliRunner().invoke(app, ["fit", str(source), str(target), "-o", str(tmp_path / "m.pt"),
                                      "--preview", str(tmp_path / "p.png"), "--steps", "2"])
    assert result.exit_code == 1 and "appeared while this run was writing it" in result.stderr, result.output
    assert (tmp_path / "m.pt").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "m.pt"]  # no sheet, no temp file
