"""The fit contact sheet's loss labels stay readable for small and negative losses."""

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
    panel = _loss_panel(list(np.geomspace(3e-5, 1e-6, 50)), 400)
    assert np.asarray(panel).std() > 0
