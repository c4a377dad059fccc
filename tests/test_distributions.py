"""Tests for colorot.distributions: fitting, exact densities, moments, serialisation.

Reference densities are computed here, by hand, in numpy float64:
log N(x | μ, Σ) = −½ [(x − μ)ᵀ Σ⁻¹ (x − μ) + log det Σ + d log 2π].
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from colorot.distributions import (
    DEFAULT_RIDGE,
    Gaussian,
    GaussianMixture,
    fit_target,
    gaussian_moments,
    target_from_dict,
)
from colorot.errors import ConfigError

CLUSTER_MEANS = np.array([[0.2, 0.2, 0.2], [0.8, 0.3, 0.5], [0.4, 0.9, 0.1]])


def log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x | mean, cov) for each row of x, straight from the formula."""
    d = x.shape[1]
    diff = x - mean
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (maha + logdet + d * math.log(2 * math.pi))


def log_mixture(x: np.ndarray, weights, means, covs) -> np.ndarray:
    """log Σ_k w_k N(x | μ_k, Σ_k) with a hand-written log-sum-exp (max shifted out)."""
    terms = np.stack([math.log(w) + log_normal(x, m, c) for w, m, c in zip(weights, means, covs)], axis=1)
    top = terms.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True)))[:, 0]


def random_spd(rng: np.random.Generator, lo: float = 1e-3, hi: float = 0.05) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return (q * rng.uniform(lo, hi, size=3)) @ q.T


def three_clusters(rng: np.random.Generator, per_cluster: int = 100) -> np.ndarray:
    return np.concatenate([rng.normal(m, 0.03, size=(per_cluster, 3)) for m in CLUSTER_MEANS])


@pytest.fixture
def mixture(rng) -> GaussianMixture:
    return GaussianMixture(
        weights=np.array([0.5, 0.3, 0.2]),
        means=CLUSTER_MEANS,
        covariances=np.stack([random_spd(rng) for _ in range(3)]),
    )


# ------------------------------------------------------------------ Gaussian
def test_gaussian_fit_is_numpy_mle_plus_ridge(rng) -> None:
    pixels = rng.uniform(0, 1, size=(500, 3)) * [1.0, 0.5, 0.2]
    g = Gaussian.fit(pixels, ridge=1e-3)
    np.testing.assert_allclose(g.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(g.covariance, np.cov(pixels.T, bias=True) + 1e-3 * np.eye(3), rtol=1e-10, atol=1e-15)
    assert g.n_components == 1 and g.kind == "gaussian"
    mean, cov = gaussian_moments(pixels)
    np.testing.assert_allclose(cov, np.cov(pixels.T, bias=True), rtol=1e-10, atol=1e-15)
    # fit_target dispatches to the same fit, with the default ridge.
    g2 = fit_target(pixels, "gaussian")
    np.testing.assert_allclose(g2.covariance, np.cov(pixels.T, bias=True) + DEFAULT_RIDGE * np.eye(3), rtol=1e-10)


@pytest.mark.parametrize("kind, k", [("gaussian", 1), ("gmm", 1), ("gmm", "auto")])
def test_single_colour_target_gives_a_positive_definite_covariance(kind, k) -> None:
    flat = np.full((400, 3), [0.3, 0.6, 0.1])
    target = fit_target(flat, kind, k)
    cov = target.covariance
    assert np.isfinite(cov).all() and np.isfinite(target.mean).all()
    assert np.linalg.eigvalsh(cov).min() > 0.5 * DEFAULT_RIDGE
    np.testing.assert_allclose(target.mean, [0.3, 0.6, 0.1], atol=1e-12)
    lp = target.log_prob(torch.tensor([[0.3, 0.6, 0.1]], dtype=torch.float64))
    assert torch.isfinite(lp).all()


def test_more_components_than_distinct_colours_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="distinct colours"):
        fit_target(np.full((400, 3), 0.5), "gmm", 2)


