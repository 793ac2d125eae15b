"""Point defects in crops of a 2-D lattice: where the defect is, and patches of it at one
physical scale.

Crops of a defect library come from different frames: different pixel sizes, contrasts and
positions of the defect in the crop. :func:`defect_patches` resamples each crop to one
physical pixel size, centres it on the defect and cuts square patches (optionally rotated and
mirrored copies, for augmentation) in a single interpolation; intensities are put on a common
scale per crop (:func:`crop_contrast`), so that a carbon column is about 1 above the holes
whatever the detector settings.

:func:`defect_centre` locates the defect: from given coordinates of its atoms (the centroid),
or else from the image: the heavy dopant atoms are the brightest columns (HAADF contrast grows
with Z^1.7), so the centre is the centroid of the bright columns around the brightest one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import csgraph

from latentatlas._checks import check_array

log = logging.getLogger(__name__)

__all__ = ["CC_BOND_PM", "DefectCentre", "crop_contrast", "defect_centre", "defect_patches"]

#: Carbon-carbon bond length of graphene in picometres.
CC_BOND_PM = 142.0
# A dopant column is "bright" when it reaches this fraction of the brightest column's height
# above the lattice (Si over C in HAADF is about (14/6)^1.7 = 4.2; 0.5 keeps every Si of a
# complex and no carbon at the noise of 60 kV frames).
_BRIGHT_FRACTION = 0.5
# Bright columns closer than this (in bond lengths) to another of the cluster join it: the
# Si-Si distance in dimers and trimers is 1.6-2.2 bonds.
_CLUSTER_BONDS = 2.6
# More bright columns than this in one cluster is contamination (the largest complexes of the
# library have four Si).
_MAX_DOPANTS = 6


@dataclass(frozen=True)
class DefectCentre:
    """Where a defect is in one crop.

    centre: (row, col) in pixels of the crop. method: ``"given"`` (centroid of given atom
    coordinates) or the atom finder used (``"peaks"``, ``"dcnn"``, ...). atoms: (n, 2) the
    columns found (empty for ``"given"``); bright: indices into atoms of the columns taken as
    the defect's dopants.
    """

    centre: np.ndarray
    method: str
    atoms: np.ndarray
    bright: np.ndarray


def _check_image(image: object) -> np.ndarray:
    img = check_array(image, "image", ndim=2, dtype=np.float64)
    if min(img.shape) < 8:
        raise ValueError(f"image must be at least 8 x 8 pixels, got {img.shape}")
    return img


def _check_pixel(pixel_size: float) -> float:
    p = float(pixel_size)
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"pixel_size must be a positive length per pixel (pm), got {pixel_size}")
    return p


def defect_centre(image: object, pixel_size: float, coords: object | None = None, *,
                  finder: str = "peaks", bond: float = CC_BOND_PM) -> DefectCentre:
    """The defect's centre in a crop ``image`` (h, w) with ``pixel_size`` (pm per pixel).

    coords: (n, 2) (row, col) pixel positions of the defect's atoms, e.g. the
    ``defect_coord_0`` rows of a LibraryNet crop; their centroid is the centre. None: the
    columns are found with ``latentatlas.descriptors.atoms.find_atoms`` (``finder``: ``peaks``,
    ``log`` or ``dcnn``, the last with the graphene model) at the spacing of a ``bond`` (pm);
    the brightest column and every column reaching half its height above the lattice within
    2.6 bonds of it (repeatedly: a chain of dopants) make the defect, and the centre is their
    centroid.
    """
    img = _check_image(image)
    px = _check_pixel(pixel_size)
    if coords is not None:
        c = check_array(coords, "coords", ndim=2, dtype=np.float64)
        if c.shape[1] != 2 or len(c) == 0:
            raise ValueError(f"coords must be (n, 2) (row, col) with n >= 1, got {c.shape}")
        return DefectCentre(c.mean(0), "given", np.zeros((0, 2)), np.zeros(0, np.int64))
    from latentatlas.descriptors.atoms import find_atoms

    spacing = bond / px
    found = find_atoms(img.astype(np.float32), method=finder, spacing=spacing,
                       model="graphene" if finder == "dcnn" else None)
    atoms = found.positions
    if len(atoms) == 0:
        raise ValueError(f"the atom finder {finder!r} found no columns in the crop; give the "
                         "defect's coordinates or try another finder")
    smooth = ndimage.gaussian_filter(img, max(0.25 * spacing, 0.5))
    rc = np.clip(np.round(atoms).astype(np.int64), 0, np.array(img.shape) - 1)
    excess = smooth[rc[:, 0], rc[:, 1]]
    excess = excess - np.median(excess)
    # maxima within a bond of the border are cut columns or edge artefacts
    h, w = img.shape
    edge = np.minimum.reduce([atoms[:, 0], atoms[:, 1], h - 1 - atoms[:, 0], w - 1 - atoms[:, 1]])
    interior = edge >= spacing
    if not interior.any():
        interior[:] = True
    bright_mask = interior & (excess >= _BRIGHT_FRACTION * excess[interior].max())
    clusters = _clusters(atoms, bright_mask, _CLUSTER_BONDS * spacing)
    # a cluster of many bright columns is contamination, not a dopant complex
    compact = [c for c in clusters if len(c) <= _MAX_DOPANTS] or clusters
    # brightest cluster, with a mild preference for the crop's centre (a library crop is cut
    # around its defect, though not always at the middle)
    middle = (np.array(img.shape) - 1) / 2
    radius = 0.5 * min(img.shape)

    def score(c: np.ndarray) -> float:
        d = float(np.hypot(*(atoms[c].mean(0) - middle)))
        return float(excess[c].max()) * float(np.exp(-0.5 * (d / radius) ** 2))

    bright = max(compact, key=score)
    return DefectCentre(atoms[bright].mean(0), finder, atoms, bright)


def _clusters(points: np.ndarray, mask: np.ndarray, reach: float) -> list[np.ndarray]:
    """Groups of the masked points linked by steps of at most ``reach`` (index arrays)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return []
    d = np.hypot(*(points[idx, None, :] - points[None, idx, :]).transpose(2, 0, 1))
    n, labels = csgraph.connected_components(d <= reach, directed=False)
    return [idx[labels == k] for k in range(n)]


