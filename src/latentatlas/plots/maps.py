"""Figures for latent analysis: latent maps, 2-D latent histograms, manifold grids and
labelled images.

Axes-level functions take arrays and a matplotlib ``Axes`` and return the ``Axes``;
figure-level helpers build a ``matplotlib.figure.Figure`` without pyplot (no global state,
no display needed) and :func:`save_figure` writes it atomically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from latentatlas._latent_names import SHIFT_NAMES
from latentatlas.io.calibration import Calibration
from latentatlas.plots.style import (
    add_colorbar,
    add_scalebar,
    display_calibration,
    save_figure,
    show_image,
    to_display,
)

__all__ = [
    "label_colors",
    "latent_label",
    "latent_maps_figure",
    "plot_dense_map",
    "plot_image",
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


def latent_label(name: str, window: int | None = None,
                 calibration: Calibration | None = None) -> tuple[float, str]:
    """How a latent is shown: the factor from its model value to the value drawn, and the
    colour bar label with units.

    ``angle`` (radians) is shown in degrees; ``shift_x``/``shift_y`` (patch half-widths) in
    the image's length unit when the patch side ``window`` (pixels) is known, else in pixels;
    content latents are unitless.
    """
    if name == "angle":
        return float(np.degrees(1.0)), "angle (deg)"
    if name in SHIFT_NAMES and window is not None:
        cal = calibration or Calibration()
        pixel = cal.scale[1] if name != "shift_y" else cal.scale[0]
        return window / 2 * pixel, f"{name.replace('_', ' ')} ({cal.length_units})"
    if name in SHIFT_NAMES:
        return 1.0, f"{name.replace('_', ' ')} (patch half-widths)"
    if name == "log_scale":
        return 1.0, "log scale (unitless)"
    return 1.0, f"{name} (unitless)"


def plot_image(ax: Axes, image: np.ndarray, calibration: Calibration | None = None,
               title: str = "", cmap: str = "gray", robust: bool = True) -> Axes:
    """A micrograph at its physical size with a scale bar (grey, 1-99 % contrast)."""
    img = np.asarray(image, dtype=float)
    cal = display_calibration(calibration, img.shape[:2])
    lo, hi = np.nanpercentile(img, [1, 99]) if robust else (None, None)
    show_image(ax, img, cal, cmap=cmap, vmin=lo, vmax=hi)
    if title:
        ax.set_title(title)
    return ax


def _underlay(ax: Axes, image: np.ndarray | None, cal: Calibration,
              shape: tuple[int, int] | None) -> None:
    """The grey image under points, or the empty frame of ``shape`` at its physical size."""
    if image is not None:
        show_image(ax, np.asarray(image), cal, scalebar=False, cmap="gray")
    elif shape is not None:
        left, right, bottom, top = cal.extent(shape)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_aspect("equal")
    else:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    add_scalebar(ax, cal, color="black")


def plot_latent_scatter(
    ax: Axes,
    centers: np.ndarray,
    values: np.ndarray,
    image: np.ndarray | None = None,
    name: str = "",
    size: float | None = None,
    colorbar: bool = True,
    calibration: Calibration | None = None,
    label: str | None = None,
    image_shape: tuple[int, int] | None = None,
) -> Axes:
    """Latent values as coloured dots at ``centers`` ``(m, 2)`` (row, col, pixels) over
    ``image``, at the image's physical size with a scale bar; the colour bar is labelled
    ``label`` (default ``name``)."""
    shape = np.shape(image)[:2] if image is not None else image_shape
    cal = display_calibration(calibration, shape or (1, 1))
    _underlay(ax, image, cal, shape)
    pts = to_display(cal, centers)
    s = size if size is not None else max(2.0, min(40.0, 2e4 / max(len(pts), 1)))
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.asarray(values), s=s, cmap=_cmap_for(name),
                    linewidths=0)
    ax.set_title(name)
    if colorbar:
        add_colorbar(ax, sc, label or name or "value")
    return ax


def plot_dense_map(
    ax: Axes,
    grid: np.ndarray,
    centers: np.ndarray | None = None,
    name: str = "",
    colorbar: bool = True,
    calibration: Calibration | None = None,
    label: str | None = None,
) -> Axes:
    """A dense ``(rows, cols)`` latent map; with the window ``centers`` (pixels) it is placed
    where the windows were in the image, at its physical size with a scale bar."""
    g = np.asarray(grid)
    cal = display_calibration(calibration, g.shape)
    sy, sx = cal.scale
    extent = cal.extent(g.shape)
    if centers is not None and len(centers) > 1 and g.shape[0] > 1 and g.shape[1] > 1:
        c = np.asarray(centers)[: g.size]
        dr = (c[:, 0].max() - c[:, 0].min()) / (g.shape[0] - 1)
        dc = (c[:, 1].max() - c[:, 1].min()) / (g.shape[1] - 1)
        extent = ((c[:, 1].min() - dc / 2) * sx, (c[:, 1].max() + dc / 2) * sx,
                  (c[:, 0].max() + dr / 2) * sy, (c[:, 0].min() - dr / 2) * sy)
    im = ax.imshow(g, cmap=_cmap_for(name), extent=extent, aspect="equal",
                   interpolation="nearest")
    add_scalebar(ax, cal)
    ax.set_title(name)
    if colorbar:
        add_colorbar(ax, im, label or name or "value")
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
    calibration: Calibration | None = None,
    class_names: list[str] | None = None,
    title: str = "classes",
) -> Axes:
    """Classes at their positions: discs from ``label_raster`` ``(h, w)`` (NaN = none) over the
    image, or coloured dots at ``centers`` (row, col, pixels); one legend entry per class; the
    image at its physical size with a scale bar."""
    lab = np.asarray(labels).astype(int)
    n = int(lab.max()) + 1 if lab.size else 1
    cmap = label_colors(n)
    norm = BoundaryNorm(np.arange(-0.5, n + 0.5), cmap.N)
    shape = np.shape(image)[:2] if image is not None else (
        np.shape(label_raster)[:2] if label_raster is not None else None)
    cal = display_calibration(calibration, shape or (1, 1))
    _underlay(ax, image, cal, shape)
    if label_raster is not None:
        raster = np.asarray(label_raster)
        ax.imshow(np.ma.masked_invalid(raster), cmap=cmap, norm=norm, alpha=0.55,
                  interpolation="nearest", extent=cal.extent(raster.shape[:2]), aspect="equal")
    else:
        pts = to_display(cal, centers)
        s = size if size is not None else max(2.0, min(40.0, 2e4 / max(len(pts), 1)))
        ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap=cmap, norm=norm, s=s, linewidths=0)
    for k in range(n):
        name = class_names[k] if class_names is not None and k < len(class_names) else f"class {k}"
        ax.scatter([], [], color=cmap(k), label=f"{name} ({int((lab == k).sum())})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_title(title)
    return ax


def latent_maps_figure(
    maps: Any,
    image: np.ndarray | None = None,
    names: list[str] | None = None,
    frame: int = 0,
    calibration: Calibration | None = None,
    window: int | None = None,
) -> Figure:
    """One panel per latent (a :class:`latentatlas.analysis.latent_maps.LatentMaps`): dense
    grids for sliding windows, dots at atom positions otherwise; each with a scale bar and a
    colour bar in the latent's units (:func:`latent_label`; ``window`` is the patch side in
    pixels, for shifts in length units)."""
    names = list(names or maps.names)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    # no layout engine: constrained layout tripled the drawing time of this grid; the saved
    # bounding box is fitted to the drawing instead
    fig = Figure(figsize=(4.4 * ncols, 3.8 * nrows))
    fig.subplots_adjust(left=0.02, right=0.9, bottom=0.03, top=0.93, wspace=0.35, hspace=0.2)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    sel = np.asarray(maps.frames) == frame
    for ax, name in zip(axes.ravel(), names, strict=False):
        factor, label = latent_label(name, window, calibration)
        if maps.grid_shape is not None:
            plot_dense_map(ax, maps.grid(name)[frame] * factor, maps.centers[sel], name=name,
                           calibration=calibration, label=label)
        else:
            plot_latent_scatter(ax, maps.centers[sel], maps[name][sel] * factor, image=image,
                                name=name, calibration=calibration, label=label,
                                image_shape=tuple(maps.image_shape))
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    return fig
