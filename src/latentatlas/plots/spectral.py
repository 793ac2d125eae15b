"""Figures for spectral unmixing: scree plot, components beside loading maps, cluster maps.

Every function takes arrays (or an :class:`~latentatlas.spectral.UnmixResult`) and an Axes
or Figure to draw on, and returns it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from latentatlas.io.calibration import Calibration
from latentatlas.plots.style import (
    add_colorbar,
    display_calibration,
    safe_label,
    save_figure,
    show_image,
)

if TYPE_CHECKING:
    from latentatlas.spectral.result import UnmixResult

__all__ = ["plot_cluster_map", "plot_components", "plot_result", "plot_scree", "save_figures"]

_NOISE_COLOR = (0.75, 0.75, 0.75, 1.0)


def _axis_label(name: str, units: str) -> str:
    return f"{safe_label(name)} ({safe_label(units)})" if units else safe_label(name)


def plot_scree(explained_variance_ratio: np.ndarray, ax: Axes | None = None) -> Axes:
    """Explained variance ratio per component (log scale) with the cumulative sum.

    ``explained_variance_ratio`` is ``(k,)``.
    """
    ratio = np.asarray(explained_variance_ratio, dtype=float)
    if ratio.ndim != 1 or ratio.size == 0:
        raise ValueError(
            f"explained_variance_ratio must be a non-empty 1-D array, got {ratio.shape}"
        )
    if ax is None:
        ax = Figure(figsize=(5.5, 4.0), layout="constrained").add_subplot()
    idx = np.arange(1, ratio.size + 1)
    ax.semilogy(idx, np.clip(ratio, 1e-300, None), "o-", color="C0", label="per component")
    ax.set_xlabel("Component")
    ax.set_xticks(idx)
    ax.set_ylabel("Explained variance ratio", color="C0")
    twin = ax.twinx()
    twin.plot(idx, np.cumsum(ratio), "s--", color="C1", label="cumulative")
    twin.set_ylabel("Cumulative ratio", color="C1")
    twin.set_ylim(0, 1.05)
    ax.set_title("Scree plot")
    return ax


def _map(ax: Axes, image: np.ndarray, cal: Calibration, label: str, **imshow: object) -> None:
    """One map at its physical size with a scale bar and a labelled colour bar, or a profile
    when it is a single row (line scans)."""
    if image.shape[0] == 1:
        x = np.arange(image.shape[1]) * cal.scale[1]
        ax.plot(x, image[0])
        ax.set_xlabel(f"position ({cal.length_units})")
        ax.set_ylabel(safe_label(label))
        return
    im = show_image(ax, image, cal, **imshow)  # type: ignore[arg-type]
    if "norm" not in imshow:
        add_colorbar(ax, im, label)


def plot_components(
    components: np.ndarray,
    loadings: np.ndarray,
    energy: np.ndarray | None = None,
    energy_name: str = "Energy",
    energy_units: str = "",
    calibration: Calibration | None = None,
    fig: Figure | None = None,
    titles: list[str] | None = None,
    loading_label: str = "loading (a.u.)",
) -> Figure:
    """Each component spectrum ``(k, channels)`` beside its loading map ``(ny, nx, k)``.

    The spectra are drawn against the physical axis ``energy (channels,)`` with its units;
    the maps at their physical size (``calibration``) with a scale bar.
    """
    components = np.asarray(components)
    loadings = np.asarray(loadings)
    if components.ndim != 2 or loadings.ndim != 3 or loadings.shape[-1] < components.shape[0]:
        raise ValueError(
            f"components must be (k, channels) and loadings (ny, nx, k); got {components.shape} "
            f"and {loadings.shape}"
        )
    k, c = components.shape
    x = np.arange(c) if energy is None else np.asarray(energy)
    cal = display_calibration(calibration, loadings.shape[:2])
    if fig is None:
        fig = Figure(figsize=(8, 0.4 + 2.4 * k), layout="constrained")
    axes = fig.subplots(k, 2, squeeze=False, width_ratios=[1.6, 1])
    for i in range(k):
        ax_s, ax_m = axes[i]
        ax_s.plot(x, components[i], color=f"C{i % 10}")
        ax_s.set_ylabel(safe_label(titles[i] if titles else f"Component {i + 1}"))
        if i == k - 1:
            ax_s.set_xlabel(_axis_label(energy_name, energy_units))
        _map(ax_m, loadings[..., i], cal, loading_label, cmap="viridis")
    return fig


def _cluster_colors(n: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return np.asarray([cmap(i % cmap.N) for i in range(n)])


def plot_cluster_map(
    labels: np.ndarray,
    cluster_means: np.ndarray,
    energy: np.ndarray | None = None,
    energy_name: str = "Energy",
    energy_units: str = "",
    calibration: Calibration | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Cluster map ``(ny, nx)`` beside the cluster mean spectra ``(n_clusters, channels)``,
    each cluster drawn in the same colour in both; label -1 (noise) is grey."""
    labels = np.asarray(labels)
    means = np.asarray(cluster_means)
    if labels.ndim != 2 or means.ndim != 2:
        raise ValueError(
            f"labels must be (ny, nx) and cluster_means (n_clusters, channels); got "
            f"{labels.shape} and {means.shape}"
        )
    n = means.shape[0]
    if labels.max(initial=-1) >= n:
        raise ValueError(f"labels go up to {labels.max()} but only {n} cluster means were given")
    colors = _cluster_colors(n)
    # index 0 of the colour map is the noise label -1
    cmap = ListedColormap(np.vstack([_NOISE_COLOR, colors]))
    norm = BoundaryNorm(np.arange(-1.5, n + 0.5), cmap.N)
    cal = display_calibration(calibration, labels.shape)
    if fig is None:
        fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax_m, ax_s = fig.subplots(1, 2, width_ratios=[1, 1.4])
    if labels.shape[0] == 1:
        for i in range(n):
            where = np.flatnonzero(labels[0] == i) * cal.scale[1]
            ax_m.plot(where, np.full(where.shape, i), "|", color=colors[i], ms=12)
        ax_m.set_xlabel(f"position ({cal.length_units})")
        ax_m.set_ylabel("cluster")
    else:
        show_image(ax_m, labels, cal, cmap=cmap, norm=norm)
    ax_m.set_title("Clusters")
    x = np.arange(means.shape[1]) if energy is None else np.asarray(energy)
    for i in range(n):
        frac = float((labels == i).mean())
        ax_s.plot(x, means[i], color=colors[i], label=f"{i} ({100 * frac:.0f} %)")
    ax_s.set_xlabel(_axis_label(energy_name, energy_units))
    ax_s.set_ylabel("Mean spectrum")
    ax_s.legend(fontsize="small", title="cluster (share)")
    return fig


