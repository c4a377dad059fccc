"""Strength, inverse and augmentation maps (colorot.transforms)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from colorot.errors import ConfigError
from colorot.models import CMGN, MMGN, gaussian_map_matrix
from colorot.transforms import ColorAugment, Interpolated, InverseMap, prepare_map


def round_trip_error(fitted_map, inverse, *, n: int = 4096, seed: int = 0) -> float:
    """max over n random colours x ∈ [0, 1]³ of ‖T⁻¹(T(x)) − x‖_∞ (RGB units)."""
    x = torch.from_numpy(np.random.default_rng(seed).random((n, 3), dtype=np.float32))
    with torch.inference_mode():
        back = inverse(fitted_map(x))
    return float((back - x).abs().max())


def _curved(cls, seed: int = 0):
    """A map with real curvature, started at a colour-shifting Gaussian map."""
    rng = np.random.default_rng(3)
    points = rng.random((500, 3))
    a = gaussian_map_matrix(np.diag([0.05, 0.04, 0.06]),
                            np.array([[0.03, 0.01, 0.0], [0.01, 0.05, 0.01], [0.0, 0.01, 0.02]]))
    torch.manual_seed(seed)
    model = cls()
    model.init_hidden(points)
    model.init_to_affine(a, np.array([0.2, 0.0, -0.1]), points)
    with torch.no_grad():
        model.W.mul_(8.0)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module", params=[MMGN, CMGN], ids=["mmgn", "cmgn"])
def curved(request):
    return _curved(request.param)


def test_strength_zero_is_identity_and_one_is_the_map(curved):
    x = torch.rand(100, 3)
    torch.testing.assert_close(Interpolated(curved, 0.0)(x), x)
    torch.testing.assert_close(Interpolated(curved, 1.0)(x), curved(x))
    assert prepare_map(curved, strength=1.0) is curved  # full strength: exactly the old path


@pytest.mark.parametrize("t", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_interpolated_map_is_monotone_gradient_at_every_strength(curved, t):
    """J = (1−t)I + tJ_T is the true Jacobian, symmetric PD; ⟨T_t(x) − T_t(y), x − y⟩ ≥ 0."""
    mapped = Interpolated(copy.deepcopy(curved), t).double()
    x = torch.rand(64, 3, dtype=torch.float64) * 1.4 - 0.2
    value, jac = mapped.forward_and_jacobian(x)
    numeric = torch.autograd.functional.jacobian(lambda p: mapped(p[None])[0], x[0])
    torch.testing.assert_close(jac[0], numeric)
    torch.testing.assert_close(jac, jac.transpose(1, 2))
    assert float(torch.linalg.eigvalsh(jac).min()) >= min(1.0, curved.eps) * 0.999
    y = torch.rand(64, 3, dtype=torch.float64)
    assert float(((mapped(x) - mapped(y)) * (x - y)).sum(-1).min()) >= 0.0


def test_strength_out_of_range_is_refused(curved):
    for t in (-0.1, 1.5, "0.5", True):  # a string or a bool was read as a number
        with pytest.raises(ConfigError):
            Interpolated(curved, t)


def test_color_augment_of_what_is_not_a_map_says_how_to_get_one():
    """An estimator or a checkpoint's path failed with "object has no attribute 'eval'"."""
    from colorot import ColorTransfer

    for given, what in ((ColorTransfer(), "ColorTransfer"), ("model.pt", "str")):
        with pytest.raises(ConfigError, match=f"not a {what}: use ColorTransfer.as_module"):
            ColorAugment(given)


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_inverse_round_trip(curved, t):
    forward = prepare_map(curved, strength=t)
    inverse = prepare_map(curved, strength=t, inverse=True)
    assert isinstance(inverse, InverseMap)
    assert round_trip_error(forward, inverse, n=2000) < 1e-5
    y = torch.rand(500, 3) * 1.6 - 0.3  # also colours beyond the cube
    with torch.inference_mode():
        torch.testing.assert_close(forward(inverse(y)), y, atol=1e-5, rtol=0)


