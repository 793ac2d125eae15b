"""What every map and figure of latentatlas shares: images in physical units with a scale bar,
colour bars that say what they show, labels from files that cannot break the renderer, and one
way of saving (PNG, plus SVG or PDF on request) that clips nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from latentatlas._files import write_atomic
from latentatlas.io.calibration import Calibration

__all__ = [
    "FIGURE_FORMATS",
    "add_colorbar",
    "add_scalebar",
    "display_calibration",
    "safe_label",
    "save_figure",
    "show_image",
    "to_display",
]

FIGURE_FORMATS = ("png", "svg", "pdf")
DPI = 150


def safe_label(text: str) -> str:
    """``text`` as matplotlib will draw it without error.

    Labels read from files may hold ``$...$`` that is not valid mathtext (``$\\sqrt E$``);
    valid mathtext is kept (``$\\mu$m`` renders), anything else is drawn literally.
    """
    text = str(text)
    if text.count("$") - text.count(r"\$") < 2:
        return text
    from matplotlib.mathtext import MathTextParser

    try:
        MathTextParser("path").parse(text)
    except ValueError:
        return re.sub(r"(?<!\\)\$", r"\\$", text)
    return text


def display_calibration(calibration: Calibration | None, shape: tuple[int, int]) -> Calibration:
    """The calibration to draw a ``shape`` (rows, cols) map with: lengths in the SI unit that
    suits its field of view, or pixels."""
    cal = calibration or Calibration()
    return cal.nice(shape) if cal.calibrated else cal


def to_display(calibration: Calibration, rc: np.ndarray) -> np.ndarray:
    """Pixel positions ``(n, 2)`` (row, col) -> drawing coordinates ``(n, 2)`` (x, y)."""
    yx = calibration.points(rc)
    return yx[:, ::-1]


def add_scalebar(ax: Axes, calibration: Calibration, color: str = "black") -> Any:
    """A scale bar in the lower right (physical units, or pixels when uncalibrated); the axis
    ticks are hidden, the bar says the size."""
    from matplotlib_scalebar.scalebar import ScaleBar

    if calibration.calibrated:
        bar = ScaleBar(1.0, units=_scalebar_units(calibration.units), dimension="si-length",
                       location="lower right", box_alpha=0.65, color=color, length_fraction=0.25)
    else:
        bar = ScaleBar(1.0, units="px", dimension="pixel-length", location="lower right",
                       box_alpha=0.65, color=color, length_fraction=0.25)
    ax.add_artist(bar)
    ax.set_xticks([])
    ax.set_yticks([])
    return bar


def _scalebar_units(units: str) -> str:
    return {"µm": "um", "μm": "um"}.get(units, units)


def show_image(
    ax: Axes,
    image: np.ndarray,
    calibration: Calibration | None = None,
    scalebar: bool = True,
    **imshow: Any,
) -> AxesImage:
    """Draw ``image`` ``(rows, cols)`` at its physical size (non-square pixels stay
    non-square) with a scale bar; returns the image artist. ``calibration`` must already be
    in display units (:func:`display_calibration`)."""
    img = np.asarray(image)
    cal = calibration or Calibration()
    imshow.setdefault("interpolation", "nearest")
    artist = ax.imshow(img, extent=cal.extent(img.shape[:2]), aspect="equal", **imshow)
    # points drawn over the image later (atoms at its edge) must not widen the frame
    ax.set_autoscale_on(False)
    if scalebar:
        add_scalebar(ax, cal)
    return artist


def add_colorbar(ax: Axes, mappable: ScalarMappable, label: str, **kwargs: Any) -> Colorbar:
    """A colour bar beside ``ax`` labelled with what it shows and its units."""
    if not label:
        raise ValueError("a colour bar needs a label (quantity and units)")
    fig = ax.figure
    assert isinstance(fig, Figure)
    kwargs.setdefault("fraction", 0.046)
    kwargs.setdefault("pad", 0.02)
    cb = fig.colorbar(mappable, ax=ax, **kwargs)
    cb.set_label(safe_label(label))
    return cb


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI,
                formats: Sequence[str] = ()) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), and beside it in each of the
    extra ``formats`` (``svg``, ``pdf``), each via a temporary file and a rename. The bounding
    box is fitted to what is drawn, so no label is clipped. Returns ``path``."""
    path = Path(path)
    for fmt in (path.suffix.lstrip("."), *formats):
        if fmt not in FIGURE_FORMATS:
            raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}, got "
                             f"{fmt!r}")
    for fmt in dict.fromkeys((path.suffix.lstrip("."), *formats)):
        target = path.with_suffix(f".{fmt}")
        write_atomic(target, lambda tmp, f=fmt: fig.savefig(  # type: ignore[misc]
            tmp, dpi=dpi, format=f, bbox_inches="tight", pad_inches=0.05,
            metadata=_metadata(f)))
    return path


def _metadata(fmt: str) -> dict[str, Any]:
    # no creation date: the same figure gives the same bytes (SVG/PDF embed it otherwise)
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return {}
