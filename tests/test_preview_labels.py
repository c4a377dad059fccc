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
