"""Loss functions: pure functions of tensors, no state.

With T#α the push-forward of the source pixel distribution α by T and q the
target density, the change of variables gives the exact reverse KL

    KL(T#α ‖ q) = −E_x[log q(T(x))] − E_x[log det J_T(x)] − H(α),

and H(α) does not depend on T, so :func:`exact_kl` returns the first two terms
(nats).  :func:`moment_kl` is the closed-form KL between Gaussians that match the
first two moments of T#α and of q (what earlier implementations minimised):
it sees nothing beyond mean and covariance.  :func:`sliced_w2_squared` is a
mass-covering term between the mapped pixels and target pixels.  :func:`transport_cost` is
E‖T(x) − x‖² in RGB units (the RGB cube has side 1, so moving every pixel
from black to white costs 3).
"""

from __future__ import annotations

import numpy as np
import torch

from colorot.distributions import GaussianMixture

LOSSES = ("kl", "moment")


def log_det_spd(jac: torch.Tensor) -> torch.Tensor:
    """log det of a batch of symmetric positive-definite matrices (…, d, d), with the gradient J⁻¹.

    3×3 (RGB) in closed form, in float64 whatever the input's dtype: det J by cofactors, positive
    definiteness by Sylvester's criterion (J₁₁ > 0, J₁₁J₂₂ − J₁₂² > 0, det J > 0), and the backward
    pass g·J⁻¹ = g·adj(J)/det J.  Any other size by Cholesky, its backward g·J⁻¹ from the factor.
    Matrices that are not positive definite (or have non-finite entries) give NaN, which the
    solvers' guards report.  Only the symmetric part of J is read, as its Jacobians are symmetric.
    """
    return _LogDetSPD.apply(jac)


