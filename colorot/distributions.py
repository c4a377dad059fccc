"""Target distributions over RGB: a Gaussian, a Gaussian mixture, and the target's pixels.

Both are fitted with numpy / scikit-learn on float pixels (N, 3) in [0, 1],
evaluate an exact torch ``log_prob`` (the mixture by log-sum-exp over all
components, weights included), draw samples, and serialise to plain values so
a checkpoint never holds a pickled object.

Every covariance gets a ridge ``r·I`` added.  It keeps a flat or grey target
from giving a singular covariance, and it floors how narrow a component can be,
which is what stops the reverse KL from pouring the whole image into one
sliver-thin component (monochrome collapse).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from colorot.caught_warnings import caught_warnings
from colorot.errors import ConfigError
from colorot.sampling import representative_subsample

if TYPE_CHECKING:
    import torch

#: Variance added to every covariance diagonal (a standard deviation floor of
#: about 0.02, i.e. ~5 code values of an 8-bit channel).
DEFAULT_RIDGE = 4e-4
#: Pixels sampled (seeded) to run EM on: on development pairs 20 000 gives the same fitted maps
#: as 50 000 (KL within 0.01 nats, bench/EXPERIMENTS.md E38), usually in about half the time.
DEFAULT_EM_SAMPLES = 20_000
#: Range of K tried when ``n_components="auto"`` (chosen by BIC).
AUTO_COMPONENTS = (1, 2, 3, 4, 5, 6, 8, 10)

#: Pixels a :class:`PixelTarget` keeps, and the smallest kernel variance (a ridge of 0 would
#: leave the density undefined).
PIXEL_SAMPLE = 256
MIN_KERNEL_VARIANCE = 1e-6

_LOG_2PI = math.log(2.0 * math.pi)


def _check_pixels(pixels: np.ndarray, keep_dtype: bool = False) -> np.ndarray:
    """Validate samples (N, d): finite, at least two rows; as float64, or (``keep_dtype``) as given,
    for a caller that subsamples before converting."""
    pixels = np.asarray(pixels) if keep_dtype else np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 2:
        raise ConfigError(f"expected pixels of shape (N, 3), got {pixels.shape}")
    if pixels.shape[0] < 2:
        raise ConfigError("need at least 2 pixels to fit a distribution")
    if not np.isfinite(pixels).all():
        raise ConfigError("pixels contain NaN or infinite values")
    return pixels


def _count_distinct(pixels: np.ndarray, limit: int) -> int:
    """How many distinct rows ``pixels`` has, counting no further than ``limit``."""
    seen: set[bytes] = set()
    for row in np.ascontiguousarray(pixels):
        seen.add(row.tobytes())
        if len(seen) >= limit:
            break
    return len(seen)


def _gaussian_log_prob(x: torch.Tensor, projections: torch.Tensor, offsets: torch.Tensor,
                       log_norms: torch.Tensor) -> torch.Tensor:
    """log N(x | μ_k, L_k L_kᵀ) for every sample and component: (N, K).

    With P_k = L_k⁻¹ precomputed (K small d×d inverses, once per target), the Mahalanobis term
    is ‖P_k x − P_k μ_k‖²: every component's P_k x in one matrix product x @ [P_1ᵀ … P_Kᵀ]
    (``projections``, d × Kd; ``offsets`` holds P_k μ_k), a third of the time of a batched
    product over components with its backward (bench/EXPERIMENTS.md, E44); ``log_norms`` holds
    −½ log det Σ_k − (d/2) log 2π = −Σ log diag L_k − (d/2) log 2π.
    """
    y = (x @ projections).reshape(x.shape[0], -1, x.shape[1]) - offsets
    return log_norms[None, :] - 0.5 * (y * y).sum(-1)


@dataclass(frozen=True)
class EMProblem:
    """What EM fits: the seeded float64 subsample of the target's pixels, the numbers of components
    to try (one, or the BIC candidates of ``"auto"``), the covariance ridge and the seed.  Made by
    :meth:`prepare`, which raises every ConfigError a fit can raise, so that EM itself (in this process
    or another: :mod:`colorot.em_process`) only computes."""

    sample: np.ndarray
    candidates: tuple[int, ...]
    ridge: float
    random_state: int

    @classmethod
    def prepare(cls, pixels: np.ndarray, n_components: int | str = "auto", *, ridge: float = DEFAULT_RIDGE,
                max_samples: int = DEFAULT_EM_SAMPLES, random_state: int = 0, at_most: bool = False) -> "EMProblem":
        """The EM problem of ``n_components`` (an int, or "auto") on a seeded subsample of ``pixels``;
        a fixed K needs K distinct colours, else ConfigError, unless ``at_most`` (a default K,
        not the user's: then it is lowered to the colours there are)."""
        pixels = _check_pixels(pixels, keep_dtype=True)
        rng = np.random.default_rng(random_state)
        pixels = representative_subsample(pixels, max_samples, rng)
        pixels = pixels.astype(np.float64)
        if n_components == "auto":
            distinct = _count_distinct(pixels, limit=max(AUTO_COMPONENTS))
            return cls(pixels, tuple(k for k in AUTO_COMPONENTS if k <= distinct), ridge, random_state)
        try:
            k = int(n_components)
        except (TypeError, ValueError):
            raise ConfigError(f"n_components must be a positive integer or 'auto', not {n_components!r}") from None
        if k < 1:
            raise ConfigError("the number of mixture components must be at least 1")
        if at_most:
            k = min(k, _count_distinct(pixels, limit=k))
        if k > pixels.shape[0]:  # the K to suggest is also bounded by the distinct colours
            raise ConfigError(f"{k} mixture components need at least {k} pixels, got {pixels.shape[0]}; "
                              f"use --components {_count_distinct(pixels, limit=pixels.shape[0])} or auto")
        distinct = _count_distinct(pixels, limit=k)
        if k > distinct:
            raise ConfigError(
                f"{k} mixture components need at least {k} distinct colours, the target has "
                f"{distinct}; use --components {distinct} or auto"
            )
        return cls(pixels, (k,), ridge, random_state)


@dataclass
class GaussianMixture:
    """A mixture of full-covariance Gaussians ``Σ_k w_k N(μ_k, Σ_k)`` in R^d (RGB: d = 3).

    A single Gaussian is the case K = 1 (see :class:`Gaussian`).
    """

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, 3)
    covariances: np.ndarray  # (K, 3, 3)

    kind = "gmm"

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.covariances = np.asarray(self.covariances, dtype=np.float64)
        k, d = self.means.shape if self.means.ndim == 2 else (0, 0)
        if k != self.weights.shape[0] or k == 0 or self.covariances.shape != (k, d, d):
            raise ConfigError("mixture parameters have inconsistent shapes")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.means).all()
                and np.isfinite(self.covariances).all()):
            raise ConfigError("mixture parameters contain NaN or infinite values")
        if (self.weights <= 0).any() or abs(self.weights.sum() - 1.0) > 1e-6:
            raise ConfigError("mixture weights must be positive and sum to 1")
        try:
            self._chols = np.linalg.cholesky(self.covariances)
        except np.linalg.LinAlgError as exc:
            raise _NotPositiveDefinite("a covariance matrix is not positive definite") from exc
        self._torch_cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._numpy_terms: tuple[np.ndarray, ...] | None = None

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    def describe(self) -> str:
        """One line for reports: 'gmm target (K=10)'."""
        return f"{self.kind} target (K={self.n_components})"

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        pixels: np.ndarray,
        n_components: int | str = "auto",
        *,
        ridge: float = DEFAULT_RIDGE,
        max_samples: int = DEFAULT_EM_SAMPLES,
        random_state: int = 0,
        at_most: bool = False,
    ) -> "GaussianMixture":
        """Fit by EM (scikit-learn, full covariances) on a seeded subsample.

        ``n_components="auto"`` fits each K in :data:`AUTO_COMPONENTS` up to the
        number of distinct colours and keeps the one with the lowest BIC (a
        single-colour target gives K = 1).  A fixed K needs at least K distinct
        colours, else ConfigError, unless ``at_most`` (:meth:`EMProblem.prepare`).  ``ridge`` is
        scikit-learn's ``reg_covar``.
        """
        return cls.fit_em(EMProblem.prepare(pixels, n_components, ridge=ridge, max_samples=max_samples,
                                            random_state=random_state, at_most=at_most))

    @classmethod
    def fit_em(cls, problem: EMProblem) -> "GaussianMixture":
        """EM (scikit-learn) on a prepared problem, on one BLAS thread (the same bits on any machine's
        thread count, and faster than two for 20 000 pixels)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture as SkGMM
        from colorot.thread_counts import one_library_thread

        best, best_bic = None, math.inf
        with one_library_thread():
            for k in problem.candidates:
                with caught_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    try:
                        sk = SkGMM(
                            n_components=k, covariance_type="full", reg_covar=problem.ridge,
                            random_state=problem.random_state, n_init=1, max_iter=200,
                        ).fit(problem.sample)
                    except ValueError as exc:  # a component of one colour: its covariance is singular
                        raise ConfigError(_singular(problem.ridge)) from exc
                bic = sk.bic(problem.sample) if len(problem.candidates) > 1 else 0.0
                if bic < best_bic:
                    best, best_bic = sk, bic
        assert best is not None
        return _with_ridge_named(problem.ridge, lambda: cls(best.weights_, best.means_, best.covariances_))

    # --------------------------------------------------------------- torch ops
    def _torch(self, device: torch.device | str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        import torch  # here, not at the top: the CLI starts without torch

        key = (str(device), dtype)
        if key not in self._torch_cache:
            chol_invs = np.linalg.inv(self._chols)  # P_k (K, d, d)
            k, d = self.means.shape
            self._torch_cache[key] = (
                torch.as_tensor(np.log(self.weights), dtype=dtype, device=device),
                torch.as_tensor(chol_invs.reshape(k * d, d).T, dtype=dtype, device=device),
                torch.as_tensor(np.einsum("kij,kj->ki", chol_invs, self.means), dtype=dtype, device=device),
                torch.as_tensor(
                    -np.log(np.diagonal(self._chols, axis1=-2, axis2=-1)).sum(-1) - 0.5 * self.means.shape[1] * _LOG_2PI,
                    dtype=dtype, device=device,
                ),
            )
        return self._torch_cache[key]

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x | μ_k, Σ_k) for each sample and component: (N, K)."""
        log_w, projections, offsets, log_norms = self._torch(x.device, x.dtype)
        return log_w[None, :] + _gaussian_log_prob(x, projections, offsets, log_norms)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density log Σ_k w_k N(x | μ_k, Σ_k) of each row of x: (N,)."""
        import torch  # here, not at the top: the CLI starts without torch

        return torch.logsumexp(self.component_log_prob(x), dim=-1)

    def log_prob_and_gradient(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log q(y) (N,) and its gradient ∇log q(y) = Σ_k r_k(y) Σ_k⁻¹(μ_k − y) (N, d), in numpy.

        r_k(y) are the responsibilities (posterior component probabilities); float64.
        """
        if self._numpy_terms is None:
            precisions = np.linalg.inv(self.covariances)
            roots = np.linalg.cholesky(precisions)  # L_k L_kᵀ = Σ_k⁻¹: ‖(y − μ_k)ᵀ L_k‖² is the Mahalanobis term
            self._numpy_terms = (
                np.concatenate(list(roots), axis=1),  # (d, K·d)
                np.concatenate([m @ r for m, r in zip(self.means, roots)]),
                np.log(self.weights) + np.log(np.diagonal(roots, axis1=-2, axis2=-1)).sum(-1)
                - 0.5 * self.means.shape[1] * _LOG_2PI,
                np.einsum("kij,kj->ki", precisions, self.means),
                precisions.reshape(len(self.weights), -1),
            )
        roots, shifts, log_norms, precision_means, precisions = self._numpy_terms
        y = np.asarray(y, np.float64)
        n, d = y.shape
        z = (y @ roots - shifts).reshape(n, -1, d)
        component = log_norms - 0.5 * np.einsum("nkd,nkd->nk", z, z)
        top = component.max(axis=1, keepdims=True)
        weights = np.exp(component - top)
        total = weights.sum(axis=1, keepdims=True)
        weights /= total
        precision = (weights @ precisions).reshape(n, d, d)
        gradient = weights @ precision_means - np.einsum("nij,nj->ni", precision, y)
        return (top + np.log(total))[:, 0], gradient

    # ------------------------------------------------------------------ stats
    @property
    def mean(self) -> np.ndarray:
        """Overall mean Σ_k w_k μ_k."""
        return self.weights @ self.means

    @property
    def covariance(self) -> np.ndarray:
        """Overall covariance Σ_k w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ."""
        mu = self.mean
        second = np.einsum("k,kij->ij", self.weights, self.covariances) + np.einsum(
            "k,ki,kj->ij", self.weights, self.means, self.means
        )
        return second - np.outer(mu, mu)

    def sample(self, n: int, random_state: int = 0) -> np.ndarray:
        """Draw n samples (float64, (n, 3))."""
        rng = np.random.default_rng(random_state)
        counts = rng.multinomial(n, self.weights)
        parts = [
            rng.multivariate_normal(m, c, size=int(c_n), method="cholesky")
            for m, c, c_n in zip(self.means, self.covariances, counts)
        ]
        out = np.concatenate(parts, axis=0)
        return out[rng.permutation(n)]

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """Plain values only (lists of floats) for the checkpoint."""
        return {
            "kind": self.kind,
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
        }


