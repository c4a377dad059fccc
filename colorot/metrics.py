"""Quality measures for a colour transfer, defined so anyone can recompute them.

* :func:`sliced_w2`: sliced Wasserstein-2 distance between two pixel sets,
  SW2 = ( mean over θ of W2²(⟨θ, X⟩, ⟨θ, Y⟩) )^½ over random unit directions θ,
  each 1-D W2² computed exactly from sorted projections of equally many pixels.
* :func:`rms_displacement`: ( mean ‖T(x) − x‖² )^½ over corresponding pixels.
* :func:`exact_w2`: exact discrete W2 between seeded, equally large uniform
  subsamples, W2 = ( min over permutations σ of (1/n) Σᵢ ‖xᵢ − y_σ(i)‖² )^½.
* :func:`w2_estimate`: W2 between the whole pixel sets, debiased with the subsamples'
  own noise floor, with a 95 % interval over independent repeats (``colorot eval``).
* :func:`clipped_fraction`: share of pixels with a channel outside [0, 1].
* :func:`detail_gain`: how much a transfer amplifies fine detail and noise (grain): the
  high-frequency energy of the output's luma (or chroma) over the source's.
* :func:`min_jacobian_eigenvalue`: min over distinct colours x of λ_min((J_T(x) + J_T(x)ᵀ)/2).
* :func:`kl_to_target`: KL(T#α ‖ q) in nats, by change of variables, for the source's
  pixels α dequantised over their 8-bit cells.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from colorot.apply import map_pixels
from colorot.controls import LUMA
from colorot.errors import ConfigError, ImageMetadataWarning, ImageReadError
from colorot.imageio import read_image, read_pixels, unit_values
from colorot.profiles import ColourSpace, apart, image_colour_space

#: Defaults of the published figures: 256 directions, 60 000 pixels per image.
SW2_DIRECTIONS = 256
SW2_PIXELS = 60_000
#: Pixels per image of the exact W2 estimate.  The assignment costs O(n³):
#: 1500 takes about a second on a 2-core machine (2000: ~2.5 s, 4000: ~25 s).
W2_PIXELS = 1500
#: Pixels per subsample and independent repeats of :func:`w2_estimate`: each repeat solves
#: three assignments, 4 × 1000 takes 1.5–3 s (the cross assignments cost most).
W2_ESTIMATE_PIXELS = 1000
W2_REPEATS = 4
#: Two-sided coverage of :func:`w2_estimate`'s interval.
W2_CONFIDENCE = 0.95
#: Distinct colours per Jacobian evaluation in :func:`min_jacobian_eigenvalue`.
JACOBIAN_CHUNK = 65_536
#: Dequantised source pixels of the Monte-Carlo KL estimate, and how many a ridge map's numpy
#: evaluation takes at a time.
KL_PIXELS = 20_000
KL_CHUNK = 2048


def pixel_rows(pixels: np.ndarray, name: str = "pixels", *, at_least: int = 1) -> np.ndarray:
    """``pixels`` as (N, 3) rows in [0, 1] units (uint8 and uint16 codes divided by 255 and 65 535,
    as everywhere in colorot; floats as they are); ValueError unless it holds whole RGB triples, at
    least ``at_least`` of them, all finite (a measure of NaN colours would be NaN, or fail deep
    inside a solver), and no other integer type (its scale is unknown)."""
    array = np.asarray(pixels)
    if array.ndim == 0 or array.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB rows (N, 3) or an image (H, W, 3), not shape {array.shape}")
    values = unit_values(array)
    if values is None:
        raise ValueError(f"{name} must be uint8 or uint16 codes or floats in [0, 1], not {array.dtype}")
    rows = values.reshape(-1, 3)
    if rows.shape[0] < at_least:
        raise ValueError(f"{name} has {rows.shape[0]} pixel(s); this measure needs at least {at_least}")
    if not np.isfinite(rows).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return rows


def subsample(pixels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of ``pixels`` drawn without replacement (all of them if fewer)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if pixels.shape[0] <= n:
        return pixels
    return pixels[rng.choice(pixels.shape[0], n, replace=False)]


def sliced_w2(a: np.ndarray, b: np.ndarray, *, directions: int = SW2_DIRECTIONS,
              pixels: int = SW2_PIXELS, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between pixel sets a and b, each (N, 3)."""
    a, b = pixel_rows(a, "a"), pixel_rows(b, "b")
    rng = np.random.default_rng(seed)
    n = min(pixels, a.shape[0], b.shape[0])
    xa = subsample(a, n, rng).astype(np.float64)
    xb = subsample(b, n, rng).astype(np.float64)
    theta = rng.normal(size=(3, directions))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa = np.sort(xa @ theta, axis=0)
    pb = np.sort(xb @ theta, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


def rms_displacement(source: np.ndarray, mapped: np.ndarray) -> float:
    """Root-mean-square colour displacement between corresponding pixels."""
    source, mapped = pixel_rows(source, "source"), pixel_rows(mapped, "mapped")
    if source.shape != mapped.shape:
        raise ValueError(f"source has {source.shape[0]} pixels and mapped {mapped.shape[0]}: "
                         "the displacement compares corresponding pixels")
    total = 0.0
    for start in range(0, len(source), _ROWS_AT_A_TIME):  # in float64, a chunk at a time: no full-size copies
        d = mapped[start:start + _ROWS_AT_A_TIME].astype(np.float64) - source[start:start + _ROWS_AT_A_TIME]
        total += float(np.einsum("ij,ij->", d, d))
    return math.sqrt(total / len(source))


#: Rows that :func:`rms_displacement` takes in float64 at a time.
_ROWS_AT_A_TIME = 1 << 20


def exact_w2(a: np.ndarray, b: np.ndarray, *, pixels: int = W2_PIXELS, seed: int = 0) -> float:
    """Exact W2 between n = min(pixels, |a|, |b|) pixels drawn (seeded) from each of a and b.

    With equal sizes and uniform weights an optimal transport plan is a
    permutation (Birkhoff), so the linear assignment on the squared-Euclidean
    cost Cᵢⱼ = ‖xᵢ − yⱼ‖² is the exact discrete OT: W2 = ( mean of C over the
    assignment )^½.  Draws: ``subsample(a)`` then ``subsample(b)`` from one
    ``np.random.default_rng(seed)``.  As an estimate of the W2 between the full
    images it is biased upwards (sample matching cost shrinks as n grows):
    :func:`w2_estimate` removes that bias.
    """
    a, b = pixel_rows(a, "a"), pixel_rows(b, "b")
    rng = np.random.default_rng(seed)
    n = min(pixels, a.shape[0], b.shape[0])
    xa = subsample(a, n, rng).astype(np.float64)
    xb = subsample(b, n, rng).astype(np.float64)
    return float(np.sqrt(_assignment_w2_squared(xa, xb)))


def _assignment_w2_squared(x: np.ndarray, y: np.ndarray) -> float:
    """Exact discrete W2² between equally many points: the mean cost of the optimal assignment."""
    from scipy.optimize import linear_sum_assignment  # here: scipy costs ~0.35 s to import

    cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.mean(cost[rows, cols]))


