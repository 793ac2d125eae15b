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


def crop_contrast(image: object, pixel_size: float, centre: Sequence[float] | np.ndarray | None = None,
                  radius: float = 1000.0, bond: float = CC_BOND_PM) -> tuple[float, float]:
    """(offset, scale) that put a crop on a common intensity scale: ``(image - offset) / scale``
    has the holes of the lattice near 0 and the defect's brightest column (its heaviest
    dopant), smoothed over a quarter bond, at 1 (its unsmoothed peak lies higher).

    Measured on the crop smoothed over a quarter bond: offset = the 5th percentile of the
    pixels within ``radius`` pm of ``centre`` (row, col pixels; None: the whole crop), offset +
    scale = the brightest pixel within 3 bonds of ``centre`` (None: anywhere). Scaling by the
    dopant rather than by the carbon lattice is what made crops of one class from frames of
    different resolution alike (benchmarks/RESULTS.md, issue 14).
    """
    img = _check_image(image)
    px = _check_pixel(pixel_size)
    spacing = bond / px
    smooth = ndimage.gaussian_filter(img, max(0.25 * spacing, 0.5))
    region = core = np.ones(img.shape, bool)
    if centre is not None:
        rr, cc = np.indices(img.shape)
        dist = np.hypot(rr - centre[0], cc - centre[1])
        region = dist <= max(radius / px, 2 * spacing)
        core = dist <= 3 * spacing
        if not core.any():
            raise ValueError(f"centre {tuple(centre)} lies outside the {img.shape} crop")
    lo = float(np.percentile(smooth[region], 5.0))
    hi = float(smooth[core].max())
    if not hi > lo:
        raise ValueError("the crop is flat (no contrast); it cannot be put on a common scale")
    return lo, hi - lo


def column_width(image: object, pixel_size: float, centre: Sequence[float] | np.ndarray,
                 bond: float = CC_BOND_PM) -> float:
    """Gaussian sigma (pm) of the brightest column within 3 bonds of ``centre`` (row, col):
    the crop's resolution, measured on the defect's heaviest dopant by a least-squares fit of
    a round Gaussian on a flat background within 80 pm of its peak. NaN when the fit fails or
    the column touches the border."""
    from scipy import optimize

    img = _check_image(image)
    px = _check_pixel(pixel_size)
    spacing = bond / px
    smooth = ndimage.gaussian_filter(img, 0.5)
    rr, cc = np.indices(img.shape)
    core = np.hypot(rr - centre[0], cc - centre[1]) <= 3 * spacing
    if not core.any():
        return float("nan")
    flat = np.flatnonzero(core)[np.argmax(smooth[core])]
    pr, pc = np.unravel_index(flat, img.shape)
    h = max(int(np.ceil(80.0 / px)), 2)
    if pr < h or pc < h or pr + h >= img.shape[0] or pc + h >= img.shape[1]:
        return float("nan")
    win = img[pr - h : pr + h + 1, pc - h : pc + h + 1]
    yy, xx = np.indices(win.shape) - h

    def residual(q: np.ndarray) -> np.ndarray:
        g = np.exp(-((yy - q[3]) ** 2 + (xx - q[4]) ** 2) / (2 * q[1] ** 2))
        return (q[0] * g + q[2] - win).ravel()

    start = [win.max() - win.min(), 40.0 / px, win.min(), 0.0, 0.0]
    fit = optimize.least_squares(residual, start, bounds=([0, 0.3, -np.inf, -h, -h],
                                                          [np.inf, 4 * h, np.inf, h, h]))
    return float(fit.x[1] * px) if fit.success else float("nan")


def defect_patches(image: object, pixel_size: float, centre: Sequence[float] | np.ndarray, *,
                   target_pixel: float = 20.0, window: int = 48,
                   angles: Sequence[float] | np.ndarray = (0.0,), mirror: bool = False,
                   smooth: float = 0.0, resolution: float | None = None,
                   bond: float = CC_BOND_PM) -> np.ndarray:
    """Square patches of a crop around its defect, at one physical pixel size.

    image: (h, w); pixel_size: its pm per pixel; centre: (row, col) in its pixels.
    target_pixel: pm per pixel of the patches; window: their side in pixels.
    angles: rotations in radians (counter-clockwise as displayed) of the patch about the
    centre; mirror: also the mirrored patch (columns reversed) of each angle.
    Returns (len(angles) * (2 if mirror else 1), window, window) float32: for each angle its
    patch, then (mirror) the mirrored ones in the same order. Downsampling is anti-aliased
    (a Gaussian of sigma 0.5 sqrt(f^2 - 1) source pixels for a shrink factor f); outside the
    crop the image is mirrored. smooth: a further Gaussian blur of that many pm (sigma) for
    every crop. resolution: blur each crop until its columns are Gaussians of this sigma (pm),
    as measured on the defect's brightest column (:func:`column_width`; crops already broader
    are left): frames of different sharpness then look alike.
    Intensities: ``(image - offset) / scale`` of :func:`crop_contrast` on the blurred crop.
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
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0 pm, got {smooth}")
    if resolution is not None:
        # blur the crop up to the common resolution (Gaussian widths add in quadrature)
        width = column_width(img, px, c, bond)
        if np.isfinite(width):
            smooth = float(np.hypot(smooth, np.sqrt(max(resolution**2 - width**2, 0.0))))
    factor = target / px
    # anti-aliasing (when shrinking) and the common blur, added in quadrature
    sigma = np.sqrt(0.25 * max(factor**2 - 1, 0.0) + (smooth / px) ** 2)
    work = ndimage.gaussian_filter(img, sigma) if sigma > 0 else img
    offset, scale = crop_contrast(work, px, c, bond=bond)
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
