"""Bayesian linear unmixing (BLU): Dobigeon, Moussaoui, Coulon, Tourneret & Hero,
"Joint Bayesian endmember extraction and linear unmixing for hyperspectral imagery",
IEEE Trans. Signal Processing 57(11), 4355-4368 (2009).

Model (``n`` spectra ``y_p`` of ``L`` channels, ``R`` endmembers)::

    y_p = M a_p + e_p,          e_p ~ N(0, sigma^2 I_L)
    a_p ~ uniform on the simplex {a >= 0, sum a = 1}
    m_r = ybar + V t_r,         t_r ~ N(e_r, s^2 I_{R-1}) truncated to {ybar + V t >= 0}
    sigma^2 ~ IG(nu/2, gamma/2), nu = 1, p(gamma) ∝ 1/gamma   (Jeffreys hyperprior)

``V (L, R-1)`` holds the leading principal directions of the data and ``ybar`` the mean
spectrum, so the endmembers live in the (R-1)-dimensional affine subspace that carries the
signal and are non-negative in every channel; ``e_r`` are the projections of the endmembers
found by an extraction algorithm (the paper uses N-FINDR; we use the successive projection
algorithm, which finds the same pure pixels on near-separable data and is deterministic).

Gibbs sampler (every step draws from an exact full conditional):

* abundances: for each pixel, pick a reference endmember ``r`` at random each sweep and, for
  every ``j != r``, draw ``a_j`` along the simplex edge ``e_j - e_r`` (``a_j + a_r`` fixed):
  a Gaussian truncated to ``[0, a_j + a_r]``. This is the paper's component-wise sampling of
  the truncated multivariate Gaussian after removing ``a_r = 1 - sum_{j != r} a_j``,
  vectorised over pixels.
* endmembers: each coordinate of ``t_r`` from its Gaussian conditional truncated to the
  interval that keeps ``ybar + V t_r >= 0`` in all channels.
* ``sigma^2`` from its inverse-gamma conditional and ``gamma`` from its gamma conditional.

Because ``sum a = 1``, ``ybar`` cancels and the signal part of the likelihood depends only on
the projections ``z_p = V^T (y_p - ybar)``; the residual orthogonal to ``V`` is constant in
``(a, t)`` and enters only the ``sigma^2`` update. A sweep therefore costs ``O(n R^2)``, so
thousands of sweeps on a 64x64x512 cube take seconds.

Posterior means and standard deviations of abundances, endmembers and noise variance are
averaged over the samples after ``n_burn`` burn-in sweeps.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy import special
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data
from tqdm.auto import tqdm

from latentatlas.spectral._base import check_n_components

__all__ = ["BayesianLinearUnmixing", "truncated_normal"]

logger = logging.getLogger(__name__)


def _eigh(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, v = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(g)))
    return w.numpy(), v.numpy()


def truncated_normal(
    mean: np.ndarray, std: np.ndarray | float, low: np.ndarray | float,
    high: np.ndarray | float, rng: np.random.Generator,
) -> np.ndarray:
    """Draws from ``N(mean, std^2)`` truncated to ``[low, high]``, elementwise and vectorised.

    Inverse-CDF sampling in log space: intervals in the upper tail are mirrored to the
    lower tail, where ``log Phi`` and its inverse (``scipy.special.ndtri_exp``) stay
    accurate, so intervals many standard deviations away from the mean are sampled
    correctly instead of collapsing onto a bound.
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.broadcast_to(np.asarray(std, dtype=np.float64), mean.shape)
    a = (np.broadcast_to(low, mean.shape) - mean) / std
    b = (np.broadcast_to(high, mean.shape) - mean) / std
    flip = a > 0  # mirror upper-tail intervals: [a, b] -> [-b, -a]
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    log_lo = special.log_ndtr(lo)
    log_hi = special.log_ndtr(hi)
    u = rng.random(mean.shape)
    # log(Phi(lo) + u (Phi(hi) - Phi(lo)))
    #   = log_hi + log(1 - (1 - u)(1 - exp(log_lo - log_hi))), stable in both tails
    ratio = np.exp(np.minimum(log_lo - log_hi, 0.0))
    log_p = log_hi + np.log1p(-(1.0 - u) * (1.0 - ratio))
    z = special.ndtri_exp(np.minimum(log_p, 0.0))
    z = np.clip(z, lo, hi)
    z = np.where(flip, -z, z)
    return np.asarray(mean + std * z)


