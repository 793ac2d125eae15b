"""Figures for spectral unmixing: scree plot, components beside loading maps, cluster maps.

Every function takes arrays (or an :class:`~latentatlas.spectral.UnmixResult`) and an Axes
or Figure to draw on, and returns it.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from latentatlas._files import write_atomic

if TYPE_CHECKING:
    from latentatlas.spectral.result import UnmixResult

__all__ = ["plot_cluster_map", "plot_components", "plot_result", "plot_scree", "save_figures"]

_NOISE_COLOR = (0.75, 0.75, 0.75, 1.0)


def _axis_label(name: str, units: str) -> str:
    return f"{name} ({units})" if units else name


def _extent(shape: tuple[int, int], pixel_size: float | None) -> list[float] | None:
    if pixel_size is None:
        return None
    ny, nx = shape
    return [0.0, nx * pixel_size, ny * pixel_size, 0.0]


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
        ax = Figure(figsize=(4, 3)).add_subplot()
    idx = np.arange(1, ratio.size + 1)
    ax.semilogy(idx, np.clip(ratio, 1e-300, None), "o-", color="C0", label="per component")
    ax.set_xlabel("Component")
    ax.set_ylabel("Explained variance ratio", color="C0")
    twin = ax.twinx()
    twin.plot(idx, np.cumsum(ratio), "s--", color="C1", label="cumulative")
    twin.set_ylabel("Cumulative", color="C1")
    twin.set_ylim(0, 1.05)
    ax.set_title("Scree plot")
    return ax


def plot_components(
    components: np.ndarray,
    loadings: np.ndarray,
    energy: np.ndarray | None = None,
    energy_name: str = "Energy",
    energy_units: str = "",
    pixel_size: float | None = None,
    spatial_units: str = "px",
    fig: Figure | None = None,
    titles: list[str] | None = None,
) -> Figure:
    """Each component spectrum ``(k, channels)`` beside its loading map ``(ny, nx, k)``.

    The spectra are drawn against the physical axis ``energy (channels,)`` with its units;
    the maps use ``pixel_size`` (in ``spatial_units`` per pixel) for their axes.
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
    if fig is None:
        fig = Figure(figsize=(8, 2.2 * k), layout="constrained")
    axes = fig.subplots(k, 2, squeeze=False, width_ratios=[1.6, 1])
    extent = _extent(loadings.shape[:2], pixel_size)
    for i in range(k):
        ax_s, ax_m = axes[i]
        ax_s.plot(x, components[i], color=f"C{i % 10}")
        ax_s.set_ylabel(titles[i] if titles else f"Component {i + 1}")
        if i == k - 1:
            ax_s.set_xlabel(_axis_label(energy_name, energy_units))
        im = ax_m.imshow(loadings[..., i], cmap="viridis", extent=extent)
        ax_m.set_xlabel(f"x ({spatial_units})")
        ax_m.set_ylabel(f"y ({spatial_units})")
        fig.colorbar(im, ax=ax_m, shrink=0.8)
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
    pixel_size: float | None = None,
    spatial_units: str = "px",
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
    if fig is None:
        fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_m, ax_s = fig.subplots(1, 2, width_ratios=[1, 1.4])
    ax_m.imshow(labels, cmap=cmap, norm=norm, interpolation="nearest",
                extent=_extent(labels.shape, pixel_size))
    ax_m.set_xlabel(f"x ({spatial_units})")
    ax_m.set_ylabel(f"y ({spatial_units})")
    ax_m.set_title("Clusters")
    x = np.arange(means.shape[1]) if energy is None else np.asarray(energy)
    for i in range(n):
        frac = float((labels == i).mean())
        ax_s.plot(x, means[i], color=colors[i], label=f"{i} ({100 * frac:.0f} %)")
    ax_s.set_xlabel(_axis_label(energy_name, energy_units))
    ax_s.set_ylabel("Mean spectrum")
    ax_s.legend(fontsize="small")
    return fig


def plot_result(result: UnmixResult, pixel_size: float | None = None,
                spatial_units: str | None = None) -> dict[str, Figure]:
    """All figures that apply to a result: ``"scree"``, ``"components"``, ``"clusters"``,
    ``"maps"`` (embeddings without component spectra). The map calibration defaults to the
    result's own (``result.pixel_size``, ``result.spatial_units``)."""
    figs: dict[str, Figure] = {}
    if pixel_size is None:
        pixel_size = result.pixel_size
    if spatial_units is None:
        spatial_units = result.spatial_units if pixel_size is not None else "px"
    e, en, eu = result.energy, result.energy_name, result.energy_units
    if result.explained_variance_ratio is not None:
        ax = plot_scree(result.explained_variance_ratio)
        figs["scree"] = ax.figure  # type: ignore[assignment]
    if result.components is not None and result.loadings is not None:
        figs["components"] = plot_components(result.components, result.loadings, e, en, eu,
                                             pixel_size, spatial_units)
    if result.labels is not None and result.cluster_means is not None:
        figs["clusters"] = plot_cluster_map(result.labels, result.cluster_means, e, en, eu,
                                            pixel_size, spatial_units)
    if result.components is None and result.labels is None and result.loadings is not None:
        k = result.loadings.shape[-1]
        fig = Figure(figsize=(3 * k, 3), layout="constrained")
        axes = fig.subplots(1, k, squeeze=False)[0]
        for i, ax in enumerate(axes):
            im = ax.imshow(result.loadings[..., i], cmap="viridis",
                           extent=_extent(result.spatial_shape, pixel_size))
            ax.set_title(f"{result.method} {i + 1}")
            fig.colorbar(im, ax=ax, shrink=0.8)
        figs["maps"] = fig
    return figs


def save_figures(result: UnmixResult, out_dir: str | os.PathLike[str], dpi: int = 120,
                 pixel_size: float | None = None, spatial_units: str | None = None
                 ) -> list[Path]:
    """Write every figure of :func:`plot_result` as ``<name>.png`` in ``out_dir``, each via a
    temporary file and a rename, so an interrupted run leaves no half-written image."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in plot_result(result, pixel_size, spatial_units).items():
        path = out / f"{result.method}_{name}.png"
        write_atomic(path, partial(fig.savefig, dpi=dpi, format="png"))
        paths.append(path)
    return paths
