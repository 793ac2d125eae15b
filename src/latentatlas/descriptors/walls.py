"""Domain-wall detection in PFM (or any two-state) images: one interface, three methods.

``find_walls(image, method)`` returns a :class:`Walls` record (wall mask and wall pixel
coordinates, plus the domain map where the method produces one):

* ``"canny"``: Canny edges of the (normalised) signal; hysteresis thresholds are chosen from
  the data (Otsu's threshold of the smoothed gradient magnitude, low = half of it) unless given.
* ``"gaussian"``: smooth, threshold into two domains (Otsu unless given), drop specks smaller
  than ``min_size`` pixels, walls = the inner boundary of the switched domain.
* ``"dcnn"``: the shipped U-Net (``weights/wall_finder``) trained on generated domain images
  by ``scripts/train_wall_finder.py``; its probability map is thresholded and thinned.

A stack (t, h, w) is processed frame by frame; the mask is then (t, h, w) and the coordinates
(n, 3) as (frame, row, col).

PFM phase images hold two states 180 degrees apart at an arbitrary offset, often straddling
the instrument's wrap (-90/270 degrees): pass ``phase=True`` to project the phase onto its
domain axis first (:func:`to_polarization`), which removes the wrap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from skimage.feature import canny
from skimage.filters import threshold_otsu
from skimage.morphology import skeletonize

from latentatlas._checks import check_array, check_pixels

if TYPE_CHECKING:
    from latentatlas.descriptors.patches import Patches
    from latentatlas.nn.unet import UNet

logger = logging.getLogger(__name__)

METHODS = ("canny", "gaussian", "dcnn")
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "wall_finder.safetensors"

_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Walls:
    """Detected walls.

    mask: (h, w) bool, or (t, h, w) for a stack. coords: (n, 2) int (row, col) of wall pixels,
    or (n, 3) (frame, row, col) for a stack. domains: bool map of the same shape as ``mask``
    (True = the state with the higher normalised signal) for methods that segment domains,
    else None. params: the settings used, thresholds included (lists, one per frame, for a
    stack).
    """

    mask: np.ndarray
    coords: np.ndarray
    method: str
    domains: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a single image)."""
        return 1 if self.mask.ndim == 2 else int(self.mask.shape[0])

    def frame(self, i: int) -> Walls:
        """The walls of frame ``i`` of a stack, as a single-image record."""
        if self.mask.ndim == 2:
            if i != 0:
                raise ValueError(f"a single-image Walls has only frame 0, asked for {i}")
            return self
        mask = self.mask[i]
        params = {k: (v[i] if isinstance(v, list) else v) for k, v in self.params.items()}
        return Walls(
            mask=mask,
            coords=np.argwhere(mask),
            method=self.method,
            domains=None if self.domains is None else self.domains[i],
            params=params,
        )


def to_polarization(phase: np.ndarray, degrees: bool = True) -> np.ndarray:
    """Project a PFM phase image onto its domain axis: about +1 in one state, -1 in the other.

    The two states of a 180-degree domain structure sit 180 degrees apart at an unknown offset
    and may straddle the instrument's wrap. Doubling the angle maps both states to one
    direction whose circular mean is the axis; ``cos(phase - axis)`` is then +1/-1 in the two
    states and near 0 at walls, free of wrap artefacts. The sign is chosen so that the
    minority state (usually the switched one) is +1, the True state of domain maps.
    phase: (h, w) or (t, h, w) (one axis and sign for the whole stack, so frames stay
    comparable). Returns float32 of the same shape.
    """
    ph = check_array(phase, "phase", ndim=(2, 3), dtype=np.float64)
    rad = np.radians(ph) if degrees else ph
    axis = 0.5 * np.angle(np.mean(np.exp(2j * rad)))
    proj = np.cos(rad - axis)
    if np.median(proj) > 0:
        proj = -proj
    return proj.astype(np.float32)


