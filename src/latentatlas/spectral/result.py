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
    pixel_size, spatial_units : calibration of the maps (from the loaded file's x axis,
        times the binning factor), or None and "px".
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
    pixel_size: float | None = None
    spatial_units: str = "px"

    @property
    def n_components(self) -> int:
        """Number of components, maps or clusters."""
        for arr in (self.components, self.cluster_means):
            if arr is not None:
                return int(arr.shape[0])
        return 0 if self.loadings is None else int(self.loadings.shape[-1])

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
                if self.pixel_size is not None:
                    f.attrs["pixel_size"] = float(self.pixel_size)
                f.attrs["spatial_units"] = self.spatial_units
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
            px = f.attrs.get("pixel_size")
            ny, nx = (int(v) for v in f.attrs["spatial_shape"])
            return cls(
                method=str(f.attrs["method"]),
                params=json.loads(f.attrs["params"]),
                energy_name=str(f.attrs["energy_name"]),
                energy_units=str(f.attrs["energy_units"]),
                spatial_shape=(ny, nx),
                reconstruction_error=None if rec is None else float(rec),
                extras=extras,
                pixel_size=None if px is None else float(px),
                spatial_units=str(f.attrs.get("spatial_units", "px")),
                **arrays,
            )


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    return str(obj)
