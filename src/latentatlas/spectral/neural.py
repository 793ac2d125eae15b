"""Neural reductions of spectra: a self-organising feature map and a small autoencoder."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from latentatlas.spectral._base import (
    check_n_components,
    resolve_device,
    row_sq_norms,
    to_tensor,
    torch_generator,
)

__all__ = ["SOM", "SpectralAutoencoder"]


class SOM(TransformerMixin, BaseEstimator):
    """Self-organising feature map (Kohonen) trained with the batch algorithm.

    Nodes sit on a ``(n_rows, n_cols)`` grid, each with a weight spectrum. One epoch finds
    the best-matching node (BMU) of every spectrum with one distance matrix, then sets every
    node to the neighbourhood-weighted mean of the spectra,
    ``w_j = sum_i h(bmu_i, j) x_i / sum_i h(bmu_i, j)`` with a Gaussian neighbourhood
    whose width shrinks geometrically from ``sigma_start`` (default: half the grid) to
    ``sigma_end`` grid units. Everything is vectorised: an epoch is two matrix products.

    Attributes
    ----------
    cluster_centers_ : (n_rows * n_cols, channels) the node spectra.
    labels_ : (n,) BMU index of each training spectrum.
    quantization_error_history_ : (n_epochs + 1,) RMS distance of spectra to their BMU, after
        initialisation and after every epoch.
    """

    def __init__(
        self,
        n_rows: int = 3,
        n_cols: int = 3,
        n_epochs: int = 30,
        sigma_start: float | None = None,
        sigma_end: float = 0.3,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.n_epochs = n_epochs
        self.sigma_start = sigma_start
        self.sigma_end = sigma_end
        self.random_state = random_state
        self.device = device

    def _grid(self, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
        rr, cc = torch.meshgrid(torch.arange(self.n_rows), torch.arange(self.n_cols), indexing="ij")
        return torch.stack([rr.ravel(), cc.ravel()], 1).to(dev, dtype)

    @staticmethod
    def _bmu(x: torch.Tensor, w: torch.Tensor, x_sq: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        x_sq = row_sq_norms(x) if x_sq is None else x_sq
        d = (x_sq[:, None] - 2 * x @ w.T + (w * w).sum(1)[None, :]).clamp(min=0)
        dmin, idx = d.min(1)
        return idx, dmin

    def fit(self, X: np.ndarray, y: object = None) -> SOM:
        """Train on ``X (n, channels)``; returns self."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        n = X.shape[0]
        n_nodes = self.n_rows * self.n_cols
        if self.n_rows < 1 or self.n_cols < 1:
            raise ValueError(
                f"SOM: n_rows and n_cols must be >= 1, got {self.n_rows}, {self.n_cols}"
            )
        if n_nodes > n:
            raise ValueError(
                f"SOM: the {self.n_rows}x{self.n_cols} grid has more nodes than n_samples={n} "
                "spectra; use a smaller grid"
            )
        if self.n_epochs < 1:
            raise ValueError(f"SOM: n_epochs must be >= 1, got {self.n_epochs}")
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        gen = torch_generator(self.random_state, dev)
        w = x[torch.randperm(n, generator=gen, device=dev)[:n_nodes]].clone()
        grid = self._grid(dev, x.dtype)
        gd2 = ((grid[:, None, :] - grid[None, :, :]) ** 2).sum(-1)  # (nodes, nodes)
        s0 = self.sigma_start if self.sigma_start is not None else max(self.n_rows, self.n_cols) / 2
        s1 = min(self.sigma_end, s0)
        x_sq = row_sq_norms(x)
        idx, dmin = self._bmu(x, w, x_sq)
        hist = [math.sqrt(float(dmin.double().mean()))]
        for epoch in range(self.n_epochs):
            frac = epoch / max(self.n_epochs - 1, 1)
            sigma = s0 * (s1 / s0) ** frac
            h = torch.exp(-gd2 / (2 * sigma**2))  # (nodes, nodes)
            onehot_sums = torch.zeros_like(w).index_add_(0, idx, x)  # per-BMU sums
            counts = torch.bincount(idx, minlength=n_nodes).to(x.dtype)
            num = h @ onehot_sums
            den = h @ counts
            keep = den > 1e-12
            w = torch.where(keep[:, None], num / den.clamp(min=1e-12)[:, None], w)
            idx, dmin = self._bmu(x, w, x_sq)
            hist.append(math.sqrt(float(dmin.double().mean())))
        self.cluster_centers_ = w.cpu().numpy()
        self.labels_ = idx.cpu().numpy()
        self.quantization_error_history_ = np.asarray(hist)
        self.quantization_error_ = hist[-1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """BMU index ``(n,)`` of each spectrum."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dev = resolve_device(self.device)
        x = to_tensor(X, dev)
        w = torch.as_tensor(self.cluster_centers_, device=dev, dtype=x.dtype)
        return self._bmu(x, w)[0].cpu().numpy()

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Grid coordinates ``(n, 2)`` (row, col) of each spectrum's BMU."""
        idx = self.predict(X)
        return np.stack([idx // self.n_cols, idx % self.n_cols], 1).astype(np.float64)


class _AE(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, n_latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(),
                                     nn.Linear(n_hidden, n_latent))
        self.decoder = nn.Sequential(nn.Linear(n_latent, n_hidden), nn.SiLU(),
                                     nn.Linear(n_hidden, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out


class SpectralAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A small fully connected autoencoder ``channels -> hidden -> k -> hidden -> channels``.

    Spectra are centred by the mean spectrum and scaled by one global standard deviation
    (stored, and undone in ``inverse_transform``), then trained with Adam on the mean squared
    error in mini-batches.

    Attributes
    ----------
    loss_history_ : (n_epochs + 1,) mean squared error (in the scaled units) before training
        and after every epoch, on all training spectra.
    reconstruction_err_ : Frobenius norm of ``X - inverse_transform(transform(X))``.
    """

    def __init__(
        self,
        n_components: int = 2,
        n_hidden: int = 64,
        n_epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 3e-3,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_components = n_components
        self.n_hidden = n_hidden
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.device = device

    def _scaled(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        x = torch.as_tensor((X - self.mean_) / self.scale_, dtype=torch.float32)
        return x.to(dev)

    @torch.no_grad()
    def _mse(self, x: torch.Tensor) -> float:
        return float(((self.module_(x) - x) ** 2).mean())

    def fit(self, X: np.ndarray, y: object = None) -> SpectralAutoencoder:
        """Train on ``X (n, channels)``; returns self."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        n, c = X.shape
        k = check_n_components(self.n_components, n, c, "SpectralAutoencoder")
        if self.n_epochs < 1 or self.batch_size < 1 or self.n_hidden < 1:
            raise ValueError("SpectralAutoencoder: n_epochs, batch_size and n_hidden must be >= 1")
        dev = resolve_device(self.device)
        gen = torch_generator(self.random_state, torch.device("cpu"))
        self.mean_ = X.mean(0)
        self.scale_ = float(X.std()) or 1.0
        x = self._scaled(X, dev)
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
        try:
            self.module_ = _AE(c, self.n_hidden, k).to(dev)
        finally:
            torch.random.set_rng_state(torch_state)
        opt = torch.optim.Adam(self.module_.parameters(), lr=self.learning_rate)
        hist = [self._mse(x)]
        for _ in range(self.n_epochs):
            perm = torch.randperm(n, generator=gen).to(dev)
            for start in range(0, n, self.batch_size):
                xb = x[perm[start:start + self.batch_size]]
                loss = ((self.module_(xb) - xb) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            hist.append(self._mse(x))
        self.loss_history_ = np.asarray(hist)
        self.n_components_ = k
        self._n_features_out = k
        recon = self.inverse_transform(self.transform(X))
        self.reconstruction_err_ = float(np.linalg.norm(X - recon))
        return self

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Latent codes ``(n, k)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dev = next(self.module_.parameters()).device
        z = self.module_.encoder(self._scaled(X, dev)).cpu().numpy()
        return np.asarray(z, dtype=X.dtype)

    @torch.no_grad()
    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Spectra ``(n, channels)`` decoded from latent codes ``(n, k)``."""
        check_is_fitted(self)
        dev = next(self.module_.parameters()).device
        z = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=dev)
        out = self.module_.decoder(z).cpu().numpy().astype(np.float64)
        return np.asarray(out * self.scale_ + self.mean_)
