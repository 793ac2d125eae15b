"""Sublattices from the lattice geometry: which site of the unit cell every atom sits on.

A reference for classes found in images of crystals that does not look at intensities of
the atoms it labels: the Bravais lattice is measured on reference points (e.g. the columns
of the strongest sublattice), and every atom is assigned to a site of the unit cell by its
fractional position relative to the nearest reference point. Relative positions are taken
cell by cell, so slow scan distortion and drift do not accumulate.

Used to judge whether classes follow the sublattices or something else (the background):
the adjusted Rand index of the classes against :func:`cell_sites`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans

from latentatlas._checks import check_array

__all__ = ["cell_sites", "lattice_basis"]


def _dominant(vectors: np.ndarray, exclude: float | None = None) -> np.ndarray:
    """Median of the vectors along the most common direction (angles modulo 180 degrees),
    optionally ignoring directions within 20 degrees of ``exclude`` (radians)."""
    ang = np.arctan2(vectors[:, 0], vectors[:, 1]) % np.pi
    keep = np.ones(len(vectors), bool)
    if exclude is not None:
        diff = np.abs((ang - exclude + np.pi / 2) % np.pi - np.pi / 2)
        keep = diff > np.radians(20)
    if not keep.any():
        raise ValueError("the points do not span two directions: not a 2-D lattice")
    hist, edges = np.histogram(ang[keep], bins=90, range=(0, np.pi))
    hist = hist + np.roll(hist, 1) + np.roll(hist, -1)  # 6-degree circular smoothing
    peak = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
    near = keep & (np.abs((ang - peak + np.pi / 2) % np.pi - np.pi / 2) < np.radians(8))
    v = vectors[near]
    # one sign: the direction of the peak
    sign = np.sign(v @ np.array([np.sin(peak), np.cos(peak)]))
    return np.asarray(np.median(v * sign[:, None], axis=0))


def lattice_basis(points: np.ndarray) -> np.ndarray:
    """Two primitive vectors ``(2, 2)`` (rows; (row, col) pixels) of the lattice of ``points``.

    The first is the most common nearest-neighbour direction; the second the shortest
    neighbour vector along another direction (at least 20 degrees away).
    """
    pts = check_array(points, "points", ndim=2, dtype=np.float64)
    if pts.shape[1] != 2 or len(pts) < 4:
        raise ValueError(f"points must be (m >= 4, 2) (row, col), got {pts.shape}")
    k = min(9, len(pts))
    dist, idx = cKDTree(pts).query(pts, k=k)
    vec = (pts[idx[:, 1:]] - pts[:, None]).reshape(-1, 2)
    length = dist[:, 1:].ravel()
    nn = float(np.median(dist[:, 1]))
    a1 = _dominant(vec[length < 1.15 * nn])
    ang1 = float(np.arctan2(a1[0], a1[1]) % np.pi)
    ang = np.arctan2(vec[:, 0], vec[:, 1]) % np.pi
    other = np.abs((ang - ang1 + np.pi / 2) % np.pi - np.pi / 2) > np.radians(20)
    if not other.any():
        raise ValueError("the points do not span two directions: not a 2-D lattice")
    shortest = float(np.quantile(length[other], 0.05))
    a2 = _dominant(vec[other & (length < 1.15 * shortest)], exclude=ang1)
    return np.stack([a1, a2])


def cell_sites(
    positions: np.ndarray,
    reference: np.ndarray,
    n_sites: int,
    seed: int = 0,
) -> np.ndarray:
    """The site of the unit cell every atom sits on, from geometry alone.

    positions: ``(n, 2)`` atoms (row, col). reference: ``(m, 2)`` points of one sublattice
    that span the Bravais lattice (e.g. the strongest columns). n_sites: sites per unit cell.
    Every atom's position relative to its nearest reference point, in units of the lattice
    basis (:func:`lattice_basis`), is wrapped into the unit cell; the wrapped positions are
    clustered on the torus into ``n_sites`` groups (k-means on their angles' cosines and
    sines). Returns ``(n,)`` int site labels (arbitrary numbering).
    """
    pos = check_array(positions, "positions", ndim=2, dtype=np.float64)
    if n_sites < 1 or n_sites > len(pos):
        raise ValueError(f"n_sites must be in [1, {len(pos)}], got {n_sites}")
    basis = lattice_basis(reference)
    ref = np.asarray(reference, dtype=np.float64)
    _, near = cKDTree(ref).query(pos)
    frac = (pos - ref[near]) @ np.linalg.inv(basis)
    turn = 2 * np.pi * (frac % 1.0)
    torus = np.concatenate([np.cos(turn), np.sin(turn)], axis=1)
    km = KMeans(n_clusters=n_sites, n_init=10, random_state=seed).fit(torus)
    return np.asarray(km.labels_, dtype=np.int64)
