"""colorot.match: each image its own map onto one reference fitted once; frame sequences."""

import numpy as np
import pytest

import colorot
from colorot import distributions
from colorot.controls import Controls, luma
from colorot.errors import ConfigError
from colorot.matching import Matcher, match
from colorot.metrics import sliced_w2
from colorot.transfer import ColorTransfer

FAST = {"steps": 3}


def image(seed: int, tint=(1.0, 1.0, 1.0), size=24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.random((size, size, 3)) * np.asarray(tint), 0, 1).astype(np.float32)


def test_the_reference_is_fitted_once(monkeypatch):
    calls = []
    real = distributions.fit_target
    monkeypatch.setattr("colorot.transfer.fit_target", lambda *a, **k: calls.append(1) or real(*a, **k))
    matcher = Matcher(image(0, (1.0, 0.6, 0.3)), **FAST)
    for seed in (1, 2, 3):
        matcher.fit(image(seed))
    assert len(calls) == 1


def test_each_image_gets_its_own_map_towards_the_reference():
    reference = image(0, (1.0, 0.6, 0.3))
    dark, bright = image(1, (0.3, 0.3, 0.3)), image(2)
    outputs = match(reference, [dark, bright], **FAST)
    assert [o.shape for o in outputs] == [dark.shape, bright.shape]
    one_map = ColorTransfer(**FAST).fit(dark, reference)  # the daylight map applied to the other
    flat = reference.reshape(-1, 3)
    assert sliced_w2(outputs[1].reshape(-1, 3), flat) < 0.5 * sliced_w2(one_map.transform(bright).reshape(-1, 3), flat)
    assert sliced_w2(outputs[0].reshape(-1, 3), flat) < sliced_w2(dark.reshape(-1, 3), flat)


def test_match_is_fit_then_transform_with_strength_and_controls():
    reference, source = image(0, (1.0, 0.6, 0.3)), image(1)
    controls = Controls(keep_luminance=True)
    [out] = match(reference, [source], strength=0.5, controls=controls, **FAST)
    expected = ColorTransfer(**FAST).fit(source, reference).transform(source, strength=0.5, controls=controls)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(luma(out), luma(source), atol=1e-5)


def test_a_reference_with_other_settings_is_refused():
    reference = ColorTransfer(n_components=2, **FAST).fit_reference(image(0))
    with pytest.raises(ConfigError, match="Reference was fitted with"):
        ColorTransfer(n_components=3, **FAST).fit(image(1), reference)


def test_a_sequence_warm_starts_each_frame_from_the_last():
    matcher = Matcher(image(0, (1.0, 0.6, 0.3)), sequence=True, temporal_weight=1e5, **FAST)
    first, second = matcher.fit(image(1)), matcher.fit(image(1) * 0.95)
    assert "temporal_weight" not in first.train_info_
    assert second.train_info_["temporal_weight"] == 1e5
    assert second.solution_.dictionary is first.solution_.dictionary  # the same units: the maps compare


def test_a_heavy_temporal_weight_holds_the_map_still():
    """ρ → ∞ keeps the previous frame's map; ρ = 0 lets the new frame move it."""
    frames = [image(1), np.clip(image(1) * 1.3, 0, 1)]
    moved = {}
    for weight in (0.0, 1e9):
        matcher = Matcher(image(0, (1.0, 0.6, 0.3)), sequence=True, temporal_weight=weight, **FAST)
        first, second = (matcher.fit(f) for f in frames)
        probe = frames[1].reshape(-1, 3)
        moved[weight] = np.abs(second.transform(probe) - first.transform(probe)).max()
    assert moved[1e9] < 1e-3 < moved[0.0]


@pytest.mark.parametrize("params", [{"solver": "sliced"}, {"model": "cmgn"}, {"model": "affine"}])
def test_a_sequence_needs_the_kl_solver(params):
    with pytest.raises(ConfigError, match="--sequence needs the kl solver"):
        Matcher(image(0), sequence=True, **params)


def test_a_negative_temporal_weight_is_refused():
    with pytest.raises(ConfigError, match="temporal-weight"):
        Matcher(image(0), sequence=True, temporal_weight=-1)


def test_match_is_exported_at_the_top():
    assert colorot.match is match
