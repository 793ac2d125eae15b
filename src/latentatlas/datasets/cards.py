"""Generated class data with known labels and poses: three blob shapes, and the "cards" set.

``rotated_classes``: three clearly different asymmetric shapes (L, C, T) made of Gaussian blobs,
under random rotation and shift, for testing class-aware VAEs.

``cards``: the four card suit symbols (spade, heart, diamond, club) drawn from the DejaVu Sans
font that matplotlib ships, 48x48 by default. As in the rotation-invariant semi-supervised
benchmark: a small labelled part at small angles and a large unlabelled part rotated by up to
+-60 degrees and shifted. Matplotlib is used here only as the source of the glyph outlines
(``matplotlib.textpath``, no figures), imported inside the function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from latentatlas.datasets.shapes import ShapeSet, render_blobs

CLASS_NAMES = ("L", "C", "T")
SUITS = ("spade", "heart", "diamond", "club")
_SUIT_CHARS = ("\u2660", "\u2665", "\u2666", "\u2663")


def _blob_shapes() -> list[np.ndarray]:
    """Canonical blobs (k, 3) = (x, y, amplitude) of the L, C and T shapes."""
    ell = np.array(
        [
            [-0.3, -0.4, 1],
            [-0.3, -0.15, 1],
            [-0.3, 0.1, 1],
            [-0.3, 0.35, 1],
            [-0.05, 0.35, 1],
            [0.2, 0.35, 1],
            [0.35, -0.3, 0.6],
        ],
        dtype=np.float64,
    )
    t = np.deg2rad(np.linspace(45, 315, 7))
    cee = np.stack([0.4 * np.cos(t), 0.4 * np.sin(t), np.ones_like(t)], 1)
    tee = np.array(
        [
            [-0.4, -0.35, 1],
            [-0.2, -0.35, 1],
            [0.0, -0.35, 1],
            [0.2, -0.35, 1],
            [0.4, -0.35, 1],
            [0.0, -0.1, 1],
            [0.0, 0.15, 1],
            [0.0, 0.4, 1],
        ],
        dtype=np.float64,
    )
    return [ell, cee, tee]


def rotated_classes(
    n: int = 900,
    size: int = 16,
    max_angle: float = np.pi / 3,
    max_shift: float = 0.1,
    noise: float = 0.02,
    channels: int = 1,
    seed: int = 0,
) -> ShapeSet:
    """Three shape classes (L, C, T; labels 0, 1, 2 in equal numbers, shuffled) under random
    rotation (uniform in +-max_angle) and shift (uniform in +-max_shift half-widths).

    images: (n, channels, size, size) in [0, 1]; channels=2 adds an inverted blurred copy.
    """
    if n < 3:
        raise ValueError(f"n must be >= 3 (one sample per class at least), got {n}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 3)
    angle = rng.uniform(-max_angle, max_angle, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    width = 0.12 * 16 / max(size, 16) + 0.02
    images = np.zeros((n, channels, size, size), np.float32)
    for k, blobs in enumerate(_blob_shapes()):
        sel = labels == k
        images[sel, 0] = render_blobs(blobs, angle[sel], shift[sel], size, width=width)
        if channels == 2:
            images[sel, 1] = 1 - render_blobs(
                blobs, angle[sel], shift[sel], size, width=1.6 * width
            )
    images = np.clip(images + rng.normal(0, noise, images.shape), 0, 1).astype(np.float32)
    return ShapeSet(images, angle, shift, np.zeros((n, 0)), labels.astype(np.int64))


def blend(a: np.ndarray, b: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Ambiguous samples: the pixel-wise mixture (1 - weight) * a + weight * b of two image sets."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return ((1 - weight) * a + weight * b).astype(np.float32)


def suit_glyphs(size: int = 48, fill: float = 0.7) -> np.ndarray:
    """The four suit symbols rendered upright and centred, (4, size, size) in [0, 1].

    fill: the symbol's larger extent as a fraction of the image width.
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MplPath
    from matplotlib.textpath import TextPath

    over = 4  # supersampling for anti-aliased edges
    big = size * over
    yy, xx = np.mgrid[0:big, 0:big]
    points = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    out = np.zeros((4, size, size), np.float32)
    font = FontProperties(family="DejaVu Sans")
    for i, char in enumerate(_SUIT_CHARS):
        path = TextPath((0, 0), char, size=100, prop=font)
        verts = path.vertices.copy()
        lo, hi = verts.min(0), verts.max(0)
        scale = fill * big / (hi - lo).max()
        centre = (lo + hi) / 2
        verts = (verts - centre) * scale
        verts[:, 1] *= -1  # font y points up, image rows point down
        verts += big / 2
        inside = MplPath(verts, path.codes).contains_points(points).reshape(big, big)
        out[i] = inside.reshape(size, over, size, over).mean((1, 3))
    return out


