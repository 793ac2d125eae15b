"""Patches centred on points (atoms) in an image or a stack, with full bookkeeping.

Every patch keeps the frame it came from, its centre, its class and the index of the input
point it belongs to, so latents computed on the patches can be painted back on the image.
Extraction is one vectorised gather from a sliding-window view: no per-point Python loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from latentatlas._checks import check_array

log = logging.getLogger(__name__)

Border = Literal["drop", "pad"]
Normalize = Literal["background", "standardize", "patch", "image", "none"]
NORMALIZE_MODES = ("background", "standardize", "patch", "image", "none")

__all__ = ["NORMALIZE_MODES", "Patches", "as_stack", "extract_patches", "normalize_images",
           "normalize_patches", "normalize_stack", "remove_background"]


@dataclass
class Patches:
    """Image patches and where they came from.

    Attributes
    ----------
    data : ``(m, c, w, w)`` float32 patches.
    centers : ``(m, 2)`` float64 (row, col) centre of each patch in image pixels.
    frames : ``(m,)`` int frame index of each patch.
    classes : ``(m,)`` int class of each input point (``-1`` when unknown).
    index : ``(m,)`` int index of the input point each patch came from (points dropped at
        the border are absent).
    window : patch side ``w`` in pixels.
    border : ``"drop"`` or ``"pad"``, the policy used at the image border.
    normalize : ``"patch"``, ``"image"`` or ``"none"``.
    image_shape : ``(h, w)`` of the source image(s).
    n_frames : number of frames in the source stack.
    grid_shape : ``(rows, cols)`` of the window grid for sliding windows, ``None`` for atoms.
    n_input : number of input points (before border dropping).
    extra : free-form record of further options (pad mode, stride, ...).
    """

    data: np.ndarray
    centers: np.ndarray
    frames: np.ndarray
    classes: np.ndarray
    index: np.ndarray
    window: int
    border: str
    normalize: str
    image_shape: tuple[int, int]
    n_frames: int = 1
    grid_shape: tuple[int, int] | None = None
    n_input: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def n_dropped(self) -> int:
        return self.n_input - len(self)

    def as_model_input(self) -> np.ndarray:
        """``(m, w, w)`` for one channel, ``(m, c, w, w)`` otherwise: what the models take."""
        return self.data[:, 0] if self.n_channels == 1 else self.data

    def subset(self, keep: np.ndarray) -> Patches:
        """The patches selected by a boolean mask or an index array."""
        keep = np.asarray(keep)
        return Patches(
            data=self.data[keep], centers=self.centers[keep], frames=self.frames[keep],
            classes=self.classes[keep], index=self.index[keep], window=self.window,
            border=self.border, normalize=self.normalize, image_shape=self.image_shape,
            n_frames=self.n_frames, grid_shape=None, n_input=self.n_input,
            extra=dict(self.extra),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-friendly record of how the patches were made."""
        return {
            "n_patches": len(self), "n_input": self.n_input, "n_dropped": self.n_dropped,
            "window": self.window, "border": self.border, "normalize": self.normalize,
            "channels": self.n_channels, "image_shape": list(self.image_shape),
            "n_frames": self.n_frames,
            "grid_shape": list(self.grid_shape) if self.grid_shape else None,
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool))},
        }


def as_stack(images: Any, name: str = "images") -> np.ndarray:
    """``(h, w)``, ``(n_frames, h, w)`` or ``(n_frames, c, h, w)`` -> float32 ``(n, c, h, w)``.

    Accepts a :class:`latentatlas.io.Dataset` too (its ``data``).
    """
    data = getattr(images, "data", images)
    if not isinstance(data, np.ndarray) and hasattr(images, "axes"):
        data = np.asarray(data)
    arr = check_array(data, name, ndim=(2, 3, 4))
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3:
        return arr[:, None]
    return arr


