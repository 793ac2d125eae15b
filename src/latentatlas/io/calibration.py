"""The physical size of an image's pixels, carried from a loaded file to every map drawn of it.

A :class:`Calibration` holds the (row, col) pixel size, the origin and the length unit of the
last two axes of a :class:`~latentatlas.io.dataset.Dataset`. Pixels need not be square. Lengths
are shown with an SI prefix that suits the field of view (``nm`` for a 10 nm scan saved in
metres, not ``m`` with a ``1e-8`` offset).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentatlas.io.dataset import Axis

log = logging.getLogger(__name__)

__all__ = ["Calibration", "length_factor", "nice_length_unit"]

# metres per unit; "A" is left out on purpose (it is also the ampere)
_METRES = {
    "m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "micron": 1e-6,
    "nm": 1e-9, "å": 1e-10, "angstrom": 1e-10, "pm": 1e-12,
}
# the units a length is shown in, largest first
_DISPLAY = (("m", 1.0), ("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9), ("pm", 1e-12))


def length_factor(units: str) -> float | None:
    """Metres per ``units`` (``"nm"`` -> 1e-9), or None when ``units`` is not a length."""
    return _METRES.get(units.strip().lower())


def nice_length_unit(metres: float) -> tuple[str, float]:
    """The SI unit in which the length ``metres`` reads between 1 and 1000, and metres per
    that unit: ``nice_length_unit(1e-8) == ("nm", 1e-9)``."""
    size = abs(float(metres))
    if not math.isfinite(size) or size == 0:
        return "m", 1.0
    for name, factor in _DISPLAY:
        if size >= factor:
            return name, factor
    return _DISPLAY[-1]


@dataclass(frozen=True)
class Calibration:
    """Pixel size of an image: physical ``(y, x)`` of pixel ``(r, c)`` is
    ``(offset[0] + r * scale[0], offset[1] + c * scale[1])``, in ``units``.

    ``units == ""`` means uncalibrated: sizes are in pixels (the default).
    """

    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    units: str = ""

    def __post_init__(self) -> None:
        sy, sx = (float(s) for s in self.scale)
        if not (math.isfinite(sy) and math.isfinite(sx)) or sy <= 0 or sx <= 0:
            raise ValueError(f"Calibration scale must be two positive pixel sizes, got {self.scale}")

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_axes(cls, axes: Sequence[Axis], quiet: bool = False) -> Calibration:
        """The calibration of the last two axes (rows, columns) of a dataset.

        Uncalibrated (pixels) when the axes carry no common length unit, are not uniform, or
        have a zero scale; the reason is logged unless ``quiet``.
        """
        if len(axes) < 2:
            return cls()
        ay, ax = axes[-2], axes[-1]
        if not all(hasattr(a, "units") and hasattr(a, "scale") for a in (ay, ax)):
            return cls()  # duck-typed axes that carry no calibration
        why = ""
        fy, fx = length_factor(str(ay.units or "")), length_factor(str(ax.units or ""))
        if getattr(ay, "values", None) is not None or getattr(ax, "values", None) is not None:
            why = "a spatial axis is not uniform"
        elif fy is None or fx is None:
            why = "" if not (ay.units or ax.units) else (
                f"the axes' units {ay.units!r}, {ax.units!r} are not both lengths")
        elif ay.scale == 0 or ax.scale == 0:
            why = "an axis has a zero pixel size"
        if why or fy is None or fx is None:
            if why and not quiet:
                log.info("maps are drawn in pixels: %s", why)
            return cls()
        # the y axis' unit for both, so one scale bar serves the image
        ratio = fx / fy
        return cls(scale=(abs(float(ay.scale)), abs(float(ax.scale)) * ratio),
                   offset=(float(getattr(ay, "offset", 0.0)),
                           float(getattr(ax, "offset", 0.0)) * ratio),
                   units=str(ay.units).strip())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Calibration:
        """Inverse of :meth:`to_dict` (None or ``{}``: uncalibrated)."""
        if not doc:
            return cls()
        return cls(scale=tuple(doc["scale"]), offset=tuple(doc.get("offset", (0.0, 0.0))),
                   units=str(doc.get("units", "")))

    def to_dict(self) -> dict[str, Any]:
        return {"scale": [float(s) for s in self.scale], "offset": [float(o) for o in self.offset],
                "units": self.units}

    # ----------------------------------------------------------------- properties

    @property
    def calibrated(self) -> bool:
        """True when sizes are in a length unit (False: pixels)."""
        return length_factor(self.units) is not None

    @property
    def square(self) -> bool:
        return math.isclose(self.scale[0], self.scale[1], rel_tol=1e-6)

    @property
    def length_units(self) -> str:
        """The unit of lengths: ``units`` or ``"px"``."""
        return self.units if self.calibrated else "px"

    def describe(self) -> str:
        """``"0.39 x 0.78 nm per pixel"`` or ``"pixels (uncalibrated)"``."""
        if not self.calibrated:
            return "pixels (uncalibrated)"
        shown = self.nice()
        sy, sx = shown.scale
        if self.square:
            return f"{sy:.4g} {shown.units} per pixel"
        return f"{sy:.4g} (y) x {sx:.4g} (x) {shown.units} per pixel"

    # ----------------------------------------------------------------- transformations

    def nice(self, shape: tuple[int, int] | None = None) -> Calibration:
        """The same calibration in the SI length unit that suits the field of view ``shape``
        (rows, cols) (or one pixel when None)."""
        factor = length_factor(self.units)
        if factor is None:
            return self
        span = max(self.scale) * (max(shape) if shape is not None else 1)
        name, new = nice_length_unit(span * factor)
        k = factor / new
        return Calibration(scale=(self.scale[0] * k, self.scale[1] * k),
                           offset=(self.offset[0] * k, self.offset[1] * k), units=name)

    def binned(self, factor: int | tuple[int, int]) -> Calibration:
        """Pixels ``factor`` times larger (spatial binning)."""
        fy, fx = (factor, factor) if isinstance(factor, int) else factor
        return Calibration(scale=(self.scale[0] * fy, self.scale[1] * fx), offset=self.offset,
                           units=self.units)

    def resampled(self, zoom: float) -> Calibration:
        """Pixels of an image zoomed by ``zoom`` (more pixels, each smaller)."""
        return Calibration(scale=(self.scale[0] / zoom, self.scale[1] / zoom),
                           offset=self.offset, units=self.units)

    def extent(self, shape: tuple[int, int], origin: bool = False
               ) -> tuple[float, float, float, float]:
        """``imshow`` extent (left, right, bottom, top) of an image of ``shape`` (rows, cols),
        pixel centres at their calibrated positions, row 0 at the top. The file's origin is
        ignored unless ``origin`` (maps start at 0)."""
        sy, sx = self.scale
        oy, ox = self.offset if origin else (0.0, 0.0)
        rows, cols = shape
        return (ox - sx / 2, ox + (cols - 0.5) * sx, oy + (rows - 0.5) * sy, oy - sy / 2)

    def points(self, rc: np.ndarray) -> np.ndarray:
        """Pixel positions ``(n, 2)`` (row, col) -> physical ``(n, 2)`` (y, x) from 0."""
        p = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
        return p * np.asarray(self.scale)
