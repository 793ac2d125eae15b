"""Rendering of point objects (atomic columns) into images, and microscope-like noise.

Shared by every image generator so lattices, graphene and defects look alike.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def render_columns(
    shape: tuple[int, int],
    positions: np.ndarray,
    intensities: np.ndarray | float = 1.0,
    sigma: np.ndarray | float = 1.5,
) -> np.ndarray:
    """Sum of isotropic Gaussians, one per column, evaluated on the pixel grid.

    positions: (n, 2) float (row, col) in pixels. intensities: (n,) peak heights or a scalar.
    sigma: (n,) widths in pixels or a scalar (columns of heavier atoms may be wider).
    Returns (h, w) float32. Each Gaussian is evaluated in a window of +-4 sigma only, so the
    cost is O(n * sigma^2) rather than O(n * h * w).
    """
    h, w = shape
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    amp = np.broadcast_to(np.asarray(intensities, dtype=np.float64), (len(pos),))
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(pos),))
    image = np.zeros((h, w), dtype=np.float64)
    if len(pos) == 0:
        return image.astype(np.float32)
    if not (sig > 0).all():
        raise ValueError(f"sigma must be > 0 pixels, got minimum {sig.min():g}")
    r = int(np.ceil(4 * sig.max()))
    offsets = np.arange(-r, r + 1)
    base = np.floor(pos).astype(np.int64)  # (n, 2)
    rows = base[:, 0, None] + offsets[None, :]  # (n, k)
    cols = base[:, 1, None] + offsets[None, :]
    two_var = 2 * sig[:, None] ** 2
    gr = np.exp(-((rows - pos[:, 0, None]) ** 2) / two_var)  # (n, k)
    gc = np.exp(-((cols - pos[:, 1, None]) ** 2) / two_var)
    values = amp[:, None, None] * gr[:, :, None] * gc[:, None, :]  # (n, k, k)
    rr = np.broadcast_to(rows[:, :, None], values.shape)
    cc = np.broadcast_to(cols[:, None, :], values.shape)
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    np.add.at(image, (rr[inside], cc[inside]), values[inside])
    return image.astype(np.float32)


def add_microscope_noise(
    image: np.ndarray,
    rng: np.random.Generator,
    blur: float = 0.0,
    counts: float | None = None,
    gaussian: float = 0.0,
    scan_jitter: float = 0.0,
) -> np.ndarray:
    """Blur, Poisson shot noise, Gaussian read noise and row-wise scan jitter, in that order.

    image: (h, w), intensities roughly in [0, 1]. counts: expected counts at intensity 1
    (None = no shot noise). scan_jitter: standard deviation, in pixels, of the horizontal
    shift of each scan line (the flyback distortion of STEM/STM images).
    Returns (h, w) float32.
    """
    out = np.asarray(image, dtype=np.float64)
    if blur > 0:
        out = ndimage.gaussian_filter(out, blur)
    if scan_jitter > 0 and out.shape[1] > 1:
        shifts = np.asarray(rng.normal(0.0, scan_jitter, size=out.shape[0]))
        # Linear interpolation of every row at its own shifted positions, edges held constant.
        width = out.shape[1]
        pos = np.clip(np.arange(width)[None, :] - shifts[:, None], 0, width - 1)
        left = np.minimum(np.floor(pos).astype(np.int64), width - 2)
        frac = pos - left
        rows = np.arange(out.shape[0])[:, None]
        out = out[rows, left] * (1 - frac) + out[rows, left + 1] * frac
    if counts is not None:
        out = rng.poisson(np.clip(out, 0, None) * counts) / counts
    if gaussian > 0:
        out = out + rng.normal(0.0, gaussian, size=out.shape)
    return out.astype(np.float32)
