"""Maps built from a fitted map: partial strength, the inverse, and a data-augmentation module.

Each is an ``nn.Module`` taking (N, 3) colours, so apply, LUT baking and
``.cube`` export take any of them where they take the fitted map.

* :class:`Interpolated`: ``T_t(x) = (1 − t)·x + t·T(x)``, 0 ≤ t ≤ 1. With
  ``T = ∇φ``, ``T_t = ∇[(1 − t)‖x‖²/2 + t·φ]``: still the gradient of a convex
  function, with Jacobian ``(1 − t)I + t·J_T`` (symmetric, eigenvalues ≥
  ``(1 − t) + t·ε``), so monotonicity holds at every t.
* :class:`InverseMap`: ``T⁻¹(y)``, found per colour by damped Newton on
  ``T(x) = y`` with the analytic Jacobian. T is ε-strongly monotone, hence a
  bijection of R³; ``x ← x − α·J_T(x)⁻¹(T(x) − y)`` with α halved until the
  residual ‖T(x) − y‖ falls (the Newton step is a descent direction of ½‖T(x) − y‖²).
  :func:`check_inverse` measures it on an image's own colours: where T is nearly flat
  the preimage of a colour lies far outside the cube, and the written pixel is clipped.
* :class:`ColorAugment`: the map on image tensors (3, H, W) or (B, 3, H, W),
  CPU or CUDA, with a fixed or random per-image strength, for a ``DataLoader``; on the CPU a
  ridge or affine map goes through its tabulated profiles (:class:`TabulatedRidges`).
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image as PILImage
from torch import nn

from colorot.defaults import FLOAT_SLACK
from colorot.errors import ConfigError
from colorot.ridge_profiles import RidgeProfiles
from colorot.strength import check_flags, check_strength

if TYPE_CHECKING:
    from colorot.checkpoint import CheckpointSource

#: Pixels ColorAugment maps at a time: on the CPU few enough that the (pixels × units) work array
#: stays small, on a GPU enough to keep it busy while bounding that array (2¹⁸ × 576 floats: 0.6 GB).
AUGMENT_CPU_CHUNK, AUGMENT_DEVICE_CHUNK = 1 << 14, 1 << 18


class _WithSavedJacobian(torch.autograd.Function):
    """T(x) whose backward keeps only each pixel's Jacobian J_T(x) (N, 3, 3), 36 bytes a pixel, and x,
    not the network's activations (2.4 KB a pixel for the 576-unit ridge map: 2 GB for a 16×3×224²
    batch, chunks or not): the vector-Jacobian product is gᵀJ_T. Differentiated again (create_graph),
    J_T is computed once more with its graph, so second derivatives are autograd's own. For the input
    alone: :class:`ColorAugment` takes this path only for a map whose parameters need no gradient.
    ``forward`` returns (T(x), J_T(x)); the caller keeps the first."""

    generate_vmap_rule = True  # torch.func's grad, vjp and jacrev take it

    @staticmethod
    def forward(x: torch.Tensor, fitted_map: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        return fitted_map.forward_and_jacobian(x)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: tuple) -> None:
        x, fitted_map = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, output[1])
        ctx.fitted_map = fitted_map

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, jac = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the Jacobian again, with its dependence on x
            jac = ctx.fitted_map.forward_and_jacobian(x)[1]
        return (grad.unsqueeze(-2) @ jac).squeeze(-2), None


class Interpolated(nn.Module):
    """``T_t(x) = (1 − t)·x + t·T(x)``: 0 is the identity, 1 the full map."""

    def __init__(self, fitted_map: nn.Module, strength: float) -> None:
        super().__init__()
        self.map = fitted_map
        self.strength = check_strength(strength)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.strength
        return (1.0 - t) * x + t * self.map(x)

    def forward_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T_t(x) (N, 3) and its Jacobian (1 − t)I + t·J_T(x) (N, 3, 3)."""
        t = self.strength
        y, jac = self.map.forward_and_jacobian(x)
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return (1.0 - t) * x + t * y, (1.0 - t) * eye + t * jac

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_and_jacobian(x)[1]