def test_augment_batches_and_single_images(curved):
    images = torch.rand(4, 3, 5, 6)
    full = ColorAugment(curved)(images)
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = curved(pixels).clamp(0, 1).reshape(4, 5, 6, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(ColorAugment(curved)(images[1]), expected[1])
    torch.testing.assert_close(ColorAugment(curved, strength=0.0)(images), images)


def test_augment_takes_uint8_codes_and_pil_images_and_gives_back_their_own_type(curved):
    """PILToTensor's uint8 codes and PIL images, as torchvision pipelines hold them, were refused
    ("expected float images"); they are mapped as codes / 255 and rounded back (the output rule)."""
    codes = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = ColorAugment(curved)(codes.float() / 255).mul(255).round().to(torch.uint8)
    out = ColorAugment(curved)(codes)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)
    assert torch.equal(ColorAugment(curved, clamp=False)(codes), expected)  # codes are always clipped
    assert torch.equal(ColorAugment(curved)(codes[1]), expected[1])
    assert torch.equal(ColorAugment(curved, strength=0.0)(codes), codes)
    rgb = PILImage.fromarray(codes[0].permute(1, 2, 0).numpy())
    mapped = ColorAugment(curved)(rgb)
    assert mapped.mode == "RGB" and np.array_equal(np.asarray(mapped), expected[0].permute(1, 2, 0).numpy())
    alpha = np.arange(30, dtype=np.uint8).reshape(5, 6)
    rgba = PILImage.fromarray(np.dstack((np.asarray(rgb), alpha)))
    mapped = np.asarray(ColorAugment(curved)(rgba))
    assert mapped.shape == (5, 6, 4) and np.array_equal(mapped[..., 3], alpha)
    assert np.array_equal(mapped[..., :3], expected[0].permute(1, 2, 0).numpy())
    with pytest.raises(ConfigError, match=r"got mode L: convert\('RGB'\) it first"):
        ColorAugment(curved)(rgb.convert("L"))
    with pytest.raises(ConfigError, match="float images in \\[0, 1\\] or uint8 codes"):
        ColorAugment(curved)(codes.to(torch.int64))


def test_augment_random_strength_per_image(curved):
    images = torch.rand(8, 3, 4, 4)
    torch.manual_seed(0)
    out = ColorAugment(curved, strength=(0.2, 0.6), clamp=False)(images)
    mapped = ColorAugment(curved, clamp=False)(images)
    # each image is (1−t)x + tT(x) with its own t in [0.2, 0.6]
    t = ((out - images) / (mapped - images)).flatten(1)
    assert float((t.max(1).values - t.min(1).values).max()) < 1e-3
    assert 0.2 - 1e-4 <= float(t.min()) and float(t.max()) <= 0.6 + 1e-4
    assert float(t.mean(1).std()) > 0.01
    torch.manual_seed(1)
    kept = ColorAugment(curved, p=0.0)(images)
    torch.testing.assert_close(kept, images)


def test_augment_shows_its_settings(curved):
    """print(model) of a pipeline shows how each augmentation is set (they are not in its state_dict)."""
    assert "strength=(0.2, 0.6), p=0.5, clamp=True" in repr(ColorAugment(curved, strength=(0.2, 0.6), p=0.5))
    assert "strength=1.0, p=1.0, clamp=False" in repr(ColorAugment(curved, clamp=False))


def test_augment_in_a_dataloader(curved):
    augment = ColorAugment(curved, strength=(0.5, 1.0))

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return augment(torch.full((3, 4, 4), index / 6))

    batches = list(torch.utils.data.DataLoader(Images(), batch_size=3))
    assert [tuple(b.shape) for b in batches] == [(3, 3, 4, 4)] * 2
    assert float(batches[0].min()) >= 0.0 and float(batches[0].max()) <= 1.0


