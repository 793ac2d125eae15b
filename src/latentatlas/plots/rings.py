"""Figures of ring analyses: atoms coloured by ring label, rings drawn as polygons by size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from latentatlas.io.calibration import Calibration
from latentatlas.plots.style import add_scalebar, display_calibration, show_image

__all__ = ["plot_rings", "ring_size_colors"]

# one fixed colour per ring size, so figures of different images compare at a glance
_RING_COLORS = {
    4: "#7f3c8d",
    5: "#e73f74",
    6: "#d9d9d9",
    7: "#3969ac",
    8: "#f2b701",
    9: "#11a579",
}


def ring_size_colors() -> dict[int, str]:
    """The colour used for each ring size (4 to 9)."""
    return dict(_RING_COLORS)


def plot_rings(
    ax: Axes,
    coords: np.ndarray,
    rings: Sequence[np.ndarray],
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    bonds: np.ndarray | None = None,
    image: np.ndarray | None = None,
    atom_size: float = 12.0,
    ring_alpha: float = 0.45,
    legend: bool = True,
    calibration: Calibration | None = None,
) -> Axes:
    """Draw rings as filled polygons coloured by size, bonds, and atoms coloured by label.

    coords: ``(n, 2)`` (row, col) in pixels; rings: atom-index arrays; labels: ``(n,)`` int
    (None = plain atoms); label_names: names indexed by label for the legend (e.g.
    ``RingAnalysis.table.label_names``); bonds: ``(m, 2)``; image: ``(h, w)`` drawn underneath
    in grey. Drawn at the image's physical size with a scale bar (``calibration``). Returns
    ``ax`` (image orientation: row 0 at the top).
    """
    shape = np.shape(image)[:2] if image is not None else None
    cal = display_calibration(calibration, shape or (1, 1))
    # drawing coordinates (y, x) in display units; the code below indexes (row, col) order
    xy = cal.points(np.asarray(coords, dtype=np.float64))
    if image is not None:
        show_image(ax, np.asarray(image), cal, scalebar=False, cmap="gray")
    add_scalebar(ax, cal)
    polys = [xy[r][:, ::-1] for r in rings]
    colors = [_RING_COLORS.get(len(r), "#000000") for r in rings]
    if polys:
        ax.add_collection(
            PolyCollection(polys, facecolors=colors, edgecolors="none", alpha=ring_alpha)
        )
    if bonds is not None and len(bonds):
        segs = xy[np.asarray(bonds)][:, :, ::-1]
        ax.add_collection(LineCollection(segs, colors="0.25", linewidths=0.6))
    handles: list[Patch | Line2D] = []
    if labels is None:
        ax.scatter(xy[:, 1], xy[:, 0], s=atom_size, c="k", linewidths=0)
    else:
        lab = np.asarray(labels, dtype=np.int64)
        n_labels = int(max(lab.max(initial=0) + 1, len(label_names or ())))
        base = colormaps["tab10"].resampled(10)
        cmap = ListedColormap([base(i % 10) for i in range(n_labels)])
        norm = BoundaryNorm(np.arange(n_labels + 1) - 0.5, n_labels)
        ax.scatter(xy[:, 1], xy[:, 0], s=atom_size, c=lab, cmap=cmap, norm=norm,
                   linewidths=0, zorder=3)
        present = np.unique(lab)
        for k in present:
            name = label_names[k] if label_names is not None and k < len(label_names) else str(k)
            handles.append(Line2D([], [], marker="o", ls="", color=cmap(int(k)),
                                  label=f"{k}: {name}"))
    sizes = sorted({len(r) for r in rings})
    handles.extend(
        Patch(facecolor=_RING_COLORS.get(s, "#000000"), alpha=ring_alpha, label=f"{s}-ring")
        for s in sizes
    )
    if legend and handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                  frameon=False)
    if image is None:
        pad = max(cal.scale)
        ax.set_xlim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
        ax.set_ylim(xy[:, 0].max() + pad, xy[:, 0].min() - pad)
    ax.set_aspect("equal")
    return ax
