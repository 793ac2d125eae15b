"""Latents back on the image: one map per latent name (angle, shift_x, shift_y, z1, ...).

Patches cut around atoms give scattered maps (a value at every atom position); sliding
windows give dense ``(rows, cols)`` grids. Both can be rasterised to image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["LatentMaps", "latent_maps", "paint_points", "typical_spacing"]


@dataclass
class LatentMaps:
    """Per-patch latent values with the positions they belong to.

    Attributes
    ----------
    names : latent names, e.g. ``["angle", "shift_x", "shift_y", "z1", "z2"]``.
    values : ``(m, k)`` posterior means, one column per name.
    std : ``(m, k)`` posterior standard deviations (zeros when not available).
    centers : ``(m, 2)`` (row, col) of every patch in image pixels.
    frames : ``(m,)`` frame of every patch.
    image_shape : ``(h, w)``.
    n_frames : frames in the source stack.
    grid_shape : ``(rows, cols)`` for sliding windows, ``None`` for atom patches.
    """

    names: list[str]
    values: np.ndarray
    std: np.ndarray
    centers: np.ndarray
    frames: np.ndarray
    image_shape: tuple[int, int]
    n_frames: int = 1
    grid_shape: tuple[int, int] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        """Values of one latent at every patch, ``(m,)``."""
        if name not in self.names:
            raise KeyError(f"no latent {name!r}; available: {self.names}")
        return self.values[:, self.names.index(name)]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def dense(self) -> bool:
        return self.grid_shape is not None

    def grid(self, name: str) -> np.ndarray:
        """Dense map ``(n_frames, rows, cols)`` of one latent (sliding windows only)."""
        if self.grid_shape is None:
            raise ValueError(
                "these latents come from patches around atoms, not a window grid: use "
                "raster(name) or scatter the values at .centers"
            )
        return self[name].reshape(self.n_frames, *self.grid_shape)

    def raster(self, name: str, frame: int = 0, radius: float | None = None) -> np.ndarray:
        """One latent painted on the image pixels of ``frame``, ``(h, w)``, NaN elsewhere."""
        sel = self.frames == frame
        return paint_points(self[name][sel], self.centers[sel], self.image_shape, radius)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Name -> ``(m,)`` values, for saving."""
        return {n: self.values[:, i] for i, n in enumerate(self.names)}


def latent_maps(latents: Any, patches: Any) -> LatentMaps:
    """Pair the latents of ``patches`` (from ``model.encode(patches.as_model_input())``)
    with the positions and frames the patches came from."""
    mean = np.asarray(latents.mean)
    std = np.asarray(getattr(latents, "std", np.zeros_like(mean)))
    if mean.ndim != 2 or mean.shape[0] != len(patches):
        raise ValueError(
            f"latents must be (m, k) with one row per patch ({len(patches)}), got {mean.shape}; "
            "encode exactly the patches you pass here"
        )
    return LatentMaps(
        names=list(latents.names),
        values=mean,
        std=std,
        centers=np.asarray(patches.centers, dtype=np.float64),
        frames=np.asarray(patches.frames),
        image_shape=(int(patches.image_shape[0]), int(patches.image_shape[1])),
        n_frames=int(patches.n_frames),
        grid_shape=patches.grid_shape,
    )


def typical_spacing(centers: np.ndarray) -> float:
    """Median nearest-neighbour distance between points (pixels); 1.0 for a single point."""
    pts = np.asarray(centers, dtype=np.float64)
    if len(pts) < 2:
        return 1.0
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1])) or 1.0


def paint_points(
    values: Any, centers: Any, image_shape: tuple[int, int], radius: float | None = None
) -> np.ndarray:
    """Paint each point's value on the pixels nearest to it, within ``radius`` pixels.

    ``radius`` defaults to half the typical spacing, so every atom becomes a disc and the
    background stays NaN. Returns ``(h, w)`` float (NaN where no point is near).
    """
    vals = np.asarray(values, dtype=np.float64).ravel()
    pts = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    h, w = image_shape
    out = np.full((h, w), np.nan)
    if len(pts) == 0:
        return out
    if len(vals) != len(pts):
        raise ValueError(f"values ({len(vals)}) and centers ({len(pts)}) must have equal length")
    if radius is None:
        radius = 0.5 * typical_spacing(pts)
    # Each point's disc is scattered onto the pixels and every pixel keeps its nearest point;
    # this equals a nearest-point query at every pixel of the image (closer than ``radius``)
    # at a fraction of the cost, in batches of points so memory stays bounded.
    reach = int(np.ceil(radius + 0.5))
    off = np.arange(-reach, reach + 1)
    batch = max(1, 2_000_000 // len(off) ** 2)
    best = np.full(h * w, np.inf)

    def candidates(lo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels (flat), squared distances and point indices of points lo..lo+batch."""
        p = pts[lo:lo + batch]
        base = np.rint(p).astype(np.int64)
        rr = base[:, 0, None, None] + off[None, :, None]
        cc = base[:, 1, None, None] + off[None, None, :]
        d2 = (rr - p[:, 0, None, None]) ** 2 + (cc - p[:, 1, None, None]) ** 2
        ok = (d2 < radius * radius) & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        idx = np.broadcast_to(np.arange(lo, lo + len(p))[:, None, None], d2.shape)
        return (np.broadcast_to(rr, d2.shape) * w + np.broadcast_to(cc, d2.shape))[ok], \
            d2[ok], idx[ok]

    for lo in range(0, len(pts), batch):
        pix, d2, _ = candidates(lo)
        np.minimum.at(best, pix, d2)
    flat = out.ravel()
    for lo in range(0, len(pts), batch):
        pix, d2, idx = candidates(lo)
        win = d2 == best[pix]
        flat[pix[win]] = vals[idx[win]]
    return out
