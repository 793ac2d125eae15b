"""Generated objects with known pose and factors, for testing and demonstrating the VAE family.

Images are rendered analytically with the pose convention of ``latentatlas.nn.pose``: the
canonical object's point p appears at q = R(angle) p + shift on a [-1, 1] grid, so the true
angle and shift are directly comparable with the model's latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# An asymmetric "L with a tail" made of Gaussian blobs: (x, y, amplitude) in the canonical frame.
_L_SHAPE = np.array([
    [-0.30, -0.40, 1.0], [-0.30, -0.15, 1.0], [-0.30, 0.10, 1.0], [-0.30, 0.35, 1.0],
    [-0.05, 0.35, 1.0], [0.20, 0.35, 1.0], [0.35, -0.30, 0.6],
], dtype=np.float64)


@dataclass
class ShapeSet:
    """images: (n, c, h, w) float32 in [0, 1]; angle: (n,) radians; shift: (n, 2) (x, y) in
    half-widths; factors: (n, m) any further true factors; labels: (n,) class per image."""

    images: np.ndarray
    angle: np.ndarray
    shift: np.ndarray
    factors: np.ndarray
    labels: np.ndarray


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size) * 2 + 1) / size - 1
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x.ravel(), y.ravel()


def render_blobs(blobs: np.ndarray, angle: np.ndarray, shift: np.ndarray, size: int,
                 width: float | np.ndarray = 0.12) -> np.ndarray:
    """Render canonical blobs (k, 3) or per-sample blobs (n, k, 3) under poses -> (n, size, size)."""
    n = len(angle)
    blobs = np.broadcast_to(blobs, (n, *blobs.shape[-2:]))
    x, y = _grid(size)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    # observed q -> canonical p = R^T (q - t) with R = [[c, s], [-s, c]]
    qx, qy = x[None] - shift[:, :1], y[None] - shift[:, 1:]
    px, py = c * qx - s * qy, s * qx + c * qy  # (n, P)
    w = np.broadcast_to(np.asarray(width, dtype=np.float64).reshape(-1, 1, 1), (n, 1, 1))
    d2 = (px[:, :, None] - blobs[:, None, :, 0]) ** 2 + (py[:, :, None] - blobs[:, None, :, 1]) ** 2
    img = (blobs[:, None, :, 2] * np.exp(-d2 / (2 * w**2))).sum(-1)
    return np.clip(img, 0, 1).reshape(n, size, size).astype(np.float32)


def rotated_shapes(n: int = 2000, size: int = 28, max_angle: float = np.pi / 3, max_shift: float = 0.15,
                   noise: float = 0.02, channels: int = 1, seed: int = 0) -> ShapeSet:
    """An asymmetric shape under random rotation (uniform in +-max_angle) and shift.

    channels=2 adds a second signal per pixel (a blurred, inverted copy), as for multi-channel data.
    """
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-max_angle, max_angle, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    images = render_blobs(_L_SHAPE, angle, shift, size)[:, None]
    if channels == 2:
        second = 1.0 - render_blobs(_L_SHAPE, angle, shift, size, width=0.2)
        images = np.concatenate([images, second[:, None]], axis=1)
    elif channels != 1:
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    images = np.clip(images + rng.normal(0, noise, images.shape), 0, 1).astype(np.float32)
    return ShapeSet(images, angle, shift, np.zeros((n, 0)), np.zeros(n, dtype=np.int64))


def two_factor_blobs(n: int = 2000, size: int = 28, noise: float = 0.02, seed: int = 0) -> ShapeSet:
    """Centred elliptical blobs whose width and elongation vary: two continuous factors."""
    rng = np.random.default_rng(seed)
    width = rng.uniform(0.15, 0.35, n)
    elong = rng.uniform(0.5, 1.0, n)
    x, y = _grid(size)
    img = np.exp(-(x[None] ** 2 / (2 * width[:, None] ** 2)
                   + y[None] ** 2 / (2 * (width * elong)[:, None] ** 2)))
    images = img.reshape(n, 1, size, size) + rng.normal(0, noise, (n, 1, size, size))
    return ShapeSet(np.clip(images, 0, 1).astype(np.float32), np.zeros(n), np.zeros((n, 2)),
                    np.stack([width, elong], 1), np.zeros(n, dtype=np.int64))


def shifted_peaks(n: int = 2000, length: int = 64, max_shift: float = 0.4, noise: float = 0.02,
                  seed: int = 0) -> ShapeSet:
    """1-D spectra: one Gaussian peak whose position (the shift, in half-widths) and width vary.

    images: (n, 1, length); shift: (n, 1).
    """
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-max_shift, max_shift, n)
    width = rng.uniform(0.06, 0.12, n)
    x = (np.arange(length) * 2 + 1) / length - 1
    peaks = np.exp(-((x[None] - shift[:, None]) ** 2) / (2 * width[:, None] ** 2))
    spectra = peaks + rng.normal(0, noise, peaks.shape)
    return ShapeSet(spectra[:, None].astype(np.float32), np.zeros(n), shift[:, None],
                    width[:, None], np.zeros(n, dtype=np.int64))


# The four-shape benchmark set: names, label order and the order of each shape's rotational
# symmetry (an angle and that angle plus 360/order degrees give the same image).
FOUR_SHAPES = ("bar", "ellipse", "L", "triangle")
FOUR_SHAPES_SYMMETRY = (2, 2, 1, 3)


def _box_distance(px: np.ndarray, py: np.ndarray, cx: float, cy: float, hx: float,
                  hy: float) -> np.ndarray:
    """Signed distance (negative inside, exact outside the corners' quadrants) to an
    axis-aligned box centred at (cx, cy) with half-sizes (hx, hy)."""
    return np.maximum(np.abs(px - cx) - hx, np.abs(py - cy) - hy)


def _shape_distance(name: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance (half-widths; negative inside) of canonical points to shape ``name``.

    Every shape has its centroid at the origin, so rotation turns it about its own centre.
    """
    if name == "bar":
        return _box_distance(px, py, 0.0, 0.0, 0.55, 0.12)
    if name == "ellipse":
        a, b = 0.5, 0.28
        return (np.sqrt((px / a) ** 2 + (py / b) ** 2) - 1.0) * b
    if name == "triangle":
        # Equilateral, circumradius 0.5 (inradius 0.25), one vertex pointing up (towards -y).
        normals = np.deg2rad([90.0, 210.0, 330.0])
        return np.max([np.cos(t) * px + np.sin(t) * py for t in normals], axis=0) - 0.25
    if name == "L":
        # Arms 0.2 thick, 0.9 (vertical) and 0.6 (horizontal) long: unequal, so no mirror axis.
        # Boxes placed so that the union's centroid is the origin.
        vertical = (-0.4, 0.0, 0.1, 0.45)
        horizontal = (-0.1, 0.35, 0.2, 0.1)
        area_v, area_h = 4 * vertical[2] * vertical[3], 4 * horizontal[2] * horizontal[3]
        cx = (area_v * vertical[0] + area_h * horizontal[0]) / (area_v + area_h)
        cy = (area_v * vertical[1] + area_h * horizontal[1]) / (area_v + area_h)
        return np.minimum(_box_distance(px + cx, py + cy, *vertical),
                          _box_distance(px + cx, py + cy, *horizontal))
    raise ValueError(f"unknown shape {name!r}; known: {FOUR_SHAPES}")


def render_shape(name: str, angle: np.ndarray, shift: np.ndarray, size: int) -> np.ndarray:
    """Shape ``name`` (one of FOUR_SHAPES) under poses -> (n, size, size) float32 in [0, 1].

    Solid with a one-pixel antialiased edge; pose convention as in ``render_blobs``.
    """
    x, y = _grid(size)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    qx, qy = x[None] - shift[:, :1], y[None] - shift[:, 1:]
    px, py = c * qx - s * qy, s * qx + c * qy
    pixel = 2.0 / size
    img = np.clip(0.5 - _shape_distance(name, px, py) / pixel, 0.0, 1.0)
    return img.reshape(len(angle), size, size).astype(np.float32)


def four_shapes(n: int = 2000, size: int = 28, max_angle: float = np.pi / 3,
                max_shift: float = 0.15, noise: float = 0.02, seed: int = 0) -> ShapeSet:
    """Bar, ellipse, L and triangle (labels 0-3 in FOUR_SHAPES order, equal numbers, shuffled)
    rotated uniformly in +-max_angle and shifted uniformly in +-max_shift half-widths.

    The benchmark set for whether an rVAE's angle means the angle for every object kind:
    several kinds share one latent space. Rotational symmetry (FOUR_SHAPES_SYMMETRY): the bar
    and the ellipse look the same after 180 degrees, the triangle after 120 degrees, the L never.
    Within +-60 degrees only the triangle is ambiguous (its -60 and +60 are one image); compare
    its angles modulo 120 degrees. images: (n, 1, size, size).
    """
    if n < len(FOUR_SHAPES):
        raise ValueError(f"n must be >= {len(FOUR_SHAPES)} (one image per shape), got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(FOUR_SHAPES))
    angle = rng.uniform(-max_angle, max_angle, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    images = np.zeros((n, 1, size, size), np.float32)
    for k, name in enumerate(FOUR_SHAPES):
        sel = labels == k
        images[sel, 0] = render_shape(name, angle[sel], shift[sel], size)
    images = np.clip(images + rng.normal(0, noise, images.shape), 0, 1).astype(np.float32)
    return ShapeSet(images, angle, shift, np.zeros((n, 0)), labels.astype(np.int64))