def normalize_signal(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``..``high`` percentile range of an image to [0, 1] (clipped).

    Percentiles rather than min/max so a few spikes (common in PFM) do not squash the
    contrast. image: (h, w). Returns float32 (h, w).
    """
    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, [low, high])
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(img.shape, dtype=np.float32)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def boundary_walls(domains: np.ndarray) -> np.ndarray:
    """Inner boundary of the True domain (the convention of the generated ground truth).

    domains: (h, w) bool. Returns (h, w) bool; the image border is not a wall.
    """
    d = np.asarray(domains, dtype=bool)
    return d & ~ndimage.binary_erosion(d, structure=_CROSS, border_value=1)


def _drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    # Own helper: skimage renamed remove_small_objects' size argument in 0.26.
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def segment_domains(
    image: np.ndarray,
    sigma: float = 1.5,
    threshold: float | None = None,
    min_size: int = 16,
) -> tuple[np.ndarray, float]:
    """Two-state segmentation: smooth, threshold, clean.

    image: (h, w) normalised signal in [0, 1]. sigma: Gaussian smoothing in pixels (0 = none).
    threshold: on the smoothed signal (default Otsu's). min_size: specks and holes smaller
    than this many pixels are merged into their surroundings (noise, not domains).
    Returns (domains (h, w) bool, threshold used).
    """
    img = np.asarray(image, dtype=np.float64)
    sigma = check_pixels(sigma, "sigma", img.shape)
    smooth = ndimage.gaussian_filter(img, sigma, mode="nearest") if sigma > 0 else img
    thr = float(threshold_otsu(smooth)) if threshold is None else float(threshold)
    dom = smooth > thr
    if min_size > 0:
        dom = _drop_small(dom, min_size)
        dom = ~_drop_small(~dom, min_size)
    return dom, thr


def _canny_frame(img: np.ndarray, sigma: float, low: float | None, high: float | None) -> tuple[
    np.ndarray, float, float
]:
    if high is None:
        # Walls are the few pixels with a large gradient; Otsu splits them from the noise floor.
        smooth = ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="nearest")
        grad = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
        high = float(threshold_otsu(grad)) if np.ptp(grad) > 0 else 1.0
    if low is None:
        low = 0.5 * high
    if low > high:
        raise ValueError(f"low_threshold ({low}) must not exceed high_threshold ({high})")
    edges = canny(img, sigma=sigma, low_threshold=low, high_threshold=high, mode="nearest")
    return edges, float(low), float(high)


_MODEL_CACHE: dict[str, UNet] = {}


def load_wall_finder(weights: str | Path | None = None) -> UNet:
    """The wall-finder U-Net (default: the shipped ``weights/wall_finder``), cached per path."""
    from latentatlas.descriptors.segmenter import load_segmenter

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    key = str(path.resolve())
    if key not in _MODEL_CACHE:
        if not path.with_suffix(".safetensors").exists():
            raise FileNotFoundError(
                f"wall-finder weights {path} not found; train them with "
                "`python scripts/train_wall_finder.py` or pass weights=PATH"
            )
        _MODEL_CACHE[key] = load_segmenter(path)
    return _MODEL_CACHE[key]


def wall_training_pair(phase: np.ndarray, domains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Network input and target for one generated image (what the shipped weights saw).

    phase: (h, w) degrees; domains: (h, w) bool. Input = the normalised polarisation
    projection (1, h, w); target = the wall band (1, h, w), the pixels on either side of each
    wall, which the network learns more easily than a one-sided line (its output is thinned).
    """
    x = normalize_signal(to_polarization(phase))
    d = np.asarray(domains, dtype=bool)
    band = boundary_walls(d) | boundary_walls(~d)
    return x[None], band[None].astype(np.float32)


def _dcnn_probability(frames: np.ndarray, weights: str | Path | None) -> np.ndarray:
    from latentatlas.descriptors.segmenter import predict_probability

    return predict_probability(load_wall_finder(weights), frames[:, None])[:, 0]


def wall_probability(
    image: np.ndarray, phase: bool = False, weights: str | Path | None = None
) -> np.ndarray:
    """Per-pixel wall probability from the DCNN. image: (h, w) or (t, h, w) -> same shape.

    The signal (polarisation projection of the phase when ``phase``) is normalised per frame
    exactly as in training.
    """
    arr = check_array(image, "image", ndim=(2, 3))
    sig = to_polarization(arr) if phase else arr
    frames = sig[None] if sig.ndim == 2 else sig
    prob = _dcnn_probability(np.stack([normalize_signal(f) for f in frames]), weights)
    return prob[0] if arr.ndim == 2 else prob


def find_walls(
    image: np.ndarray,
    method: str = "gaussian",
    *,
    phase: bool = False,
    sigma: float | None = None,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    threshold: float | None = None,
    min_size: int = 16,
    probability_threshold: float = 0.5,
    weights: str | Path | None = None,
) -> Walls:
    """Find domain walls in an image or, frame by frame, in a stack.

    image: (h, w) or (t, h, w); any two-state signal (PFM phase with ``phase=True``, the
    polarisation projection, amplitude-times-cos(phase), ...). The signal is normalised to
    [0, 1] between its 1st and 99th percentiles before detection, so thresholds are in those
    units.

    method "canny": sigma (default 2.0) is the Gaussian width; low/high_threshold are the
    hysteresis thresholds on the gradient magnitude (default: Otsu of the gradient, low half).
    method "gaussian": sigma (default 1.5) smoothing; threshold on the smoothed signal
    (default Otsu); min_size pixels for specks/holes. Also returns the domain map.
    method "dcnn": probability_threshold on the U-Net output, which is then thinned to
    one-pixel walls; weights: a different segmenter than the shipped one.

    Returns :class:`Walls`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    arr = check_array(image, "image", ndim=(2, 3))
    if min(arr.shape[-2:]) < 8:
        raise ValueError(f"image frames must be at least 8x8 pixels, got {arr.shape[-2:]}")
    if sigma is not None:
        sigma = check_pixels(sigma, "sigma", arr.shape[-2:])
    if not 0 < probability_threshold < 1:
        raise ValueError(f"probability_threshold must be in (0, 1), got {probability_threshold}")
    sig = to_polarization(arr) if phase else arr
    frames = sig[None] if sig.ndim == 2 else sig
    norm = [normalize_signal(f) for f in frames]
    masks: list[np.ndarray] = []
    domains: list[np.ndarray] | None = None
    params: dict[str, Any] = {"phase": phase}
    if method == "canny":
        s = 2.0 if sigma is None else sigma
        lows, highs = [], []
        for f in norm:
            edges, lo, hi = _canny_frame(f, s, low_threshold, high_threshold)
            masks.append(edges)
            lows.append(lo)
            highs.append(hi)
        params.update(sigma=s, low_threshold=lows, high_threshold=highs)
    elif method == "gaussian":
        s = 1.5 if sigma is None else sigma
        domains, thrs = [], []
        for f in norm:
            dom, thr = segment_domains(f, s, threshold, min_size)
            domains.append(dom)
            masks.append(boundary_walls(dom))
            thrs.append(thr)
        params.update(sigma=s, threshold=thrs, min_size=min_size)
    else:
        prob = _dcnn_probability(np.stack(norm), weights)
        for p in prob:
            masks.append(skeletonize(p > probability_threshold))
        params.update(probability_threshold=probability_threshold)
    if arr.ndim == 2:
        params = {k: (v[0] if isinstance(v, list) else v) for k, v in params.items()}
        mask = masks[0]
        dom_out = None if domains is None else domains[0]
    else:
        mask = np.stack(masks)
        dom_out = None if domains is None else np.stack(domains)
    logger.debug("find_walls(%s): %d wall pixels", method, int(mask.sum()))
    return Walls(
        mask=mask, coords=np.argwhere(mask), method=method, domains=dom_out, params=params
    )


def wall_patches(
    image: np.ndarray,
    walls: Walls | np.ndarray,
    window: int,
    max_patches: int | None = 2000,
    seed: int = 0,
    normalize: str = "image",
) -> Patches:
    """Sub-images centred on wall pixels, subsampled, ready for an (r)VAE.

    image: (h, w) or (t, h, w) (or (t, c, h, w) for multi-channel) signal to cut the patches
    from; walls: a :class:`Walls` or its mask ((h, w) or (t, h, w)). Wall pixels closer than
    ``window // 2`` to the border are dropped; if more than ``max_patches`` remain, a random
    subset (seeded) is kept, in image order. Returns Patches (see
    :func:`~latentatlas.descriptors.patches.extract_patches`) with ``frames`` set for stacks.
    """
    from latentatlas.descriptors.patches import extract_patches

    mask = walls.mask if isinstance(walls, Walls) else np.asarray(walls, dtype=bool)
    arr = check_array(image, "image", ndim=(2, 3, 4))
    n_frames = 1 if arr.ndim == 2 else arr.shape[0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape[0] != n_frames or mask.shape[-2:] != arr.shape[-2:]:
        raise ValueError(
            f"walls {mask.shape} do not match the image {arr.shape}: give one (h, w) mask per "
            "frame of the image the walls were found in"
        )
    half = window // 2
    h, w = mask.shape[-2:]
    inner = np.zeros_like(mask)
    inner[:, half : h - (window - half) + 1, half : w - (window - half) + 1] = True
    coords = np.argwhere(mask & inner)  # (n, 3): frame, row, col
    if len(coords) == 0:
        raise ValueError(
            f"no wall pixel lies at least window/2 = {half} pixels from the border; "
            "check the detector's output or use a smaller window"
        )
    if max_patches is not None and len(coords) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(len(coords), max_patches, replace=False))
        coords = coords[keep]
    frames = coords[:, 0] if n_frames > 1 else None
    return extract_patches(
        arr, coords[:, 1:].astype(np.float64), window, frames=frames,
        normalize=normalize,  # type: ignore[arg-type]
    )


__all__ = [
    "METHODS",
    "Walls",
    "boundary_walls",
    "find_walls",
    "load_wall_finder",
    "normalize_signal",
    "segment_domains",
    "to_polarization",
    "wall_patches",
    "wall_probability",
    "wall_training_pair",
]