#: The least variance, along any direction, of a mixture's component: below it a covariance is taken
#: for singular (a 16-bit code's quantisation noise is 2·10⁻¹¹; a plane of colours tilted across the
#: cube left 10⁻¹⁷ where Cholesky passed, and a map 10¹⁰ nats from its target was saved).
MIN_VARIANCE = 1e-12


def _singular(ridge: float) -> str:
    """Why a target's density cannot be fitted with ``ridge``, and what to do."""
    return (f"the target's colours, or a cluster of them, lie flat (on one colour, a line such as the greys, or a "
            f"plane), so a covariance stays singular with a ridge of {ridge:g}: give a larger ridge (--ridge), such "
            "as its defaults (10⁻⁴ for the kl solver, 4·10⁻⁴ for the others)")


def _with_ridge_named(ridge: float, make):
    """``make()``, a fit's mixture: its refusal of a covariance that is not positive definite, or one
    with a variance under :data:`MIN_VARIANCE` (Cholesky passes 10⁻¹⁷: a plane tilted across the cube),
    said as :func:`_singular`.  Only a fit is held to the floor: a checkpoint's target is what it is."""
    try:
        fitted = make()
    except _NotPositiveDefinite as exc:
        raise ConfigError(_singular(ridge)) from exc
    if np.linalg.eigvalsh(fitted.covariances)[:, 0].min() < MIN_VARIANCE:
        raise ConfigError(_singular(ridge))
    return fitted


