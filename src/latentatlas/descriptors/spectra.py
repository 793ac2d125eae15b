"""Per-pixel spectra of a spectrum image: ``(ny, nx, L)`` cube -> ``(n, L)`` with positions.

Results computed per spectrum (latents, abundances, labels) paint back with
:meth:`Spectra.to_map`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latentatlas._checks import check_array

__all__ = ["Spectra", "cube_to_spectra"]


@dataclass
class Spectra:
    """Spectra and where they came from.

    Attributes
    ----------
    data : ``(n, L)`` float32 spectra (``(n, c, L)`` for multi-channel cubes).
    positions : ``(n, 2)`` int (row, col) pixel of each spectrum.
    grid_shape : ``(ny, nx)`` of the cube.
    axis : spectral coordinate of every channel, ``(L,)`` (index when uncalibrated).
    axis_name, axis_units : name and units of that axis.
    """

    data: np.ndarray
    positions: np.ndarray
    grid_shape: tuple[int, int]
    axis: np.ndarray
    axis_name: str = "channel"
    axis_units: str = ""

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def to_map(self, values: Any, fill: float = np.nan) -> np.ndarray:
        """``(n, ...)`` per-spectrum values -> ``(ny, nx, ...)`` map; other pixels get ``fill``."""
        v = np.asarray(values)
        if v.shape[0] != len(self):
            raise ValueError(f"values must have one row per spectrum ({len(self)}), got {v.shape}")
        out = np.full(self.grid_shape + v.shape[1:], fill,
                      dtype=np.result_type(v.dtype, np.float32))
        out[self.positions[:, 0], self.positions[:, 1]] = v
        return out


def cube_to_spectra(cube: Any, mask: Any = None) -> Spectra:
    """Flatten a spectrum image into one spectrum per pixel.

    Parameters
    ----------
    cube : ``(ny, nx, L)`` or ``(ny, nx, c, L)`` array, or a Dataset whose last axis is the
        spectral one (its calibration is kept).
    mask : optional ``(ny, nx)`` boolean; only pixels where it is True are returned.
    """
    axis_name, axis_units, coords = "channel", "", None
    if hasattr(cube, "axes") and hasattr(cube, "data"):
        last = cube.axes[-1]
        axis_name, axis_units, coords = last.name, last.units, last.coords
        cube = cube.data
    arr = check_array(cube, "cube", ndim=(3, 4))
    ny, nx = arr.shape[:2]
    if mask is None:
        sel = np.ones((ny, nx), dtype=bool)
    else:
        sel = np.asarray(mask, dtype=bool)
        if sel.shape != (ny, nx):
            raise ValueError(f"mask must have the cube's spatial shape {(ny, nx)}, got {sel.shape}")
        if not sel.any():
            raise ValueError("mask selects no pixel; pass a mask with at least one True")
    rows, cols = np.nonzero(sel)
    return Spectra(
        data=np.ascontiguousarray(arr[rows, cols]),
        positions=np.stack([rows, cols], axis=1),
        grid_shape=(int(ny), int(nx)),
        axis=np.arange(arr.shape[-1], dtype=np.float64) if coords is None else coords,
        axis_name=axis_name,
        axis_units=axis_units,
    )