class InverseMap(nn.Module):
    """``T⁻¹`` by damped Newton, in float64, per colour (no coupling across the batch).

    Starts at x = y, stops when every residual max-norm is below ``tol`` or
    after ``iterations`` Newton steps. Returns the input's dtype.
    """

    #: Colours solved at a time (a 576-unit map's Jacobians then take ~40 MB).
    CHUNK = 1 << 13

    def __init__(self, fitted_map: nn.Module, *, iterations: int = 50, tol: float = 1e-7) -> None:
        super().__init__()
        self.map = copy.deepcopy(fitted_map).double().eval().requires_grad_(False)
        self.iterations, self.tol = iterations, tol

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if len(y) > self.CHUNK:  # Newton's float64 (colours × units) work arrays: bound them
            return torch.cat([self.forward(part) for part in y.split(self.CHUNK)])
        dtype = y.dtype
        target = y.to(torch.float64)
        x = target.clone()
        active = torch.arange(len(x), device=x.device)  # colours not yet converged
        for _ in range(self.iterations):
            xa, ya = x[active], target[active]
            value, jac = self.map.forward_and_jacobian(xa)
            residual = value - ya
            keep = residual.abs().amax(dim=-1) > self.tol
            if not bool(keep.any()):
                break
            active, xa, ya, residual, jac = active[keep], xa[keep], ya[keep], residual[keep], jac[keep]
            norm = residual.norm(dim=-1)
            step = torch.linalg.solve(jac, residual.unsqueeze(-1)).squeeze(-1)
            alpha = torch.ones_like(norm)
            trial = xa - step
            for _ in range(30):  # per-colour backtracking: halve α until the residual falls
                worse = (self.map(trial) - ya).norm(dim=-1) >= (1.0 - 1e-4 * alpha) * norm
                if not bool(worse.any()):
                    break
                alpha = torch.where(worse, alpha / 2, alpha)
                trial = torch.where(worse[:, None], xa - alpha[:, None] * step, trial)
            x[active] = trial
        return x.to(dtype)


def prepare_map(fitted_map: nn.Module, *, strength: float = 1.0, inverse: bool = False) -> nn.Module:
    """The map to apply: ``T_t`` (t = ``strength``; T itself at t = 1), inverted if ``inverse``."""
    strength = check_strength(strength)
    check_flags(inverse=inverse)  # "False" would be true
    result = fitted_map if strength == 1.0 else Interpolated(fitted_map, strength)
    return InverseMap(result) if inverse else result


def lut_map(fitted_map: nn.Module, *, strength: float = 1.0, inverse: bool = False, controls=None):
    """The map a LUT holds: ``T_t`` followed by ``controls`` (a :class:`colorot.controls.Controls`
    or None), or ``T_t⁻¹``, which takes no controls."""
    from colorot.controls import check_controls, refuse_with_inverse

    refuse_with_inverse(inverse, check_controls(controls))
    mapped = prepare_map(fitted_map, strength=strength, inverse=inverse)
    return mapped if controls is None else controls.bind(mapped, torch_map=True)


#: Two 8-bit code values: the most a colour may miss by, coming back or staying in the cube.
INVERSE_TOLERANCE = 2 / 255
#: The share of an image's pixels that may miss it before its inverse is called ill-conditioned.
INVERSE_BAD_SHARE = 0.01
#: The most T⁻¹ may magnify an input's error: half a code value (8-bit rounding) then moves the
#: output by up to 2 code values. The gain at y is ‖J_T⁻¹(y)‖₂ = 1 / σ_min(J_T(T⁻¹(y))).
INVERSE_MAX_GAIN = 4.0
#: Pixels of an image (seeded, uniform) that :func:`check_inverse` solves.
INVERSE_CHECK_PIXELS = 2048
#: The share of an inverse LUT's entries that may lie over INVERSE_TOLERANCE outside the cube.
#: A LUT covers colours the map never produces, so this is laxer than INVERSE_BAD_SHARE.
INVERSE_LUT_BAD_SHARE = 0.10


@dataclass(frozen=True)
class InverseCheck:
    """How T⁻¹ fares on one image's own colours y (see :func:`check_inverse`)."""

    round_trip_max: float  #: max ‖T(T⁻¹(y)) − y‖_∞: the solve's residual
    outside_share: float  #: share of pixels with T⁻¹(y) more than INVERSE_TOLERANCE outside [0, 1]³
    outside_max: float  #: max distance ‖T⁻¹(y) − clip(T⁻¹(y), 0, 1)‖_∞ of T⁻¹(y) from the cube
    gain_share: float  #: share of pixels where the gain of T⁻¹ exceeds INVERSE_MAX_GAIN
    gain_max: float  #: max gain 1 / σ_min(J_T(T⁻¹(y)))

    @property
    def ill_conditioned(self) -> bool:
        """The solve misses by more than INVERSE_TOLERANCE, or over INVERSE_BAD_SHARE of the pixels
        leave the cube by more than that (clipped when written: false colours) or have a gain over
        INVERSE_MAX_GAIN (their rounding and compression noise is magnified: banding)."""
        return (self.round_trip_max > INVERSE_TOLERANCE or self.outside_share > INVERSE_BAD_SHARE
                or self.gain_share > INVERSE_BAD_SHARE)


