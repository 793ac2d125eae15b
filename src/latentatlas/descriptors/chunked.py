"""Atom finding on images and stacks larger than memory, one chunk at a time.

:func:`find_atoms_chunked` gives what :func:`~latentatlas.descriptors.atoms.find_atoms` gives
on the whole data, reading one Dask chunk (plus a border) at a time:

- Chunks of whole frames work with every method: each chunk is a small stack.
- With ``method="peaks"`` frames may also be cut into tiles. Every step of the finder is
  local except the relative threshold: smoothing, local maxima, background, suppression of
  weaker neighbours and sub-pixel refinement all look at most :func:`peak_halo` pixels away.
  Each tile is therefore read with a border of that width (``dask.array.map_overlap``,
  no padding at the image edges, where the finder sees exactly what it sees on the whole
  image), and keeps only the atoms whose peak pixel lies in its own core, so an atom at a
  tile edge is found once, by one tile, from the same pixels as on the whole image. The
  relative threshold (a fraction of the 90th-percentile prominence of each frame) and the
  intensity classes (k-means over all atoms) are applied afterwards to all candidates.
  Positions equal those of the whole-image finder (the arithmetic is the same, pixel for
  pixel), in the same order.

Memory: a chunk and its border, a few float64 copies of it per worker thread, and the atom
table (a few tens of bytes per atom).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from latentatlas._checks import check_array
from latentatlas.descriptors.atoms import (
    METHODS,
    Atoms,
    _peak_candidates,
    _refine_quadratic,
    class_smoothing,
    estimate_spacing,
    find_atoms,
    intensity_classes,
    peak_support,
)

log = logging.getLogger(__name__)

__all__ = ["find_atoms_chunked", "intensity_at_atoms", "peak_halo"]


def peak_halo(spacing: float, smooth: float | None = None, min_distance: float | None = None
              ) -> int:
    """Border (pixels) a tile needs so that ``"peaks"`` finds every atom of its core exactly
    as on the whole image.

    An atom's peak depends on the smoothed image within the maximum-filter radius, its
    prominence on the background minimum filter, its suppression on every candidate within
    ``min_distance`` (whose own peak and prominence reach as far again), its refinement on a
    3 x 3 neighbourhood and a minimum filter of about one spacing; the smoothing adds its
    Gaussian radius (4 sigma) to each. Rounded up to an even number, so tiles start on pixels
    of the same parity as on the whole image.
    """
    s, md = peak_support(spacing, smooth, min_distance)
    gauss = int(4.0 * s + 0.5) if s > 0 else 0
    r_max = max(1, int(round(0.25 * md)))
    r_bg = max(3, int(round(2 * spacing))) // 2
    r_refine = max(3, int(round(spacing))) // 2
    halo = math.ceil(md) + gauss + max(r_max, r_bg, r_refine, 1) + 2
    return halo + halo % 2


@dataclass
class _Found:
    """Candidates of one frame from one chunk, in whole-image pixel coordinates."""

    frame: int
    peaks: np.ndarray  # (n, 2) int64 peak pixels
    strength: np.ndarray  # (n,) prominence (peaks) or 0
    positions: np.ndarray  # (n, 2) float64 refined positions
    spacing: float
    final: bool  # True when the method's own threshold was already applied


def _as_dask(image: Any, chunks: Any) -> Any:
    import dask.array as da

    data = getattr(image, "data", image)
    if isinstance(data, da.Array):
        arr = data if chunks is None else data.rechunk(chunks)
    else:
        arr = np.asarray(data)
        arr = da.from_array(arr, chunks=chunks or ((1,) * (arr.ndim - 2) + (-1, -1))
                            if arr.ndim == 3 else (chunks or (-1, -1)), name=False)
    if arr.ndim not in (2, 3):
        raise ValueError(f"image must be (h, w) or (n_frames, h, w), got shape {arr.shape}")
    return arr[None] if arr.ndim == 2 else arr


def _central_crops(x: Any) -> list[np.ndarray]:
    """The central 512 x 512 of every frame (what ``estimate_spacing`` looks at), read one
    chunk of frames at a time."""
    _, h, w = x.shape
    r0, c0 = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
    crops: list[np.ndarray] = []
    start = 0
    for n in x.chunks[0]:
        crops.extend(np.asarray(x[start:start + n, r0:r0 + 512, c0:c0 + 512].compute()))
        start += n
    return crops


def _block_offsets(chunks: tuple[tuple[int, ...], ...], block_id: tuple[int, ...], halo: int
                   ) -> tuple[int, int, int, int, int, int, int]:
    """First frame, core origin (row, col), core size (rows, cols) and the border above and
    left of the core in the overlapped block."""
    f0 = sum(chunks[0][:block_id[0]])
    r0 = sum(chunks[1][:block_id[1]])
    c0 = sum(chunks[2][:block_id[2]])
    top = halo if block_id[1] > 0 else 0
    left = halo if block_id[2] > 0 else 0
    return f0, r0, c0, chunks[1][block_id[1]], chunks[2][block_id[2]], top, left


def _boxed(value: Any) -> np.ndarray:
    out = np.empty((1, 1, 1), dtype=object)
    out[0, 0, 0] = value
    return out


def _map_tiles(x: Any, halo: int, func: Any) -> list[Any]:
    """``func(block, offsets)`` on every chunk of ``x`` read with a ``halo``-pixel border
    (none beyond the image edges); the results in chunk order (frames, rows, columns)."""
    import dask.array as da

    chunks = x.chunks

    def run(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None
        return _boxed(func(block, _block_offsets(chunks, block_id, halo)))

    if halo and any(len(c) > 1 and min(c) < halo for c in chunks[1:]):
        raise AssertionError("chunks narrower than the border: call _with_min_chunk first")
    out = da.map_overlap(run, x, depth={0: 0, 1: halo, 2: halo}, boundary="none", trim=False,
                         dtype=object, meta=np.empty((0, 0, 0), dtype=object),
                         chunks=tuple((1,) * n for n in x.numblocks))
    return list(out.compute().ravel())


def _with_min_chunk(x: Any, halo: int) -> Any:
    """Every chunk at least ``halo`` wide (a narrower one joins its neighbour), so that Dask's
    overlap need not rechunk behind our back: the tile offsets are computed from these."""

    def merged(sizes: tuple[int, ...]) -> tuple[int, ...]:
        out: list[int] = []
        for n in sizes:
            if out and out[-1] < halo:
                out[-1] += n
            else:
                out.append(n)
        if len(out) > 1 and out[-1] < halo:
            out[-2] += out.pop()
        return tuple(out)

    chunks = (x.chunks[0], merged(x.chunks[1]), merged(x.chunks[2]))
    return x if chunks == x.chunks else x.rechunk(chunks)


def find_atoms_chunked(
    image: Any,
    method: str = "peaks",
    *,
    chunks: Any = None,
    spacing: float | None = None,
    n_classes: int = 1,
    threshold: float | None = None,
    smooth: float | None = None,
    min_distance: float | None = None,
    seed: int = 0,
    **options: Any,
) -> Atoms:
    """Find atoms in an image ``(h, w)`` or stack ``(n_frames, h, w)`` chunk by chunk.

    image : a NumPy or Dask array or a (lazy) Dataset.
    chunks : Dask chunks to read, e.g. ``(4, -1, -1)`` (4 whole frames) or ``(1, 1024,
        1024)`` (tiles; ``"peaks"`` only). Default: the Dask array's own, or one frame.
    method, spacing, n_classes, threshold, smooth, min_distance, seed and ``options``
        (``"log"``/``"dcnn"`` settings) as in :func:`find_atoms`; ``refine="lattice"``
        needs whole frames. With ``spacing=None`` each frame's spacing is estimated on its
        central 512 x 512 pixels, as ``find_atoms`` does.

    Returns :class:`Atoms` equal to ``find_atoms`` on the whole data (see the module
    docstring).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if spacing is not None and not spacing > 0:
        raise ValueError(f"spacing must be > 0 pixels (or None to estimate it), got {spacing!r}")
    x = _as_dask(image, chunks)
    n_frames, h, w = x.shape
    if h < 8 or w < 8:
        raise ValueError(f"image frames must be at least 8 x 8 pixels, got {h} x {w}")
    tiled = len(x.chunks[1]) > 1 or len(x.chunks[2]) > 1
    if tiled and method != "peaks":
        raise ValueError(
            f"method {method!r} needs whole frames per chunk (its normalisation and network see "
            f"the whole frame), but the chunks {x.chunksize} cut {h} x {w} frames into tiles: "
            "pass chunks=(k, -1, -1), or use method='peaks'")
    if tiled and options.get("refine", "none") != "none":
        raise ValueError("refine='lattice' needs whole frames per chunk: pass chunks=(k, -1, -1)")

    halo = 0
    thr: float | None = threshold
    if method == "peaks":
        thr = 0.2 if threshold is None else threshold
        if not 0 <= thr < 1:
            raise ValueError(f"threshold for 'peaks' is relative and must be in [0, 1), got {thr}")
        if options:
            raise ValueError(f"unknown options for 'peaks': {sorted(options)}")
        spacings: list[float] | None = None
        if spacing is not None:
            spacings = [float(spacing)] * n_frames
        elif tiled:
            spacings = [estimate_spacing(c) for c in _central_crops(x)]
        if tiled:
            assert spacings is not None
            halo = max(peak_halo(s, smooth, min_distance) for s in set(spacings))
            x = _with_min_chunk(x, halo)

        def tile(block: np.ndarray, offsets: tuple[int, ...]) -> list[_Found]:
            f0, r0, c0, rows, cols, top, left = offsets
            block = check_array(block, "image")  # float32, finite: as find_atoms sees it
            found = []
            for k, frame in enumerate(block):
                sp = spacings[f0 + k] if spacings is not None else estimate_spacing(frame)
                peaks, strength, sm = _peak_candidates(frame, sp, smooth, min_distance)
                own = ((peaks[:, 0] >= top) & (peaks[:, 0] < top + rows)
                       & (peaks[:, 1] >= left) & (peaks[:, 1] < left + cols))
                peaks, strength = peaks[own], strength[own]
                shift = np.array([r0 - top, c0 - left])
                refined = _refine_quadratic(sm, peaks, sp) + shift if len(peaks) else \
                    np.zeros((0, 2))
                found.append(_Found(f0 + k, peaks + shift, strength, refined, sp, False))
            return found
    else:

        def tile(block: np.ndarray, offsets: tuple[int, ...]) -> list[_Found]:
            f0 = offsets[0]
            atoms = find_atoms(block, method, spacing=spacing, threshold=threshold,
                               smooth=smooth, min_distance=min_distance, n_classes=1,
                               seed=seed, **options)
            per = atoms.params["spacing"]
            per = per if isinstance(per, list) else [per]
            return [_Found(f0 + k, np.zeros((0, 2), np.int64), np.zeros(0),
                           atoms.in_frame(k).positions, float(per[k]), True)
                    for k in range(len(block))]

    per_block: list[list[_Found]] = _map_tiles(x, halo, tile)
    by_frame: list[list[_Found]] = [[] for _ in range(n_frames)]
    for block in per_block:
        for found in block:
            by_frame[found.frame].append(found)
    positions, frames, frame_spacing = [], [], []
    for k, parts in enumerate(by_frame):
        frame_spacing.append(parts[0].spacing)
        if parts[0].final:
            pos = np.concatenate([p.positions for p in parts]).reshape(-1, 2)
        else:
            peaks = np.concatenate([p.peaks for p in parts]).reshape(-1, 2)
            strength = np.concatenate([p.strength for p in parts])
            pos = np.concatenate([p.positions for p in parts]).reshape(-1, 2)
            # the whole-image finder lists atoms in raster order of their peak pixels
            order = np.lexsort((peaks[:, 1], peaks[:, 0]))
            strength, pos = strength[order], pos[order]
            if len(strength):
                assert thr is not None
                ref = float(np.quantile(strength, 0.9))
                pos = pos[strength >= thr * ref]
        positions.append(pos)
        frames.append(np.full(len(pos), k, dtype=np.int64))
    pos_all = np.concatenate(positions).reshape(-1, 2).astype(np.float64)
    frame_all = np.concatenate(frames)
    classes = np.zeros(len(pos_all), dtype=np.int64)
    if n_classes > 1 and len(pos_all):
        values = intensity_at_atoms(x, pos_all, frame_all, class_smoothing(float(np.median(
            frame_spacing))))
        classes = intensity_classes(values, n_classes, seed)
    params = {"method": method, "spacing": frame_spacing if n_frames > 1 else frame_spacing[0],
              "threshold": thr, "n_classes": n_classes, "chunks": [list(c) for c in x.chunks],
              "halo": halo}
    log.info("found %d atoms in %d frame(s) with %s, %d chunk(s)", len(pos_all), n_frames,
             method, int(np.prod(x.numblocks)))
    return Atoms(pos_all[:, 0].copy(), pos_all[:, 1].copy(), classes, frame_all, (h, w),
                 n_frames, method, params)


