"""Figures for ferroelectric domains: wall overlays, wall evolution, descriptor-latent
correlation tables and forward/reverse latent plots of time-delay VAEs.

Axes-level functions take a matplotlib ``Axes`` first and return it; they never train or
compute descriptors (pass the arrays from :mod:`latentatlas.analysis.domains`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure

from latentatlas.analysis.domains import CorrelationTable
from latentatlas.io.calibration import Calibration
from latentatlas.plots.style import add_colorbar, display_calibration, show_image

__all__ = [
    "plot_correlation_table",
    "plot_latent_trajectories",
    "plot_latent_transition",
    "plot_wall_evolution",
    "plot_walls",
    "walls_figure",
]

_WALL_COLORS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00")


def plot_walls(
    ax: Axes,
    image: np.ndarray,
    walls: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    alpha: float = 0.9,
    calibration: Calibration | None = None,
) -> Axes:
    """The image in grey with one or more wall masks drawn over it in distinct colours, at
    its physical size with a scale bar.

    image: (h, w); walls: one (h, w) bool mask or a sequence of them (e.g. one per method).
    """
    img = np.asarray(image, dtype=float)
    if np.ndim(walls) == 2:
        masks = [np.asarray(walls, bool)]
    else:
        masks = [np.asarray(m, bool) for m in walls]
    lo, hi = np.percentile(img, [1, 99])
    cal = display_calibration(calibration, img.shape)
    show_image(ax, img, cal, cmap="gray", vmin=lo, vmax=hi)
    for i, m in enumerate(masks):
        if m.shape != img.shape:
            raise ValueError(f"wall mask {i} has shape {m.shape}, the image {img.shape}")
        color = to_rgba(_WALL_COLORS[i % len(_WALL_COLORS)])
        cmap = ListedColormap(np.array([(0.0, 0.0, 0.0, 0.0), color]))
        show_image(ax, m.astype(int), cal, scalebar=False, cmap=cmap, vmin=0, vmax=1,
                   alpha=alpha)
    if labels is not None:
        handles = [
            ax.plot([], [], "s", color=_WALL_COLORS[i % len(_WALL_COLORS)], label=lab)[0]
            for i, lab in enumerate(labels)
        ]
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.7)
    return ax


def walls_figure(
    image: np.ndarray, walls: np.ndarray, title: str = "", size: float = 5.0,
    calibration: Calibration | None = None,
) -> Figure:
    """A one-panel figure of :func:`plot_walls` (no pyplot state; save with
    ``latentatlas.plots.style.save_figure``)."""
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot(1, 1, 1)
    plot_walls(ax, image, walls, calibration=calibration)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_wall_evolution(
    ax: Axes, evolution: np.ndarray, image: np.ndarray | None = None, cmap: str = "plasma",
    calibration: Calibration | None = None,
) -> Axes:
    """A wall evolution map ((h, w) frame index, NaN = no wall; see ``wall_evolution_map`` or
    ``switching_time_map``) in a sequential colour map, over an optional grey image, at its
    physical size with a scale bar."""
    ev = np.asarray(evolution, dtype=float)
    if ev.ndim != 2:
        raise ValueError(f"evolution must be an (h, w) map, got shape {ev.shape}")
    cal = display_calibration(calibration, ev.shape)
    if image is not None:
        show_image(ax, np.asarray(image), cal, scalebar=False, cmap="gray")
    im = show_image(ax, np.ma.masked_invalid(ev), cal, cmap=cmap)
    add_colorbar(ax, im, "frame of first wall")
    return ax


def plot_correlation_table(ax: Axes, table: CorrelationTable, digits: int = 2) -> Axes:
    """Heat map of descriptor (rows) x latent (columns) correlations, values written in."""
    vals = np.asarray(table.values, dtype=float)
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(table.latents)), labels=list(table.latents), rotation=45, ha="right")
    ax.set_yticks(range(len(table.descriptors)), labels=list(table.descriptors))
    for (i, j), v in np.ndenumerate(vals):
        text = "n/a" if np.isnan(v) else f"{v:.{digits}f}"
        ax.text(j, i, text, ha="center", va="center",
                color="white" if abs(np.nan_to_num(v)) > 0.6 else "black", fontsize="small")
    ax.figure.colorbar(im, ax=ax, label=f"{table.method} correlation")
    return ax


def plot_latent_transition(
    ax: Axes,
    before: np.ndarray,
    after: np.ndarray,
    name: str = "z",
    reverse: bool = False,
    color: np.ndarray | None = None,
) -> Axes:
    """Forward (latent at t on x, at t+1 on y) or, with ``reverse``, the reverse plot.

    before, after: (n,) one latent of the same places at t and t+1. Points on the diagonal
    did not change; the spread off it shows where and how much the state moved.
    """
    b = np.asarray(before, dtype=float).ravel()
    a = np.asarray(after, dtype=float).ravel()
    if b.shape != a.shape:
        raise ValueError(f"before {b.shape} and after {a.shape} must have one value per place")
    x, y = (a, b) if reverse else (b, a)
    ax.scatter(x, y, s=6, c=color if color is not None else "C0", alpha=0.7, linewidths=0)
    lo = float(np.nanmin([x.min(), y.min()]))
    hi = float(np.nanmax([x.max(), y.max()]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    t0, t1 = ("t+1", "t") if reverse else ("t", "t+1")
    ax.set_xlabel(f"{name} ({t0})")
    ax.set_ylabel(f"{name} ({t1})")
    ax.set_aspect("equal", adjustable="datalim")
    return ax


def plot_latent_trajectories(
    ax: Axes, trajectories: np.ndarray, name: str = "z", max_lines: int = 200
) -> Axes:
    """Latent value over time for several places: trajectories (n_places, n_times)."""
    tr = np.asarray(trajectories, dtype=float)
    if tr.ndim != 2:
        raise ValueError(f"trajectories must be (n_places, n_times), got shape {tr.shape}")
    step = max(1, len(tr) // max_lines)
    ax.plot(np.arange(tr.shape[1]), tr[::step].T, lw=0.8, alpha=0.6)
    ax.set_xlabel("frame")
    ax.set_ylabel(name)
    return ax