class BayesianLinearUnmixing(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bayesian linear unmixing by Gibbs sampling (Dobigeon et al. 2009); see module docs.

    Parameters
    ----------
    n_components : number of endmembers ``R`` (``R = 1`` degenerates to the mean spectrum).
    n_samples : sweeps kept after burn-in for the posterior averages.
    n_burn : burn-in sweeps discarded.
    prior_scale : endmember prior standard deviation ``s`` in units of the square root of the
        largest principal variance; large values (default 10) make the prior weak, as in the
        paper.
    random_state : seed of the sampler.
    progress : show a tqdm progress bar over the sweeps.

    Attributes
    ----------
    components_ : (R, channels) posterior mean endmembers, non-negative.
    components_std_ : (R, channels) posterior standard deviation of the endmembers.
    initial_components_ : (R, channels) the sampler's start, SPA's purest pixels (what BLU
        improves on when no pixel is pure).
    abundances_ : (n_spectra, R) posterior mean abundances of the training spectra, on the
        simplex.
    abundances_std_ : (n_spectra, R) their posterior standard deviation.
    noise_variance_, noise_variance_std_ : posterior mean and std of ``sigma^2``.
    noise_variance_trace_ : (n_burn + n_samples,) the sampled ``sigma^2`` (a convergence
        diagnostic).
    reconstruction_err_ : Frobenius norm ``||X - A M||`` of the posterior means.
    """

    def __init__(
        self,
        n_components: int = 3,
        n_samples: int = 300,
        n_burn: int = 200,
        prior_scale: float = 10.0,
        random_state: int | np.random.RandomState | None = None,
        progress: bool = False,
    ) -> None:
        self.n_components = n_components
        self.n_samples = n_samples
        self.n_burn = n_burn
        self.prior_scale = prior_scale
        self.random_state = random_state
        self.progress = progress

    def _rng(self) -> np.random.Generator:
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            return np.random.default_rng(int(rs.randint(0, 2**31 - 1)))
        return np.random.default_rng(rs)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def _check(self, X: np.ndarray, reset: bool) -> np.ndarray:
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        check_non_negative(X, "BayesianLinearUnmixing (input X)")
        return X

    def fit(self, X: np.ndarray, y: object = None) -> BayesianLinearUnmixing:
        """Run the sampler on ``X (n_spectra, channels)``; returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X: np.ndarray, y: object = None, **params: object) -> np.ndarray:
        """Fit and return the posterior mean abundances ``(n_spectra, R)``."""
        return self._fit(X).astype(np.asarray(X).dtype if np.asarray(X).dtype == np.float32
                                   else np.float64)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X, reset=True)
        n, L = X.shape
        R = check_n_components(self.n_components, n, L, "BayesianLinearUnmixing")
        if self.n_samples < 1 or self.n_burn < 0:
            raise ValueError(
                f"n_samples must be >= 1 and n_burn >= 0, got {self.n_samples}, {self.n_burn}"
            )
        if self.prior_scale <= 0:
            raise ValueError(f"prior_scale must be > 0, got {self.prior_scale}")
        Xd = X.astype(np.float64, copy=False)
        ybar = Xd.mean(0)
        n_neg = int((ybar < 0).sum())
        if n_neg:
            raise ValueError(
                f"BayesianLinearUnmixing models non-negative endmembers, but the mean spectrum "
                f"is negative in {n_neg} channels; offset the data to be non-negative "
                "(unmix(..., offset='min')) or use PCA"
            )
        rng = self._rng()
        xc = Xd - ybar
        # principal directions of the centred data, V (L, R-1), from the eigenvectors of the
        # smaller Gram matrix (an SVD of a 4096 x 2048 matrix costs far more than needed);
        # torch's eigh, because numpy's threaded LAPACK stalls for seconds on a busy machine
        if n > L:
            eig, vecs = _eigh(xc.T @ xc)
            order = np.argsort(eig)[::-1]
            eig, V = eig[order], vecs[:, order[: R - 1]]
        else:
            eig, vecs = _eigh(xc @ xc.T)
            order = np.argsort(eig)[::-1]
            eig = eig[order]
            u = vecs[:, order[: R - 1]]
            V = xc.T @ u / np.sqrt(np.maximum(eig[: R - 1], 1e-300))[None, :]
        eig = np.maximum(eig, 0.0)
        V = np.ascontiguousarray(V)
        z = xc @ V  # (n, R-1) projections
        s2_prior = (self.prior_scale**2) * max(float(eig[0]) / max(n - 1, 1), 1e-30)
        resid_perp = max(float((xc**2).sum() - (z**2).sum()), 0.0)

        t = self._init_endmembers(z, ybar, V)  # (R, R-1), feasible
        self.initial_components_ = ybar[None, :] + t @ V.T
        e_prior = t.copy()
        a = self._init_abundances(z, t)
        sigma2 = max(float(((z - a @ t) ** 2).sum() + resid_perp) / (n * L), 1e-30)
        gamma = sigma2

        n_total = self.n_burn + self.n_samples
        trace = np.empty(n_total)
        a_sum = np.zeros((n, R))
        a_sq = np.zeros((n, R))
        t_samples = np.empty((self.n_samples, R, R - 1))
        s2_samples = np.empty(self.n_samples)
        sweeps = tqdm(range(n_total), desc="BLU Gibbs sweeps", disable=not self.progress)
        for sweep in sweeps:
            a = self._sample_abundances(z, a, t, sigma2, rng)
            t = self._sample_endmembers(z, a, t, e_prior, s2_prior, sigma2, ybar, V, rng)
            rss = float(((z - a @ t) ** 2).sum()) + resid_perp
            # sigma^2 | rest ~ IG((n L + nu)/2, (rss + gamma)/2)
            # gamma | sigma^2 ~ Gamma(shape nu/2, rate 1/(2 sigma^2)), nu = 1
            sigma2 = (rss + gamma) / 2.0 / rng.gamma((n * L + 1.0) / 2.0)
            gamma = rng.gamma(0.5, 2.0 * sigma2)
            trace[sweep] = sigma2
            if sweep >= self.n_burn:
                i = sweep - self.n_burn
                a_sum += a
                a_sq += a * a
                t_samples[i] = t
                s2_samples[i] = sigma2
        m = self.n_samples
        a_mean = a_sum / m
        self.abundances_ = a_mean
        self.abundances_std_ = np.sqrt(np.maximum(a_sq / m - a_mean**2, 0.0))
        t_mean = t_samples.mean(0)
        self.components_ = ybar[None, :] + t_mean @ V.T
        # std of m_r = ybar + V t_r per channel: sqrt(diag(V Cov(t_r) V^T))
        std = np.empty((R, L))
        for r in range(R):
            tc = t_samples[:, r, :] - t_mean[r]
            cov = tc.T @ tc / max(m - 1, 1)
            std[r] = np.sqrt(np.maximum(np.einsum("lj,jk,lk->l", V, cov, V), 0.0))
        self.components_std_ = std
        self.noise_variance_ = float(s2_samples.mean())
        self.noise_variance_std_ = float(s2_samples.std())
        self.noise_variance_trace_ = trace
        self.reconstruction_err_ = float(np.linalg.norm(Xd - a_mean @ self.components_))
        self.n_components_ = R
        self._V = V
        self._ybar = ybar
        self._n_features_out = R
        return a_mean

    @staticmethod
    def _init_endmembers(z: np.ndarray, ybar: np.ndarray, V: np.ndarray) -> np.ndarray:
        """SPA on ``[1, z]`` (pure pixels), shrunk towards the centre until non-negative."""
        R = V.shape[1] + 1
        aug = np.concatenate([np.ones((z.shape[0], 1)), z], axis=1)
        r = aug.copy()
        picked: list[int] = []
        for _ in range(R):
            norms = (r * r).sum(1)
            norms[picked] = -1.0
            i = int(norms.argmax())
            picked.append(i)
            u = r[i] / max(np.linalg.norm(r[i]), 1e-300)
            r -= np.outer(r @ u, u)
        t = z[picked].copy()
        # noisy pure pixels may leave the non-negative set: pull each in along the ray to 0
        for j in range(R):
            mj = V @ t[j]
            neg = mj < 0
            if neg.any():
                frac = float(np.min(ybar[neg] / -mj[neg]))
                t[j] *= 0.999 * min(frac, 1.0)
        return t

    @staticmethod
    def _init_abundances(z: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Barycentric coordinates in the initial simplex, clipped back onto the simplex."""
        R = t.shape[0]
        T = np.concatenate([t.T, np.ones((1, R))], axis=0)  # (R, R)
        rhs = np.concatenate([z.T, np.ones((1, z.shape[0]))], axis=0)
        a = np.linalg.lstsq(T, rhs, rcond=None)[0].T
        a = np.clip(a, 1e-6, None)
        return np.asarray(a / a.sum(1, keepdims=True))

    @staticmethod
    def _sample_abundances(z: np.ndarray, a: np.ndarray, t: np.ndarray, sigma2: float,
                           rng: np.random.Generator) -> np.ndarray:
        n, R = a.shape
        a = a.copy()
        resid = z - a @ t  # (n, R-1), kept current as abundances move
        # the reference endmember of each pixel this sweep
        ref = np.asarray(rng.integers(R, size=n))
        for j in range(R):
            active = ref != j
            r_idx = ref[active]
            d = t[j][None, :] - t[r_idx]  # (m, R-1): moving a_j up by x moves z by x d
            dd = np.maximum((d * d).sum(1), 1e-300)
            aj = a[active, j]
            total = aj + a[active, r_idx]
            # residual with this pair's contribution along d removed: resid + aj d
            rr = resid[active] + aj[:, None] * d
            mu = (rr * d).sum(1) / dd
            new = truncated_normal(mu, np.sqrt(sigma2 / dd), 0.0, total, rng)
            delta = new - aj
            a[active, j] = new
            a[active, r_idx] = total - new
            resid[active] -= delta[:, None] * d
        return a

    @staticmethod
    def _sample_endmembers(z: np.ndarray, a: np.ndarray, t: np.ndarray, e_prior: np.ndarray,
                           s2_prior: float, sigma2: float, ybar: np.ndarray, V: np.ndarray,
                           rng: np.random.Generator) -> np.ndarray:
        R, K = t.shape
        t = t.copy()
        ata = a.T @ a  # (R, R)
        zta = z.T @ a  # (K, R)
        for r in range(R):
            # sum_p a_pr (z_p - sum_{i != r} a_pi t_i)
            lin = zta[:, r] - (t.T @ ata[:, r]) + t[r] * ata[r, r]
            prec = ata[r, r] / sigma2 + 1.0 / s2_prior
            mean = (lin / sigma2 + e_prior[r] / s2_prior) / prec
            sd = np.sqrt(1.0 / prec)
            # isotropic conditional: coordinates are independent except through the
            # positivity constraint, which bounds each one given the others
            for j in range(K):
                g = ybar + V @ t[r] - V[:, j] * t[r, j]  # spectrum without coordinate j
                vj = V[:, j]
                pos, neg = vj > 1e-12, vj < -1e-12
                low = float(np.max(-g[pos] / vj[pos])) if pos.any() else -np.inf
                high = float(np.min(-g[neg] / vj[neg])) if neg.any() else np.inf
                if low > high:  # numerically empty interval: stay (keeps feasibility)
                    continue
                t[r, j] = float(truncated_normal(np.array(mean[j]), sd, low, high, rng))
        return t

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Posterior mean abundances ``(n, R)`` of new spectra with the endmembers fixed.

        Runs the abundance part of the sampler with endmembers and noise variance at their
        posterior means.
        """
        check_is_fitted(self)
        X = self._check(X, reset=False)
        dtype = X.dtype
        X = X.astype(np.float64, copy=False)
        rng = self._rng()
        z = (X - self._ybar) @ self._V
        t = (self.components_ - self._ybar) @ self._V
        a = self._init_abundances(z, t)
        acc = np.zeros_like(a)
        for sweep in range(self.n_burn + self.n_samples):
            a = self._sample_abundances(z, a, t, self.noise_variance_, rng)
            if sweep >= self.n_burn:
                acc += a
        return np.asarray(acc / self.n_samples, dtype=dtype)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra ``(n, channels)`` from abundances ``(n, R)``."""
        check_is_fitted(self)
        return np.asarray(np.asarray(X) @ self.components_)