def test_gaussian_log_prob_matches_closed_form(rng) -> None:
    mean, cov = rng.uniform(0, 1, 3), random_spd(rng)
    g = Gaussian(mean, cov)
    x = np.concatenate([rng.uniform(-0.5, 1.5, size=(50, 3)), [[5.0, -5.0, 5.0]]])
    got = g.log_prob(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, log_normal(x, mean, cov), rtol=1e-10)


def test_gmm_log_prob_matches_a_hand_computed_mixture(rng, mixture) -> None:
    x = np.concatenate([rng.uniform(-0.2, 1.2, size=(60, 3)), [[20.0, 20.0, -20.0]]])  # far: every N underflows
    got = mixture.log_prob(torch.as_tensor(x)).numpy()
    want = log_mixture(x, mixture.weights, mixture.means, mixture.covariances)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # float32 is used in training: same values to float32 precision.
    got32 = mixture.log_prob(torch.as_tensor(x[:60], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, want[:60], rtol=1e-4, atol=1e-4)


def test_fitted_gmm_log_prob_matches_its_own_parameters(rng) -> None:
    gmm = GaussianMixture.fit(three_clusters(rng), n_components=3, random_state=0)
    x = rng.uniform(0, 1, size=(40, 3))
    np.testing.assert_allclose(
        gmm.log_prob(torch.as_tensor(x)).numpy(),
        log_mixture(x, gmm.weights, gmm.means, gmm.covariances),
        rtol=1e-10,
    )



def test_numpy_log_density_and_gradient_equal_torch_for_full_covariances(rng, mixture) -> None:
    """The KL solver and eval score a map in numpy (``log_prob_and_gradient``), training in torch
    (``log_prob``): both must be one density.  The numpy side writes Σ_k⁻¹ = L_k L_kᵀ and measures
    ‖(y − μ_k)ᵀ L_k‖²; with Lᵀ in place of L (a transposed root) the Mahalanobis term is wrong
    for any covariance that is not diagonal, and only diagonal and isotropic ones were tested.
    Here every component has a random rotated (full) covariance; the gradient is checked against
    autograd's of torch's log-density.  float64 throughout: the two paths differ only by rounding
    (~1e-13 relative on these values), so 1e-10 leaves room and still fails any wrong term."""
    assert (np.abs(mixture.covariances - np.diagonal(mixture.covariances, axis1=1, axis2=2)[:, :, None]
                   * np.eye(3)) > 1e-3).any()  # off-diagonal terms that matter
    y = np.concatenate([rng.uniform(-0.2, 1.2, size=(60, 3)), mixture.means + 0.01])
    log_q, gradient = mixture.log_prob_and_gradient(y)
    x = torch.as_tensor(y).requires_grad_(True)
    want = mixture.log_prob(x)
    (want_gradient,) = torch.autograd.grad(want.sum(), x)
    np.testing.assert_allclose(log_q, want.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(log_q, log_mixture(y, mixture.weights, mixture.means, mixture.covariances), rtol=1e-10)
    np.testing.assert_allclose(gradient, want_gradient.numpy(), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------- fitting
def test_auto_components_finds_clusters(rng) -> None:
    gmm = GaussianMixture.fit(three_clusters(rng), "auto", random_state=0)
    assert gmm.n_components > 1
    # Each true cluster centre has a fitted component near it.
    for m in CLUSTER_MEANS:
        assert np.linalg.norm(gmm.means - m, axis=1).min() < 0.05


def test_auto_components_is_one_for_a_single_gaussian(rng) -> None:
    cov = np.array([[0.01, 0.004, 0.0], [0.004, 0.02, 0.0], [0.0, 0.0, 0.005]])
    pixels = rng.multivariate_normal([0.5, 0.5, 0.5], cov, size=300)
    assert GaussianMixture.fit(pixels, "auto", random_state=0).n_components == 1


def test_component_count_validation(rng) -> None:
    pixels = rng.uniform(0, 1, size=(5, 3))
    with pytest.raises(ConfigError, match="at least 6 pixels"):
        GaussianMixture.fit(pixels, n_components=6)
    with pytest.raises(ConfigError):
        GaussianMixture.fit(pixels, n_components=0)
    with pytest.raises(ConfigError):
        fit_target(pixels, "gmm", n_components=10)
    with pytest.raises(ConfigError, match="unknown target kind"):
        fit_target(pixels, "dirichlet")


def test_non_numeric_component_count_is_a_config_error(rng) -> None:
    with pytest.raises(ConfigError):
        GaussianMixture.fit(rng.uniform(0, 1, size=(50, 3)), n_components="four")


@pytest.mark.parametrize(
    "pixels",
    [np.zeros(30), np.zeros((10, 3, 1)), np.zeros((1, 3)), np.array([[0.1, 0.2, np.nan], [0.0, 0.0, 0.0]])],
    ids=["flat", "three-dims", "one-pixel", "nan"],
)
def test_bad_pixels_are_refused(pixels) -> None:
    with pytest.raises(ConfigError):
        Gaussian.fit(pixels)
    with pytest.raises(ConfigError):
        GaussianMixture.fit(pixels, n_components=1)


def test_fit_is_deterministic_for_a_fixed_random_state(rng) -> None:
    pixels = three_clusters(rng, per_cluster=80)
    a = GaussianMixture.fit(pixels, n_components=4, random_state=7, max_samples=200)
    b = GaussianMixture.fit(pixels, n_components=4, random_state=7, max_samples=200)
    for attr in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))


def test_em_subsample_is_seeded(rng) -> None:
    """With more pixels than max_samples, different seeds see different subsamples."""
    pixels = rng.uniform(0, 1, size=(400, 3))
    a = GaussianMixture.fit(pixels, n_components=1, random_state=1, max_samples=50)
    b = GaussianMixture.fit(pixels, n_components=1, random_state=2, max_samples=50)
    assert not np.array_equal(a.means, b.means)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "weights, covariance",
    [
        ([0.5, 0.6], np.eye(3)),  # weights do not sum to 1
        ([1.5, -0.5], np.eye(3)),  # negative weight
        ([0.5, 0.5], np.diag([1.0, 1.0, -1.0])),  # not positive definite
        ([0.5, 0.5], np.full((3, 3), np.nan)),  # NaN
    ],
)
def test_invalid_mixture_parameters(weights, covariance) -> None:
    with pytest.raises(ConfigError):
        GaussianMixture(np.array(weights), np.zeros((2, 3)), np.stack([covariance, covariance]))


