"""PCA, NMF and k-means on spectra that do not fit in memory: Dask, Zarr or HDF5 arrays,
NumPy memory maps, ``(n, c)`` or a cube ``(..., c)``, read a block of spectra at a time.

These are the in-memory algorithms, not approximations of them: each iteration makes one
pass over the blocks and accumulates what the step needs, so the results equal those of
:class:`~latentatlas.spectral.PCA`, :class:`~latentatlas.spectral.NMF` and
:class:`~latentatlas.spectral.KMeans` on data that fits (to float rounding), and on data that
does not, memory stays at a block or two plus what is as small as the spectra count ``n``
(weights ``(n, k)``, labels, distances) or the channel count ``c`` (``c x c`` for PCA).

- :class:`IncrementalPCA` accumulates the mean and the ``c x c`` scatter matrix over the
  blocks (``partial_fit`` adds blocks one call at a time) and takes its eigenvectors: exact
  PCA, whatever the block order. Cost: one pass and ``n c^2`` multiply-adds.
- :class:`ChunkedNMF` runs NMF's HALS (or multiplicative) iterations: the rows of ``W`` are
  independent given ``H``, so each block's rows are updated as the block is read, and the
  ``W^T X``, ``W^T W`` the ``H`` step needs are summed in the same pass. One pass per
  iteration (the init: about ten more).
- :class:`ChunkedKMeans` runs k-means++ seeding (one pass per centre) and Lloyd iterations
  (one pass each).

NumPy arrays in memory are used as one block, exactly as by the in-memory estimators.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from latentatlas.spectral._base import check_n_components, resolve_device, to_tensor
from latentatlas.spectral._blocks import BLOCK_BYTES, RowBlocks, as_blocks, is_out_of_core
from latentatlas.spectral.clustering import KMeans
from latentatlas.spectral.decomposition import NMF, _flip_signs

__all__ = ["ChunkedKMeans", "ChunkedNMF", "IncrementalPCA"]


def _blocks(est: BaseEstimator, X: Any, reset: bool, block_bytes: int,
            nonnegative: bool = False) -> RowBlocks:
    """Out-of-core arrays as blocks; anything else validated like the in-memory estimators
    do, as one block. Sets or checks ``n_features_in_``."""
    dev = resolve_device(getattr(est, "device", "cpu"))
    if is_out_of_core(X):
        blocks = as_blocks(X, dev, block_bytes, nonnegative)
        if reset:
            est.n_features_in_ = blocks.c
        elif blocks.c != est.n_features_in_:
            raise ValueError(f"X has {blocks.c} channels, but {type(est).__name__} was fitted "
                             f"on {est.n_features_in_}")
        return blocks
    arr = validate_data(est, X, dtype=[np.float64, np.float32], reset=reset)
    if nonnegative:
        check_non_negative(arr, f"{type(est).__name__} (input X)")
    return RowBlocks(to_tensor(arr, dev), dev)


def _per_row(blocks: RowBlocks, fn: Any) -> np.ndarray:
    """``fn`` of every block, stacked: ``(n, ...)`` as NumPy."""
    return blocks.map_rows(fn).cpu().numpy()


class IncrementalPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Exact PCA of spectra read block by block (see the module docstring).

    Parameters
    ----------
    n_components : number of components ``k``.
    center : subtract the mean spectrum (classical PCA); ``False`` gives the uncentred
        decomposition, as in :class:`~latentatlas.spectral.PCA`.
    block_bytes : bytes of spectra read at a time from an out-of-core array.
    device : ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Attributes
    ----------
    components_, explained_variance_, explained_variance_ratio_, singular_values_, mean_,
    total_variance_ : as :class:`~latentatlas.spectral.PCA`.
    n_samples_seen_ : spectra accumulated so far.
    """

    def __init__(self, n_components: int = 2, center: bool = True,
                 block_bytes: int = BLOCK_BYTES, device: str = "cpu") -> None:
        self.n_components = n_components
        self.center = center
        self.block_bytes = block_bytes
        self.device = device

    def fit(self, X: Any, y: object = None) -> IncrementalPCA:
        """Fit on ``X (n, channels)`` or ``(..., channels)``, one pass; returns self."""
        for attr in ("n_samples_seen_", "_sum", "_scatter", "_shift"):
            self.__dict__.pop(attr, None)
        return self._accumulate(X, reset=True)

    def partial_fit(self, X: Any, y: object = None) -> IncrementalPCA:
        """Add the spectra of ``X`` to those seen before; returns self (fitted on all)."""
        return self._accumulate(X, reset=not hasattr(self, "n_samples_seen_"))

    def _accumulate(self, X: Any, reset: bool) -> IncrementalPCA:
        blocks = _blocks(self, X, reset, self.block_bytes)
        dev = blocks.device
        if reset:
            self.n_samples_seen_ = 0
            self._sum = torch.zeros(blocks.c, dtype=torch.float64, device=dev)
            self._scatter = torch.zeros((blocks.c, blocks.c), dtype=torch.float64, device=dev)
            self._shift: torch.Tensor | None = None
        for _, xb in blocks:
            if self._shift is None:
                # scatter about a shift near the mean: summing x x^T and subtracting n m m^T
                # afterwards would cancel catastrophically when the mean dominates
                self._shift = (xb.double().mean(0) if self.center
                               else torch.zeros(blocks.c, dtype=torch.float64, device=dev))
            d = xb - self._shift.to(xb.dtype)
            self._scatter += (d.T @ d).double()
            self._sum += xb.sum(0, dtype=torch.float64)
            self.n_samples_seen_ += len(xb)
        self._finish(blocks.c)
        return self

    def _finish(self, c: int) -> None:
        n = self.n_samples_seen_
        k = check_n_components(self.n_components, n, c, "IncrementalPCA")
        if n < 2:
            raise ValueError(f"IncrementalPCA needs at least 2 spectra, got n_samples={n}")
        assert self._shift is not None
        mean = self._sum / n
        if self.center:
            off = mean - self._shift
            scatter = self._scatter - n * torch.outer(off, off)  # about the mean
        else:
            scatter, mean = self._scatter, torch.zeros_like(mean)  # about 0 (shift is 0)
        cov = scatter / (n - 1)
        values, vectors = torch.linalg.eigh(cov)
        order = torch.argsort(values, descending=True)[:k]
        ev = values[order].clamp(min=0)
        _, vt = _flip_signs(None, vectors[:, order].T.contiguous())
        total = float(torch.diagonal(cov).sum())
        self.n_components_ = k
        self.components_ = vt.float().cpu().numpy()
        self.explained_variance_ = ev.cpu().numpy()
        self.singular_values_ = torch.sqrt(ev * (n - 1)).cpu().numpy()
        self.total_variance_ = max(total, 0.0)
        self.explained_variance_ratio_ = self.explained_variance_ / max(total, 1e-300)
        self.mean_ = mean.cpu().numpy()
        self._n_features_out = k

    def transform(self, X: Any) -> Any:
        """Scores ``(n, k)``; a Dask array in gives a lazy Dask array ``(..., k)`` out."""
        check_is_fitted(self)
        comps, mean = self.components_, self.mean_.astype(np.float32)
        if type(X).__module__.startswith("dask."):
            if X.shape[-1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[-1]} channels, but IncrementalPCA was fitted "
                                 f"on {self.n_features_in_}")
            x = X.rechunk({X.ndim - 1: -1})
            k = comps.shape[0]
            return x.map_blocks(
                lambda b: ((b.reshape(-1, b.shape[-1]) - mean.astype(b.dtype))
                           @ comps.T.astype(b.dtype)).reshape(*b.shape[:-1], k),
                chunks=(*x.chunks[:-1], (k,)), dtype=np.result_type(X.dtype, np.float32))
        blocks = _blocks(self, X, False, self.block_bytes)
        c_t = torch.as_tensor(comps, device=blocks.device)
        m_t = torch.as_tensor(mean, device=blocks.device)
        return _per_row(blocks, lambda xb: (xb - m_t.to(xb.dtype)) @ c_t.to(xb.dtype).T)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra ``(n, channels)`` from scores ``(n, k)``."""
        check_is_fitted(self)
        X = np.asarray(X)
        return np.asarray(X @ self.components_.astype(X.dtype) + self.mean_.astype(X.dtype))


class ChunkedNMF(NMF):
    """:class:`~latentatlas.spectral.NMF` on spectra read block by block (one pass per
    iteration; ``W (n, k)`` is held in memory, the data never). Parameters as ``NMF``, plus
    ``block_bytes``, the bytes of spectra read at a time."""

    def __init__(
        self,
        n_components: int = 2,
        solver: Literal["hals", "mu"] = "hals",
        init: Literal["nndsvda", "nndsvd", "random", "spa"] = "nndsvda",
        max_iter: int = 200,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        super().__init__(n_components=n_components, solver=solver, init=init,
                         max_iter=max_iter, tol=tol, random_state=random_state, device=device)
        self.block_bytes = block_bytes

    def _fit(self, X: Any) -> np.ndarray:
        blocks = _blocks(self, X, True, self.block_bytes, nonnegative=True)
        return np.ascontiguousarray(self._fit_blocks(blocks).T.cpu().numpy())

    def transform(self, X: Any) -> np.ndarray:
        """Non-negative ``W (n, k)`` for spectra read block by block, ``H`` fixed."""
        check_is_fitted(self)
        blocks = _blocks(self, X, False, self.block_bytes, nonnegative=True)
        h = torch.as_tensor(self.components_, device=blocks.device, dtype=blocks.dtype)
        return np.ascontiguousarray(self._nnls_wt(blocks, h)[0].T.cpu().numpy())


class ChunkedKMeans(KMeans):
    """:class:`~latentatlas.spectral.KMeans` on spectra read block by block (k-means++ one
    pass per centre, Lloyd one pass per iteration; labels and distances ``(n,)`` in memory).
    Parameters as ``KMeans``, plus ``block_bytes``."""

    def __init__(
        self,
        n_clusters: int = 8,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        super().__init__(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter, tol=tol,
                         random_state=random_state, device=device)
        self.block_bytes = block_bytes

    def fit(self, X: Any, y: object = None) -> ChunkedKMeans:
        """Cluster the spectra of ``X``; returns self."""
        self._fit_blocks(_blocks(self, X, True, self.block_bytes))
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distances ``(n, n_clusters)`` to every centre, block by block."""
        check_is_fitted(self)
        from latentatlas.spectral._base import row_sq_norms
        from latentatlas.spectral.clustering import _sq_dists

        blocks = _blocks(self, X, False, self.block_bytes)
        c = torch.as_tensor(self.cluster_centers_, device=blocks.device, dtype=blocks.dtype)
        return _per_row(blocks, lambda xb: _sq_dists(xb, row_sq_norms(xb), c).sqrt())