def plot_result(result: UnmixResult, calibration: Calibration | None = None
                ) -> dict[str, Figure]:
    """All figures that apply to a result: ``"scree"``, ``"components"``, ``"clusters"``,
    ``"maps"`` (embeddings without component spectra). The maps are drawn with
    ``calibration`` (default: the result's own, from the file it was computed from)."""
    figs: dict[str, Figure] = {}
    cal = result.calibration if calibration is None else calibration
    e, en, eu = result.energy, result.energy_name, result.energy_units
    if result.explained_variance_ratio is not None:
        ax = plot_scree(result.explained_variance_ratio)
        figs["scree"] = ax.figure  # type: ignore[assignment]
    if result.components is not None and result.loadings is not None:
        figs["components"] = plot_components(result.components, result.loadings, e, en, eu,
                                             cal, loading_label=_loading_label(result.method))
    if result.labels is not None and result.cluster_means is not None:
        figs["clusters"] = plot_cluster_map(result.labels, result.cluster_means, e, en, eu, cal)
    if result.components is None and result.labels is None and result.loadings is not None:
        k = result.loadings.shape[-1]
        fig = Figure(figsize=(3.6 * k, 3.4), layout="constrained")
        axes = fig.subplots(1, k, squeeze=False)[0]
        shown = display_calibration(cal, result.spatial_shape)
        for i, ax in enumerate(axes):
            _map(ax, result.loadings[..., i], shown, f"{result.method} {i + 1} (unitless)",
                 cmap="viridis")
            ax.set_title(f"{result.method} {i + 1}")
        figs["maps"] = fig
    return figs


def _loading_label(method: str) -> str:
    return {"nmf": "NMF weight (a.u.)", "blu": "abundance (fraction)",
            "pca": "PCA score (a.u.)"}.get(method, "loading (a.u.)")


def save_figures(result: UnmixResult, out_dir: str | os.PathLike[str], dpi: int = 150,
                 calibration: Calibration | None = None, formats: Sequence[str] = ()
                 ) -> list[Path]:
    """Write every figure of :func:`plot_result` as ``<method>_<name>.png`` in ``out_dir``
    (and in each of the extra ``formats``, ``svg``/``pdf``), each via a temporary file and a
    rename, so an interrupted run leaves no half-written image. Returns the PNG paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, out / f"{result.method}_{name}.png", dpi=dpi, formats=formats)
            for name, fig in plot_result(result, calibration).items()]