class _NotPositiveDefinite(ConfigError):
    """A mixture's covariance that is not positive definite (a fit names the ridge instead)."""


class Gaussian(GaussianMixture):
    """A single Gaussian N(μ, Σ): maximum-likelihood mean and covariance + ridge."""

    kind = "gaussian"

    def __init__(self, mean: np.ndarray, covariance: np.ndarray) -> None:
        super().__init__(np.ones(1), np.asarray(mean, dtype=np.float64)[None, :],
                         np.asarray(covariance, dtype=np.float64)[None])

    @classmethod
    def fit(cls, pixels: np.ndarray, *, ridge: float = DEFAULT_RIDGE, **_: object) -> "Gaussian":
        """MLE: the sample mean and the (1/N) sample covariance, plus ``ridge·I``."""
        return _with_ridge_named(ridge, lambda: cls(*gaussian_moments(pixels, ridge)))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "mean": self.means[0].tolist(),
            "covariance": self.covariances[0].tolist(),
        }


class PixelTarget(GaussianMixture):
    """The target's own pixels: a seeded sample of up to PIXEL_SAMPLE of them, kept as a
    kernel density (equal weights, N(y_j, r·I) around each, r the ridge).

    The sliced solver transports onto the target pixels themselves; this sample is
    the checkpoint's record of that target (its moments, samples, density).
    """

    kind = "pixels"

    def __init__(self, pixels: np.ndarray, ridge: float = DEFAULT_RIDGE) -> None:
        pixels = np.asarray(pixels, dtype=np.float64)
        self.ridge = max(float(ridge), MIN_KERNEL_VARIANCE)
        count = pixels.shape[0] if pixels.ndim == 2 else 0
        dim = pixels.shape[1] if pixels.ndim == 2 else 0
        super().__init__(np.full(count, 1.0 / max(count, 1)), pixels,
                         np.broadcast_to(self.ridge * np.eye(dim), (count, dim, dim)).copy())

    @classmethod
    def fit(cls, pixels: np.ndarray, *, ridge: float = DEFAULT_RIDGE, random_state: int = 0,
            **_: object) -> "PixelTarget":
        """A seeded sample of PIXEL_SAMPLE pixels (all of them if fewer)."""
        pixels = _check_pixels(pixels)
        if pixels.shape[0] > PIXEL_SAMPLE:
            pick = np.random.default_rng(random_state).choice(pixels.shape[0], PIXEL_SAMPLE, replace=False)
            pixels = pixels[np.sort(pick)]
        return cls(pixels, ridge)

    def describe(self) -> str:
        return f"pixels target ({self.n_components} kept as a record)"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pixels": self.means.tolist(), "ridge": self.ridge}