@pytest.mark.parametrize(
    "weights, means, covariances",
    [
        (np.ones(1), np.zeros((1, 3)), np.eye(2)[None]),  # covariance of another dimension
        (np.ones(2) / 2, np.zeros((1, 3)), np.eye(3)[None]),  # more weights than means
        (np.ones(1), np.zeros(3), np.eye(3)[None]),  # means not (K, d)
        (np.ones(0), np.zeros((0, 3)), np.zeros((0, 3, 3))),  # no component
    ],
)
def test_inconsistent_shapes(weights, means, covariances) -> None:
    with pytest.raises(ConfigError):
        GaussianMixture(weights, means, covariances)


# ------------------------------------------------------------ moments, samples
def test_mixture_mean_and_covariance_match_a_large_sample(mixture) -> None:
    n = 200_000
    x = mixture.sample(n, random_state=3)
    assert x.shape == (n, 3)
    # The sample is seeded (no flakiness); the bounds are 5 standard errors:
    # SE(mean_i) = sqrt(Σ_ii / n), SE(cov_ij) ≈ sqrt(Var[(x_i − μ_i)(x_j − μ_j)] / n),
    # the variance of the product estimated from the sample itself.
    se_mean = np.sqrt(np.diag(mixture.covariance) / n)
    assert (np.abs(x.mean(0) - mixture.mean) <= 5 * se_mean).all()
    c = x - mixture.mean
    products = c[:, :, None] * c[:, None, :]
    se_cov = products.std(axis=0) / math.sqrt(n)
    assert (np.abs(products.mean(0) - mixture.covariance) <= 5 * se_cov).all()
    # The mixture's moments are not those of any single component: the test can fail.
    assert np.abs(mixture.covariance - mixture.covariances[0]).max() > 10 * se_cov.max()