def crop_contrast(image: object, pixel_size: float, bond: float = CC_BOND_PM) -> tuple[float, float]:
    """(offset, scale) that put a crop on a common intensity scale: ``(image - offset) / scale``
    has the holes of the lattice near 0 and its columns near 1.

    Taken from the crop smoothed over a quarter bond: offset = its 5th percentile, scale = its
    95th percentile minus that (the lattice fills the crop; dopants are too few to move it).
    """
    img = _check_image(image)
    smooth = ndimage.gaussian_filter(img, max(0.25 * bond / _check_pixel(pixel_size), 0.5))
    lo, hi = np.percentile(smooth, [5.0, 95.0])
    if not hi > lo:
        raise ValueError("the crop is flat (no contrast); it cannot be put on a common scale")
    return float(lo), float(hi - lo)


def defect_patches(image: object, pixel_size: float, centre: Sequence[float] | np.ndarray, *,
                   target_pixel: float = 20.0, window: int = 48,
                   angles: Sequence[float] | np.ndarray = (0.0,), mirror: bool = False,
                   bond: float = CC_BOND_PM) -> np.ndarray:
    """Square patches of a crop around its defect, at one physical pixel size.

    image: (h, w); pixel_size: its pm per pixel; centre: (row, col) in its pixels.
    target_pixel: pm per pixel of the patches; window: their side in pixels.
    angles: rotations in radians (counter-clockwise as displayed) of the patch about the
    centre; mirror: also the mirrored patch (columns reversed) of each angle.
    Returns (len(angles) * (2 if mirror else 1), window, window) float32: for each angle its
    patch, then (mirror) the mirrored ones in the same order. Downsampling is anti-aliased
    (a Gaussian of sigma 0.5 sqrt(f^2 - 1) source pixels for a shrink factor f); outside the
    crop the image is mirrored. Intensities: ``(image - offset) / scale`` of
    :func:`crop_contrast`.
    """
    img = _check_image(image)
    px = _check_pixel(pixel_size)
    target = _check_pixel(target_pixel)
    if window < 4:
        raise ValueError(f"window must be >= 4 pixels, got {window}")
    c = np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape != (2,) or not np.isfinite(c).all():
        raise ValueError(f"centre must be a finite (row, col), got {centre}")
    angle = np.asarray(angles, dtype=np.float64).reshape(-1)
    if len(angle) == 0:
        raise ValueError("angles must hold at least one angle")
    offset, scale = crop_contrast(img, px, bond)
    factor = target / px
    work = ndimage.gaussian_filter(img, 0.5 * np.sqrt(factor**2 - 1)) if factor > 1 else img
    # output pixel offsets from the centre, in source pixels
    r = (np.arange(window) - (window - 1) / 2) * factor
    dr, dc = np.meshgrid(r, r, indexing="ij")
    flips = [False, True] if mirror else [False]
    out = np.empty((len(flips) * len(angle), window, window), np.float32)
    k = 0
    for flip in flips:
        cols = -dc if flip else dc
        for a in angle:
            # rotating the patch by +a (counter-clockwise on screen, rows pointing down)
            # samples the source at the offsets rotated by -a
            ca, sa = np.cos(a), np.sin(a)
            src_r = c[0] + ca * dr + sa * cols
            src_c = c[1] - sa * dr + ca * cols
            out[k] = ndimage.map_coordinates(work, [src_r, src_c], order=1, mode="mirror")
            k += 1
    return (out - np.float32(offset)) / np.float32(scale)
