"""Atom (column) finding in images and image stacks: local maxima, blob-LoG and a DCNN.

One entry point, :func:`find_atoms`, returns :class:`Atoms` with (row, col, class) per atom
and the frame index for stacks. Positions are (row, col) in pixels, in image-index
convention (the column at (r, c) is brightest at ``image[round(r), round(c)]``).

Classes: with ``n_classes=k`` > 1 the atoms are split into k intensity classes (0 = dimmest)
by k-means on their smoothed intensity, jointly over all frames of a stack. With the default
``n_classes=1`` every atom is class 0, except with a DCNN that outputs element classes (the
shipped ``"graphene-si"`` finder: 0 = C, 1 = Si, the names in ``Atoms.params["class_names"]``),
whose classes are the network's. :func:`find_graphene_atoms` gives graphene atoms with elements.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from latentatlas._checks import check_array, check_pixels

logger = logging.getLogger(__name__)

METHODS = ("peaks", "log", "dcnn")

_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
#: The shipped DCNN atom finders by name (see scripts/train_atom_finder.py): "general" was
#: trained on a broad mix of lattices, "graphene" on low-dose honeycomb with grain boundaries
#: (atoms only), "graphene-si" on the same with Si dopant complexes (atoms and a Si class; it
#: places carbon less precisely than "graphene": :func:`find_graphene_atoms` combines them).
SHIPPED_ATOM_FINDERS = {
    "general": _WEIGHTS / "atom_finder.safetensors",
    "graphene": _WEIGHTS / "graphene_atom_finder.safetensors",
    "graphene-si": _WEIGHTS / "graphene_si_finder.safetensors",
}
DEFAULT_WEIGHTS = SHIPPED_ATOM_FINDERS["general"]


@dataclass
class Atoms:
    """Atoms found in an image (frame 0) or a stack of frames.

    row, col: (n,) float64 pixels. classes: (n,) int64. frame: (n,) int64 frame index (all 0
    for a single image). shape: the (h, w) of one frame; n_frames: frames searched.
    """

    row: np.ndarray
    col: np.ndarray
    classes: np.ndarray
    frame: np.ndarray
    shape: tuple[int, int]
    n_frames: int = 1
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.row)
        if not len(self.col) == len(self.classes) == len(self.frame) == n:
            raise ValueError("Atoms row, col, classes and frame must have the same length")

    def __len__(self) -> int:
        return len(self.row)

    @property
    def positions(self) -> np.ndarray:
        """(n, 2) float64 (row, col)."""
        return np.column_stack([self.row, self.col]).astype(np.float64).reshape(-1, 2)

    def as_array(self) -> np.ndarray:
        """(n, 3) float64 (row, col, class)."""
        return np.column_stack([self.row, self.col, self.classes]).astype(np.float64).reshape(-1, 3)

    def in_frame(self, k: int) -> Atoms:
        """The atoms of frame ``k`` only."""
        if not 0 <= k < self.n_frames:
            raise ValueError(f"frame must be in [0, {self.n_frames - 1}], got {k}")
        m = self.frame == k
        return Atoms(
            self.row[m],
            self.col[m],
            self.classes[m],
            self.frame[m],
            self.shape,
            self.n_frames,
            self.method,
            dict(self.params),
        )


# --------------------------------------------------------------------------- helpers


def lattice_period(img: np.ndarray) -> float:
    """Shortest strong lattice period (pixels) from the 2-D autocorrelation of (h, w) ``img``.

    Lattice translations are local maxima of the autocorrelation and white noise only adds to
    the zero lag. A radial average would not do: in a honeycomb the empty hexagon centres lie
    at the bond length and cancel the bonds, so the period found there is the lattice constant
    (sqrt(3) x bond). A slow background (contamination, thickness) is removed first. The
    shortest lag whose peak reaches 20 % of the strongest non-central one is returned; 8.0
    (with a warning in the log) when no periodicity is found.
    """
    h, w = img.shape
    hp = img - ndimage.gaussian_filter(img, max(4.0, min(h, w) / 16.0))
    # A light smoothing keeps pixel noise from making short-lag maxima of its own: on
    # 128-pixel frames at contrast-to-noise ~0.5 it cut wrong periods from 14 to 2 in 35.
    hp = ndimage.gaussian_filter(hp, 1.0)
    hp -= hp.mean()
    shape = (2 * h, 2 * w)  # zero-padded: linear, not circular, correlation
    ac = np.fft.irfft2(np.abs(np.fft.rfft2(hp, s=shape)) ** 2, s=shape)
    # Divide by the overlap (h - |dy|) (w - |dx|) so long lags are not penalised by the padding.
    dy = np.fft.fftfreq(2 * h, 1.0 / (2 * h))
    dx = np.fft.fftfreq(2 * w, 1.0 / (2 * w))
    overlap = np.outer(np.maximum(h - np.abs(dy), 1.0), np.maximum(w - np.abs(dx), 1.0))
    ac = np.fft.fftshift(ac / overlap)
    rmax = min(h, w) // 3
    sub = ac[h - rmax : h + rmax + 1, w - rmax : w + rmax + 1]
    yy, xx = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1]
    r = np.hypot(yy, xx)
    is_max = (sub == ndimage.maximum_filter(sub, size=5)) & (r >= 2.5) & (r <= rmax) & (sub > 0)
    if not is_max.any():
        logger.warning("no lattice periodicity found; assuming an 8-pixel spacing")
        return 8.0
    vals, radii = sub[is_max], r[is_max]
    strong = vals >= 0.2 * vals.max()
    return float(radii[strong].min())


def estimate_spacing(image: np.ndarray) -> float:
    """Nearest-neighbour column spacing (pixels) of an (h, w) lattice image.

    The autocorrelation period P leaves three candidates: P (square, hexagonal), P / sqrt(2)
    (perovskite A-B) and P / sqrt(3) (honeycomb bond). Local maxima are found with the
    smallest candidate (on the central 512 x 512 pixels of large frames), and the candidate
    shared by most of their nearest-neighbour distances (within 15 %) wins; noise maxima
    spread their distances and do not vote coherently.
    """
    img = check_array(image, "image", ndim=2, dtype=np.float64)
    # The spacing is a local property: a central 512 x 512 crop keeps large frames cheap.
    h, w = img.shape
    r0, c0 = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
    img = img[r0 : r0 + 512, c0 : c0 + 512]
    period = lattice_period(img)
    candidates = period / np.sqrt(np.array([1.0, 2.0, 3.0]))
    pts = _find_peaks(img, float(candidates[-1]), None, None, 0.3)
    if len(pts) < 4:
        return period
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts).query(pts, k=2)
    nn = d[:, 1]
    votes = np.array([np.mean(np.abs(nn - c) < 0.15 * c) for c in candidates])
    # Prefer the larger spacing unless a smaller one is clearly more common.
    best = int(np.flatnonzero(votes >= 0.8 * votes.max())[0])
    close = np.abs(nn - candidates[best]) < 0.15 * candidates[best]
    return float(np.median(nn[close])) if close.any() else float(candidates[best])


def _refine_quadratic(img: np.ndarray, rc: np.ndarray, spacing: float) -> np.ndarray:
    """Sub-pixel peak positions by a separable parabola through each peak's 3x3 neighbourhood.

    img: (h, w) smoothed image; rc: (n, 2) integer peak positions. The parabola is fitted to
    the log of the intensity above the local background (the minimum within about one spacing),
    which is exact for a Gaussian column; where that is not positive the raw intensities are
    fitted instead. Returns (n, 2) float64.
    """
    h, w = img.shape
    r = np.clip(rc[:, 0], 1, h - 2)
    c = np.clip(rc[:, 1], 1, w - 2)
    patch = np.stack([img[r + dr, c + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], 1)
    patch = patch.reshape(-1, 3, 3).astype(np.float64)
    size = max(3, int(round(spacing)))
    bg = ndimage.minimum_filter(img, size=size, mode="nearest")[r, c][:, None, None]
    above = patch - bg
    positive = (above > 0).all(axis=(1, 2))
    v = np.where(positive[:, None, None], np.log(np.where(above > 0, above, 1.0)), patch)

    def vertex(y: np.ndarray) -> np.ndarray:
        den = y[:, 0] - 2 * y[:, 1] + y[:, 2]
        safe = np.where(den < 0, den, -1.0)
        return np.where(den < 0, 0.5 * (y[:, 0] - y[:, 2]) / safe, 0.0)

    dr = np.clip(vertex(v[:, :, 1]), -1.0, 1.0)
    dc = np.clip(vertex(v[:, 1, :]), -1.0, 1.0)
    out = np.column_stack([r + dr, c + dc]).astype(np.float64)
    # Peaks on the very edge keep their integer coordinate along the clipped axis.
    edge_r = (rc[:, 0] == 0) | (rc[:, 0] == h - 1)
    edge_c = (rc[:, 1] == 0) | (rc[:, 1] == w - 1)
    out[edge_r, 0] = rc[edge_r, 0]
    out[edge_c, 1] = rc[edge_c, 1]
    return out


def _local_maxima(img: np.ndarray, min_distance: int) -> np.ndarray:
    """(n, 2) int64 positions of pixels that are the maximum of their (2d+1)^2 window;
    plateaus are reduced to one pixel by labelling."""
    size = 2 * min_distance + 1
    peak = img == ndimage.maximum_filter(img, size=size, mode="nearest")
    lab, n = ndimage.label(peak)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    com = np.asarray(ndimage.center_of_mass(peak, lab, np.arange(1, n + 1)), dtype=np.float64)
    return np.round(com).astype(np.int64).reshape(-1, 2)


def _select(
    points: np.ndarray,
    strength: np.ndarray,
    min_distance: float,
    threshold: float,
    shape: tuple[int, int],
) -> np.ndarray:
    """Keep points that are the strongest within ``min_distance`` and whose strength reaches
    ``threshold`` x the 90th-percentile strength of those survivors; drop points on the image edge
    (their centre lies outside and cannot be located). Returns a boolean mask (n,)."""
    keep = _suppress(points, strength, min_distance, shape)
    return keep & _above_threshold(strength, keep, threshold)


def _suppress(
    points: np.ndarray, strength: np.ndarray, min_distance: float, shape: tuple[int, int]
) -> np.ndarray:
    """Mask (n,) of the points with no stronger point within ``min_distance`` that are not on
    the edge of an image of ``shape``. Local: a point's fate depends on its neighbours only."""
    from scipy.spatial import cKDTree

    keep = np.ones(len(points), dtype=bool)
    if len(points) == 0:
        return keep
    pairs = cKDTree(points).query_pairs(min_distance, output_type="ndarray")
    if len(pairs):
        weaker = np.where(strength[pairs[:, 0]] < strength[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
        keep[weaker] = False
    h, w = shape
    keep &= (points[:, 0] > 0) & (points[:, 0] < h - 1) & (points[:, 1] > 0) & (points[:, 1] < w - 1)
    return keep


def _above_threshold(strength: np.ndarray, candidates: np.ndarray, threshold: float) -> np.ndarray:
    """Mask (n,): strength reaches ``threshold`` x the 90th percentile over the candidates.

    The 90th percentile is the typical bright column whatever the mix of column kinds (a
    median flips between sublattices when they are equally many). Global over an image.
    """
    if not candidates.any():
        return np.zeros(len(strength), dtype=bool)
    ref = float(np.quantile(strength[candidates], 0.9))
    return np.asarray(strength >= threshold * ref)


def peak_support(spacing: float, smooth: float | None, min_distance: float | None) -> tuple[float, float]:
    """The smoothing sigma and the minimum distance ``"peaks"`` uses at ``spacing``."""
    s = max(0.2 * spacing, 0.8) if smooth is None else smooth
    md = max(1.0, 0.5 * spacing) if min_distance is None else float(min_distance)
    return s, md


def _peak_candidates(
    img: np.ndarray, spacing: float, smooth: float | None, min_distance: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the smoothed image that survive :func:`_suppress`, before the relative
    threshold: (n, 2) int64 pixels, (n,) prominence over the local background, and the
    smoothed image (h, w) float64 they were found on."""
    s, md = peak_support(spacing, smooth, min_distance)
    sm = ndimage.gaussian_filter(img.astype(np.float64), s) if s > 0 else img.astype(np.float64)
    peaks = _local_maxima(sm, max(1, int(round(0.25 * md))))
    if len(peaks) == 0:
        return peaks, np.zeros(0), sm
    # Prominence over the local background, so slow intensity gradients do not matter.
    bg = ndimage.minimum_filter(sm, size=max(3, int(round(2 * spacing))), mode="nearest")
    strength = sm[peaks[:, 0], peaks[:, 1]] - bg[peaks[:, 0], peaks[:, 1]]
    keep = _suppress(peaks.astype(np.float64), strength, md, sm.shape)
    return peaks[keep], strength[keep], sm


def _find_peaks(
    img: np.ndarray,
    spacing: float,
    smooth: float | None,
    min_distance: float | None,
    threshold: float,
) -> np.ndarray:
    peaks, strength, sm = _peak_candidates(img, spacing, smooth, min_distance)
    if len(peaks) == 0:
        return np.zeros((0, 2))
    keep = _above_threshold(strength, np.ones(len(peaks), dtype=bool), threshold)
    return _refine_quadratic(sm, peaks[keep], spacing)


def _find_log(
    img: np.ndarray,
    spacing: float,
    min_sigma: float | None,
    max_sigma: float | None,
    threshold: float,
) -> np.ndarray:
    from skimage.feature import blob_log

    from latentatlas.descriptors.segmenter import normalize_percentile

    norm = normalize_percentile(img, clip=(-1.0, 2.0)).astype(np.float64)
    lo = max(0.15 * spacing, 0.7) if min_sigma is None else min_sigma
    hi = max(0.35 * spacing, lo + 0.5) if max_sigma is None else max_sigma
    blobs = blob_log(
        norm,
        min_sigma=lo,
        max_sigma=hi,
        num_sigma=5,
        threshold=1e-3,
        overlap=0.5,
        exclude_border=False,
    )
    if len(blobs) == 0:
        return np.zeros((0, 2))
    rc = blobs[:, :2].astype(np.int64)
    # Scale-normalised LoG response of each blob at its own scale: its strength.
    strength = np.empty(len(blobs))
    for sig in np.unique(blobs[:, 2]):
        m = blobs[:, 2] == sig
        resp = -(sig**2) * ndimage.gaussian_laplace(norm, sig)
        strength[m] = resp[rc[m, 0], rc[m, 1]]
    keep = _select(rc.astype(np.float64), strength, 0.5 * spacing, threshold, norm.shape)
    if not keep.any():
        return np.zeros((0, 2))
    # blob_log reports integer positions; refine them on the image smoothed at the blobs'
    # typical scale (a matched filter for Gaussian columns).
    sm = ndimage.gaussian_filter(norm, float(np.median(blobs[keep, 2])))
    return _refine_quadratic(sm, rc[keep], spacing)


@functools.lru_cache(maxsize=4)
def _cached_model(path: str) -> Any:
    from latentatlas.descriptors.segmenter import load_segmenter

    return load_segmenter(path)


def load_atom_finder(path: str | Path | None = None) -> Any:
    """The DCNN atom finder (a :class:`~latentatlas.nn.unet.UNet`): a shipped one by name
    (``"general"``, the default, or ``"graphene"``) or weights at ``path``.

    Cached per path, so repeated calls do not reload the weights.
    """
    name = "general" if path is None else str(path)
    p = SHIPPED_ATOM_FINDERS.get(name, Path(name))
    if not p.with_suffix(".safetensors").exists():
        raise FileNotFoundError(
            f"atom finder weights {p} not found; reinstall latentatlas or train them with "
            "scripts/train_atom_finder.py"
        )
    return _cached_model(str(p.resolve()))


def probability_to_points(prob: np.ndarray, threshold: float = 0.5, min_area: int = 2) -> np.ndarray:
    """Atom coordinates from a probability map: one atom per connected region above
    ``threshold`` with at least ``min_area`` pixels, placed at the centroid of the probability
    above 0.1 over the region grown by one pixel.

    Growing matters on coarse grids: the threshold cuts each blob along pixel edges, and the
    centroid of the cut blob moves with the blob's sub-pixel phase (on 60 kV graphene resampled
    to 11 px per bond, growing raised the F1 at 1.5 px by 0.004-0.012 and cut its spread).

    prob: (h, w) in [0, 1]. Returns (n, 2) float64 (row, col).
    """
    mask = prob > threshold
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2))
    idx = np.arange(1, n + 1)
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    keep = idx[area >= min_area]
    if len(keep) == 0:
        return np.zeros((0, 2))
    # Where two grown regions meet, the larger label wins the pixel; it is far from both peaks.
    grown = np.where(lab == 0, ndimage.grey_dilation(lab, size=3), lab)
    com = ndimage.center_of_mass(np.clip(prob - 0.1, 0.0, None), grown, keep)
    return np.asarray(com, dtype=np.float64).reshape(-1, 2)


def _find_dcnn(
    stack: np.ndarray,
    model: Any,
    threshold: float,
    min_area: int,
    batch_size: int,
    tta: bool,
    scale: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Atoms of every frame as ((n, 2) positions on the input grid, (n,) network classes).

    Channel 0 of the network is the atom probability; a network with element classes (its
    metadata lists ``classes``, e.g. ["C", "Si"]) has one more channel per class after the
    first, the probability that an atom of that class sits there. An atom takes the last
    class whose probability at its centre exceeds ``class_threshold`` (0.5), else class 0.
    Single-channel networks give class 0 everywhere.
    """
    from skimage.transform import rescale

    from latentatlas.descriptors.segmenter import normalize_percentile, predict_probability

    meta = getattr(model, "metadata", {}) or {}
    npar = meta.get("normalization_params", {"low": 1.0, "high": 99.0, "clip": [-0.5, 1.5]})
    shape = stack.shape[1:]
    if scale != 1.0:
        # Anti-aliased when shrinking: every output pixel then averages the input pixels it
        # covers, which also raises the per-pixel signal-to-noise of noisy frames.
        stack = rescale(stack.astype(np.float64), (1.0, scale, scale), order=1, anti_aliasing=scale < 1)
    norm = normalize_percentile(stack, low=npar["low"], high=npar["high"], clip=tuple(npar["clip"]))
    x = norm[:, None]
    prob = predict_probability(model, x, batch_size=batch_size)
    if tta:
        # Average over the 8 symmetries of the square: the network was trained on all of them,
        # and averaging cuts the variance of its output on noisy frames.
        for k in range(1, 8):
            xt = np.rot90(x[..., ::-1] if k >= 4 else x, k % 4, axes=(-2, -1))
            pt = predict_probability(model, np.ascontiguousarray(xt), batch_size=batch_size)
            pt = np.rot90(pt, -(k % 4), axes=(-2, -1))
            prob += pt[..., ::-1] if k >= 4 else pt
        prob /= 8
    class_threshold = float(meta.get("class_threshold", 0.5))
    out = []
    for p in prob:
        points = probability_to_points(p[0], threshold, min_area)
        classes = np.zeros(len(points), dtype=np.int64)
        for k in range(1, p.shape[0]):
            # bilinear value at each atom's centre (its grown-region centroid)
            at_atom = ndimage.map_coordinates(p[k], points.T, order=1, mode="nearest")
            classes[at_atom > class_threshold] = k
        out.append((_to_input_grid(points, p.shape[1:], shape), classes))
    return out


def _to_input_grid(points: np.ndarray, resampled: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    """Map (n, 2) positions on a resampled grid back to the original one: pixel centres
    (i + 0.5) scale by the ratio of the two grid sizes."""
    ratio = np.asarray(original, dtype=np.float64) / np.asarray(resampled, dtype=np.float64)
    return (points + 0.5) * ratio - 0.5


def class_smoothing(spacing: float) -> float:
    """The Gaussian sigma (pixels) of the intensity that intensity classes are drawn from."""
    return max(0.15 * spacing, 0.7)


def _assign_classes(
    stack: np.ndarray,
    pos: np.ndarray,
    frame: np.ndarray,
    spacing: float,
    n_classes: int,
    seed: int,
) -> np.ndarray:
    if n_classes == 1 or len(pos) == 0:
        return np.zeros(len(pos), dtype=np.int64)
    s = class_smoothing(spacing)
    sm = ndimage.gaussian_filter(stack.astype(np.float64), (0, s, s))
    h, w = stack.shape[1:]
    r = np.clip(np.round(pos[:, 0]).astype(np.int64), 0, h - 1)
    c = np.clip(np.round(pos[:, 1]).astype(np.int64), 0, w - 1)
    return intensity_classes(sm[frame, r, c], n_classes, seed)


def intensity_classes(value: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Classes 0 (dimmest) .. n_classes - 1 of the atoms' smoothed intensities (n,), by
    k-means."""
    if n_classes == 1 or len(value) == 0:
        return np.zeros(len(value), dtype=np.int64)
    if len(value) < n_classes:
        raise ValueError(f"n_classes={n_classes} but only {len(value)} atoms were found; lower n_classes")
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_classes, n_init=4, random_state=seed).fit(value[:, None])
    order = np.argsort(km.cluster_centers_[:, 0])
    rank = np.empty(n_classes, dtype=np.int64)
    rank[order] = np.arange(n_classes)
    return rank[km.labels_]


def _nn_spacing(points: np.ndarray, fallback: float) -> float:
    """Median nearest-neighbour distance of (n, 2) points, or ``fallback`` when too few."""
    from scipy.spatial import cKDTree

    if len(points) < 4:
        return fallback
    d, _ = cKDTree(points).query(points, k=2)
    return float(np.median(d[:, 1]))


def refine_on_lattice(
    positions: np.ndarray, spacing: float, shape: tuple[int, int], iterations: int = 2
) -> np.ndarray:
    """Pull noisy positions towards the centroid of their nearest-neighbour shell.

    positions: (n, 2) (row, col) of one frame. In square, hexagonal, honeycomb and perovskite
    lattices the neighbours within 1.2 x spacing of a site have their centroid on the site, so
    averaging a site with its neighbours' centroid cuts the localisation noise (by about 2x for
    graphene per pass) when single columns are too noisy to place. It is a prior: only sites
    with the most common coordination, a shell centroid within 0.25 x spacing and at least one
    spacing from the edge move; sites at defects, edges and grain boundaries keep their own
    estimate, and strained regions are smoothed. Returns (n, 2).
    """
    from scipy.spatial import cKDTree

    p = np.asarray(positions, dtype=np.float64).reshape(-1, 2).copy()
    if len(p) < 4 or iterations < 1:
        return p
    pairs = cKDTree(p).query_pairs(1.2 * spacing, output_type="ndarray")
    if len(pairs) == 0:
        return p
    i, j = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    degree = np.bincount(i, minlength=len(p))
    mode = int(np.bincount(degree[degree > 0]).argmax())
    h, w = shape
    inner = (
        (p[:, 0] >= spacing)
        & (p[:, 0] <= h - 1 - spacing)
        & (p[:, 1] >= spacing)
        & (p[:, 1] <= w - 1 - spacing)
    )
    for _ in range(iterations):
        total = np.zeros_like(p)
        np.add.at(total, i, p[j])
        centroid = total / np.maximum(degree, 1)[:, None]
        sym = np.hypot(*(centroid - p).T) < 0.25 * spacing
        move = inner & (degree == mode) & sym
        p[move] = (p[move] + total[move]) / (1 + degree[move, None])
    return p


# --------------------------------------------------------------------------- public


def take_elements(base: Atoms, labeller: Atoms, radius: float) -> Atoms:
    """``base``'s atoms with the element classes that ``labeller`` (a finder with element
    classes, e.g. the graphene DCNN) gives: each atom ``labeller`` puts in a class other than
    0 replaces the nearest ``base`` atom within ``radius`` pixels (class and position: the
    labeller was trained on those columns, which may be outside what ``base`` saw), or, with
    none there, is added. For a finder that places columns best and one that tells elements
    best (single frames only; ``params["class_names"]`` from ``labeller``).
    """
    from scipy.spatial import cKDTree

    if base.n_frames != 1 or labeller.n_frames != 1 or base.shape != labeller.shape:
        raise ValueError(f"take_elements needs two single frames of one shape, got {base.n_frames} "
                         f"frame(s) of {base.shape} and {labeller.n_frames} of {labeller.shape}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 pixels, got {radius}")
    classes = np.zeros(len(base), dtype=np.int64)
    row, col = base.row.astype(np.float64), base.col.astype(np.float64)
    heavy = np.flatnonzero(labeller.classes != 0)
    added = []
    tree = cKDTree(base.positions) if len(base) else None
    for k in heavy:
        dist, j = tree.query(labeller.positions[k]) if tree is not None else (np.inf, -1)
        if dist <= radius:
            classes[j] = labeller.classes[k]
            row[j], col[j] = labeller.row[k], labeller.col[k]
        else:
            added.append(k)
    add = np.asarray(added, dtype=np.int64)
    return Atoms(
        np.concatenate([row, labeller.row[add]]),
        np.concatenate([col, labeller.col[add]]),
        np.concatenate([classes, labeller.classes[add]]),
        np.zeros(len(base) + len(add), dtype=np.int64),
        base.shape,
        1,
        f"{base.method}+{labeller.method}",
        {**base.params, "class_names": labeller.params.get("class_names"), "elements_added": len(add)},
    )


def find_graphene_atoms(image: np.ndarray, spacing: float | None = None, tta: bool = False) -> Atoms:
    """Atoms of a graphene frame (h, w) with their elements (C = 0, Si = 1): positions from the
    shipped ``"graphene"`` DCNN, Si from ``"graphene-si"`` (:func:`take_elements`, radius half
    a bond). spacing: C-C bond in pixels (None: estimated); tta: see :func:`find_atoms`.
    """
    base = find_atoms(image, "dcnn", model="graphene", spacing=spacing, tta=tta)
    bond = float(base.params["spacing"])
    labeller = find_atoms(image, "dcnn", model="graphene-si", spacing=bond, tta=tta)
    return take_elements(base, labeller, radius=0.5 * bond)


def find_atoms(
    image: np.ndarray,
    method: str = "peaks",
    *,
    spacing: float | None = None,
    n_classes: int = 1,
    threshold: float | None = None,
    smooth: float | None = None,
    min_distance: float | None = None,
    min_sigma: float | None = None,
    max_sigma: float | None = None,
    model: Any = None,
    min_area: int = 2,
    batch_size: int = 4,
    tta: bool = False,
    scale: float | None = None,
    refine: str = "none",
    refine_iterations: int = 2,
    seed: int = 0,
) -> Atoms:
    """Find atomic columns in an image (h, w) or a stack (n_frames, h, w).

    method:
      - ``"peaks"``: local maxima of the image smoothed with a Gaussian of ``smooth`` pixels
        (default 0.2 x spacing), at least ``min_distance`` pixels apart (default 0.5 x spacing,
        the stronger one kept), whose prominence over the local background reaches
        ``threshold`` x the 90th-percentile prominence (default 0.2); refined to sub-pixel by a
        parabola fit on the log intensity above background (exact for Gaussian columns).
      - ``"log"``: scikit-image blob-LoG with sigmas ``min_sigma``..``max_sigma`` (default
        0.15..0.35 x spacing); blobs closer than 0.5 x spacing keep the stronger, and blobs
        whose scale-normalised LoG response is below ``threshold`` x the 90th percentile (0.2)
        are dropped; refined like ``"peaks"``.
      - ``"dcnn"``: a U-Net predicts an atom-probability map; atoms are the probability-weighted
        centroids of regions above ``threshold`` (default 0.5) of at least ``min_area`` pixels.
        ``model``: ``"general"`` (default; trained on square, hexagonal, honeycomb and
        perovskite lattices at 6-22 px), ``"graphene"`` (trained on low-dose honeycomb with
        grain boundaries and vacancies; use it for 60-80 kV graphene), ``"graphene-si"`` (the
        same with Si dopant complexes; it labels each atom C = 0 or Si = 1), a path to
        weights, or a UNet.
        Each frame is first resampled by ``scale`` (None = automatic: the model's
        preferred spacing over ``spacing`` or its estimate; the general model only shrinks)
        and the coordinates are mapped back to the original grid. ``tta=True`` averages the
        map over the 8 flips/rotations (8x slower, steadier on very noisy frames).

    refine: ``"none"`` or ``"lattice"``: after finding, pull each column towards the centroid
    of its neighbour shell for ``refine_iterations`` passes (:func:`refine_on_lattice`; a
    lattice prior for frames too noisy to place single columns, e.g. 60 kV graphene).
    spacing: nearest-neighbour column distance in pixels; estimated from the autocorrelation
    of each frame when None. n_classes: intensity classes; 1 keeps the classes of a DCNN
    with element outputs (see the module docstring).
    Returns :class:`Atoms`; ``.as_array()`` gives (n, 3) (row, col, class);
    ``params["class_names"]`` names the classes when they are elements (else None).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    arr = check_array(image, "image", ndim=(2, 3))
    stack = arr[None] if arr.ndim == 2 else arr
    h, w = stack.shape[1:]
    if h < 8 or w < 8:
        raise ValueError(f"image frames must be at least 8 x 8 pixels, got {h} x {w}")
    if spacing is not None:
        spacing = check_pixels(spacing, "spacing", (h, w), positive=True)
    for name, value in (("smooth", smooth), ("min_distance", min_distance),
                        ("min_sigma", min_sigma), ("max_sigma", max_sigma)):
        if value is not None:
            check_pixels(value, name, (h, w))
    if refine not in ("none", "lattice"):
        raise ValueError(f"refine must be 'none' or 'lattice', got {refine!r}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if threshold is not None and method != "dcnn" and not 0 <= threshold < 1:
        raise ValueError(f"threshold for {method!r} is relative and must be in [0, 1), got {threshold}")
    # The DCNN needs no spacing; for it the spacing (used by classes and the lattice prior) is
    # measured from the atoms it found.
    spacings = [
        float(spacing) if spacing is not None else (0.0 if method == "dcnn" else estimate_spacing(f))
        for f in stack
    ]
    found: list[np.ndarray]
    found_cls: list[tuple[np.ndarray, np.ndarray]] = []
    class_names: list[str] | None = None
    if method == "peaks":
        thr = 0.2 if threshold is None else threshold
        found = [_find_peaks(f, s, smooth, min_distance, thr) for f, s in zip(stack, spacings, strict=True)]
    elif method == "log":
        thr = 0.2 if threshold is None else threshold
        found = [_find_log(f, s, min_sigma, max_sigma, thr) for f, s in zip(stack, spacings, strict=True)]
    else:
        net = load_atom_finder(model) if model is None or isinstance(model, (str, Path)) else model
        thr = 0.5 if threshold is None else threshold
        if not 0 < thr < 1:
            raise ValueError(f"threshold for 'dcnn' is a probability in (0, 1), got {thr}")
        meta = getattr(net, "metadata", {}) or {}

        def automatic_scale(frame_spacing: float) -> float:
            z = meta.get("input_spacing", 8.5) / frame_spacing
            return z if meta.get("upsample", False) else min(z, 1.0)

        # Shared by all frames of a stack: measured on the first one.
        guessed = scale is None and spacing is None
        if scale is None:
            scale = automatic_scale(spacing if spacing is not None else estimate_spacing(stack[0]))
        if not scale > 0 or min(h, w) * scale < 8:
            raise ValueError(f"scale must be > 0 and leave frames >= 8 x 8 pixels, got {scale!r}")
        found_cls = _find_dcnn(stack, net, thr, min_area, batch_size, tta and not guessed, float(scale))
        found = [p for p, _ in found_cls]
        if guessed:
            # The autocorrelation guess is off by 5-15 % on noisy frames with several grains,
            # and on 60 kV graphene a 5 % error in scale costs up to 0.04 in F1; the atoms a
            # first (plain) pass found give the spacing to about 1 %, so the final pass runs at
            # the scale they imply.
            better = automatic_scale(_nn_spacing(found[0], 8.0 / scale))
            rescaled = abs(better / scale - 1) > 0.01 and min(h, w) * better >= 8
            scale = better if rescaled else scale
            if rescaled or tta:
                found_cls = _find_dcnn(stack, net, thr, min_area, batch_size, tta, float(scale))
                found = [p for p, _ in found_cls]
        class_names = meta.get("classes") or None
    if method == "dcnn" and spacing is None:
        spacings = [_nn_spacing(p, 8.0) for p in found]
    if refine == "lattice":
        found = [
            refine_on_lattice(p, s, (h, w), refine_iterations) for p, s in zip(found, spacings, strict=True)
        ]
    frame = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(found)])
    pos = np.concatenate([p.reshape(-1, 2) for p in found]).astype(np.float64)
    if class_names and n_classes == 1:
        classes = np.concatenate([c for _, c in found_cls]).astype(np.int64)
    else:
        class_names = None
        classes = _assign_classes(stack, pos, frame, float(np.median(spacings)), n_classes, seed)
    params = {
        "method": method,
        "spacing": spacings if arr.ndim == 3 else spacings[0],
        "threshold": thr,
        "n_classes": n_classes,
        "refine": refine,
        "scale": scale if method == "dcnn" else None,
        "class_names": list(class_names) if class_names else None,
    }
    logger.info("found %d atoms in %d frame(s) with %s", len(pos), len(stack), method)
    return Atoms(pos[:, 0].copy(), pos[:, 1].copy(), classes, frame, (h, w), len(stack), method, params)
