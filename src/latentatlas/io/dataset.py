"""The in-memory result of every loader: an array, one calibrated axis per dimension, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Axis", "Dataset", "axis_from_values"]


@dataclass
class Axis:
    """One calibrated dimension: physical coordinate of index ``i`` is ``offset + scale * i``.

    ``values`` holds the explicit coordinates when the axis is not uniform (for example the
    triangular bias waveform of a switching-spectroscopy file); ``kind`` is ``"spatial"``,
    ``"spectral"``, ``"frame"`` or ``""`` when the file does not say.
    """

    name: str
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    size: int = 0
    kind: str = ""
    values: np.ndarray | None = None

    @property
    def coords(self) -> np.ndarray:
        """Physical coordinate of every index, shape ``(size,)``."""
        if self.values is not None:
            return np.asarray(self.values)
        return self.offset + self.scale * np.arange(self.size, dtype=np.float64)

    @property
    def uniform(self) -> bool:
        return self.values is None


def axis_from_values(
    name: str, values: np.ndarray, units: str = "", kind: str = ""
) -> Axis:
    """Axis from explicit coordinates; stored as scale/offset when they are evenly spaced."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return Axis(name=name, units=units, size=0, kind=kind)
    if v.size == 1:
        return Axis(name=name, offset=float(v[0]), units=units, size=1, kind=kind)
    step = np.diff(v)
    # rtol on the mean step: float32-rounded calibrations are uniform to about 1e-6
    if np.allclose(step, step.mean(), rtol=1e-4, atol=1e-12 * max(1.0, abs(step.mean()))) and (
        step.mean() != 0
    ):
        return Axis(
            name=name, scale=float(step.mean()), offset=float(v[0]), units=units, size=v.size,
            kind=kind,
        )
    return Axis(
        name=name, scale=float(step.mean()), offset=float(v[0]), units=units, size=v.size,
        kind=kind, values=v,
    )


@dataclass
class Dataset:
    """A loaded array with its calibration.

    Attributes
    ----------
    data : numpy array, any dimensionality, e.g. ``(h, w)``, ``(n_frames, h, w)`` or a
        spectrum image ``(ny, nx, channels)``.
    axes : one :class:`Axis` per dimension of ``data``, in array order.
    metadata : free-form dictionary of what the file recorded (header, instrument, ...).
    signal_type : e.g. ``"EELS"``, ``"EDS_TEM"``, ``"IMAGE"``, ``"SPECTRAL_IMAGE"``;
        ``""`` if unknown.
    quantity : the measured quantity (``"PhaseRetrace"``, ``"Current"``, ...); ``""`` if unknown.
    units : units of the values in ``data``; ``""`` if unknown.
    source : the path the data came from (``None`` for in-memory input).
    name : the channel or signal name inside a multi-signal file.
    """

    data: np.ndarray
    axes: list[Axis]
    metadata: dict[str, Any] = field(default_factory=dict)
    signal_type: str = ""
    quantity: str = ""
    units: str = ""
    source: Path | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if len(self.axes) != self.data.ndim:
            raise ValueError(
                f"Dataset needs one Axis per data dimension: data has shape {self.data.shape} "
                f"but {len(self.axes)} axes were given"
            )
        for ax, n in zip(self.axes, self.data.shape, strict=True):
            if ax.size == 0:
                ax.size = int(n)
            elif ax.size != n:
                raise ValueError(
                    f"axis {ax.name!r} has size {ax.size} but the data dimension has {n}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    def axis(self, name: str) -> Axis:
        """The axis called ``name`` (case-insensitive)."""
        for ax in self.axes:
            if ax.name.lower() == name.lower():
                return ax
        raise KeyError(f"no axis named {name!r}; axes are {[a.name for a in self.axes]}")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        axes = ", ".join(
            f"{a.name}={a.size}" + (f" [{a.units}]" if a.units else "") for a in self.axes
        )
        what = self.quantity or self.signal_type or "data"
        src = f" from {self.source.name}" if self.source is not None else ""
        return f"Dataset({what}, {self.data.dtype}, {axes}{src})"
