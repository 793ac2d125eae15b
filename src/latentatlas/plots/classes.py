"""Figures for class-aware models: traversals, latent scatter per class, confusion, uncertainty.

Each function takes arrays and an Axes first, draws, and returns the Axes; nothing trains here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from latentatlas.io.calibration import Calibration
from latentatlas.plots.style import add_colorbar, display_calibration, show_image


def montage(grid: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile a (rows, cols, c, h, w) or (rows, cols, h, w) image grid into one (H, W) image
    (first channel), with ``pad`` pixels of NaN between tiles."""
    g = np.asarray(grid, dtype=np.float32)
    if g.ndim == 5:
        g = g[:, :, 0]
    if g.ndim != 4:
        raise ValueError(f"grid must be (rows, cols, [c,] h, w), got shape {np.shape(grid)}")
    rows, cols, h, w = g.shape
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, np.float32)
    for i in range(rows):
        for j in range(cols):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = g[i, j]
    return out


def plot_traversal(ax: Axes, grid: np.ndarray, class_names: Sequence[str] | None = None,
                   latent_name: str = "z1", extent: float = 2.0, cmap: str = "gray") -> Axes:
    """Traversal manifold: rows = classes, columns = one latent from -extent to +extent
    (the output of ``traversal_grid`` / a model's ``traversal``)."""
    rows, cols = np.shape(grid)[:2]
    h = np.shape(grid)[-2]
    w = np.shape(grid)[-1]
    ax.imshow(montage(grid), cmap=cmap)
    ax.set_yticks([(h + 1) * i + h / 2 - 0.5 for i in range(rows)])
    ax.set_yticklabels(list(class_names) if class_names is not None else
                       [f"class {i}" for i in range(rows)])
    ax.set_xticks([(w + 1) * j + w / 2 - 0.5 for j in (0, cols - 1)])
    ax.set_xticklabels([f"{-extent:g}", f"{extent:g}"])
    ax.set_xlabel(f"{latent_name} (prior std)")
    return ax


def plot_latent_classes(ax: Axes, latents: np.ndarray, labels: np.ndarray,
                        dims: tuple[int, int] = (0, 1), names: Sequence[str] | None = None,
                        class_names: Sequence[str] | None = None) -> Axes:
    """Scatter of two latent columns (n, d), one colour per class (n,)."""
    z = np.asarray(latents).reshape(len(latents), -1)
    y = np.asarray(labels)
    for k in np.unique(y):
        sel = y == k
        label = class_names[int(k)] if class_names is not None else f"class {k}"
        ax.scatter(z[sel, dims[0]], z[sel, dims[1]], s=4, label=label)
    names = names or [f"z{i + 1}" for i in range(z.shape[1])]
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    ax.legend(markerscale=3, fontsize="small")
    return ax


def plot_confusion(ax: Axes, counts: np.ndarray, true_names: Sequence[str] | None = None,
                   pred_names: Sequence[str] | None = None, normalise: bool = True) -> Axes:
    """Confusion matrix (n_true, n_pred), rows normalised to fractions when ``normalise``."""
    c = np.asarray(counts, dtype=np.float64)
    shown = c / np.maximum(c.sum(1, keepdims=True), 1) if normalise else c
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    for (i, j), v in np.ndenumerate(shown):
        ax.text(j, i, f"{v:.2f}" if normalise else f"{int(v)}", ha="center", va="center",
                color="white" if v > 0.6 * shown.max() else "black", fontsize="small")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    if pred_names is not None:
        ax.set_xticklabels(pred_names)
    if true_names is not None:
        ax.set_yticklabels(true_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    add_colorbar(ax, image, "fraction of the true class" if normalise else "atoms")
    return ax


def plot_uncertainty_map(ax: Axes, image: np.ndarray, uncertainty: np.ndarray,
                         alpha: float = 0.5, calibration: Calibration | None = None) -> Axes:
    """The image in grey with a per-pixel uncertainty map (``uncertainty_map``) over it, at
    its physical size with a scale bar."""
    cal = display_calibration(calibration, np.shape(image)[:2])
    show_image(ax, np.asarray(image), cal, scalebar=False, cmap="gray")
    overlay = show_image(ax, np.ma.masked_invalid(uncertainty), cal, cmap="magma", alpha=alpha)
    add_colorbar(ax, overlay, "ensemble dispersion (unitless)")
    return ax


def plot_method_scores(ax: Axes, scores: dict[str, dict[str, float]],
                       metrics: Sequence[str] = ("accuracy", "balanced_accuracy")) -> Axes:
    """Grouped bars: one group per method (a model and its baselines), one bar per metric.
    scores: method -> {metric: value}; missing metrics are left out."""
    methods = list(scores)
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(methods))
    for j, metric in enumerate(metrics):
        values = [float(scores[m].get(metric, np.nan)) for m in methods]
        ax.bar(x + (j - (len(metrics) - 1) / 2) * width, values, width, label=metric)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("score on the scored crops")
    ax.legend(fontsize="small")
    return ax


def plot_class_gallery(ax: Axes, patches: np.ndarray, labels: np.ndarray,
                       class_names: Sequence[str], per_class: int = 8, cmap: str = "gray") -> Axes:
    """Examples of each class: one row per class (patches (n, h, w) whose label (n,) is the
    row's index; -1 = none), up to ``per_class`` patches each, in the order given."""
    p = np.asarray(patches, dtype=np.float32)
    y = np.asarray(labels)
    rows = len(class_names)
    h, w = p.shape[-2:]
    grid = np.full((rows, per_class, h, w), np.nan, np.float32)
    for k in range(rows):
        members = np.flatnonzero(y == k)[:per_class]
        grid[k, : len(members)] = p[members]
    ax.imshow(montage(grid), cmap=cmap)
    ax.set_yticks([(h + 1) * i + h / 2 - 0.5 for i in range(rows)])
    ax.set_yticklabels([f"{name} ({int((y == k).sum())})" for k, name in enumerate(class_names)])
    ax.set_xticks([])
    return ax
