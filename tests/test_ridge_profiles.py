"""Tabulated ridge profiles against the ridge map they tabulate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colorot.models import RidgeMGN
from colorot.ridge_profiles import TOLERANCE, RidgeProfiles
from _map_helpers import ridge_map


def exact(model: RidgeMGN, rgb: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.double()(torch.as_tensor(rgb, dtype=torch.float64)).numpy()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), ridges=st.integers(1, 8), steps=st.integers(1, 12),
       sharpness=st.floats(1.0, 400.0), height=st.floats(0.0, 0.5))
def test_profiles_stay_within_their_proven_bound(seed, ridges, steps, sharpness, height):
    model = ridge_map(seed, ridges, steps, sharpness, height)
    profiles = RidgeProfiles.from_model(model)
    assert profiles is not None and profiles.error_bound <= TOLERANCE
    rgb = np.random.default_rng(seed).random((3000, 3))
    rgb[:8] = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T  # the cube's corners
    error = np.linalg.norm(profiles(rgb) - exact(model, rgb), axis=1).max()
    assert error <= profiles.error_bound + 1e-12


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), margin=st.floats(0.0, 1.0), sharpness=st.floats(1.0, 200.0))
def test_a_margin_widens_the_tables_to_the_cube_widened_by_it(seed, margin, sharpness):
    model = ridge_map(seed, 4, 6, sharpness, 0.3)
    profiles = RidgeProfiles.from_model(model, margin=margin)
    assert profiles is not None and profiles.error_bound <= TOLERANCE
    rgb = np.random.default_rng(seed).random((2000, 3)) * (1 + 2 * margin) - margin
    rgb[:8] = np.array(np.meshgrid(*[[-margin, 1 + margin]] * 3)).reshape(3, -1).T  # the widened cube's corners
    assert np.linalg.norm(profiles(rgb) - exact(model, rgb), axis=1).max() <= profiles.error_bound + 1e-12


def test_units_of_one_direction_share_one_table():
    profiles = RidgeProfiles.from_model(ridge_map(0, ridges=5, steps=24, sharpness=200.0, height=0.1))
    assert profiles.rows.shape == (5, 3)


def test_unshared_units_each_get_a_table():
    torch.manual_seed(0)
    model = RidgeMGN(hidden=7).eval()
    profiles = RidgeProfiles.from_model(model)
    assert profiles.rows.shape == (7, 3)
    rgb = np.random.default_rng(1).random((500, 3))
    assert np.abs(profiles(rgb) - exact(model, rgb)).max() <= TOLERANCE


def test_a_map_too_sharp_to_tabulate_is_refused():
    model = ridge_map(0, ridges=1, steps=1, sharpness=1e6, height=1.0)
    assert RidgeProfiles.from_model(model) is None


def test_chunks_do_not_change_the_result(monkeypatch):
    import colorot.ridge_profiles as rp

    model = ridge_map(3, ridges=4, steps=6, sharpness=80.0, height=0.3)
    rgb = np.random.default_rng(2).random((1000, 3))
    whole = RidgeProfiles.from_model(model)(rgb)
    monkeypatch.setattr(rp, "CHUNK", 7)
    np.testing.assert_array_equal(RidgeProfiles.from_model(model)(rgb), whole)


@pytest.mark.parametrize("empty", [np.zeros((0, 3))])
def test_no_colours_give_no_rows(empty):
    assert RidgeProfiles.from_model(ridge_map(0, 2, 2, 10.0, 0.1))(empty).shape == (0, 3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_an_affine_map_is_a_ridge_map_without_units(seed):
    from colorot.models import AffineMap

    model = AffineMap(eps=0.01)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.as_tensor(np.random.default_rng(seed).normal(size=parameter.shape)))
    profiles = RidgeProfiles.from_model(model)
    assert profiles is not None and profiles.rows.shape == (0, 3) and profiles.error_bound == 0
    rgb = np.random.default_rng(seed + 1).random((500, 3))
    np.testing.assert_allclose(profiles(rgb), exact(model, rgb), rtol=0, atol=1e-12)
