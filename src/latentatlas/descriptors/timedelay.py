"""Time-delay and multilayer descriptors: several images of one place as the channels of a patch.

* Time delay: from a stack (t, h, w), the same location at frames ``t, t+lag, ..,
  t+(delay-1)*lag`` stacked as channels, channel order = time order. A VAE on these patches
  sees how a neighbourhood changes (a wall moving through it), not just what it looks like.
* Multilayer: channels are different signals of one frame (amplitude and phase, or wall
  families such as 180-degree walls, all walls and their difference).

Both return the :class:`~latentatlas.descriptors.patches.Patches` record of
:func:`~latentatlas.descriptors.patches.extract_patches`, so latents can be painted back on
the image; ``Patches.frames`` holds the first frame of each time window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from latentatlas._checks import check_array
from latentatlas.descriptors.patches import Patches, as_stack, extract_patches


def _scale(x: np.ndarray, name: str) -> np.ndarray:
    # One scale for a whole layer (all frames): changes over time stay visible as changes.
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def time_delay_stack(stack: np.ndarray, delay: int = 2, lag: int = 1) -> np.ndarray:
    """Stack frames ``t, t+lag, .., t+(delay-1)*lag`` as channels, for every valid ``t``.

    stack: (t, h, w) or (t, c, h, w). Returns (t - (delay-1)*lag, delay * c, h, w) float32
    whose channel ``j * c + i`` is channel ``i`` of frame ``t + j * lag`` (time-major).
    """
    arr = check_array(stack, "stack", ndim=(3, 4))
    if arr.ndim == 3:
        arr = arr[:, None]
    if not isinstance(delay, (int, np.integer)) or delay < 1:
        raise ValueError(f"delay must be a positive integer (frames per descriptor), got {delay}")
    if not isinstance(lag, (int, np.integer)) or lag < 1:
        raise ValueError(f"lag must be a positive integer (frames between channels), got {lag}")
    n, c, h, w = arr.shape
    span = (delay - 1) * lag + 1
    if span > n:
        raise ValueError(
            f"delay {delay} with lag {lag} needs {span} frames but the stack has {n}; "
            "use a smaller delay or lag"
        )
    # (n-span+1, c, h, w, span) view over time; keep every lag-th frame of the span
    view = sliding_window_view(arr, span, axis=0)[..., ::lag]
    out = np.moveaxis(view, -1, 1)  # (m, delay, c, h, w), time-major
    return np.ascontiguousarray(out.reshape(n - span + 1, delay * c, h, w), dtype=np.float32)


def time_delay_patches(
    stack: np.ndarray,
    centers: np.ndarray,
    window: int,
    delay: int = 2,
    lag: int = 1,
    starts: np.ndarray | Sequence[int] | None = None,
    border: str = "drop",
    normalize: str = "stack",
) -> Patches:
    """Time-delay patches: each centre at each start frame, frames ``t..t+(delay-1)*lag``.

    stack: (t, h, w) or (t, c, h, w). centers: (m, 2) (row, col). starts: (m,) start frame
    per centre, or None for every centre at every valid start (the result then holds
    ``m * n_starts`` patches, centre-major). normalize: "stack" scales the whole stack to
    [0, 1] with one range (so brightness changes over time survive), or any ``normalize``
    option of ``extract_patches``. Returns Patches with data (k, delay * c, window, window),
    channel order = time order, ``frames`` = start frame of each patch.
    """
    arr = as_stack(stack, "stack")  # (t, c, h, w)
    if arr.shape[0] < 2 and delay > 1:
        raise ValueError(f"a time-delay descriptor needs a stack of frames, got shape {arr.shape}")
    if normalize == "stack":
        arr = _scale(arr, "stack")
        mode = "none"
    else:
        mode = normalize
    td = time_delay_stack(arr, delay, lag)
    pts = np.asarray(centers, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"centers must be a non-empty (m, 2) array of (row, col), got {pts.shape}")
    if starts is None:
        n_starts = len(td)
        frames = np.tile(np.arange(n_starts), len(pts))
        pts = np.repeat(pts, n_starts, axis=0)
    else:
        frames = np.asarray(starts, dtype=np.int64).ravel()
        if frames.shape != (len(pts),):
            raise ValueError(
                f"starts must have one entry per centre ({len(pts)}), got {frames.shape}"
            )
        if frames.min() < 0 or frames.max() >= len(td):
            raise ValueError(
                f"starts must lie in [0, {len(td) - 1}] (the last frame that still has "
                f"{delay - 1} later frames at lag {lag}), got {frames.min()}..{frames.max()}"
            )
    patches = extract_patches(
        td, pts, window, frames=frames, border=border, normalize=mode  # type: ignore[arg-type]
    )
    patches.extra.update({"delay": int(delay), "lag": int(lag), "descriptor": "time_delay"})
    if normalize == "stack":
        patches.normalize = "stack"
    return patches


def multilayer_stack(layers: Mapping[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stack named layers (each (h, w) or (t, h, w), same shape) as channels.

    Each layer is scaled to [0, 1] on its own (amplitude in metres and phase in degrees
    would otherwise differ by orders of magnitude). Returns ((t, c, h, w) float32, names).
    """
    if not layers:
        raise ValueError("layers is empty; pass e.g. {'amplitude': amp, 'phase': phase}")
    arrays = []
    shape = None
    for name, layer in layers.items():
        a = check_array(layer, f"layer {name!r}", ndim=(2, 3))
        a = a[None] if a.ndim == 2 else a
        if shape is not None and a.shape != shape:
            raise ValueError(f"layer {name!r} has shape {a.shape}, the first layer {shape}")
        shape = a.shape
        arrays.append(_scale(a.astype(np.float64), name))
    return np.stack(arrays, axis=1), tuple(layers)