def distance_outside_cube(x: np.ndarray) -> np.ndarray:
    """Per row of an (N, 3) array: ‖x − clip(x, 0, 1)‖_∞, 0 inside the cube."""
    return np.maximum(np.maximum(-x, x - 1.0), 0.0).max(axis=-1)


def lut_outside(table: np.ndarray) -> tuple[float, float]:
    """(share of entries more than INVERSE_TOLERANCE outside [0, 1]³, max distance outside) of a
    LUT's (…, 3) table. Entries far out spoil every cell they bound: a consumer interpolates
    first and clips after."""
    outside = distance_outside_cube(np.asarray(table, np.float64).reshape(-1, 3))
    return float(np.mean(outside > INVERSE_TOLERANCE)), float(outside.max())


def check_inverse(inverse: InverseMap, pixels: np.ndarray, *, n: int = INVERSE_CHECK_PIXELS,
                  seed: int = 0) -> InverseCheck:
    """:class:`InverseCheck` of ``inverse`` on n of an image's pixels y (N, 3), drawn without
    replacement by ``np.random.default_rng(seed)`` (all of them when N ≤ n), in float64.

    T is ``inverse.map``. Where T is nearly flat (Jacobian eigenvalues near ε) T⁻¹ magnifies the
    input's own rounding and compression noise by its gain 1 / σ_min(J_T), and sends colours that
    T never reaches from the cube far outside it, where the written pixel is clipped.
    """
    pixels = np.asarray(pixels).reshape(-1, 3)
    if len(pixels) > n:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), n, replace=False)]
    y = torch.as_tensor(pixels, dtype=torch.float64)
    with torch.inference_mode():
        x = inverse(y)
        forward, jac = inverse.map.forward_and_jacobian(x)
        gain = (1.0 / torch.linalg.svdvals(jac)[:, -1]).numpy()
    outside = distance_outside_cube(x.numpy())
    return InverseCheck(round_trip_max=float((forward - y).abs().max()),
                        outside_share=float(np.mean(outside > INVERSE_TOLERANCE)), outside_max=float(outside.max()),
                        gain_share=float(np.mean(gain > INVERSE_MAX_GAIN)), gain_max=float(gain.max()))


class TabulatedRidges(nn.Module):
    """A ridge or affine map through its tabulated 1-D profiles (:class:`RidgeProfiles`), in
    torch: ``T̃(x) = Σ_g w_g f̃_g(w_gᵀx) + A x + b`` with each ``f̃_g`` a cubic Hermite table,
    built over [−m, 1 + m]³ (m = :data:`~colorot.defaults.FLOAT_SLACK`, every value that
    ColorAugment admits on the CPU). In float32 it lies within float32's own rounding of the
    module (the tables within 10⁻⁷ of T), and takes one table lookup a pixel per ridge (24 for a
    default fit) where the module takes one sigmoid per unit (576). Outside that domain the
    outermost cells are extrapolated. No gradients."""

    def __init__(self, profiles: RidgeProfiles) -> None:
        super().__init__()
        inverse_spacing = torch.as_tensor(profiles.inverse_spacing)
        rows = torch.as_tensor(profiles.rows)
        buffers = {
            "rows": rows.float(),  # (G, 3)
            "knot_rows": (rows * inverse_spacing[:, None]).T.float(),  # (3, G): x ↦ wᵀx / δ
            "knot_shift": (-torch.as_tensor(profiles.starts) * inverse_spacing).float(),  # (G,)
            "last_cell": torch.as_tensor(profiles.last_cell, dtype=torch.int64),
            "offsets": torch.as_tensor(profiles.offsets, dtype=torch.int64),
            "coefficients": torch.as_tensor(profiles.coefficients.T).float().contiguous(),  # (cells, 4)
            "matrix": torch.as_tensor(profiles.matrix).float(),
            "bias": torch.as_tensor(profiles.bias).float(),
        }
        for name, value in buffers.items():  # derived from the map: not in a state_dict
            self.register_buffer(name, value, persistent=False)

    @classmethod
    def of(cls, fitted_map: nn.Module) -> "TabulatedRidges | None":
        """The tables of a RidgeMGN or AffineMap; None for another map, or one too sharp to tabulate."""
        from colorot.models import AffineMap, RidgeMGN

        if not isinstance(fitted_map, (RidgeMGN, AffineMap)):
            return None
        profiles = RidgeProfiles.from_model(fitted_map, margin=FLOAT_SLACK)
        return None if profiles is None else cls(profiles)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.coefficients.dtype)
        position = torch.addmm(self.knot_shift, x, self.knot_rows)  # (N, G) knot coordinates
        cell = torch.minimum(position.to(torch.int64).clamp_(min=0), self.last_cell)
        s = position - cell
        c = self.coefficients[cell + self.offsets]  # (N, G, 4): the cubic of each pixel's cell
        profile = ((c[..., 3] * s + c[..., 2]) * s + c[..., 1]) * s + c[..., 0]
        return profile @ self.rows + x @ self.matrix + self.bias


