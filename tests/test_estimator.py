"""ColorTransfer in the scikit-learn style: parameters, lists of images, strength, inverse, module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorot import ColorTransfer, load
from colorot.errors import ConfigError
from colorot.metrics import min_jacobian_eigenvalue
from colorot.transforms import ColorAugment


def test_params_and_repr():
    ct = ColorTransfer(model="cmgn", steps=7)
    params = ct.get_params()
    assert params["model"] == "cmgn" and params["steps"] == 7 and params["random_state"] == 0
    assert ct.set_params(steps=3) is ct and ct.steps == 3
    assert "steps=3" in repr(ct)
    with pytest.raises(ConfigError):
        ct.set_params(nope=1)


def test_fit_lists_transform_inverse_save_load(tiny_fit, tmp_path):
    folder = tiny_fit["folder"]
    ct = ColorTransfer(steps=5, max_pixels=500, n_components=2)
    assert ct.fit([folder / "a.png", folder / "b.png"], [tiny_fit["target"], folder / "e.png"]) is ct
    assert ct.train_info_["training_pixels"] == 2 * 12 * 16
    pixels = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32) * 0.6 + 0.2
    full = ct.transform(pixels)
    np.testing.assert_allclose(ct.transform(pixels, strength=0.0), pixels, atol=1e-6)
    np.testing.assert_allclose(ct.transform(pixels, strength=0.5), (pixels + full) / 2, atol=1e-5)
    back = ct.inverse_transform(full)
    np.testing.assert_allclose(ct.transform(back), full, atol=2e-6)  # it solves T(x) = y
    # x itself as far as the float32 outputs pin it: an error e in y moves x by up to e / λ_min(J_T)
    floor = min_jacobian_eigenvalue(ct.map_, pixels.reshape(-1, 3))
    np.testing.assert_allclose(back, pixels, atol=4e-7 / floor)
    ct.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(load(tmp_path / "m.pt").transform(pixels), full)
    module = ct.as_module(strength=(0.0, 1.0))
    assert isinstance(module, ColorAugment)
    assert module(torch.rand(2, 3, 4, 4)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("params", [{"model": "affine"}, {"model": "cmgn", "steps": 2}, {"model": "mmgn", "steps": 2},
                                    {"solver": "adam", "steps": 5}])
def test_a_fit_neither_moves_nor_follows_torch_s_random_stream(params):
    """Fits seeded torch's global generator (torch.manual_seed), resetting the caller's stream,
    ColorAugment's draws included; the map still comes out the same whatever that stream was."""
    rng = np.random.default_rng(0)
    source, target = rng.random((300, 3)).astype(np.float32), (rng.random((300, 3)) ** 2).astype(np.float32)
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    torch.rand(2)
    first = ColorTransfer(**params, max_pixels=300).fit(source, target).transform(source)
    assert torch.equal(torch.rand(2), expected[2:])
    torch.manual_seed(99)
    np.testing.assert_array_equal(ColorTransfer(**params, max_pixels=300).fit(source, target).transform(source), first)