def multilayer_patches(
    layers: Mapping[str, np.ndarray],
    centers: np.ndarray,
    window: int,
    frames: np.ndarray | None = None,
    border: str = "drop",
) -> Patches:
    """Patches whose channels are the named layers, in the order given.

    layers: name -> (h, w) or (t, h, w) arrays of one shape. centers: (m, 2); frames: (m,)
    for stacks. Returns Patches (m, c, window, window); ``extra["channels"]`` lists the names.
    """
    stack, names = multilayer_stack(layers)
    patches = extract_patches(
        stack, centers, window, frames=frames, border=border, normalize="none"  # type: ignore[arg-type]
    )
    patches.extra["channels"] = ",".join(names)
    patches.extra["descriptor"] = "multilayer"
    return patches


def wall_family_layers(
    all_walls: np.ndarray, family: np.ndarray, blur: float = 1.0, tolerance: float = 3.0
) -> dict[str, np.ndarray]:
    """Three wall layers for a multilayer VAE: one family, all walls, and the rest.

    all_walls, family: (h, w) or (t, h, w) bool masks (e.g. every wall from Canny on the
    amplitude, and the 180-degree walls from the phase). "other" holds the walls of
    ``all_walls`` farther than ``tolerance`` pixels from the family (the difference; the
    default 3 px also removes the double edges Canny draws on both flanks of the amplitude
    dip at a 180-degree wall). Each layer is blurred by ``blur`` pixels so a
    VAE sees a wall as a ridge, not a one-pixel line. Returns {"family", "all", "other"}.
    """
    a = np.asarray(all_walls, dtype=bool)
    f = np.asarray(family, dtype=bool)
    if a.shape != f.shape or a.ndim not in (2, 3):
        raise ValueError(
            f"wall masks must share an (h, w) or (t, h, w) shape, got {a.shape} and {f.shape}"
        )
    frames_a = a[None] if a.ndim == 2 else a
    frames_f = f[None] if f.ndim == 2 else f
    other = np.stack([
        aa & (ndimage.distance_transform_edt(~ff) > tolerance) if ff.any() else aa
        for aa, ff in zip(frames_a, frames_f, strict=True)
    ])
    other = other[0] if a.ndim == 2 else other
    sig = (0, blur, blur) if a.ndim == 3 else blur

    def soft(m: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(m.astype(np.float32), sig) if blur > 0 else m.astype(
            np.float32
        )

    return {"family": soft(f), "all": soft(a), "other": soft(other)}


__all__ = [
    "multilayer_patches",
    "multilayer_stack",
    "time_delay_patches",
    "time_delay_stack",
    "wall_family_layers",
]