class ColorAugment(nn.Module):
    """Colour-domain augmentation: apply a fitted map to image tensors or PIL images.

    ``images``: float (3, H, W) or (B, 3, H, W) in [0, 1] (on the CPU, NaN or values more than
    :data:`~colorot.defaults.FLOAT_SLACK` outside it are refused), on any device (the
    module's own copy of the map follows the input's device; the estimator's map is not
    moved). Gradients flow through T when the images require them. ``strength``: a number t, or a pair
    ``(low, high)`` drawn uniformly per image; ``p``: probability that an image
    is mapped at all (else t = 0: the image itself, clamped too). Output: the same shape
    and dtype, ``(1 − t)·x + t·T(x)`` clamped to [0, 1] when ``clamp``; T is evaluated in the
    map's precision, float32 (``.double()`` the module for float64 throughout).
    uint8 tensors (codes, as ``torchvision``'s ``PILToTensor`` gives them) and RGB or RGBA PIL
    images (alpha kept) are mapped as codes / 255 and come back in their own type, the result
    clipped to [0, 1] and rounded to the nearest code (the output rule), whatever ``clamp``.
    Random draws use torch's global generator (seeded per DataLoader worker).

    On the CPU, in float32 and without gradients, a ridge or affine map (the default fit's) is
    evaluated through its tabulated profiles (:class:`TabulatedRidges`: the same values to float32
    rounding, 8× faster); otherwise through the map itself. Either way in chunks of pixels, so
    memory does not grow with the batch beyond the images themselves; with gradients, each pixel's
    3×3 Jacobian is kept for the backward pass (:class:`_WithSavedJacobian`), not the map's activations.
    """

    def __init__(self, fitted_map: nn.Module, *, strength: float | tuple[float, float] = 1.0,
                 p: float = 1.0, clamp: bool = True) -> None:
        super().__init__()
        if not isinstance(fitted_map, nn.Module):
            raise ConfigError(f"ColorAugment takes a fitted map (a torch module), not a {type(fitted_map).__name__}: "
                              "use ColorTransfer.as_module() or ColorAugment.from_checkpoint(path)")
        try:
            low, high = (strength, strength) if isinstance(strength, numbers.Real) else strength
        except (TypeError, ValueError):
            raise ConfigError(f"strength must be a number or a pair (low, high), not {strength!r}") from None
        self.low, self.high = check_strength(low), check_strength(high)
        if self.low > self.high:
            raise ConfigError(f"strength range ({low}, {high}) is empty")
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be a number between 0 and 1, not {p!r}")
        self.map = copy.deepcopy(fitted_map).eval().requires_grad_(False)  # moved to the images' device
        self.tabulated = TabulatedRidges.of(self.map)  # the CPU's fast path, or None
        self.register_load_state_dict_post_hook(ColorAugment._tabulate_again)
        self.p, self.clamp = float(p), clamp

    @classmethod
    def from_checkpoint(cls, path: CheckpointSource, **kwargs) -> "ColorAugment":
        """Load the map of a checkpoint written by ``colorot fit`` (its path, bytes or binary file
        object)."""
        from colorot import checkpoint

        return cls(checkpoint.load(path).model, **kwargs)

    @staticmethod
    def _tabulate_again(module: "ColorAugment", incompatible_keys) -> None:
        """After ``load_state_dict``, the map's new parameters tabulated (the tables are not in the
        state dict: the fast path kept the old map's)."""
        module.tabulated = TabulatedRidges.of(module.map)

    def extra_repr(self) -> str:
        strength = self.low if self.low == self.high else (self.low, self.high)
        return f"strength={strength}, p={self.p}, clamp={self.clamp}"

    def forward(self, images: torch.Tensor | PILImage.Image) -> torch.Tensor | PILImage.Image:
        if isinstance(images, PILImage.Image):
            return self._augment_pil(images)
        if not isinstance(images, torch.Tensor):
            raise ConfigError(f"expected an image tensor (3, H, W) or (B, 3, H, W), or a PIL image, not "
                              f"{type(images).__name__} (images of several sizes: map each, or stack them)")
        single = images.dim() == 3
        batch = images.unsqueeze(0) if single else images
        codes = batch.dtype == torch.uint8
        if batch.dim() != 4 or batch.shape[1] != 3 or not (codes or batch.is_floating_point()):
            raise ConfigError(f"expected float images in [0, 1] or uint8 codes, (3, H, W) or (B, 3, H, W), got "
                              f"{tuple(images.shape)} {images.dtype}")
        if codes:
            out = self._augment(batch.to(torch.float32) / 255).clamp(0.0, 1.0).mul(255).round().to(torch.uint8)
        else:
            out = self._augment(batch)
        return out[0] if single else out

    def _augment_pil(self, image: PILImage.Image) -> PILImage.Image:
        """An RGB or RGBA PIL image mapped as its uint8 codes; alpha kept."""
        if image.mode not in ("RGB", "RGBA"):
            raise ConfigError(f"expected an RGB or RGBA PIL image, got mode {image.mode}: convert('RGB') it first")
        array = np.array(image)  # a writable copy: torch takes no read-only arrays
        mapped = self(torch.from_numpy(array[..., :3]).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        if image.mode == "RGBA":
            mapped = np.dstack((mapped, array[..., 3]))
        return PILImage.fromarray(np.ascontiguousarray(mapped))  # (H, W, 3): RGB; (H, W, 4): RGBA

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, H, W) → (1 − t)·x + t·T(x), each image with its own t (clamped when ``clamp``)."""
        device = batch.device
        if device.type == "cpu" and batch.numel():  # on a GPU the check would wait for the device: left to the caller
            low, high = (float(v) for v in torch.aminmax(batch.detach()))
            if math.isnan(low) or math.isnan(high):
                raise ConfigError("the images contain NaN")
            if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
                raise ConfigError(f"images must be floats in [0, 1], these run from {low:g} to {high:g}: "
                                  "divide 8-bit codes by 255")
        if device.type == "meta":  # moving the map there would throw its values away, for good
            raise ConfigError("images on the 'meta' device hold no values to map; give real tensors")
        weight = next(self.map.parameters(), torch.empty(0))
        if weight.device != device:
            self.to(device)
        b = batch.shape[0]
        t = self.low + (self.high - self.low) * torch.rand(b, device=device)
        if self.p < 1.0:
            t = torch.where(torch.rand(b, device=device) < self.p, t, torch.zeros_like(t))
        pixels = batch.permute(0, 2, 3, 1).reshape(-1, 3).to(weight.dtype)  # float32, or the module's .double()
        gradients = torch.is_grad_enabled() and pixels.requires_grad  # T's Jacobian if asked
        tabulated = self.tabulated is not None and device.type == "cpu" and not gradients \
            and weight.dtype == torch.float32  # tables hold T to float32's rounding: not a .double() map's
        evaluate = self.tabulated if tabulated else self.map
        if gradients and hasattr(self.map, "forward_and_jacobian") \
                and not any(parameter.requires_grad for parameter in self.map.parameters()):
            def evaluate(part: torch.Tensor) -> torch.Tensor:
                return _WithSavedJacobian.apply(part, self.map)[0]
        chunk = AUGMENT_CPU_CHUNK if device.type == "cpu" else AUGMENT_DEVICE_CHUNK
        with torch.set_grad_enabled(gradients):
            mapped = torch.cat([evaluate(part) for part in pixels.split(chunk)]) if len(pixels) > chunk \
                else evaluate(pixels)
            mapped = mapped.reshape(b, batch.shape[2], batch.shape[3], 3).permute(0, 3, 1, 2)
        out = batch + t.view(b, 1, 1, 1).to(batch.dtype) * (mapped.to(batch.dtype) - batch)
        return out.clamp(0.0, 1.0) if self.clamp else out