@dataclass(frozen=True)
class W2Estimate:
    """:func:`w2_estimate`'s result; every figure is a W2 in RGB units (the cube has side 1)."""

    w2: float  #: debiased estimate sqrt(max(0, d̄))
    low: float  #: lower end of the interval, from d (0 when it reaches 0)
    high: float  #: upper end of the interval, from c
    floor: float  #: noise floor sqrt(f̄): what a raw subsample W2 reads between two draws of one set
    raw: float  #: the raw, upwards-biased subsample W2 sqrt(c̄)
    pixels: int  #: n, pixels per subsample
    repeats: int  #: R, independent repeats

    @property
    def resolved(self) -> bool:
        """True when the interval excludes 0: W2 stands above the estimator's noise."""
        return self.low > 0.0


def _disjoint_halves(pixels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint uniform n-row subsamples of ``pixels`` (one draw of 2n positions), as float64."""
    rows = pixels[rng.choice(pixels.shape[0], 2 * n, replace=False)].astype(np.float64)
    return rows[:n], rows[n:]


def w2_estimate(a: np.ndarray, b: np.ndarray, *, pixels: int = W2_ESTIMATE_PIXELS, repeats: int = W2_REPEATS,
                seed: int = 0) -> W2Estimate:
    """W2 between pixel sets a and b, debiased with its subsamples' own noise floor, and an interval.

    Each repeat r = 1…R draws, from one ``np.random.default_rng(seed)``, 2n positions of a
    (halves a_r, a′_r) then 2n of b (b_r, b′_r), n = min(pixels, |a| // 2, |b| // 2); when a
    and b hold the same pixels in the same order, b's draws reuse a's positions. With
    W2²(·, ·) the exact discrete OT of :func:`exact_w2`:

        c_r = W2²(a_r, b_r),  f_r = ½ (W2²(a_r, a′_r) + W2²(b_r, b′_r)),  d_r = c_r − f_r,
        W2 ≈ sqrt(max(0, d̄)),  interval [sqrt(max(0, d̄ − t·s_d)), sqrt(c̄ + t·s_c)],

    s_x the standard error of the mean of x over the R repeats, t the two-sided Student
    quantile of ``W2_CONFIDENCE`` with R − 1 degrees of freedom. c_r is biased upwards
    (E c_r ≥ W2² by the joint convexity of W2²): ``raw`` = sqrt(c̄) is the old estimate and
    bounds the interval above. f_r is the noise floor, what c_r reads where W2 = 0
    (``floor`` = sqrt(f̄)): for samples a of μ and b of μ translated by v, E d_r = |v|² = W2²
    exactly (0 when v = 0); otherwise d tends to overcorrect (Gaussian and uniform pairs), so
    it bounds the interval below. ``resolved`` (the interval excludes 0) says W2 stands above the noise.
    """
    a, b = pixel_rows(a, "a", at_least=2), pixel_rows(b, "b", at_least=2)
    if repeats < 2:
        raise ValueError("w2_estimate needs at least 2 repeats")
    n = min(pixels, a.shape[0] // 2, b.shape[0] // 2)
    same = a.shape == b.shape and np.array_equal(a, b)
    rng = np.random.default_rng(seed)
    cross, floor = np.empty(repeats), np.empty(repeats)
    for r in range(repeats):
        a1, a2 = _disjoint_halves(a, n, rng)
        b1, b2 = (a1, a2) if same else _disjoint_halves(b, n, rng)
        own_a = _assignment_w2_squared(a1, a2)
        cross[r] = _assignment_w2_squared(a1, b1)
        floor[r] = own_a if same else 0.5 * (own_a + _assignment_w2_squared(b1, b2))
    return _debiased(cross, floor, n)


def _root(value: float) -> float:
    return float(np.sqrt(max(0.0, value)))


def _debiased(cross: np.ndarray, floor: np.ndarray, n: int) -> W2Estimate:
    """:class:`W2Estimate` from the repeats' c_r and f_r (see :func:`w2_estimate`)."""
    from scipy.stats import t as student

    d = cross - floor
    t = float(student.ppf(0.5 + W2_CONFIDENCE / 2, len(d) - 1))
    return W2Estimate(w2=_root(d.mean()), low=_root(d.mean() - _margin(d, t)),
                      high=_root(cross.mean() + _margin(cross, t)), floor=_root(floor.mean()),
                      raw=_root(cross.mean()), pixels=n, repeats=len(d))


def _margin(values: np.ndarray, t: float) -> float:
    """t × the standard error of the mean of ``values``."""
    return t * float(values.std(ddof=1)) / np.sqrt(len(values))


def clipped_fraction(mapped: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Fraction of pixels (rows of an (..., 3) array) with a channel outside [0, 1] or NaN; with
    ``weights`` (one per row, such as how many pixels have each distinct colour), of their total.

    Give it the map's raw, unclipped output: those pixels are the ones the
    output rule clips when the image is written.
    """
    flat = np.asarray(mapped).reshape(-1, 3)
    if flat.shape[0] == 0:
        raise ValueError("clipped_fraction needs at least one pixel")
    leaving = ~((flat >= 0) & (flat <= 1)).all(axis=1)  # NaN compares false: counted as clipped
    return float(np.mean(leaving)) if weights is None else float(weights[leaving].sum() / weights.sum())


#: Detail energy below which an image counts as perfectly flat: float64 rounding leaves up to
#: ~1e-32 in a flat image, one 16-bit code of detail in one pixel of an 8K frame gives ~6e-18.
FLAT_ENERGY = 1e-24


def detail_gain(source: np.ndarray, output: np.ndarray, *, of: str = "luma") -> float:
    """E(output) / E(source), with E(image) = mean over pixels of (c − box₃(c))² for the luma
    c = Y of the image (H, W, 3) in [0, 1] (``output`` clipped to it) and box₃ its 3×3 mean (edges
    reflected): the energy of the finest detail, noise and grain included.  ``of="chroma"``: the
    same energy summed over the two colour differences c = B − Y and c = R − Y, the colour mottling
    that leaves the luma alone.  Above 1 the transfer amplifies it, as any map must that stretches
    a narrow range of colours.  A perfectly flat source has no detail to amplify: the gain is then
    ∞ if the output has some, else 1."""
    from scipy.ndimage import uniform_filter

    if of not in ("luma", "chroma"):
        raise ValueError(f"detail_gain measures of='luma' or of='chroma', not {of!r}")

    def energy(image: np.ndarray, name: str) -> float:
        values = np.clip(pixel_rows(image, name).reshape(np.shape(image)).astype(np.float64), 0, 1)  # [0, 1] units
        luma = values @ np.asarray(LUMA)
        components = [luma] if of == "luma" else [values[..., 2] - luma, values[..., 0] - luma]
        return sum(float(np.mean((c - uniform_filter(c, 3)) ** 2)) for c in components)

    if np.ndim(source) != 3 or np.shape(source) != np.shape(output):
        raise ValueError("detail_gain needs a source and an output image of the same shape (H, W, 3)")
    before, after = energy(source, "source"), energy(output, "output")
    if before < FLAT_ENERGY:
        return math.inf if after >= FLAT_ENERGY else 1.0
    return after / before


def _distinct_rows(rows: np.ndarray, *, counts: bool = False):
    """The distinct rows of an (N, 3) array, compared by their bytes (faster than np.unique(axis=0));
    with ``counts``, also how many times each occurs."""
    rows = np.ascontiguousarray(rows)
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    found = np.unique(as_bytes, return_counts=counts)
    distinct = (found[0] if counts else found).view(rows.dtype).reshape(-1, rows.shape[1])
    return (distinct, found[1]) if counts else distinct


def min_jacobian_eigenvalue(model, pixels: np.ndarray, *, chunk: int = JACOBIAN_CHUNK) -> float:
    """min over the distinct colours x of ``pixels`` of λ_min((J + Jᵀ)/2), J = model.jacobian(x).

    The Jacobian depends on the colour only, so the distinct rows cover every
    pixel.  J comes in the model's dtype; the eigenvalues are taken in float64,
    ``chunk`` colours at a time.  > 0 means strictly monotone (no colour
    inversions); colorot's maps are ≥ their eps by construction.
    """
    import torch  # here, not at the top: the CLI starts without torch

    colours = _distinct_rows(pixel_rows(pixels))
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else "cpu"
    low = np.inf
    with torch.no_grad():
        for start in range(0, colours.shape[0], chunk):
            x = torch.as_tensor(colours[start:start + chunk], dtype=dtype, device=device)
            jac = model.jacobian(x).to("cpu", torch.float64)
            sym = 0.5 * (jac + jac.transpose(-1, -2))
            low = min(low, float(torch.linalg.eigvalsh(sym)[:, 0].min()))
    return low


def kl_to_target(model, source: np.ndarray, target, entropy: float | None = None, *, pixels: int = KL_PIXELS,
                 seed: int = 0) -> float:
    """KL(T#α ‖ q) = −E log q(T(x)) − E log det J_T(x) − H(α), in nats.

    α is the source's pixels spread uniformly over their 8-bit cells; the expectations are
    means over ``pixels`` seeded draws from α (float64; a source of fewer pixels is drawn from with
    replacement: it was averaged over one draw in each of its cells), and H(α) is ``entropy`` or
    :func:`colorot.kl_solver.dequantised_entropy` of ``source`` (exact for 8-bit pixels).
    ``model``: a fitted map, or a ridge map's :class:`~colorot.ridge_map.RidgeParameters`
    (evaluated in numpy, without torch).
    """
    from colorot.defaults import DEQUANTISE
    from colorot.kl_solver import dequantised_entropy
    from colorot.ridge_map import RidgeParameters

    source = pixel_rows(source, "source").astype(np.float64)
    if entropy is None:
        entropy = dequantised_entropy(source)
    rng = np.random.default_rng(seed)
    # ``pixels`` draws however few the source's pixels (with replacement then: each its share of them)
    drawn = subsample(source, pixels, rng) if len(source) >= pixels else source[rng.integers(len(source), size=pixels)]
    x = drawn + rng.uniform(-DEQUANTISE, DEQUANTISE, (pixels, 3))
    if isinstance(model, RidgeParameters):  # in chunks: the (pixels × units) work arrays stay in cache
        total = 0.0
        for start in range(0, len(x), KL_CHUNK):
            mapped, jac = model.forward_and_jacobian(x[start:start + KL_CHUNK])
            total += float(target.log_prob_and_gradient(mapped)[0].sum() + np.linalg.slogdet(jac)[1].sum())
        return -total / len(x) - entropy
    import torch  # here, not at the top: the CLI starts without torch

    from colorot.losses import exact_kl

    with torch.no_grad():
        mapped, jac = copy.deepcopy(model).cpu().double().forward_and_jacobian(torch.as_tensor(x))
        return float(exact_kl(mapped, jac, target)) - entropy


def evaluate(source: np.ndarray, output: np.ndarray, target: np.ndarray, *, fitted_map=None,
             directions: int = SW2_DIRECTIONS, pixels: int = SW2_PIXELS, w2_pixels: int = W2_ESTIMATE_PIXELS,
             w2_repeats: int = W2_REPEATS, seed: int = 0) -> dict:
    """Every number of ``colorot eval`` from pixels in [0, 1]: source and output row by row, and the target.

    * ``sw2`` = sliced_w2(clip(output, 0, 1), target), ``sw2_source`` = sliced_w2(source, target);
    * ``rms_displacement`` = rms_displacement(source, output);
    * ``w2`` (debiased), ``w2_interval`` [low, high], ``w2_floor`` and ``w2_raw`` from
      w2_estimate(source, target, pixels=w2_pixels, repeats=w2_repeats), and the ``w2_pixels`` (n)
      and ``w2_repeats`` it used;
    * ``rms_over_w2`` = rms / w2 − 1, None when the W2 interval reaches 0 (W2 within the noise);
    * with ``fitted_map`` (else None): ``min_jacobian_eigenvalue`` over the distinct source
      colours and ``clipped_fraction`` of fitted_map(source), its exact unclipped output (each
      distinct colour mapped once, weighted by how many pixels have it).

    Every sampled measure uses the same ``seed``.
    """
    source, output, target = pixel_rows(source, "source"), pixel_rows(output, "output"), pixel_rows(target, "target")
    if source.shape != output.shape:
        raise ConfigError(f"the source has {source.shape[0]} pixels and the output {output.shape[0]}: "
                          "eval compares corresponding pixels")
    sampled = {"directions": directions, "pixels": pixels, "seed": seed}
    rms = rms_displacement(source, output)
    w2 = w2_estimate(source, target, pixels=w2_pixels, repeats=w2_repeats, seed=seed)
    result = {
        "sw2": sliced_w2(np.clip(output, 0, 1), target, **sampled),
        "sw2_source": sliced_w2(source, target, **sampled),
        "rms_displacement": rms,
        "w2": w2.w2,
        "w2_interval": [w2.low, w2.high],
        "w2_floor": w2.floor,
        "w2_raw": w2.raw,
        "w2_pixels": w2.pixels,
        "w2_repeats": w2.repeats,
        "rms_over_w2": rms / w2.w2 - 1 if w2.resolved else None,
        "min_jacobian_eigenvalue": None,
        "clipped_fraction": None,
    }
    if fitted_map is not None:
        colours, counts = _distinct_rows(source, counts=True)
        result["min_jacobian_eigenvalue"] = min_jacobian_eigenvalue(fitted_map, colours)
        mapped = map_pixels(fitted_map, colours, device=next(fitted_map.parameters()).device)
        result["clipped_fraction"] = clipped_fraction(mapped, counts)
    return result


def evaluate_files(source: str | os.PathLike, output: str | os.PathLike, target: str | os.PathLike, *,
                   fitted_map=None, map_space: ColourSpace | None = None, max_image_pixels: int | None = None,
                   **options) -> dict:
    """:func:`evaluate` on image files; OUTPUT must be SOURCE after ``colorot apply`` (same size).

    Pixels are compared by position; the source's fully transparent pixels are
    left out of source and output alike, and the target's, as ``fit`` does.
    ConfigError when the sizes differ or an image has fewer than 2 usable pixels, ImageReadError
    when a file cannot be read; an ImageMetadataWarning for OUTPUT, TARGET or the map
    (``map_space``: the space it was fitted in) in another colour space than SOURCE.
    """
    _warn_spaces_apart(source, output, target, map_space)
    src = read_image(source, max_pixels=max_image_pixels)
    out = read_image(output, max_pixels=max_image_pixels)
    if src.codes.shape[:2] != out.codes.shape[:2]:
        (sh, sw), (oh, ow) = src.codes.shape[:2], out.codes.shape[:2]
        raise ConfigError(f"{source} is {sw}×{sh} but {output} is {ow}×{oh}: eval compares corresponding "
                          "pixels, so OUTPUT must be SOURCE mapped by colorot apply")
    keep = slice(None) if src.alpha is None else src.alpha.reshape(-1) != 0
    src_pixels, out_pixels = src.rgb.reshape(-1, 3)[keep], out.rgb.reshape(-1, 3)[keep]
    if src_pixels.shape[0] == 0:
        raise ImageReadError(f"{source}: every pixel is fully transparent")
    target_pixels = read_pixels(target, max_pixels=max_image_pixels)
    for name, pixels in ((source, src_pixels), (target, target_pixels)):
        if pixels.shape[0] < 2:  # W2 and its interval need two of each
            raise ConfigError(f"{name} has {pixels.shape[0]} usable pixel; eval needs at least 2")
    return {"compared_pixels": int(src_pixels.shape[0]),
            **evaluate(src_pixels, out_pixels, target_pixels, fitted_map=fitted_map, **options)}


def _warn_spaces_apart(source: str | os.PathLike, output: str | os.PathLike, target: str | os.PathLike,
                       map_space: ColourSpace | None) -> None:
    """A warning for each image, and the map, in another colour space than ``source`` by their ICC
    profiles: eval compares codes, which then stand for other colours (a match onto a reference in
    another space converts the reference, so its output, in the source's space, is far from the
    reference's codes however right its colours)."""
    space = image_colour_space(source)
    for name, other in ((output, image_colour_space(output)), (target, image_colour_space(target))):
        if apart(space, other):
            warnings.warn(f"{name} ({other.name}) is not in the colour space of {source} ({space.name}): eval "
                          "compares their codes, which stand for other colours, so its figures measure that "
                          "difference too; convert the images to one space first", ImageMetadataWarning, stacklevel=3)
    if apart(space, map_space):
        warnings.warn(f"the map was fitted in another colour space ({map_space.name}) than {source}'s "
                      f"({space.name}): its eigenvalue and clipping are of codes that stand for other colours",
                      ImageMetadataWarning, stacklevel=3)
