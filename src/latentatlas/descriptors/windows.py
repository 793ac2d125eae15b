"""Sliding windows over an image or stack: patches on a regular grid, for analysis without
atom finding. Latents of the windows paint back as a dense ``(rows, cols)`` map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from latentatlas.descriptors.patches import (
    NORMALIZE_MODES,
    Normalize,
    Patches,
    _check_window,
    as_stack,
    normalize_patches,
    normalize_stack,
)

__all__ = ["MAX_WINDOW", "MIN_WINDOW", "WINDOW_PER_DOMAIN", "WindowChoice", "choose_window",
           "domain_size", "sliding_windows", "window_grid"]

# Sliding windows for a two-state (PFM phase) image are sized from its domains: the window
# is WINDOW_PER_DOMAIN x the mean domain width, kept in [MIN_WINDOW, MAX_WINDOW] pixels (a
# window under 16 px holds too little of a domain to tell it from noise; over 64 px the
# windows of a 256 px scan are too few to train on), the stride a quarter of it.
# WINDOW_PER_DOMAIN was selected on the three PZT scans of ../shared/data (their latents'
# |Spearman rho| with the switched fraction and wall density; benchmarks/RESULTS.md,
# issue 13), not on the PTO scans.
WINDOW_PER_DOMAIN = 1.0
MIN_WINDOW = 16
MAX_WINDOW = 64


@dataclass(frozen=True)
class WindowChoice:
    """Window side and stride (pixels) chosen from the data, and why."""

    window: int
    stride: int
    domain_size: float | None
    why: str


def domain_size(phase: Any) -> float:
    """Mean domain width in pixels of a PFM phase image ``(h, w)``: its area over the length
    of its domain walls (Gaussian wall finder on the polarisation projection). For parallel
    stripes this is the stripe width; ``inf`` when the image holds no wall (one domain)."""
    from latentatlas.descriptors.walls import find_walls

    walls = find_walls(np.asarray(phase, dtype=np.float64), "gaussian", phase=True)
    length = float(walls.mask.sum())
    return float(walls.mask.size) / length if length > 0 else float("inf")


def choose_window(image_shape: tuple[int, int], phase: Any | None = None) -> WindowChoice:
    """The sliding window for an image of ``image_shape`` ``(h, w)``.

    With a PFM phase image ``(h, w)``: ``WINDOW_PER_DOMAIN`` x :func:`domain_size`, rounded
    to an even number and clamped to [``MIN_WINDOW``, ``MAX_WINDOW``]; without one (no
    two-state signal to measure a domain on) 32 pixels. Never more than a quarter of the
    shorter image side; the stride is a quarter of the window.
    """
    largest = max(4, min(image_shape) // 4)
    if phase is None:
        window = min(32, largest)
        return WindowChoice(window, max(1, window // 4), None,
                            "no phase channel to measure domains on: the fixed 32 px")
    size = domain_size(phase)
    want = WINDOW_PER_DOMAIN * size
    window = int(np.clip(2 * round(want / 2) if np.isfinite(want) else MAX_WINDOW,
                         MIN_WINDOW, MAX_WINDOW))
    window = min(window, largest)
    why = (f"{WINDOW_PER_DOMAIN:g} x the mean domain width ({size:.1f} px: image area / wall "
           f"length of the phase), clamped to [{MIN_WINDOW}, {MAX_WINDOW}] and <= a quarter of "
           "the image; stride = window / 4")
    return WindowChoice(window, max(1, window // 4), size if np.isfinite(size) else None, why)


def window_grid(image_shape: tuple[int, int], window: int, stride: int) -> tuple[int, int]:
    """Number of window rows and columns that fit: ``(h - window) // stride + 1`` each."""
    h, w = image_shape
    return (h - window) // stride + 1, (w - window) // stride + 1


def sliding_windows(
    images: Any,
    window: int,
    stride: int | None = None,
    normalize: Normalize = "image",
    background_sigma: float | None = None,
) -> Patches:
    """All ``window x window`` windows on a grid with step ``stride`` (default window // 2).

    Parameters
    ----------
    images : ``(h, w)``, ``(n_frames, h, w)`` or ``(n_frames, c, h, w)`` (or a Dataset).
    window : window side in pixels.
    stride : step between window origins in pixels.
    normalize, background_sigma : as in :func:`extract_patches`.

    Returns
    -------
    Patches with ``data`` ``(n_frames * rows * cols, c, window, window)`` in frame-major,
    row-major order, ``grid_shape=(rows, cols)``, ``centers`` at the window centres and
    ``border="drop"`` (only whole windows).
    """
    stack = as_stack(images)
    n_frames, _, h, w = stack.shape
    window = _check_window(window, h, w)
    stride = max(1, window // 2) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer (pixels), got {stride!r}")
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    stack = normalize_stack(stack, normalize, background_sigma)
    rows, cols = window_grid((h, w), window, int(stride))
    view = sliding_window_view(stack, (window, window), axis=(2, 3))[
        :, :, ::stride, ::stride
    ][:, :, :rows, :cols]  # (n, c, rows, cols, w, w)
    data = np.ascontiguousarray(view.transpose(0, 2, 3, 1, 4, 5), dtype=np.float32)
    data = data.reshape(n_frames * rows * cols, stack.shape[1], window, window)
    data = normalize_patches(data, normalize)
    half = (window - 1) / 2.0  # geometric centre of the window
    rr, cc = np.meshgrid(np.arange(rows) * stride + half, np.arange(cols) * stride + half,
                         indexing="ij")
    centers = np.tile(np.stack([rr.ravel(), cc.ravel()], axis=1), (n_frames, 1))
    frames = np.repeat(np.arange(n_frames), rows * cols)
    m = data.shape[0]
    return Patches(
        data=data,
        centers=centers,
        frames=frames,
        classes=np.full(m, -1, dtype=np.int64),
        index=np.arange(m),
        window=window,
        border="drop",
        normalize=normalize,
        image_shape=(int(h), int(w)),
        n_frames=int(n_frames),
        grid_shape=(rows, cols),
        n_input=m,
        extra={"stride": int(stride),
               **({"background_sigma": float(background_sigma)}
                  if normalize == "background" and background_sigma is not None else {})},
    )