def intensity_at_atoms(x: Any, pos: np.ndarray, frame: np.ndarray, sigma: float) -> np.ndarray:
    """The image ``x`` (Dask, ``(n_frames, h, w)``) smoothed by ``sigma`` at every atom's
    nearest pixel ``(n,)``: the values intensity classes are drawn from, read chunk by chunk
    (tiles with a border of the Gaussian's radius)."""
    _, h, w = x.shape
    r = np.clip(np.round(pos[:, 0]).astype(np.int64), 0, h - 1)
    c = np.clip(np.round(pos[:, 1]).astype(np.int64), 0, w - 1)
    halo = int(4.0 * sigma + 0.5) + 1
    tiled = len(x.chunks[1]) > 1 or len(x.chunks[2]) > 1
    x = _with_min_chunk(x, halo) if tiled else x
    values = np.zeros(len(pos))

    def tile(block: np.ndarray, offsets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        f0, r0, c0, rows, cols, top, left = offsets
        sel = np.flatnonzero((frame >= f0) & (frame < f0 + len(block)) & (r >= r0)
                             & (r < r0 + rows) & (c >= c0) & (c < c0 + cols))
        sm = ndimage.gaussian_filter(check_array(block, "image").astype(np.float64),
                                     (0, sigma, sigma))
        return sel, sm[frame[sel] - f0, r[sel] - r0 + top, c[sel] - c0 + left]

    for sel, v in _map_tiles(x, halo if tiled else 0, tile):
        values[sel] = v
    return values
