"""PCA and NMF on spectra, in torch so that the same code runs on CPU and GPU.

Both follow the scikit-learn contract (``fit`` returns self, learned state ends in ``_``,
``random_state``) and take ``X`` of shape ``(n_spectra, channels)``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from latentatlas.spectral._base import (
    check_n_components,
    resolve_device,
    sum_squares,
    to_tensor,
    torch_generator,
)
from latentatlas.spectral._blocks import RowBlocks

__all__ = ["NMF", "PCA", "randomized_svd", "successive_projections"]

logger = logging.getLogger(__name__)


def _flip_signs(
    u: torch.Tensor | None, v: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Make the largest-magnitude entry of each row of ``v`` positive (deterministic output)."""
    idx = v.abs().argmax(dim=1)
    signs = torch.sign(v[torch.arange(v.shape[0], device=v.device), idx])
    signs[signs == 0] = 1
    if u is not None:
        u = u * signs[None, :]
    return u, v * signs[:, None]


def _orthonormalize(y: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis ``(n, p)`` of the columns of a tall ``y``, by Cholesky QR twice.

    Two passes of ``Q = Y R^-1`` with ``R`` from the Cholesky factor of ``Y^T Y`` (in
    float64) cost two ``n p^2`` matrix products, where Householder QR on a tall matrix runs
    far slower on a busy CPU; the second pass restores the orthogonality the first loses to
    rounding ("CholeskyQR2", Fukaya et al. 2014). Falls back to Householder QR when the Gram
    matrix is numerically singular.
    """
    q = y
    for _ in range(2):
        g = (q.T @ q).double()
        chol, info = torch.linalg.cholesky_ex(g)
        if int(info) != 0:
            return torch.linalg.qr(y)[0]
        eye = torch.eye(g.shape[0], dtype=torch.float64, device=g.device)
        r_inv = torch.linalg.solve_triangular(chol.T, eye, upper=True)
        q = q @ r_inv.to(y.dtype)
    return q


def randomized_svd(
    x: torch.Tensor | RowBlocks,
    k: int,
    mean: torch.Tensor | None = None,
    n_oversamples: int = 10,
    n_iter: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` SVD of ``x - mean`` (Halko, Martinsson & Tropp 2011) without forming it.

    ``x`` is ``(n, c)``, a tensor or :class:`RowBlocks` (out of core: each product is one pass
    over the blocks, and only ``(n, k + n_oversamples)`` is held); centring is applied
    implicitly (``(x - 1 m) w = x w - 1 (m w)``) so the cube is never copied. Power iterations
    are orthonormalised every time (see :func:`_orthonormalize`), which keeps float32
    accurate. Returns ``u (n, k)``, ``s (k,)``, ``vt (k, c)``.
    """
    blocks = x if isinstance(x, RowBlocks) else RowBlocks(x, x.device)
    n, c = blocks.n, blocks.c
    p = min(k + n_oversamples, n, c)
    omega = torch.randn(c, p, generator=generator, device=blocks.device, dtype=blocks.dtype)

    def right(w: torch.Tensor) -> torch.Tensor:  # (x - 1 m) @ w, w (c, p)
        out = blocks.map_rows(lambda xb: xb @ w)
        return out - (mean @ w)[None, :] if mean is not None else out

    def left(q: torch.Tensor) -> torch.Tensor:  # (x - 1 m)^T @ q, q (n, p)
        out: torch.Tensor | None = None
        for start, xb in blocks:
            part = xb.T @ q[start:start + len(xb)]
            out = part if out is None else out + part
        assert out is not None
        return out - mean[:, None] * q.sum(0)[None, :] if mean is not None else out

    q = _orthonormalize(right(omega))
    for _ in range(n_iter):
        z = _orthonormalize(left(q))
        q = _orthonormalize(right(z))
    b = left(q).T  # (p, c) = q^T (x - 1 m)
    ub, s, vt = torch.linalg.svd(b, full_matrices=False)
    u = q @ ub
    return u[:, :k], s[:k], vt[:k]


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis of spectra with an explicit centring choice.

    Parameters
    ----------
    n_components : number of components ``k``.
    center : subtract the mean spectrum first (classical PCA). ``False`` gives the
        uncentred SVD often used for counts, where the first component is the mean spectrum;
        then ``explained_variance_`` holds the second moment of each score (not a variance)
        and ``explained_variance_ratio_`` the fraction of the total sum of squares.
    solver : ``"full"`` (exact SVD), ``"randomized"`` (Halko et al.; fast and memory-light
        for large cubes) or ``"auto"`` (randomized when ``min(n, c) > 500`` and ``k`` is below
        80 % of it, as scikit-learn does).
    n_oversamples, n_iter : randomized solver settings.
    random_state : seed for the randomized solver.
    device : ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Attributes
    ----------
    components_ : (k, channels) orthonormal rows, sign fixed so the largest entry is positive.
    explained_variance_ : (k,) ``s**2 / (n - 1)``, equal to the variance of the scores when
        ``center=True``.
    explained_variance_ratio_ : (k,) fraction of the total variance (sum of squares).
    singular_values_ : (k,)
    mean_ : (channels,) the subtracted mean (zeros when ``center=False``).
    """

    def __init__(
        self,
        n_components: int = 2,
        center: bool = True,
        solver: Literal["auto", "full", "randomized"] = "auto",
        n_oversamples: int = 10,
        n_iter: int = 4,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_components = n_components
        self.center = center
        self.solver = solver
        self.n_oversamples = n_oversamples
        self.n_iter = n_iter
        self.random_state = random_state
        self.device = device

    def fit(self, X: np.ndarray, y: object = None) -> PCA:
        """Fit on ``X (n_spectra, channels)``; returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X: np.ndarray, y: object = None, **params: object) -> np.ndarray:
        """Fit and return the scores ``(n_spectra, k)``."""
        return self._fit(X)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        n, c = X.shape
        k = check_n_components(self.n_components, n, c, "PCA")
        if self.solver not in ("auto", "full", "randomized"):
            raise ValueError(
                f"PCA: solver must be 'auto', 'full' or 'randomized', got {self.solver!r}"
            )
        if n < 2:
            raise ValueError(
                f"PCA needs at least 2 spectra to estimate a variance, got n_samples={n}"
            )
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        mean = x.mean(0) if self.center else torch.zeros(c, dtype=x.dtype, device=dev)
        solver = self.solver
        if solver == "auto":
            small = min(n, c)
            solver = "randomized" if small > 500 and k < 0.8 * small else "full"
        if solver == "full":
            u, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
            u, s, vt = u[:, :k], s[:k], vt[:k]
        else:
            gen = torch_generator(self.random_state, dev)
            u, s, vt = randomized_svd(x, k, mean if self.center else None,
                                      self.n_oversamples, self.n_iter, gen)
        u_f, vt = _flip_signs(u, vt)
        assert u_f is not None
        # total sum of squares without forming x - mean: sum x^2 - n m.m
        total_ss = sum_squares(x) - n * float((mean.double() ** 2).sum())
        self.solver_ = solver
        self.n_components_ = k
        self.components_ = vt.cpu().numpy()
        self.singular_values_ = s.cpu().numpy()
        self.explained_variance_ = (s.double() ** 2 / (n - 1)).cpu().numpy()
        total_var = max(total_ss, 0.0) / (n - 1)
        self.total_variance_ = total_var
        self.explained_variance_ratio_ = self.explained_variance_ / max(total_var, 1e-300)
        self.mean_ = mean.cpu().numpy()
        self._n_features_out = k
        return (u_f * s[None, :]).cpu().numpy()

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scores ``(n_spectra, k)`` of ``X (n_spectra, channels)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        comps = self.components_.astype(X.dtype, copy=False)
        return np.asarray((X - self.mean_.astype(X.dtype)) @ comps.T)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra ``(n, channels)`` from scores ``(n, k)``."""
        check_is_fitted(self)
        X = np.asarray(X)
        return np.asarray(X @ self.components_.astype(X.dtype) + self.mean_.astype(X.dtype))


def successive_projections(x: torch.Tensor, k: int, row_sums: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Indices ``(k,)`` of the rows of ``x (n, c)`` that span its convex cone, by SPA.

    The successive projection algorithm (Araújo et al. 2001; Gillis & Vavasis 2014) picks
    the row of largest norm, projects every row onto the orthogonal complement of it and
    repeats. On near-separable data (every endmember has nearly pure pixels) these rows are
    the purest pixels, which fixes the rotational ambiguity NMF otherwise has when
    endmembers overlap everywhere (e.g. a shared background). Rows are normalised to unit
    sum first, as the algorithm assumes; ``row_sums (n,)`` overrides ``x.sum(1)`` when ``x``
    holds coordinates of the data in an orthonormal basis rather than the data itself.
    """
    sums = x.sum(1) if row_sums is None else row_sums
    r = x / sums[:, None].clamp(min=torch.finfo(x.dtype).tiny)
    picked: list[int] = []
    for _ in range(k):
        norms = (r * r).sum(1)
        if picked:
            norms[picked] = -1.0
        i = int(norms.argmax())
        picked.append(i)
        u = r[i] / r[i].norm().clamp(min=torch.finfo(x.dtype).tiny)
        r -= (r @ u)[:, None] * u[None, :]
    return torch.as_tensor(picked, device=x.device)


