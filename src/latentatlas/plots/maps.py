"""Figures for latent analysis: latent maps, 2-D latent histograms, manifold grids and
labelled images.

Axes-level functions take arrays and a matplotlib ``Axes`` and return the ``Axes``;
figure-level helpers build a ``matplotlib.figure.Figure`` without pyplot (no global state,
no display needed) and :func:`save_figure` writes it atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from latentatlas._files import write_atomic

__all__ = [
    "label_colors",
    "latent_maps_figure",
    "plot_dense_map",
    "plot_labels",
    "plot_latent_hist2d",
    "plot_latent_scatter",
    "plot_manifold",
    "save_figure",
]

_CIRCULAR = {"angle"}


def _cmap_for(name: str) -> str:
    # the angle wraps around: a cyclic colormap keeps -pi and pi the same colour
    return "twilight" if name in _CIRCULAR else "viridis"


def label_colors(n: int) -> ListedColormap:
    """A qualitative colormap with ``n`` distinct colours (tab10, then tab20)."""
    from matplotlib import colormaps

    base = colormaps["tab10" if n <= 10 else "tab20"]
    return ListedColormap([base(i % base.N) for i in range(max(n, 1))])


def _show_image(ax: Axes, image: np.ndarray | None) -> None:
    if image is not None:
        ax.imshow(np.asarray(image), cmap="gray", interpolation="nearest")


def plot_latent_scatter(
    ax: Axes,
    centers: np.ndarray,
    values: np.ndarray,
    image: np.ndarray | None = None,
    name: str = "",
    size: float | None = None,
    colorbar: bool = True,
) -> Axes:
    """Latent values as coloured dots at ``centers`` ``(m, 2)`` (row, col) over ``image``."""
    _show_image(ax, image)
    pts = np.asarray(centers)
    s = size if size is not None else max(2.0, min(40.0, 2e4 / max(len(pts), 1)))
    sc = ax.scatter(pts[:, 1], pts[:, 0], c=np.asarray(values), s=s, cmap=_cmap_for(name),
                    linewidths=0)
    if image is None:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar and ax.figure is not None:
        ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
    return ax


def plot_dense_map(
    ax: Axes,
    grid: np.ndarray,
    centers: np.ndarray | None = None,
    name: str = "",
    colorbar: bool = True,
) -> Axes:
    """A dense ``(rows, cols)`` latent map; with the window ``centers`` it is placed in
    image pixel coordinates."""
    g = np.asarray(grid)
    extent = None
    if centers is not None and len(centers) > 1 and g.shape[0] > 1 and g.shape[1] > 1:
        c = np.asarray(centers)[: g.size]
        dr = (c[:, 0].max() - c[:, 0].min()) / (g.shape[0] - 1)
        dc = (c[:, 1].max() - c[:, 1].min()) / (g.shape[1] - 1)
        extent = (c[:, 1].min() - dc / 2, c[:, 1].max() + dc / 2,
                  c[:, 0].max() + dr / 2, c[:, 0].min() - dr / 2)
    im = ax.imshow(g, cmap=_cmap_for(name), extent=extent, interpolation="nearest")
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar and ax.figure is not None:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return ax


def plot_latent_hist2d(
    ax: Axes, x: np.ndarray, y: np.ndarray, bins: int = 64, xlabel: str = "", ylabel: str = ""
) -> Axes:
    """2-D histogram (log colour scale) of two latents."""
    from matplotlib.colors import LogNorm

    ax.hist2d(np.asarray(x), np.asarray(y), bins=bins, cmap="magma", norm=LogNorm(), cmin=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_manifold(ax: Axes, tiles: np.ndarray, title: str = "latent manifold") -> Axes:
    """Decoded images on a latent grid, ``(rows, cols, h, w)`` or ``(rows, cols, c, h, w)``
    (first channel shown), tiled into one mosaic."""
    t = np.asarray(tiles)
    if t.ndim == 5:
        t = t[:, :, 0]
    if t.ndim != 4:
        raise ValueError(
            f"tiles must be (rows, cols, h, w) or (rows, cols, c, h, w), got {t.shape}"
        )
    rows, cols, h, w = t.shape
    mosaic = t.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    ax.imshow(mosaic, cmap="gray", interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_labels(
    ax: Axes,
    centers: np.ndarray,
    labels: np.ndarray,
    image: np.ndarray | None = None,
    label_raster: np.ndarray | None = None,
    size: float | None = None,
) -> Axes:
    """Classes at their positions: discs from ``label_raster`` ``(h, w)`` (NaN = none) over the
    image, or coloured dots at ``centers``; one legend entry per class."""
    lab = np.asarray(labels).astype(int)
    n = int(lab.max()) + 1 if lab.size else 1
    cmap = label_colors(n)
    norm = BoundaryNorm(np.arange(-0.5, n + 0.5), cmap.N)
    _show_image(ax, image)
    if label_raster is not None:
        ax.imshow(np.ma.masked_invalid(label_raster), cmap=cmap, norm=norm, alpha=0.55,
                  interpolation="nearest")
    else:
        pts = np.asarray(centers)
        s = size if size is not None else max(2.0, min(40.0, 2e4 / max(len(pts), 1)))
        ax.scatter(pts[:, 1], pts[:, 0], c=lab, cmap=cmap, norm=norm, s=s, linewidths=0)
        if image is None:
            ax.invert_yaxis()
            ax.set_aspect("equal")
    for k in range(n):
        ax.scatter([], [], color=cmap(k), label=f"class {k} ({int((lab == k).sum())})")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("classes")
    return ax


def latent_maps_figure(
    maps: Any, image: np.ndarray | None = None, names: list[str] | None = None, frame: int = 0
) -> Figure:
    """One panel per latent (a :class:`latentatlas.analysis.latent_maps.LatentMaps`): dense
    grids for sliding windows, dots at atom positions otherwise."""
    names = list(names or maps.names)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    # no layout engine: constrained layout tripled the drawing time of this grid
    fig = Figure(figsize=(4.4 * ncols, 3.8 * nrows))
    fig.subplots_adjust(left=0.02, right=0.95, bottom=0.03, top=0.93, wspace=0.25, hspace=0.2)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    sel = np.asarray(maps.frames) == frame
    for ax, name in zip(axes.ravel(), names, strict=False):
        if maps.grid_shape is not None:
            plot_dense_map(ax, maps.grid(name)[frame], maps.centers[sel], name=name)
        else:
            plot_latent_scatter(ax, maps.centers[sel], maps[name][sel], image=image, name=name)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) via a temporary file and rename."""
    path = Path(path)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".")))
    return path
