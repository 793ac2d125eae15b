"""Figures of latent abundance by class (see :mod:`latentatlas.analysis.abundance`)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from latentatlas.analysis.abundance import AbundanceTable

__all__ = ["plot_abundance", "plot_latent_by_class"]


def plot_abundance(ax: Axes, table: AbundanceTable, digits: int = 1) -> Axes:
    """Heat map of class (rows) x latent (columns) means in units of the latent's overall
    standard deviation, values written in; each column is labelled with its eta."""
    vals = table.standardized_means
    limit = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="RdBu_r", vmin=-limit, vmax=limit,
                   aspect="auto")
    ax.set_xticks(range(len(table.latents)),
                  labels=[f"{n}\neta {e:.2f}" for n, e in zip(table.latents, table.eta,
                                                               strict=True)])
    ax.set_yticks(range(len(table.classes)),
                  labels=[f"{n} ({c})" for n, c in zip(table.class_names, table.counts,
                                                       strict=True)])
    for (i, j), v in np.ndenumerate(vals):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.{digits}f}", ha="center", va="center",
                fontsize="small", color="white" if abs(np.nan_to_num(v)) > 0.6 * limit else "black")
    ax.figure.colorbar(im, ax=ax, label="class mean (overall std from overall mean)")
    return ax


def plot_latent_by_class(ax: Axes, values: np.ndarray, labels: np.ndarray,
                         class_names: list[str] | None = None, name: str = "z") -> Axes:
    """Box plots of one latent (n,) in every labelled class (labels (n,), negative = left out)."""
    v = np.asarray(values, dtype=float).ravel()
    y = np.asarray(labels).ravel()
    if v.shape != y.shape:
        raise ValueError(f"values {v.shape} and labels {y.shape} must have one entry per sample")
    classes = np.unique(y[y >= 0])
    ax.boxplot([v[y == c] for c in classes], showfliers=False)
    ax.set_xticks(range(1, len(classes) + 1),
                  labels=[class_names[c] if class_names else str(c) for c in classes],
                  rotation=45, ha="right")
    ax.set_ylabel(name)
    return ax