def test_augment_refuses_wrong_shapes(curved):
    with pytest.raises(ConfigError):
        ColorAugment(curved)(torch.rand(2, 4, 3, 3))
    with pytest.raises(ConfigError, match="not list"):  # an AttributeError on .dim()
        ColorAugment(curved)([torch.rand(3, 4, 4), torch.rand(3, 5, 5)])
    with pytest.raises(ConfigError, match="p must be a number"):  # a TypeError
        ColorAugment(curved, p="0.5")
    with pytest.raises(ConfigError):
        ColorAugment(curved, strength=(0.8, 0.2))


def test_augment_refuses_codes_not_divided_by_255_and_nan_on_the_cpu(curved):
    augment = ColorAugment(curved)
    with pytest.raises(ConfigError, match=r"run from 0 to 255: divide 8-bit codes by 255"):
        augment(torch.linspace(0, 255, 48).reshape(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="contain NaN"):
        augment(torch.full((3, 2, 2), float("nan")))
    assert augment(torch.rand(2, 3, 4, 4) * 1.8 - 0.4).shape == (2, 3, 4, 4)  # an overshoot within 0.5 is taken
    assert augment(torch.rand(0, 3, 4, 4)).shape == (0, 3, 4, 4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda():
    images = torch.rand(2, 3, 8, 8)
    augment = ColorAugment(_curved(MMGN))
    on_gpu = augment(images.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), augment.cpu()(images), atol=1e-5, rtol=1e-5)


def test_augment_s_gradient_keeps_only_each_pixel_s_jacobian(curved, monkeypatch):
    """Autograd kept every chunk's (pixels × units) activations until backward: 2.2 GB for a 16×3×224²
    batch of the 576-unit map. Only J_T(x) is kept now; the values and the vector-Jacobian product
    are autograd's through the map itself, across chunks."""
    import colorot.transforms as transforms_module

    monkeypatch.setattr(transforms_module, "AUGMENT_CPU_CHUNK", 7)  # many chunks, the last partial
    augment = ColorAugment(curved, strength=0.7, clamp=False).double()
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    weights = torch.rand(2, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (grad,) = torch.autograd.grad((augment(x) * weights).sum(), x)
    reference = augment.map  # the map itself, by autograd (what ColorAugment ran before)
    pixels = x.detach().permute(0, 2, 3, 1).reshape(-1, 3).requires_grad_()
    t = float(torch.tensor(0.7))  # ColorAugment draws t in float32
    mapped = ((1 - t) * pixels + t * reference(pixels)).reshape(2, 5, 4, 3).permute(0, 3, 1, 2)
    (expected,) = torch.autograd.grad((mapped * weights).sum(), pixels)
    torch.testing.assert_close(grad.permute(0, 2, 3, 1).reshape(-1, 3), expected, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(augment(x), mapped, rtol=1e-12, atol=1e-12)


def test_augment_s_saved_jacobian_path_keeps_second_derivatives_torch_func_and_parameter_gradients(curved):
    """The first saved-Jacobian backward dropped J_T's dependence on x (an input-gradient penalty's
    gradient 1–3 % off, silently), failed under torch.func, and gave a map whose parameters require
    grad no gradient; each is as autograd through the map gives it."""
    augment = ColorAugment(curved, strength=0.6, clamp=False).double()
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).requires_grad_()
    assert torch.autograd.gradcheck(augment, x) and torch.autograd.gradgradcheck(augment, x)
    by_func = torch.func.grad(lambda images: augment(images).sum())(x.detach())
    (by_autograd,) = torch.autograd.grad(augment(x).sum(), x)
    torch.testing.assert_close(by_func, by_autograd)
    trained = copy.deepcopy(augment).requires_grad_(True)  # a map being trained through the augmentation
    trained(x).sum().backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in trained.map.parameters()
               if parameter.requires_grad and parameter.dim() > 0)


def test_augment_refuses_meta_tensors_and_keeps_its_map(curved):
    """A meta tensor moved the map to 'meta', which threw its values away: every later call failed."""
    augment = ColorAugment(curved)
    images = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    before = augment(images)
    with pytest.raises(ConfigError, match="'meta' device"):
        augment(torch.empty(1, 3, 2, 2, device="meta"))
    torch.testing.assert_close(augment(images), before)


def test_augment_keeps_its_own_map_and_passes_the_map_s_jacobian(curved):
    """ColorAugment moved and froze the module it was given (the estimator's own map), and ran T
    under no_grad, so a gradient through it was (1 − t)·I."""
    weights = {key: value.clone() for key, value in curved.state_dict().items()}
    requires = [p.requires_grad for p in curved.parameters()]
    augment = ColorAugment(curved, strength=0.5, clamp=False)  # unclamped: the gradient is the formula's everywhere
    augment.double()
    assert all(p.dtype == torch.float32 for p in curved.parameters())
    assert [p.requires_grad for p in curved.parameters()] == requires
    assert all(torch.equal(value, weights[key]) for key, value in curved.state_dict().items())
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    out = augment(x)
    pixel = x.detach()[0, :, 0, 0].float()
    jacobian = torch.autograd.functional.jacobian(lambda y: curved(y[None])[0], pixel).double()
    (grad,) = torch.autograd.grad(out[0, :, 0, 0].sum(), x)
    expected = 0.5 * torch.ones(3, dtype=torch.float64) + 0.5 * jacobian.sum(0)  # d/dx Σ_i ((1−t)x + tT(x))_i
    torch.testing.assert_close(grad[0, :, 0, 0], expected, rtol=1e-4, atol=1e-5)
    for strength in (np.float32(0.5), (0.2, 0.4)):
        ColorAugment(curved, strength=strength)
    with pytest.raises(ConfigError, match="strength"):
        ColorAugment(curved, strength=(0.1, 0.2, 0.3))


@pytest.fixture(scope="module")
def default_ridge():
    """A default fit's ridge map (KL solver: 24 directions of 24 steps each)."""
    from colorot import ColorTransfer

    rng = np.random.default_rng(3)
    source, target = rng.random((2000, 3)).astype(np.float32), (rng.random((2000, 3)) ** 2).astype(np.float32)
    return ColorTransfer(max_pixels=2000).fit(source, target).map_


@pytest.mark.parametrize("kind", ["ridge", "affine"])
def test_augment_on_the_cpu_maps_a_ridge_map_through_its_tables_as_the_map_does(default_ridge, kind):
    """Tabulated over [−0.5, 1.5]³ (all the CPU admits), in chunks: within float32 rounding of T."""
    from colorot.models import AffineMap
    from colorot.transforms import AUGMENT_CPU_CHUNK

    fitted = default_ridge
    if kind == "affine":
        fitted = AffineMap()
        fitted.init_to_affine(np.diag([0.8, 1.1, 0.9]), np.array([0.05, -0.02, 0.1]), np.random.rand(50, 3))
    augment = ColorAugment(fitted, clamp=False)
    assert augment.tabulated is not None
    images = torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(1)) * 2 - 0.5  # the slack's range
    assert images.numel() // 3 > AUGMENT_CPU_CHUNK  # more than one chunk
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    with torch.no_grad():
        truth = copy.deepcopy(fitted).double()(pixels.double())
    got = augment(images).permute(0, 2, 3, 1).reshape(-1, 3).double()
    assert (got - truth).abs().max() < 2e-6
    double = copy.deepcopy(augment).double()  # float64: the map itself, to float64's rounding
    assert (double(images.double()).permute(0, 2, 3, 1).reshape(-1, 3) - truth).abs().max() < 1e-12
    wanted = images[:1, :, :2, :2].clone().requires_grad_()  # gradients: through the map itself
    (grad,) = torch.autograd.grad(augment(wanted).sum(), wanted)
    assert grad.abs().sum() > 0
    assert ColorAugment(CMGN(dim=3, hidden=4, layers=2)).tabulated is None  # another map: the map itself


def test_a_loaded_state_dict_is_tabulated_too(default_ridge):
    """load_state_dict replaced the map but not its tables: the fast path kept the old map."""
    other = copy.deepcopy(default_ridge)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(0.5)
    augment, wanted = ColorAugment(default_ridge), ColorAugment(other)
    augment.load_state_dict(wanted.state_dict())
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(augment(images), wanted(images))