def test_mixture_moments_formula_on_a_known_case() -> None:
    gmm = GaussianMixture(np.array([0.5, 0.5]), np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
                          np.stack([np.eye(3) * 0.01] * 2))
    np.testing.assert_allclose(gmm.mean, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(gmm.covariance, np.diag([0.26, 0.01, 0.01]), atol=1e-15)


def test_sample_is_seeded(mixture) -> None:
    np.testing.assert_array_equal(mixture.sample(100, random_state=1), mixture.sample(100, random_state=1))
    assert not np.array_equal(mixture.sample(100, random_state=1), mixture.sample(100, random_state=2))


# ------------------------------------------------------------- serialisation
@pytest.mark.parametrize("which", ["gaussian", "gmm"])
def test_to_dict_round_trip_keeps_log_prob_identical(rng, mixture, which) -> None:
    original = Gaussian(rng.uniform(0, 1, 3), random_spd(rng)) if which == "gaussian" else mixture
    d = original.to_dict()
    d = json.loads(json.dumps(d))  # plain values only: survives JSON unchanged
    rebuilt = target_from_dict(d)
    assert type(rebuilt) is type(original) and rebuilt.kind == which
    x = torch.as_tensor(rng.uniform(-0.5, 1.5, size=(100, 3)))
    assert torch.equal(rebuilt.log_prob(x), original.log_prob(x))


@pytest.mark.parametrize(
    "d",
    [{}, {"kind": "poisson"}, {"kind": "gaussian", "mean": [0, 0, 0]},
     {"kind": "gmm", "weights": [0.5, 0.5], "means": [[0, 0, 0]], "covariances": [np.eye(3).tolist()]},
     {"kind": "gaussian", "mean": "abc", "covariance": np.eye(3).tolist()}],
)
def test_malformed_dicts_are_config_errors(d) -> None:
    with pytest.raises(ConfigError):
        target_from_dict(d)


def test_log_prob_normalises_in_any_dimension() -> None:
    """A 2-D standard normal at its mean has density 1/(2π): the constant must use d, not 3."""
    g = Gaussian(np.zeros(2), np.eye(2))
    got = float(g.log_prob(torch.zeros(1, 2, dtype=torch.float64))[0])
    assert abs(got - (-np.log(2 * np.pi))) < 1e-12


def test_a_plane_of_colours_tilted_across_the_cube_is_singular_without_a_ridge() -> None:
    """Its covariance's least eigenvalue is 10⁻¹⁷, not 0: Cholesky passed and, with --ridge 0, a map
    10¹⁰ nats from its target was saved; an axis-aligned plane gave the error that says to add a ridge."""
    rng = np.random.default_rng(1)
    tilted = rng.integers(0, 256, (1024, 3)).astype(np.float64) / 255
    tilted[:, 2] = 1 - tilted[:, 0]
    with pytest.raises(ConfigError, match="lie flat"):
        Gaussian.fit(tilted, ridge=0.0)
    assert np.linalg.eigvalsh(Gaussian.fit(tilted, ridge=1e-4).covariances)[0, 0] >= 1e-4
    saved = Gaussian(*gaussian_moments(tilted))  # as a checkpoint an earlier colorot wrote holds it
    assert target_from_dict(saved.to_dict()).covariance.shape == (3, 3)  # a target read is what it is