class _LogDetSPD(torch.autograd.Function):
    """log det J and its gradient J⁻¹ (J symmetric), one autograd node (:func:`log_det_spd`); J⁻¹ is
    computed only when a gradient is wanted.  For 2 500 float32 3×3 matrices, forward and backward take
    a fifth of the time of autograd through a batched Cholesky factorisation (bench/EXPERIMENTS.md, E44)."""

    @staticmethod
    def forward(ctx, jac: torch.Tensor) -> torch.Tensor:
        wants_gradient = ctx.needs_input_grad[0]
        if jac.shape[-2:] == (3, 3):
            log_det, inverse = _log_det_3x3(jac.double(), wants_gradient)
        else:
            log_det, inverse = _log_det_cholesky(jac, wants_gradient)
        if wants_gradient:
            ctx.save_for_backward(inverse.to(jac.dtype))
        return log_det.to(jac.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (inverse,) = ctx.saved_tensors
        return grad[..., None, None] * inverse


def _log_det_3x3(j: torch.Tensor, with_inverse: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log det J by cofactors (NaN unless J₁₁ > 0, J₁₁J₂₂ − J₁₂² > 0 and det J > 0), and J⁻¹ = adj J / det J."""
    a, b, c, d, e, f = j[..., 0, 0], j[..., 0, 1], j[..., 0, 2], j[..., 1, 1], j[..., 1, 2], j[..., 2, 2]
    cof_ad, cof_be, cof_cd, minor_ab = d * f - e * e, c * e - b * f, b * e - c * d, a * d - b * b
    det = a * cof_ad + b * cof_be + c * cof_cd
    definite = (a > 0) & (minor_ab > 0) & (det > 0)
    log_det = torch.where(definite, torch.log(det), torch.full_like(det, float("nan")))
    if not with_inverse:
        return log_det, None
    cof_ae = b * c - a * e
    adjugate = torch.stack([cof_ad, cof_be, cof_cd, cof_be, a * f - c * c, cof_ae, cof_cd, cof_ae, minor_ab], -1)
    return log_det, adjugate.reshape(j.shape) / det[..., None, None]


def _log_det_cholesky(j: torch.Tensor, with_inverse: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log det J = 2 Σ log diag L (NaN where the factorisation fails), and J⁻¹ from L."""
    chol, info = torch.linalg.cholesky_ex(j)
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_det = torch.where(info == 0, log_det, torch.full_like(log_det, float("nan")))
    return log_det, torch.cholesky_inverse(chol) if with_inverse else None


def exact_kl(mapped: torch.Tensor, jac: torch.Tensor, target: GaussianMixture) -> torch.Tensor:
    """−mean log q(T(x)) − mean log det J_T(x): the reverse KL up to −H(α)."""
    return -target.log_prob(mapped).mean() - log_det_spd(jac).mean()


def moment_kl(mapped: torch.Tensor, target: GaussianMixture) -> torch.Tensor:
    """KL(N(m, S) ‖ N(μ, Σ)) with (m, S) the batch moments of T(x), (μ, Σ) the target's.

    ½ [tr(Σ⁻¹S) + (μ − m)ᵀΣ⁻¹(μ − m) − d + log det Σ − log det S].
    """
    d = mapped.shape[1]
    mu = torch.as_tensor(target.mean, dtype=mapped.dtype, device=mapped.device)
    sigma = torch.as_tensor(target.covariance, dtype=mapped.dtype, device=mapped.device)
    m = mapped.mean(0)
    centred = mapped - m
    s = centred.T @ centred / mapped.shape[0]
    sigma_inv = torch.linalg.inv(sigma)
    diff = mu - m
    return 0.5 * (
        torch.trace(sigma_inv @ s) + diff @ sigma_inv @ diff - d
        + torch.logdet(sigma) - torch.logdet(s)
    )


def transport_cost(source: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """E‖T(x) − x‖², the squared-Euclidean transport cost of the map."""
    return (mapped - source).pow(2).sum(-1).mean()


def random_directions(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random unit vectors in R^dim, as the columns of a (dim, count) matrix."""
    theta = torch.randn(dim, count, generator=generator, dtype=torch.float32)
    return theta / theta.norm(dim=0, keepdim=True)


def sorted_projections(target: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """⟨θ_j, y_i⟩ sorted over i for each direction: (M, count), the target's 1-D quantiles."""
    return sort_columns(target @ directions)


def sort_columns(values: torch.Tensor) -> torch.Tensor:
    """Each column of ``values`` sorted ascending, differentiably (gradients flow back
    to the entries that landed in each place).

    On the CPU the order comes from numpy's argsort and the values from a
    ``gather``: the same result as ``torch.sort(values, dim=0).values``, but
    torch's CPU sort is ~10× slower (measured at 4096 × 64: 16 ms vs 4 ms for
    sort + backward, most of a training step).
    """
    if values.device.type != "cpu":
        return torch.sort(values, dim=0).values
    order = np.argsort(values.detach().T.numpy(), axis=1)  # rows of the transpose: contiguous
    return values.T.gather(1, torch.from_numpy(order)).T


def quantiles_at_levels(target_sorted: torch.Tensor, n: int) -> torch.Tensor:
    """The rows of ``target_sorted`` (M sorted values in each column) at the levels (i + ½)/n, i < n:
    the target's quantiles that n sorted samples are compared with, (n, k)."""
    m = target_sorted.shape[0]
    levels = ((torch.arange(n, device=target_sorted.device) + 0.5) * (m / n)).long().clamp_(max=m - 1)
    return target_sorted[levels]


def sliced_w2_squared(mapped: torch.Tensor, directions: torch.Tensor,
                      target_quantiles: torch.Tensor) -> torch.Tensor:
    """SW₂² between the mapped pixels and the target, along the given directions.

    For each direction θ_j the 1-D W₂² between the n sorted projections ⟨θ_j, T(x)⟩
    and the target's quantiles at the same levels (i + ½)/n, ``target_quantiles`` (n, k)
    (:func:`quantiles_at_levels` of :func:`sorted_projections` of many target pixels along the
    same directions); averaged over directions.  A mass-covering term: it grows
    whenever part of the target is left uncovered, which the reverse KL alone
    does not see.  Each T(x) still depends on its own x only; the samples meet
    only inside the loss.
    """
    projected = sort_columns(mapped @ directions)
    return (projected - target_quantiles).pow(2).mean()