@dataclass
class CardSet:
    """images: (n, 1, size, size) in [0, 1]; labels: (n,) suit index; labelled: (n,) bool
    (the small-angle labelled part); angle: (n,) radians; shift: (n, 2) in half-widths."""

    images: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    angle: np.ndarray
    shift: np.ndarray


def _pose_images(
    glyphs: np.ndarray, labels: np.ndarray, angle: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Rotate (counter-clockwise as displayed) and shift glyphs with bilinear sampling."""
    n, size = len(labels), glyphs.shape[-1]
    axis = (np.arange(size) * 2 + 1) / size - 1
    y, x = np.meshgrid(axis, axis, indexing="ij")
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    qx, qy = x[None] - shift[:, 0, None, None], y[None] - shift[:, 1, None, None]
    px, py = c * qx - s * qy, s * qx + c * qy  # canonical point for each observed pixel
    col = (px + 1) * size / 2 - 0.5
    row = (py + 1) * size / 2 - 0.5
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        out[i] = map_coordinates(glyphs[labels[i]], [row[i], col[i]], order=1, cval=0.0)
    return out


def cards(
    n_labelled: int = 200,
    n_unlabelled: int = 2900,
    size: int = 48,
    labelled_angle: float = 0.1,
    max_angle: float = np.pi / 3,
    max_shift: float = 0.1,
    blur: float = 0.6,
    noise: float = 0.03,
    seed: int = 0,
) -> CardSet:
    """The cards set: ``n_labelled`` symbols at small angles (uniform in +-labelled_angle, no
    shift) followed by ``n_unlabelled`` rotated up to +-max_angle and shifted up to +-max_shift.

    The defaults give 200 / 3100 = 6.5% labelled. ``labels`` holds the truth for every sample
    (use it only to score); ``labelled`` marks the part a model may learn labels from.
    """
    if n_labelled < 0 or n_unlabelled < 0 or n_labelled + n_unlabelled < 1:
        raise ValueError(
            f"n_labelled and n_unlabelled must be >= 0 with a positive sum, got "
            f"{n_labelled}, {n_unlabelled}"
        )
    rng = np.random.default_rng(seed)
    glyphs = suit_glyphs(size)
    n = n_labelled + n_unlabelled
    labels = rng.integers(0, 4, n)
    angle = np.concatenate(
        [
            rng.uniform(-labelled_angle, labelled_angle, n_labelled),
            rng.uniform(-max_angle, max_angle, n_unlabelled),
        ]
    )
    shift = np.concatenate(
        [np.zeros((n_labelled, 2)), rng.uniform(-max_shift, max_shift, (n_unlabelled, 2))]
    )
    images = _pose_images(glyphs, labels, angle, shift)
    if blur > 0:
        images = gaussian_filter(images, (0, blur, blur))
    images = np.clip(images + rng.normal(0, noise, images.shape), 0, 1).astype(np.float32)
    labelled = np.arange(n) < n_labelled
    return CardSet(images[:, None], labels.astype(np.int64), labelled, angle, shift)
