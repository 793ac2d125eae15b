"""Figures of a trained model: loss history, latent scatter, a latent against its true value."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from latentatlas.plots.style import add_colorbar


def plot_history(ax: Axes, history: dict[str, list[float]], term: str = "elbo") -> Axes:
    """Train and test curves of one loss term per epoch (history keys 'train/<term>', 'test/<term>')."""
    for split in ("train", "test"):
        values = history.get(f"{split}/{term}")
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(term)
    ax.legend()
    return ax


def plot_latent_pair(ax: Axes, x: np.ndarray, y: np.ndarray, color: np.ndarray | None = None,
                     xlabel: str = "z1", ylabel: str = "z2", color_label: str = "") -> Axes:
    """Scatter of two latents, optionally coloured by a third quantity (e.g. a true factor)."""
    if color is None:
        ax.scatter(x, y, s=4)
    else:
        points = ax.scatter(x, y, c=color, s=4, cmap="twilight" if "angle" in color_label else "viridis")
        add_colorbar(ax, points, color_label or "value")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_latent_vs_truth(ax: Axes, truth: np.ndarray, latent: np.ndarray, name: str) -> Axes:
    """A latent's posterior mean against the generating value."""
    ax.scatter(truth, latent, s=4, alpha=0.5)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"latent {name}")
    return ax
