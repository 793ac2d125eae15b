"""The one result object every unmixing method returns, with atomic HDF5 save/load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentatlas._files import write_atomic, write_text_atomic
from latentatlas._repr import html_summary, text_summary
from latentatlas.io.calibration import Calibration
from latentatlas.io.dataset import Axis, axis_from_values

__all__ = ["UnmixResult"]

_ARRAYS = (
    "energy",
    "components",
    "loadings",
    "explained_variance",
    "explained_variance_ratio",
    "labels",
    "cluster_means",
)
_FORMAT = "latentatlas.unmix/1"


@dataclass
class UnmixResult:
    """Components, maps and diagnostics of one unmixing run.

    Attributes
    ----------
    method : the method name given to :func:`latentatlas.spectral.unmix`.
    params : every parameter used (method options and preprocessing), JSON-serialisable.
    energy : (channels,) the spectral axis after cropping.
    energy_name, energy_units : axis name and units.
    spatial_shape : (ny, nx) of the maps.
    components : (k, channels) component spectra, or None (manifold methods).
    loadings : (ny, nx, k) loading/abundance/embedding maps, or None.
    reconstruction_error : relative Frobenius error ``||X - X_hat|| / ||X||`` where the
        method reconstructs, else None.
    explained_variance, explained_variance_ratio : (k,) for PCA, else None.
    labels : (ny, nx) int cluster labels for clustering methods (-1 = noise), else None.
    cluster_means : (n_clusters, channels) mean spectrum of each cluster, else None.
    extras : method-specific arrays (posterior standard deviations, error histories, ...).
    calibration : pixel size of the maps (from the loaded file's spatial axes, times the
        binning factor); uncalibrated (pixels) when the input carried none.
    navigation_shape : the input's navigation shape before it was flattened into the
        ``spatial_shape`` maps: ``(n,)`` for a line scan (maps ``(1, n)``), ``(t, ny, nx)`` for
        4-D data (maps ``(t * ny, nx)``, the frames one below the other); equal to
        ``spatial_shape`` for a spectrum image.
    """

    method: str
    params: dict[str, Any]
    energy: np.ndarray
    energy_name: str
    energy_units: str
    spatial_shape: tuple[int, int]
    components: np.ndarray | None = None
    loadings: np.ndarray | None = None
    reconstruction_error: float | None = None
    explained_variance: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None
    labels: np.ndarray | None = None
    cluster_means: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    navigation_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.navigation_shape is None:
            self.navigation_shape = tuple(self.spatial_shape)

    @property
    def n_components(self) -> int:
        """Number of components, maps or clusters."""
        for arr in (self.components, self.cluster_means):
            if arr is not None:
                return int(arr.shape[0])
        return 0 if self.loadings is None else int(self.loadings.shape[-1])

    @property
    def pixel_size(self) -> float | None:
        """Column pixel size in ``spatial_units`` (None when uncalibrated); see ``calibration``."""
        return self.calibration.scale[1] if self.calibration.calibrated else None

    @property
    def spatial_units(self) -> str:
        """Length unit of the maps (``"px"`` when uncalibrated); see ``calibration``."""
        return self.calibration.length_units

    def _summary(self) -> dict[str, Any]:
        return {
            "method": self.method, "n_components": self.n_components,
            "navigation_shape": self.navigation_shape,
            "energy": f"{self.energy_name} {self.energy[0]:.4g}..{self.energy[-1]:.4g} "
                      f"{self.energy_units}".rstrip() + f" ({self.energy.shape[0]} channels)",
            "calibration": self.calibration.describe(),
            "reconstruction_error": self.reconstruction_error,
            "outputs": [n for n in ("components", "loadings", "labels", "cluster_means")
                        if getattr(self, n) is not None],
        }

    def __repr__(self) -> str:
        return text_summary("UnmixResult", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("UnmixResult", self._summary())

    def plot(self) -> dict[str, Any]:
        """Every figure of this result (scree, components beside their maps, clusters),
        as ``{name: matplotlib Figure}``; maps at their physical size with scale bars."""
        from latentatlas.plots.spectral import plot_result

        return plot_result(self)

    def _map_axes(self) -> list[Axis]:
        """Axes of the maps in the input's navigation shape (line scans: one axis)."""
        cal = self.calibration
        units = cal.units if cal.calibrated else ""
        nav = tuple(self.navigation_shape or self.spatial_shape)
        y = Axis("y", scale=cal.scale[0], offset=cal.offset[0], units=units, kind="spatial")
        x = Axis("x", scale=cal.scale[1], offset=cal.offset[1], units=units, kind="spatial")
        if len(nav) == 1:
            return [x]
        return [Axis(f"axis_{i}", kind="frame") for i in range(len(nav) - 2)] + [y, x]

    def _energy_axis(self) -> Axis:
        return axis_from_values(self.energy_name, self.energy, self.energy_units, "spectral")

    def signal_dicts(self) -> dict[str, dict[str, Any]]:
        """The result as HyperSpy signal dictionaries (see :meth:`to_signals`)."""
        from latentatlas.io.hyperspy import signal_dict

        nav = tuple(self.navigation_shape or self.spatial_shape)
        maps = self._map_axes()
        meta = {"method": self.method, "params": json.dumps(self.params, default=_json_default)}
        comp = Axis("component", kind="")
        out: dict[str, dict[str, Any]] = {}
        if self.loadings is not None:
            k = self.loadings.shape[-1]
            stack = np.moveaxis(self.loadings.reshape(*nav, k), -1, 0)
            out["loadings"] = signal_dict(stack, [comp, *maps], min(2, len(maps)),
                                          f"{self.method} loadings", metadata=meta)
        if self.components is not None:
            out["factors"] = signal_dict(self.components, [comp, self._energy_axis()], 1,
                                         f"{self.method} factors", metadata=meta)
        if self.labels is not None:
            labels = self.labels.reshape(nav)
            out["labels"] = signal_dict(labels, maps, min(2, len(maps)),
                                        f"{self.method} labels", quantity="cluster",
                                        metadata=meta)
        if self.cluster_means is not None:
            out["cluster_means"] = signal_dict(self.cluster_means,
                                               [Axis("cluster"), self._energy_axis()], 1,
                                               f"{self.method} cluster means", metadata=meta)
        return out

    def to_signals(self) -> dict[str, Any]:
        """The result as calibrated HyperSpy signals (needs ``hyperspy``).

        ``loadings``: a Signal2D stack, one image per component (navigation axis
        ``component``), on the input's spatial axes (line scans: a Signal1D per component);
        ``factors``: Signal1D spectra on the energy axis; for clustering methods ``labels``
        (the cluster map) and ``cluster_means`` (Signal1D).
        """
        from latentatlas.io.hyperspy import to_signal

        return {name: to_signal(doc) for name, doc in self.signal_dicts().items()}

    def save_hspy(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every signal of :meth:`signal_dicts` as ``<method>_<name>.hspy`` in
        ``folder`` (``hs.load`` opens them; needs ``rosettasciio``). Returns the paths."""
        from latentatlas.io.hyperspy import save_hspy

        return [save_hspy(Path(folder) / f"{self.method}_{name}.hspy", doc)
                for name, doc in self.signal_dicts().items()]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to HDF5 atomically (temporary file in the same folder, then rename)."""
        path = Path(path)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = _FORMAT
                f.attrs["method"] = self.method
                f.attrs["params"] = json.dumps(self.params, default=_json_default)
                f.attrs["energy_name"] = self.energy_name
                f.attrs["energy_units"] = self.energy_units
                f.attrs["spatial_shape"] = np.asarray(self.spatial_shape, dtype=np.int64)
                if self.reconstruction_error is not None:
                    f.attrs["reconstruction_error"] = float(self.reconstruction_error)
                f.attrs["calibration"] = json.dumps(self.calibration.to_dict())
                f.attrs["navigation_shape"] = np.asarray(self.navigation_shape, dtype=np.int64)
                for name in _ARRAYS:
                    value = getattr(self, name)
                    if value is not None:
                        f.create_dataset(name, data=np.asarray(value), compression="gzip")
                grp = f.create_group("extras")
                for key, value in self.extras.items():
                    grp.create_dataset(key, data=np.asarray(value))

        write_atomic(path, write)
        return path

    def save_params(self, path: str | os.PathLike[str]) -> Path:
        """Write the method, parameters and scalar diagnostics as JSON, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "method": self.method,
            "params": self.params,
            "n_components": self.n_components,
            "spatial_shape": list(self.spatial_shape),
            "energy": {"name": self.energy_name, "units": self.energy_units,
                       "first": float(self.energy[0]), "last": float(self.energy[-1]),
                       "channels": int(self.energy.shape[0])},
            "calibration": self.calibration.to_dict(),
            "navigation_shape": list(self.navigation_shape or ()),
            "reconstruction_error": self.reconstruction_error,
            "explained_variance_ratio": None if self.explained_variance_ratio is None
            else [float(v) for v in self.explained_variance_ratio],
        }
        write_text_atomic(path, json.dumps(doc, indent=2, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UnmixResult:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"no unmixing result at {path}; check the path")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path} is not a readable HDF5 file ({exc}); was it truncated?") \
                from exc
        with f:
            if f.attrs.get("format") != _FORMAT:
                raise ValueError(
                    f"{path} is not a latentatlas unmixing result (format attribute "
                    f"{f.attrs.get('format')!r}, expected {_FORMAT!r})"
                )
            arrays: dict[str, Any] = {
                name: (f[name][()] if name in f else None) for name in _ARRAYS
            }
            extras = {key: f["extras"][key][()] for key in f["extras"]}
            rec = f.attrs.get("reconstruction_error")
            ny, nx = (int(v) for v in f.attrs["spatial_shape"])
            nav = f.attrs.get("navigation_shape")
            return cls(
                method=str(f.attrs["method"]),
                params=json.loads(f.attrs["params"]),
                energy_name=str(f.attrs["energy_name"]),
                energy_units=str(f.attrs["energy_units"]),
                spatial_shape=(ny, nx),
                reconstruction_error=None if rec is None else float(rec),
                extras=extras,
                calibration=_read_calibration(f.attrs),
                navigation_shape=None if nav is None else tuple(int(v) for v in nav),
                **arrays,
            )


def _read_calibration(attrs: Any) -> Calibration:
    if "calibration" in attrs:
        return Calibration.from_dict(json.loads(attrs["calibration"]))
    px = attrs.get("pixel_size")  # results written before the calibration attribute
    if px is None:
        return Calibration()
    return Calibration(scale=(float(px), float(px)), units=str(attrs.get("spatial_units", "")))


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    return str(obj)