TARGET_KINDS = ("gaussian", "gmm", "pixels")


def fit_target(
    pixels: np.ndarray,
    kind: str = "gmm",
    n_components: int | str = "auto",
    *,
    ridge: float = DEFAULT_RIDGE,
    random_state: int = 0,
    at_most: bool = False,
) -> GaussianMixture:
    """Fit the target distribution named ``kind`` ("gaussian", "gmm" or "pixels"); ``at_most``: a
    fixed ``n_components`` is lowered to the target's distinct colours (:meth:`EMProblem.prepare`)."""
    if kind == "gaussian":
        return Gaussian.fit(pixels, ridge=ridge)
    if kind == "gmm":
        return GaussianMixture.fit(pixels, n_components, ridge=ridge, random_state=random_state, at_most=at_most)
    if kind == "pixels":
        return PixelTarget.fit(pixels, ridge=ridge, random_state=random_state)
    raise ConfigError(f"unknown target kind {kind!r}; choose one of {', '.join(TARGET_KINDS)}")


def target_from_dict(d: dict) -> GaussianMixture:
    """Rebuild a target from :meth:`GaussianMixture.to_dict` output."""
    try:
        if d["kind"] == "gaussian":
            return Gaussian(np.asarray(d["mean"]), np.asarray(d["covariance"]))
        if d["kind"] == "gmm":
            return GaussianMixture(
                np.asarray(d["weights"]), np.asarray(d["means"]), np.asarray(d["covariances"])
            )
        if d["kind"] == "pixels":
            return PixelTarget(np.asarray(d["pixels"]), float(d["ridge"]))
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:  # OverflowError: ints past floats
        raise ConfigError(f"malformed target parameters: {exc}") from exc
    raise ConfigError(f"unknown target kind {d.get('kind')!r}")


def gaussian_moments(pixels: np.ndarray, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and (1/N) covariance (+ ridge·I) of pixels (N, 3)."""
    pixels = _check_pixels(pixels)
    mean = pixels.mean(axis=0)
    centred = pixels - mean
    return mean, centred.T @ centred / pixels.shape[0] + ridge * np.eye(pixels.shape[1])


__all__ = [
    "Gaussian", "GaussianMixture", "PixelTarget", "fit_target", "target_from_dict", "gaussian_moments",
    "TARGET_KINDS", "DEFAULT_RIDGE",
]