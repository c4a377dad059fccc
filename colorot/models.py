"""Monotone gradient maps RGB → RGB: the ridge map (the default), C-MGN, M-MGN and the affine Gaussian map.

Every model is ``T = ∇φ`` for a convex φ, so its Jacobian is symmetric positive
semi-definite by construction (Chaudhari, Pranav & Moura, "Learning gradients of
convex functions with monotone gradient networks", ICASSP 2023).  Each also adds
``ε·x`` (``eps``, default :data:`DEFAULT_EPS`), making φ ε-strongly convex: the
Jacobian's eigenvalues are all ≥ ε and T is invertible.

All four share the linear part ``(VᵀV + εI) x + b`` and return their exact
Jacobian analytically (``forward_and_jacobian``), computed per sample: no sum
or statistic is ever taken across the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from colorot.defaults import DEFAULT_EPS
from colorot.errors import ConfigError
from colorot.ridge_map import RidgeParameters, psd_sqrt


# ------------------------------------------------------------------ scalars
def _log_cosh(z: torch.Tensor) -> torch.Tensor:
    """log cosh z, stable for large |z|: |z| + log1p(e^{−2|z|}) − log 2."""
    a = z.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def _softplus(z: torch.Tensor) -> torch.Tensor:
    """log(1 + e^z) = logaddexp(z, 0): stable for large |z| and exact everywhere.

    (torch's softplus switches to z itself above a threshold, which would make
    it disagree with its derivative, the sigmoid, used in the Jacobian.)
    """
    return torch.logaddexp(z, torch.zeros((), dtype=z.dtype, device=z.device))


def _tanh_and_slope(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tanh(z)
    return t, 1.0 - t * t


def _sigmoid_and_slope(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.sigmoid(z)
    return s, s * (1.0 - s)


def _softplus_and_slope(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _softplus(z), torch.sigmoid(z)


#: Elementwise monotone activations: name → (σ, z ↦ (σ(z), σ'(z)) sharing their work).
_ACTIVATIONS = {
    "tanh": (torch.tanh, _tanh_and_slope),
    "sigmoid": (torch.sigmoid, _sigmoid_and_slope),
    "softplus": (_softplus, _softplus_and_slope),
}

#: M-MGN convex, non-negative potentials: name → (s, σ = s', z ↦ (σ(z), σ'(z)) with σ' = s'').
_POTENTIALS = {
    "logcosh": (_log_cosh, torch.tanh, _tanh_and_slope),
    "softplus": (_softplus, torch.sigmoid, _sigmoid_and_slope),
}


#: The C-MGN's and M-MGN's activation scale α (σ(z) = α·act(z/α)): chosen on development pairs
#: outside the benchmark (bench/EXPERIMENTS.md, E40).  Checkpoints written before it existed
#: hold no scale and load with α = 1 (colorot.checkpoint).
DEFAULT_SCALE = 0.1
#: The M-MGN's own α: with the separable start (colorot.mgn_start) 0.05 gives a lower median SW2 on
#: development pairs than 0.1 or 0.03 (bench/EXPERIMENTS.md, E41); the C-MGN keeps 0.1.
MMGN_SCALE = 0.05


#: The activation scales a network takes: within them float32 keeps z/α and α·act(z/α) finite
#: (a checkpoint's α = 1e-300 made every output infinite).
SCALE_RANGE = (1e-6, 1e6)


def _check_scale(scale: float) -> float:
    low, high = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not low <= scale <= high:
        raise ConfigError(f"the activation scale must be a positive finite number from {low:g} to {high:g}, "
                          f"not {scale!r}")
    return float(scale)


def _scaled_slope(act_and_slope, scale: float):
    """z ↦ (α·σ₁(z/α), σ₁'(z/α)): the value and slope of σ(z) = α·σ₁(z/α), given σ₁'s."""

    def value_and_slope(z):
        value, slope = act_and_slope(z / scale)
        return scale * value, slope

    return value_and_slope


def _scaled_activation(name: str, scale: float):
    """(σ, z ↦ (σ(z), σ'(z))) of σ(z) = α·act(z/α), σ'(z) = act'(z/α), for the C-MGN."""
    act, act_and_slope = _ACTIVATIONS[name]
    return (lambda z: scale * act(z / scale)), _scaled_slope(act_and_slope, scale)


def _scaled_potential(name: str, scale: float):
    """(S, σ, z ↦ (σ(z), σ'(z))) of S(z) = α²·S₁(z/α), σ(z) = α·σ₁(z/α), σ'(z) = σ₁'(z/α), for the M-MGN."""
    pot, act, act_and_slope = _POTENTIALS[name]
    return (lambda z: scale * scale * pot(z / scale)), (lambda z: scale * act(z / scale)), _scaled_slope(act_and_slope, scale)


def _outer_products(w: torch.Tensor) -> torch.Tensor:
    """w_h w_hᵀ of each row of w (H, d), flattened: (H, d²).  A Jacobian Σ_h c_h w_h w_hᵀ is then
    one matrix product c @ _outer_products(w), with no (N, H, d, d) tensor."""
    return (w[:, :, None] * w[:, None, :]).reshape(w.shape[0], -1)


def gaussian_map_matrix(cov_s: np.ndarray, cov_t: np.ndarray) -> np.ndarray:
    """A = Σ_s^{-1/2} (Σ_s^{1/2} Σ_t Σ_s^{1/2})^{1/2} Σ_s^{-1/2}.

    The unique symmetric positive-definite A with A Σ_s A = Σ_t: the Brenier
    map between N(μ_s, Σ_s) and N(μ_t, Σ_t) is x ↦ μ_t + A (x − μ_s).
    """
    w, q = np.linalg.eigh(cov_s)
    if w.min() <= 0:
        raise ConfigError("the source's colours lie flat (one colour, a line or a plane), so their covariance is "
                          "singular: give a ridge (--ridge; its default is 4·10⁻⁴ for this map)")
    s_half = (q * np.sqrt(w)) @ q.T
    s_inv_half = (q / np.sqrt(w)) @ q.T
    a = s_inv_half @ psd_sqrt(s_half @ cov_t @ s_half) @ s_inv_half
    return (a + a.T) / 2


class MonotoneGradientMap(nn.Module):
    """Base: T(x) = N(x) + (VᵀV + εI) x + b, with N a monotone gradient network."""

    name = ""

    def __init__(self, dim: int = 3, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        if not (math.isfinite(eps) and eps > 0):
            raise ConfigError("eps must be a positive number so the map stays invertible")
        self.dim, self.eps = dim, float(eps)
        self.V = nn.Parameter(torch.eye(dim, dtype=torch.float32))
        self.b = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    # subclasses: the nonlinear part N(x) and its Jacobian (None when N = 0)
    def _nonlinear(self, x: torch.Tensor, with_jacobian: bool):
        return None, None

    @property
    def config(self) -> dict:
        """Constructor keyword arguments: enough to rebuild the module."""
        return {"dim": self.dim, "eps": self.eps}

    def linear_matrix(self) -> torch.Tensor:
        """VᵀV + εI: the Jacobian of the linear part."""
        return self.V.T @ self.V + self.eps * torch.eye(self.dim, device=self.V.device, dtype=self.V.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self._nonlinear(x, with_jacobian=False)
        lin = x @ self.linear_matrix() + self.b
        return lin if out is None else out + lin

    def forward_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T(x) (N, d) and the exact symmetric Jacobian J_T(x) (N, d, d)."""
        out, jac = self._nonlinear(x, with_jacobian=True)
        a = self.linear_matrix()
        lin = x @ a + self.b
        if out is None:
            return lin, a.expand(x.shape[0], -1, -1)
        return out + lin, jac + a

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """The exact Jacobian J_T(x) of each row of x: (N, d, d)."""
        return self.forward_and_jacobian(x)[1]

    # ------------------------------------------------------- initialisation
    @torch.no_grad()
    def init_to_affine(self, a: np.ndarray, c: np.ndarray, points: np.ndarray, tol: float = 1e-3) -> None:
        """Start T at the affine map x ↦ A x + c (A symmetric positive definite).

        The linear part takes A − εI minus the nonlinear part's Jacobian at the
        mean of ``points`` (its PSD part: eigenvalues of A below ε cannot be
        reached, since every Jacobian eigenvalue is ≥ ε), and b makes T exact at
        that mean.  The nonlinear part is shrunk until T is within ``tol`` RMS
        of the affine map on ``points`` and VᵀV needs no clipping, or as close
        as 80 shrinkings get.
        """
        dtype = self.V.dtype
        a_t = torch.as_tensor(a, dtype=dtype)
        pts = torch.as_tensor(np.atleast_2d(points), dtype=dtype)
        x0 = pts.mean(0, keepdim=True)
        wanted = pts @ a_t.T + torch.as_tensor(c, dtype=dtype)
        target_lin = a_t - self.eps * torch.eye(self.dim, dtype=dtype)
        for _ in range(80):
            out, jac = self._nonlinear(x0, with_jacobian=True)
            residual = target_lin if jac is None else target_lin - jac[0]
            self.V.copy_(torch.as_tensor(psd_sqrt(residual.numpy()), dtype=dtype))
            self.b.zero_()
            self.b.copy_(wanted.mean(0) - self(x0)[0])  # A x₀ + c is the mean of `wanted`
            if jac is None:
                return
            jacobian_exact = float(torch.linalg.eigvalsh(residual).min()) >= 0
            if jacobian_exact and float((self(pts) - wanted).pow(2).mean().sqrt()) <= tol:
                return
            self._shrink_nonlinear(0.7)

    def init_to_gaussian_map(self, mean_s: np.ndarray, cov_s: np.ndarray, mean_t: np.ndarray, cov_t: np.ndarray,
                             points: np.ndarray, seed: int = 0) -> None:
        """Start T at the closed-form Brenier map between the Gaussians (μ_s, Σ_s) and (μ_t, Σ_t),
        x ↦ μ_t + A (x − μ_s) (:func:`gaussian_map_matrix`; ConfigError for a singular Σ_s), its
        hidden units centred on ``points`` (``init_hidden``): the start of Adam's fits."""
        a = gaussian_map_matrix(np.asarray(cov_s), np.asarray(cov_t))
        self.init_hidden(points, seed=seed)
        self.init_to_affine(a, np.asarray(mean_t) - a @ np.asarray(mean_s), points)

    @torch.no_grad()
    def _centred_units(self, points: np.ndarray, seed: int) -> torch.Tensor:
        """Redraw ``W`` (scale 2) and return the biases that centre each unit on a source pixel.

        A unit h with weights w_h gets bias −w_h·x_h for a random pixel x_h, so its
        active region passes through the data instead of one corner of the cube.
        """
        g = torch.Generator().manual_seed(seed)
        pts = torch.as_tensor(points, dtype=self.W.dtype)
        units = self.W.shape[:-1]
        idx = torch.randint(pts.shape[0], units, generator=g)
        self.W.copy_(torch.randn(*units, self.dim, generator=g, dtype=torch.float32) * 2.0)
        return -(self.W * pts[idx]).sum(-1)

    def _shrink_nonlinear(self, factor: float) -> None:
        """Scale the nonlinear part's weights down (used by :meth:`init_to_affine`)."""


class AffineMap(MonotoneGradientMap):
    """T(x) = (VᵀV + εI) x + b: the closed-form Brenier map between Gaussians.

    Fitted in closed form by :meth:`from_gaussians` (``model="affine"``); the same closed form
    starts every network trained by Adam (``solver="adam"``).
    """

    name = "affine"

    @classmethod
    def from_gaussians(cls, mean_s, cov_s, mean_t, cov_t, eps: float = DEFAULT_EPS) -> "AffineMap":
        """T(x) = μ_t + A (x − μ_s) with A from :func:`gaussian_map_matrix`."""
        model = cls(dim=len(mean_s), eps=eps)
        a = gaussian_map_matrix(np.asarray(cov_s), np.asarray(cov_t))
        model.init_to_affine(a, np.asarray(mean_t) - a @ np.asarray(mean_s), np.asarray(mean_s)[None])
        return model


class CMGN(MonotoneGradientMap):
    """Cascaded monotone gradient network (C-MGN).

    z₀ = Wx + b₀;  z_l = Wx + σ(z_{l−1}) + b_l (l = 1 … L−1);
    T(x) = Wᵀσ(z_{L−1}) + (VᵀV + εI)x + b, with one W shared by every layer.
    Since dz_l/dx = diag(p_l) W with p₀ = 1 and p_l = 1 + σ'(z_{l−1}) ⊙ p_{l−1},
    J_T = Wᵀ diag(σ'(z_{L−1}) ⊙ p_{L−1}) W + VᵀV + εI, symmetric PSD for σ' ≥ 0.

    The activation is scaled, σ(z) = α·act(z/α) (``scale`` α, σ' = act'(z/α) ≥ 0).  A unit's
    step along w then has height ∝ α|w| and width ∝ α/|w|: their product is α², so a small α
    lets one unit make the small, sharp steps a colour map needs (α = 1 cannot:
    bench/EXPERIMENTS.md, E40).
    """

    name = "cmgn"

    def __init__(self, dim: int = 3, hidden: int = 16, layers: int = 3,
                 activation: str = "tanh", eps: float = DEFAULT_EPS, scale: float = DEFAULT_SCALE) -> None:
        super().__init__(dim, eps)
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown C-MGN activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        if hidden < 1 or layers < 1:
            raise ConfigError("hidden and layers must be at least 1")
        self.hidden, self.layers, self.activation = hidden, layers, activation
        self.scale = _check_scale(scale)
        self.W = nn.Parameter(torch.randn(hidden, dim, dtype=torch.float32) / math.sqrt(dim))
        self.biases = nn.Parameter(torch.zeros(layers, hidden, dtype=torch.float32))

    @property
    def config(self) -> dict:
        return {**super().config, "hidden": self.hidden, "layers": self.layers, "activation": self.activation,
                "scale": self.scale}

    def _nonlinear(self, x, with_jacobian):
        act, act_and_slope = _scaled_activation(self.activation, self.scale)
        wx = x @ self.W.T
        z = wx + self.biases[0]
        if not with_jacobian:
            for layer in range(1, self.layers):
                z = wx + act(z) + self.biases[layer]
            return act(z) @ self.W, None
        p = torch.ones_like(z)
        for layer in range(1, self.layers):
            value, slope = act_and_slope(z)
            p = 1.0 + slope * p
            z = wx + value + self.biases[layer]
        value, slope = act_and_slope(z)
        return value @ self.W, ((slope * p) @ _outer_products(self.W)).reshape(-1, self.dim, self.dim)

    @torch.no_grad()
    def init_hidden(self, points: np.ndarray, seed: int = 0) -> None:
        """Centre each hidden unit on a source pixel (see :meth:`MonotoneGradientMap._centred_units`)."""
        self.biases.zero_()
        self.biases[0] = self._centred_units(points, seed)

    def _shrink_nonlinear(self, factor):
        self.W.mul_(factor)
        self.biases.mul_(factor)


class MMGN(MonotoneGradientMap):
    """Modular monotone gradient network (M-MGN).

    T(x) = Σ_k s(z_k) W_kᵀ σ(z_k) + (VᵀV + εI) x + b,  z_k = W_k x + b_k,
    with s(z) = Σ_h S(z_h) convex and non-negative and σ = ∇s (S = log cosh,
    σ = tanh; or S = softplus, σ = sigmoid).  Module k is ∇(½ s(z_k)²), and
    J_T = Σ_k W_kᵀ [s(z_k) diag(σ'(z_k)) + σ(z_k) σ(z_k)ᵀ] W_k + VᵀV + εI.
    s is evaluated per sample: never summed across the batch.

    The potential is scaled, S(z) = α²·S₁(z/α) (``scale`` α; then σ = α·σ₁(z/α), σ' = σ₁'(z/α)),
    as the C-MGN's activation is (see :class:`CMGN`).
    """

    name = "mmgn"

    def __init__(self, dim: int = 3, hidden: int = 8, modules: int = 3,
                 activation: str = "logcosh", eps: float = DEFAULT_EPS, scale: float = MMGN_SCALE) -> None:
        super().__init__(dim, eps)
        if activation not in _POTENTIALS:
            raise ConfigError(f"unknown M-MGN potential {activation!r}; choose from {sorted(_POTENTIALS)}")
        if hidden < 1 or modules < 1:
            raise ConfigError("hidden and modules must be at least 1")
        self.hidden, self.modules_count, self.activation = hidden, modules, activation
        self.scale = _check_scale(scale)
        self.W = nn.Parameter(torch.randn(modules, hidden, dim, dtype=torch.float32) / math.sqrt(dim))
        self.biases = nn.Parameter(torch.zeros(modules, hidden, dtype=torch.float32))

    @property
    def config(self) -> dict:
        return {**super().config, "hidden": self.hidden, "modules": self.modules_count,
                "activation": self.activation, "scale": self.scale}

    def _nonlinear(self, x, with_jacobian):
        pot, act, act_and_slope = _scaled_potential(self.activation, self.scale)
        n, k, h = x.shape[0], self.modules_count, self.hidden
        z = (x @ self.W.reshape(k * h, self.dim).T).reshape(n, k, h) + self.biases  # (N, K, H)
        s = pot(z).sum(-1)  # (N, K): per sample, per module
        value, slope = act_and_slope(z) if with_jacobian else (act(z), None)
        # W_kᵀ σ(z_k) of every module: one product with the block-diagonal diag(W_1, …, W_K): (N, K, d)
        u = (value.reshape(n, k * h) @ torch.block_diag(*self.W)).reshape(n, k, self.dim)
        out = (s.unsqueeze(-1) * u).sum(1)
        if not with_jacobian:
            return out, None
        curvature = (s.unsqueeze(-1) * slope).reshape(n, k * h)  # s(z_k) σ'(z_kh)
        jac = (curvature @ _outer_products(self.W.reshape(k * h, self.dim))).reshape(n, self.dim, self.dim)
        return out, jac + u.transpose(1, 2) @ u

    @torch.no_grad()
    def init_hidden(self, points: np.ndarray, seed: int = 0) -> None:
        """Centre each hidden unit on a source pixel (see :meth:`MonotoneGradientMap._centred_units`)."""
        self.biases.copy_(self._centred_units(points, seed))

    def _shrink_nonlinear(self, factor):
        self.W.mul_(factor)
        self.biases.mul_(factor)


class RidgeMGN(MonotoneGradientMap):
    """Monotone gradient network of a sum of convex ridge functions.

    T(x) = Σ_h a_h w_h σ(w_hᵀx + b_h) + (VᵀV + εI) x + b,  a_h = softplus(ρ_h) ≥ 0, σ = sigmoid,
    the gradient of φ(x) = Σ_h a_h S(w_hᵀx + b_h) + ½ xᵀ(VᵀV + εI)x + bᵀx with S = softplus
    convex (the "sums of convex ridge functions" class of Chaudhari, Pranav & Moura,
    *Gradient Networks*, 2024).  J_T = Σ_h a_h σ'(z_h) w_h w_hᵀ + VᵀV + εI.
    Unlike the C-MGN (a_h tied to |w_h|²), each unit's step height a_h|w_h| and
    its sharpness |w_h| are free: a sum of sharp, small steps along many
    directions can follow the fine structure that per-channel histogram matching
    follows along the three axes.
    """

    name = "ridge"
    #: |w_h| at the start: each unit is a smooth step about 4/15 ≈ 0.27 wide along w_h.
    START_SHARPNESS = 15.0
    #: ρ_h at the start: a_h = softplus(−8) ≈ 3·10⁻⁴, so T starts (almost) affine.
    START_RHO = -8.0

    def __init__(self, dim: int = 3, hidden: int = 64, eps: float = DEFAULT_EPS) -> None:
        super().__init__(dim, eps)
        if hidden < 1:
            raise ConfigError("hidden must be at least 1")
        self.hidden = hidden
        self.W = nn.Parameter(torch.randn(hidden, dim, dtype=torch.float32) / math.sqrt(dim))
        self.biases = nn.Parameter(torch.zeros(hidden, dtype=torch.float32))
        self.rho = nn.Parameter(torch.full((hidden,), self.START_RHO, dtype=torch.float32))

    @property
    def config(self) -> dict:
        return {**super().config, "hidden": self.hidden}

    def _nonlinear(self, x, with_jacobian):
        amplitude = torch.nn.functional.softplus(self.rho)
        if not with_jacobian and not torch.is_grad_enabled():  # inference: in place, half the time
            z = torch.addmm(self.biases, x, self.W.T)
            return z.sigmoid_().mul_(amplitude) @ self.W, None
        z = x @ self.W.T + self.biases  # (N, H)
        step = torch.sigmoid(z)
        out = (step * amplitude) @ self.W
        if not with_jacobian:
            return out, None
        d = step * (1.0 - step) * amplitude
        return out, (d @ _outer_products(self.W)).reshape(-1, self.dim, self.dim)

    @torch.no_grad()
    def init_hidden(self, points: np.ndarray, seed: int = 0) -> None:
        """Random unit directions × START_SHARPNESS, each step centred on a random source pixel."""
        g = torch.Generator().manual_seed(seed)
        pts = torch.as_tensor(points, dtype=self.W.dtype)
        directions = torch.randn(self.hidden, self.dim, generator=g, dtype=torch.float32)
        self.W.copy_(directions / directions.norm(dim=1, keepdim=True) * self.START_SHARPNESS)
        centres = pts[torch.randint(pts.shape[0], (self.hidden,), generator=g)]
        self.biases.copy_(-(self.W * centres).sum(-1))
        self.rho.fill_(self.START_RHO)

    def _shrink_nonlinear(self, factor):
        self.rho.add_(math.log(factor))

    @classmethod
    @torch.no_grad()
    def from_parameters(cls, parameters: RidgeParameters) -> "RidgeMGN":
        """The map of ``parameters`` (its arrays copied into float32 parameters), in eval mode."""
        model = cls(dim=3, hidden=parameters.hidden, eps=parameters.eps)
        for key, value in model.state_dict().items():
            value.copy_(torch.as_tensor(np.asarray(parameters.state[key], np.float64)))
        return model.eval()


#: Registry shared by the API, the CLI and the checkpoint loader.
MODELS: dict[str, type[MonotoneGradientMap]] = {m.name: m for m in (AffineMap, CMGN, MMGN, RidgeMGN)}


def build_model(name: str, config: dict | None = None) -> MonotoneGradientMap:
    """Instantiate the model registered as ``name`` with keyword ``config``."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    try:
        return MODELS[name](**(config or {}))
    except TypeError as exc:
        raise ConfigError(f"invalid configuration for model {name!r}: {exc}") from exc