def _denormal_floor(a: torch.Tensor) -> float:
    """Values below which a HALS update is set to exactly 0.

    Updates that should be 0 land on tiny positive round-off (1e-39 in float32); those are
    denormal numbers, and arithmetic on them is 10-50x slower on x86, which made whole NMF
    fits crawl. ``eps * max`` is far below anything the data can resolve.
    """
    return float(torch.finfo(a.dtype).eps) * float(a.abs().max()) * 1e-3


def _nndsvd(u: torch.Tensor, s: torch.Tensor, vt: torch.Tensor, fill: float | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation (Boutsidis & Gallopoulos 2008) from the top-k SVD of the data,
    vectorised over components.

    Each singular pair is split into positive and negative parts; the part pair with the larger
    norm product becomes the component. ``fill`` (NNDSVDa: the data mean) replaces zeros so
    that multiplicative-style updates can leave them.
    """
    v = vt.T
    up, un = u.clamp(min=0), (-u).clamp(min=0)
    vp, vn = v.clamp(min=0), (-v).clamp(min=0)
    nup, nun = up.norm(dim=0), un.norm(dim=0)
    nvp, nvn = vp.norm(dim=0), vn.norm(dim=0)
    use_pos = nup * nvp >= nun * nvn
    m = torch.where(use_pos, nup * nvp, nun * nvn)
    ucol = torch.where(use_pos[None, :], up / nup.clamp(min=1e-30), un / nun.clamp(min=1e-30))
    vcol = torch.where(use_pos[None, :], vp / nvp.clamp(min=1e-30), vn / nvn.clamp(min=1e-30))
    scale = torch.sqrt(s * m)
    w = ucol * scale[None, :]
    h = (vcol * scale[None, :]).T
    # the leading singular pair of non-negative data is non-negative: use it whole
    w[:, 0] = torch.sqrt(s[0]) * u[:, 0].abs()
    h[0] = torch.sqrt(s[0]) * v[:, 0].abs()
    if fill is not None:
        w[w == 0] = fill
        h[h == 0] = fill
    return w.contiguous(), h.contiguous()


def _gram(blocks: RowBlocks, wt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W^T X (k, c)`` and ``W^T W (k, k)`` in one pass."""
    wtx: torch.Tensor | None = None
    for start, xb in blocks:
        part = wt[:, start:start + len(xb)] @ xb
        wtx = part if wtx is None else wtx + part
    assert wtx is not None
    return wtx, wt @ wt.T


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorisation ``X ≈ W H`` under the Frobenius norm.

    The default solver is HALS (hierarchical alternating least squares, Cichocki & Phan
    2009): every column of ``W`` and row of ``H`` is the exact minimiser of the error given
    the others, so the error never increases. ``solver="mu"`` gives the Lee-Seung
    multiplicative updates, also monotone. The error is evaluated every iteration from the
    Gram matrices (no residual cube is formed) and stored in
    ``reconstruction_err_history_``; the fit stops when the relative decrease over one
    iteration drops below ``tol``.

    Parameters
    ----------
    n_components : number of components ``k``.
    solver : ``"hals"`` or ``"mu"``.
    init : ``"nndsvda"``, ``"nndsvd"``, ``"random"`` or ``"spa"`` (the purest pixels by
        :func:`successive_projections`; recovers endmembers that share a background when
        pure pixels exist, where the SVD starts land on another, equally good factorisation).
    max_iter, tol : iteration limit and relative-decrease tolerance.
    random_state : seed for initialisation.
    device : ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Attributes
    ----------
    components_ : (k, channels) non-negative ``H``.
    reconstruction_err_ : Frobenius norm ``||X - W H||`` at the end.
    reconstruction_err_history_ : (n_iter + 1,) the error after initialisation and after
        every iteration; non-increasing.
    n_iter_, converged_ : iterations run and whether ``tol`` was reached.
    """

    def __init__(
        self,
        n_components: int = 2,
        solver: Literal["hals", "mu"] = "hals",
        init: Literal["nndsvda", "nndsvd", "random", "spa"] = "nndsvda",
        max_iter: int = 200,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def _validate(self, X: np.ndarray, reset: bool) -> np.ndarray:
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        check_non_negative(X, "NMF (input X)")
        return X

    def fit(self, X: np.ndarray, y: object = None) -> NMF:
        """Fit on non-negative ``X (n_spectra, channels)``; returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X: np.ndarray, y: object = None, **params: object) -> np.ndarray:
        """Fit and return ``W (n_spectra, k)``."""
        return self._fit(X)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        X = self._validate(X, reset=True)
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        return np.ascontiguousarray(self._fit_blocks(RowBlocks(x, dev)).T.cpu().numpy())

    def _fit_blocks(self, blocks: RowBlocks) -> torch.Tensor:
        """Fit on the spectra of ``blocks``, one pass over them per iteration; returns the
        final ``W`` transposed, ``(k, n)``."""
        n, c = blocks.n, blocks.c
        k = check_n_components(self.n_components, n, c, "NMF")
        if self.solver not in ("hals", "mu"):
            raise ValueError(f"NMF: solver must be 'hals' or 'mu', got {self.solver!r}")
        if self.init not in ("nndsvda", "nndsvd", "random", "spa"):
            raise ValueError(
                f"NMF: init must be 'nndsvda', 'nndsvd', 'random' or 'spa', got {self.init!r}"
            )
        if self.max_iter < 1 or self.tol < 0:
            raise ValueError(
                f"NMF: max_iter must be >= 1 and tol >= 0, got {self.max_iter}, {self.tol}"
            )
        dev, dtype = blocks.device, blocks.dtype
        gen = torch_generator(self.random_state, dev)
        if self.init == "random":
            scale = math.sqrt(blocks.blockwise_mean() / k)
            wt = scale * torch.rand(k, n, generator=gen, device=dev, dtype=dtype)
            h = scale * torch.rand(k, c, generator=gen, device=dev, dtype=dtype)
        elif self.init == "spa":
            # SPA on the rank-k denoised data (a single noisy pixel would bias the start),
            # run in the k coordinates of the orthonormal basis vt: inner products are the
            # same, and the denoised cube is never formed
            u, sv, vt = randomized_svd(blocks, k, None, 10, 4, gen)
            coords = u * sv[None, :]  # rows of the denoised data in the basis vt, (n, k)
            sums = coords @ vt.sum(1)  # row sums of the denoised data, (n,)
            idx = successive_projections(coords, k, row_sums=sums)
            h = (coords[idx] @ vt).clamp(min=0).contiguous()
            wt = self._nnls_wt(blocks, h)[0]
        else:
            u, sv, vt = randomized_svd(blocks, k, None, 10, 4, gen)
            fill = blocks.blockwise_mean() if self.init == "nndsvda" else None
            w, h = _nndsvd(u, sv, vt, fill)
            wt = w.T.contiguous()
        xx = blocks.sums()[1] if blocks.n_blocks > 1 else sum_squares(next(iter(blocks))[1])

        def error(wtx: torch.Tensor, wtw: torch.Tensor, h: torch.Tensor) -> float:
            # ||X - WH||^2 = ||X||^2 - 2 <W^T X, H> + <W^T W, H H^T>, accumulated in float64
            cross = float((wtx.double() * h.double()).sum())
            quad = float((wtw.double() * (h.double() @ h.double().T)).sum())
            return math.sqrt(max(xx - 2 * cross + quad, 0.0))

        # W is held transposed, wt (k, n), so every HALS update reads contiguous rows
        history = [error(*_gram(blocks, wt), h)]
        converged = False
        it = 0
        tiny = torch.finfo(dtype).tiny
        for _it in range(1, self.max_iter + 1):
            it = _it
            # W step with H fixed, block by block (the rows of W are independent), and the
            # statistics of the H step from the new W in the same pass
            hht = h @ h.T
            floor = _denormal_floor(wt)
            wtx: torch.Tensor | None = None
            wtw: torch.Tensor | None = None
            for start, xb in blocks:
                # h @ x.T comes back as a transposed view; row updates need contiguous rows
                hxt = (h @ xb.T).contiguous()
                part = wt[:, start:start + len(xb)]
                whole = part.shape[1] == n
                part = part if whole else part.contiguous()
                part = self._update_wt(part, hxt, hht, tiny, floor)
                if whole:
                    wt = part
                else:
                    wt[:, start:start + len(xb)] = part
                wtw = part @ part.T if wtw is None else wtw + part @ part.T
                wtx = part @ xb if wtx is None else wtx + part @ xb
            assert wtx is not None and wtw is not None
            # H step with W fixed
            if self.solver == "hals":
                floor_h = _denormal_floor(h)
                for j in range(k):
                    v = h[j] + (wtx[j] - (wtw[j:j + 1] @ h)[0]) / (wtw[j, j] + tiny)
                    h[j] = torch.where(v > floor_h, v, 0.0)
            else:
                h = h * wtx / (wtw @ h + tiny)
            history.append(error(wtx, wtw, h))
            prev, cur = history[-2], history[-1]
            if prev - cur <= self.tol * max(prev, tiny):
                converged = True
                break
        if not converged:
            logger.warning(
                "NMF stopped at max_iter=%d before the relative error decrease fell below "
                "tol=%g; raise max_iter for a converged fit", self.max_iter, self.tol,
            )
        # the returned W is the same row-wise NNLS solve transform() does, so fit_transform
        # and fit().transform() agree; it can only lower the error of the iterate's W
        wt, wtx, wtw = self._nnls_wt(blocks, h)
        self.components_ = h.cpu().numpy()
        self.n_components_ = k
        self.reconstruction_err_ = error(wtx, wtw, h)
        self.reconstruction_err_history_ = np.asarray(history)
        self.n_iter_ = it
        self.converged_ = converged
        self._n_features_out = k
        return wt

    @staticmethod
    def _hals_wt(wt: torch.Tensor, hxt: torch.Tensor, hht: torch.Tensor, tiny: float,
                 floor: float | None = None) -> torch.Tensor:
        """One HALS sweep over the rows of ``wt (k, n)`` (exact block minimisers); entries
        below ``floor`` (default from ``wt`` itself, see :func:`_denormal_floor`) become 0."""
        # hht[j:j+1] @ wt (a 1-row matrix product), not hht[j] @ wt: torch's threaded
        # vector-matrix path is ~25x slower on a busy 2-core machine
        floor = _denormal_floor(wt) if floor is None else floor
        for j in range(wt.shape[0]):
            v = wt[j] + (hxt[j] - (hht[j:j + 1] @ wt)[0]) / (hht[j, j] + tiny)
            wt[j] = torch.where(v > floor, v, 0.0)
        return wt

    def _update_wt(self, wt: torch.Tensor, hxt: torch.Tensor, hht: torch.Tensor, tiny: float,
                   floor: float) -> torch.Tensor:
        if self.solver == "hals":
            return self._hals_wt(wt, hxt, hht, tiny, floor)
        return wt * hxt / (hht @ wt + tiny)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Non-negative ``W (n, k)`` for new spectra with ``H`` fixed.

        Each row is solved independently (HALS from the clipped least-squares start), so the
        result for a spectrum does not depend on the others in the batch.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        h = torch.as_tensor(self.components_, device=dev, dtype=x.dtype)
        wt = self._nnls_wt(RowBlocks(x, dev), h)[0]
        return np.ascontiguousarray(wt.T.cpu().numpy())

    def _nnls_wt(self, blocks: RowBlocks, h: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row-wise non-negative least squares for ``W`` given ``H``: ``W^T (k, n)``, and
        ``W^T X``, ``W^T W`` from the same pass.

        HALS sweeps from the clipped unconstrained solution; ``min(max_iter, 50)`` sweeps,
        a fixed number so that every row's result is independent of the other rows.
        """
        hht = h @ h.T
        tiny = torch.finfo(h.dtype).tiny
        parts: list[torch.Tensor] = []
        wtx: torch.Tensor | None = None
        wtw: torch.Tensor | None = None
        for _, xb in blocks:
            hxt = (h @ xb.T).contiguous()
            wt = torch.linalg.lstsq(hht, hxt).solution.clamp(min=0).contiguous()
            for _ in range(min(self.max_iter, 50)):
                wt = self._hals_wt(wt, hxt, hht, tiny)
            parts.append(wt)
            wtx = wt @ xb if wtx is None else wtx + wt @ xb
            wtw = wt @ wt.T if wtw is None else wtw + wt @ wt.T
        assert wtx is not None and wtw is not None
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)), wtx, wtw

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra ``(n, channels)`` from ``W (n, k)``."""
        check_is_fitted(self)
        X = np.asarray(X)
        return np.asarray(X @ self.components_.astype(X.dtype))
