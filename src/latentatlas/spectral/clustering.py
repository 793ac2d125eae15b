"""k-means on spectra in torch (CPU or GPU), with k-means++ seeding and Lloyd iterations."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from latentatlas.spectral._base import (
    resolve_device,
    row_sq_norms,
    sum_squares,
    to_tensor,
    torch_generator,
)
from latentatlas.spectral._blocks import RowBlocks

__all__ = ["KMeans"]


def _sq_dists(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(n, k)`` via ``|x|^2 - 2 x.c + |c|^2`` (one matmul, clamped at 0)."""
    d = x_sq[:, None] - 2.0 * (x @ centers.T) + (centers * centers).sum(1)[None, :]
    return d.clamp_(min=0)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-means clustering of spectra ``(n, channels)``.

    Seeding is greedy k-means++ (Arthur & Vassilvitskii 2007, with ``2 + log k`` candidate
    draws per centre as scikit-learn does); iterations are Lloyd's with distances from one
    matrix product, so the whole step runs as a few large kernels on CPU or GPU. Empty
    clusters are re-seeded at the points farthest from their centres. The fit stops when
    the squared centre shift falls below ``tol`` times the mean per-channel variance.

    Attributes
    ----------
    cluster_centers_ : (n_clusters, channels) the cluster mean spectra.
    labels_ : (n,) cluster of each training spectrum.
    inertia_ : sum of squared distances to the nearest centre.
    n_iter_ : Lloyd iterations of the best initialisation.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    def _seed(self, blocks: RowBlocks, x_sq: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = blocks.n
        k = self.n_clusters
        dev = blocks.device
        trials = 2 + int(math.log(k))

        def dists(points: torch.Tensor) -> torch.Tensor:  # (n, len(points)), one pass
            out = []
            for start, xb in blocks:
                out.append(_sq_dists(xb, x_sq[start:start + len(xb)], points))
            return out[0] if len(out) == 1 else torch.cat(out)

        first = int(torch.randint(n, (1,), generator=gen, device=dev))
        centers = [blocks.rows(torch.tensor([first], device=dev))[0]]
        closest = dists(centers[0][None, :])[:, 0]
        for _ in range(1, k):
            total = closest.sum()
            if float(total) <= 0:  # all points coincide with centres: take any
                cand = torch.randint(n, (trials,), generator=gen, device=dev)
            else:
                cand = torch.multinomial(closest / total, trials, replacement=True, generator=gen)
            cand_x = blocks.rows(cand)
            d_cand = dists(cand_x)  # (n, trials)
            pot = torch.minimum(closest[:, None], d_cand).sum(0)
            best = int(pot.argmin())
            centers.append(cand_x[best])
            closest = torch.minimum(closest, d_cand[:, best])
        return torch.stack(centers)

    def _lloyd(self, blocks: RowBlocks, x_sq: torch.Tensor, centers: torch.Tensor, tol: float
               ) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """Lloyd iterations, one pass over the blocks each."""
        k = centers.shape[0]
        it = 0

        def assign(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
            """Nearest-centre distances and labels (n,), counts (k,) and sums (k, c)."""
            dmins, labels = [], []
            counts = torch.zeros(k, dtype=centers.dtype, device=centers.device)
            sums = torch.zeros_like(centers)
            for start, xb in blocks:
                d = _sq_dists(xb, x_sq[start:start + len(xb)], centers)
                lab = d.argmin(1)
                dmins.append(d.gather(1, lab[:, None])[:, 0])
                labels.append(lab)
                counts += torch.bincount(lab, minlength=k).to(centers.dtype)
                sums.index_add_(0, lab, xb)
            return _cat(dmins), _cat(labels), counts, sums

        for _it in range(1, self.max_iter + 1):
            it = _it
            dmin, labels, counts, sums = assign(centers)
            new = sums / counts.clamp(min=1)[:, None]
            empty = counts == 0
            if bool(empty.any()):
                far = dmin.topk(int(empty.sum())).indices
                new[empty] = blocks.rows(far)
            shift = float(((new - centers) ** 2).sum())
            centers = new
            if shift <= tol:
                break
        dmin, labels, _, _ = assign(centers)
        return centers, labels, float(dmin.double().sum()), it

    def fit(self, X: np.ndarray, y: object = None) -> KMeans:
        """Cluster ``X (n, channels)``; returns self."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        return self._fit_blocks(RowBlocks(x, dev))

    def _fit_blocks(self, blocks: RowBlocks) -> KMeans:
        n = blocks.n
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise ValueError(
                f"KMeans: n_clusters must be a positive integer, got {self.n_clusters!r}"
            )
        if self.n_clusters > n:
            raise ValueError(
                f"KMeans: n_samples={n} should be >= n_clusters={self.n_clusters}; "
                "ask for fewer clusters"
            )
        if self.n_init < 1 or self.max_iter < 1:
            raise ValueError(f"KMeans: n_init and max_iter must be >= 1, got {self.n_init}, "
                             f"{self.max_iter}")
        # mean per-channel variance = (sum x^2 - n |mean|^2) / (n c), without a float64 copy
        x_sq = blocks.map_rows(row_sq_norms)
        if blocks.n_blocks == 1:
            x = next(iter(blocks))[1]
            mean = x.double().mean(0) if x.dtype == torch.float64 else x.mean(0).double()
            ss = sum_squares(x)
        else:
            total, ss = blocks.sums()
            mean = total / n
        var_mean = (ss - n * float((mean**2).sum())) / (n * blocks.c)
        tol = self.tol * max(var_mean, 0.0) if n > 1 else 0.0
        gen = torch_generator(self.random_state, blocks.device)
        best: tuple[torch.Tensor, torch.Tensor, float, int] | None = None
        for _ in range(self.n_init):
            res = self._lloyd(blocks, x_sq, self._seed(blocks, x_sq, gen), tol)
            if best is None or res[2] < best[2]:
                best = res
        assert best is not None
        centers, labels, inertia, n_iter = best
        self.cluster_centers_ = centers.cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest-centre labels ``(n,)``."""
        return np.asarray(self.transform(X).argmin(1))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distances ``(n, n_clusters)`` to every centre."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        c = torch.as_tensor(self.cluster_centers_, device=dev, dtype=x.dtype)
        return _sq_dists(x, row_sq_norms(x), c).sqrt().cpu().numpy()

    def fit_predict(self, X: np.ndarray, y: object = None, **kwargs: object) -> np.ndarray:
        """Fit and return ``labels_``."""
        return np.asarray(self.fit(X).labels_)