def normalize_images(stack: np.ndarray) -> np.ndarray:
    """Min-max scale each frame and channel of ``(n, c, h, w)`` to [0, 1]."""
    lo = stack.min(axis=(2, 3), keepdims=True)
    hi = stack.max(axis=(2, 3), keepdims=True)
    # a flat image stays at 0 instead of dividing by zero
    return ((stack - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


def remove_background(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Subtract the slowly varying background and divide by the local contrast.

    For every frame and channel of ``(n, c, h, w)``: ``b = G_sigma * x`` (Gaussian smoothing,
    ``sigma`` pixels) is the background (a gradient, uneven illumination, thickness-dependent
    offsets), ``r = x - b`` the structure, and ``s = sqrt(G_sigma * r**2)`` its local RMS
    contrast, which changes with thickness or dose; the result is ``r / s``. With ``sigma``
    about one patch (two atomic spacings) the lattice itself survives - its period is far
    shorter than ``sigma`` - while anything slower than the patch is removed, so two patches
    of the same structure look alike wherever they sit in the image. Each frame's 1st-99th
    percentile range is then mapped to [0, 1], the scale of ``normalize="image"``. Returns
    float32, same shape.
    """
    from scipy import ndimage

    if not sigma > 0:
        raise ValueError(f"background sigma must be > 0 pixels, got {sigma!r}")
    x = np.asarray(stack, dtype=np.float64)
    size = (0, 0, float(sigma), float(sigma))
    # A mirrored border folds a ramp back on itself, which biases the smoothed background
    # within ~sigma of the edge (patches there became a class of their own on a generated
    # gradient); removing the best-fit plane first leaves nothing linear to fold.
    x = x - _plane(x)
    resid = x - ndimage.gaussian_filter(x, size, mode="reflect")
    local = np.sqrt(ndimage.gaussian_filter(resid**2, size, mode="reflect"))
    # a flat region (no structure at all) must not blow up: floor the contrast at a small
    # fraction of the frame's typical contrast
    floor = 1e-3 * np.median(local, axis=(2, 3), keepdims=True) + 1e-12
    flat = resid / np.maximum(local, floor)
    # Back on the scale the models expect of images (their default noise level assumes
    # values over about [0, 1]): the 1st-99th percentile range of each frame to [0, 1]
    # (percentiles, not min/max, so a few spikes do not squash the contrast).
    lo, hi = np.percentile(flat, [1.0, 99.0], axis=(2, 3), keepdims=True)
    return ((flat - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


def _plane(x: np.ndarray) -> np.ndarray:
    """Least-squares plane ``a + b row + c col`` of every frame and channel of ``(n, c, h, w)``."""
    h, w = x.shape[-2:]
    rows, cols = np.mgrid[0:h, 0:w]
    design = np.stack([np.ones(h * w), rows.ravel() / h, cols.ravel() / w], axis=1)  # (hw, 3)
    flat = x.reshape(-1, h * w).T  # (hw, n c)
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (design @ coef).T.reshape(x.shape)


def normalize_stack(stack: np.ndarray, normalize: str, background_sigma: float | None) -> np.ndarray:
    """The image-level part of a normalisation mode, applied before patches are cut."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    if normalize == "image":
        return normalize_images(stack)
    if normalize == "background":
        if background_sigma is None:
            raise ValueError("normalize='background' needs background_sigma (pixels); about "
                             "the patch size (two atomic spacings) is a good value")
        return remove_background(stack, background_sigma)
    return stack


def normalize_patches(p: np.ndarray, normalize: str) -> np.ndarray:
    """The patch-level part of a normalisation mode, in place on ``(m, c, w, w)``:
    ``patch`` scales every patch and channel to [0, 1], ``standardize`` to zero mean and
    unit standard deviation; other modes leave the patches alone."""
    if normalize == "patch":
        lo = p.min(axis=(2, 3), keepdims=True)
        hi = p.max(axis=(2, 3), keepdims=True)
        p -= lo
        p /= np.where(hi > lo, hi - lo, 1.0)
    elif normalize == "standardize":
        p -= p.mean(axis=(2, 3), keepdims=True)
        sd = p.std(axis=(2, 3), keepdims=True)
        p /= np.where(sd > 0, sd, 1.0)
    return p


def _check_window(window: int, h: int, w: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window must be an integer >= 2 (patch side in pixels), got {window!r}")
    if window > min(h, w):
        raise ValueError(
            f"window {window} is larger than the image ({h} x {w} pixels); pass a window of at "
            f"most {min(h, w)} pixels (about 2-3 atomic spacings is typical)"
        )
    return int(window)


def extract_patches(
    images: Any,
    centers: Any,
    window: int,
    frames: Any = None,
    classes: Any = None,
    border: Border = "drop",
    normalize: Normalize = "image",
    pad_mode: Literal["reflect", "edge", "constant"] = "reflect",
    background_sigma: float | None = None,
) -> Patches:
    """Cut a ``window x window`` patch around every point.

    Parameters
    ----------
    images : ``(h, w)``, ``(n_frames, h, w)`` or ``(n_frames, c, h, w)`` array (or a Dataset).
    centers : ``(m, 2)`` (row, col) coordinates in pixels, or ``(m, 3)`` (row, col, class) as
        returned by the atom finders; rounded to the nearest pixel for cutting, kept exactly
        in the result.
    window : patch side in pixels. The centre pixel sits at index ``window // 2``.
    frames : ``(m,)`` frame index of each point; required for stacks, zeros otherwise.
    classes : ``(m,)`` integer class of each point (overrides a third column of ``centers``).
    border : ``"drop"`` discards points whose window leaves the image; ``"pad"`` keeps them,
        padding the image (``pad_mode``, default mirror). Points outside the image are always
        dropped. The result records the policy and how many points were dropped.
    normalize : ``"image"`` min-max scales each frame and channel to [0, 1] before cutting
        (keeps intensity differences between sites, and any background gradient too);
        ``"background"`` removes the slow background and local contrast changes first
        (:func:`remove_background` with ``background_sigma``), keeping the differences
        between neighbouring sites; ``"standardize"`` brings every patch and channel to zero
        mean and unit standard deviation; ``"patch"`` scales every patch and channel to
        [0, 1] on its own (keeps shape only); ``"none"`` keeps raw values.
    background_sigma : pixels, for ``normalize="background"``.

    Returns
    -------
    Patches with ``data`` of shape ``(m_kept, c, window, window)``.
    """
    stack = as_stack(images)
    n_frames, _, h, w = stack.shape
    window = _check_window(window, h, w)
    if border not in ("drop", "pad"):
        raise ValueError(f"border must be 'drop' or 'pad', got {border!r}")
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")

    pts = np.asarray(centers, dtype=np.float64) if centers is not None else np.empty((0, 2))
    if pts.size == 0:
        raise ValueError(
            "the coordinate list is empty: no atoms to cut patches around; check the atom "
            "finder's threshold, or use sliding windows (descriptors.windows.sliding_windows)"
        )
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"centers must have shape (m, 2) or (m, 3) (row, col[, class]), "
                         f"got {pts.shape}")
    if not np.isfinite(pts[:, :2]).all():
        raise ValueError("centers contain NaN or infinite coordinates; drop those points first")
    m = pts.shape[0]

    if classes is None:
        cls = pts[:, 2].astype(np.int64) if pts.shape[1] == 3 else np.full(m, -1, np.int64)
    else:
        cls = np.asarray(classes).astype(np.int64).ravel()
        if cls.shape != (m,):
            raise ValueError(f"classes must have one entry per point ({m}), got {cls.shape}")

    if frames is None:
        if n_frames > 1:
            raise ValueError(
                f"images is a stack of {n_frames} frames: pass frames=(m,) saying which frame "
                "each point belongs to"
            )
        frm = np.zeros(m, dtype=np.int64)
    else:
        frm = np.asarray(frames).astype(np.int64).ravel()
        if frm.shape != (m,):
            raise ValueError(f"frames must have one entry per point ({m}), got {frm.shape}")
        if frm.min() < 0 or frm.max() >= n_frames:
            raise ValueError(
                f"frames must lie in [0, {n_frames - 1}] for a stack of {n_frames} frames, "
                f"got values from {frm.min()} to {frm.max()}"
            )

    stack = normalize_stack(stack, normalize, background_sigma)

    half = window // 2
    rc = np.rint(pts[:, :2]).astype(np.int64)
    top, left = rc[:, 0] - half, rc[:, 1] - half
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
    if border == "drop":
        keep = inside & (top >= 0) & (left >= 0) & (top + window <= h) & (left + window <= w)
        source = stack
    else:
        keep = inside
        pad = ((0, 0), (0, 0), (half, window - half), (half, window - half))
        source = np.pad(stack, pad, mode=pad_mode)
        top, left = top + half, left + half
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        raise ValueError(
            f"all {m} points lie outside the image or within window/2 = {half} pixels of its "
            "border; use border='pad' or a smaller window"
        )
    if kept.size < m:
        log.info("dropped %d of %d points at the image border (border=%r)", m - kept.size, m,
                 border)

    # (n, c, H-w+1, W-w+1, w, w) view; one fancy-index gather copies only the kept patches
    view = sliding_window_view(source, (window, window), axis=(2, 3))
    data = view[frm[kept], :, top[kept], left[kept]]  # -> (m_kept, c, w, w)
    data = np.ascontiguousarray(data, dtype=np.float32)
    data = normalize_patches(data, normalize)

    return Patches(
        data=data,
        centers=pts[kept, :2].copy(),
        frames=frm[kept],
        classes=cls[kept],
        index=kept,
        window=window,
        border=border,
        normalize=normalize,
        image_shape=(int(h), int(w)),
        n_frames=int(n_frames),
        n_input=m,
        extra={**({"pad_mode": pad_mode} if border == "pad" else {}),
               **({"background_sigma": float(background_sigma)}
                  if normalize == "background" and background_sigma is not None else {})},
    )
