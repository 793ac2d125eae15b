"""The interactive explorer: the image and the latent space side by side, linked.

One self-contained HTML file (Bokeh, its JavaScript inlined: no server, opens from disk, can
be mailed), or the same layout in a Jupyter cell (:func:`explore`). Two entries:

- :class:`ExplorerData` for points on images (atoms, windows, wall pixels): the frame with
  the points coloured by any named value (latent, class, uncertainty, baseline), a scatter of
  any two values, box/lasso selection in either view highlighting the same samples in the
  other with the selection's count, mean patch and mean values; hovering a point shows its
  patch and reconstruction thumbnails, its values with their standard deviations, its frame
  and position in physical units; a histogram of the colour value (all and selected) and the
  decoded manifold.
- :class:`SpectralExplorerData` for spectrum images: a selector of maps (loadings, labels),
  and clicking a pixel shows its spectrum, the reconstruction and each component's
  contribution on the energy axis.

Why Bokeh: it writes standalone HTML whose interaction runs in the browser, draws many points
with WebGL, shares one data source between plots (so selections are linked without code), and
renders the same models in Jupyter. The few JavaScript callbacks below only copy columns and
compute means and histograms.

Thumbnails are stored once as two JPEG sprite sheets (patches, reconstructions) referenced from
CSS variables; a tooltip shows one tile of each by its offset, so 40,000 thumbnails cost two
compressed images, not 80,000 data URLs.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._checks import check_array
from latentatlas._files import write_text_atomic
from latentatlas._latent_names import is_content_latent

log = logging.getLogger(__name__)

__all__ = [
    "ExplorerData",
    "SpectralExplorerData",
    "explore",
    "explorer_layout",
    "sprite_sheet",
    "write_explorer",
]

#: Thumbnails larger than this (pixels per side) are block-averaged down to it.
MAX_THUMBNAIL = 32
#: Screen pixels per thumbnail pixel in the tooltip.
THUMBNAIL_ZOOM = 3
#: How the points are drawn (see :func:`write_explorer`).
BACKENDS = ("webgl", "canvas")
#: Largest spectrum image (ny * nx * channels values) written into one file (~43 MB of text).
MAX_CUBE_VALUES = 8_000_000
#: JPEG quality of the thumbnail sheets: patches are mostly noise, which PNG cannot compress
#: (40,000 22-px patches: 15 MB as PNG, 7 MB as JPEG at 80); thumbnails only need to look right.
SPRITE_QUALITY = 85
_CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf")


# ------------------------------------------------------------------------------ data


@dataclass
class ExplorerData:
    """Everything the explorer of points on images shows; arrays only, checked once.

    frames : ``(n_frames, h, w)`` (or ``(h, w)``) the images the points sit on.
    positions : ``(n, 2)`` (row, col) of every sample in pixels of its frame.
    values : name -> ``(n,)`` per-sample values (latents, classes, uncertainty, baselines);
        names must not start with ``_``. Insertion order is the order of the selectors.
    frame_index : ``(n,)`` frame of every sample (None: all on frame 0).
    std : name -> ``(n,)`` standard deviation of ``values[name]`` (posterior std of latents).
    categorical : names in ``values`` holding integer classes (-1 = none).
    patches, reconstructions : ``(n, p, p)`` thumbnails of what the model saw and gave back
        (shown in the tooltip); None leaves them out.
    window : patch side in pixels of ``frames``: the mean patch of a selection is the mean of
        the frame crops of this size around the selected samples (None: no mean patch).
    pixel_size, units : calibration of the frames (positions are shown as pixel * pixel_size).
    manifold : ``(rows, cols, h, w)`` decoded images on a latent grid (or per-class
        traversals), tiled into one image; manifold_label : its caption.
    scatter : the two values on the scatter's axes at start (default: the first two
        non-categorical values, preferring content latents ``z*``); color : the value the
        points are coloured by at start (default: the first categorical value).
    title : shown at the top of the page.
    """

    frames: np.ndarray
    positions: np.ndarray
    values: dict[str, np.ndarray]
    frame_index: np.ndarray | None = None
    std: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: tuple[str, ...] = ()
    patches: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    window: float | None = None
    pixel_size: float = 1.0
    units: str = "px"
    manifold: np.ndarray | None = None
    manifold_label: str = "decoded manifold"
    scatter: tuple[str, str] | None = None
    color: str | None = None
    title: str = "latentatlas explorer"

    def __post_init__(self) -> None:
        frames = check_array(self.frames, "frames", ndim=(2, 3))
        self.frames = frames[None] if frames.ndim == 2 else frames
        pos = check_array(self.positions, "positions", ndim=2, dtype=np.float64)
        if pos.shape[1] != 2:
            raise ValueError(f"positions must be (n, 2) (row, col) pixels, got shape {pos.shape}")
        self.positions = pos
        n = len(pos)
        n_frames = self.frames.shape[0]
        if self.frame_index is None:
            self.frame_index = np.zeros(n, np.int32)
        fi = np.asarray(self.frame_index)
        if fi.shape != (n,) or (n and (fi.min() < 0 or fi.max() >= n_frames)):
            raise ValueError(f"frame_index must be (n,) = ({n},) integers in [0, {n_frames}), "
                             f"got shape {fi.shape}")
        self.frame_index = fi.astype(np.int32)
        if not self.values:
            raise ValueError("values is empty; give at least one named per-sample value "
                             "(e.g. the latents)")
        self.values = {k: _column(v, f"values[{k!r}]", n) for k, v in self.values.items()}
        for name in self.values:
            if not name or name.startswith("_") or "}" in name:
                raise ValueError(f"value name {name!r} is not allowed: names must be non-empty, "
                                 "not start with '_' and not contain '}'")
        unknown = [k for k in (*self.std, *self.categorical) if k not in self.values]
        if unknown:
            raise ValueError(f"std/categorical name values that are not in values: {unknown}; "
                             f"values has {list(self.values)}")
        self.std = {k: _column(v, f"std[{k!r}]", n) for k, v in self.std.items()}
        self.categorical = tuple(self.categorical)
        for k in self.categorical:
            v = self.values[k]
            if not np.array_equal(v, np.round(v)) or v.min() < -1:
                raise ValueError(f"categorical value {k!r} must hold integer classes >= -1")
        for name in ("patches", "reconstructions"):
            arr = getattr(self, name)
            if arr is not None:
                arr = check_array(arr, name, ndim=3)
                if len(arr) != n or arr.shape[1] != arr.shape[2]:
                    raise ValueError(f"{name} must be (n, p, p) with n = {n} square thumbnails, "
                                     f"got shape {arr.shape}")
                setattr(self, name, arr)
        if self.window is not None and not self.window >= 1:
            raise ValueError(f"window must be >= 1 pixel or None, got {self.window}")
        if not self.pixel_size > 0:
            raise ValueError(f"pixel_size must be > 0, got {self.pixel_size}")
        if self.manifold is not None:
            tiles = check_array(self.manifold, "manifold", ndim=(4, 5))
            self.manifold = tiles[:, :, 0] if tiles.ndim == 5 else tiles
        continuous = [k for k in self.values if k not in self.categorical]
        if self.scatter is None:
            z = [k for k in continuous if is_content_latent(k)]
            pick = (z + [k for k in continuous if k not in z] + list(self.values))[:2]
            self.scatter = (pick[0], pick[-1])
        if any(k not in self.values for k in self.scatter):
            raise ValueError(f"scatter {self.scatter} must name two values of {list(self.values)}")
        if self.color is None:
            self.color = self.categorical[0] if self.categorical else self.scatter[0]
        if self.color not in self.values:
            raise ValueError(f"color {self.color!r} must name one of {list(self.values)}")

    @property
    def n(self) -> int:
        return len(self.positions)


@dataclass
class SpectralExplorerData:
    """Everything the explorer of a spectrum image shows; arrays only, checked once.

    spectra : ``(ny, nx, channels)`` the data, in the units the components are in.
    energy : ``(channels,)`` the spectral axis; energy_label : its caption with units.
    maps : name -> ``(ny, nx)`` maps to choose from (loadings, labels, errors); at least one.
    components : ``(k, channels)`` component spectra and loadings ``(ny, nx, k)`` their
        weights: the contribution of component j at a pixel is ``loadings[..., j] *
        components[j]`` and the reconstruction ``offset + sum_j contribution_j``. None (both)
        for methods that do not reconstruct (embeddings).
    component_names : ``(k,)`` names of the components (default ``c1 .. ck``).
    offset : ``(channels,)`` added to every reconstruction (the PCA mean, an offset the method
        subtracted); None is zero.
    categorical : names in ``maps`` holding integer classes.
    pixel_size, units : calibration of the maps; title : shown at the top of the page.
    """

    spectra: np.ndarray
    energy: np.ndarray
    maps: dict[str, np.ndarray]
    components: np.ndarray | None = None
    loadings: np.ndarray | None = None
    component_names: list[str] | None = None
    offset: np.ndarray | None = None
    categorical: tuple[str, ...] = ()
    energy_label: str = "energy"
    pixel_size: float = 1.0
    units: str = "px"
    title: str = "latentatlas spectral explorer"

    def __post_init__(self) -> None:
        cube = check_array(self.spectra, "spectra", ndim=3)
        if cube.size > MAX_CUBE_VALUES:
            raise ValueError(
                f"the spectrum image {cube.shape} has {cube.size:,} values, more than one "
                f"standalone file holds well ({MAX_CUBE_VALUES:,}); bin it spatially or crop "
                "the channels first"
            )
        self.spectra = cube
        ny, nx, c = cube.shape
        self.energy = check_array(self.energy, "energy", ndim=1, dtype=np.float64)
        if self.energy.shape != (c,):
            raise ValueError(f"energy must have one value per channel ({c}), got "
                             f"{self.energy.shape}")
        if not self.maps:
            raise ValueError("maps is empty; give at least one (ny, nx) map to show")
        self.maps = {k: check_array(v, f"maps[{k!r}]", ndim=2) for k, v in self.maps.items()}
        bad = [k for k, v in self.maps.items() if v.shape != (ny, nx)]
        if bad:
            raise ValueError(f"maps {bad} must be (ny, nx) = ({ny}, {nx}) like the spectra")
        if (self.components is None) != (self.loadings is None):
            raise ValueError("give components and loadings together (or neither)")
        if self.components is not None and self.loadings is not None:
            comp = check_array(self.components, "components", ndim=2)
            load = check_array(self.loadings, "loadings", ndim=3)
            if comp.shape[1] != c or load.shape != (ny, nx, comp.shape[0]):
                raise ValueError(f"components must be (k, {c}) and loadings ({ny}, {nx}, k), got "
                                 f"{comp.shape} and {load.shape}")
            self.components, self.loadings = comp, load
            k = comp.shape[0]
            names = self.component_names or [f"c{j + 1}" for j in range(k)]
            if len(names) != k:
                raise ValueError(f"component_names must have {k} names, got {len(names)}")
            self.component_names = list(names)
        if self.offset is not None:
            self.offset = check_array(self.offset, "offset", ndim=1)
            if self.offset.shape != (c,):
                raise ValueError(f"offset must be ({c},), got {self.offset.shape}")
        unknown = [k for k in self.categorical if k not in self.maps]
        if unknown:
            raise ValueError(f"categorical names {unknown} are not in maps {list(self.maps)}")
        if not self.pixel_size > 0:
            raise ValueError(f"pixel_size must be > 0, got {self.pixel_size}")

    def reconstruction(self, row: int, col: int) -> np.ndarray | None:
        """``(channels,)`` what the explorer draws as the reconstruction of one pixel."""
        if self.components is None or self.loadings is None:
            return None
        rec = self.loadings[row, col] @ self.components
        return rec + (0.0 if self.offset is None else self.offset)


def _column(v: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be (n,) = ({n},), one value per sample; got {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name} has infinite values; use NaN for missing ones")
    return arr


# ------------------------------------------------------------------------------ thumbnails


def _shrink(tiles: np.ndarray) -> np.ndarray:
    """Block-average ``(n, p, p)`` tiles down to at most MAX_THUMBNAIL pixels per side."""
    p = tiles.shape[-1]
    f = int(np.ceil(p / MAX_THUMBNAIL))
    if f == 1:
        return tiles
    q = p // f
    t = tiles[:, : q * f, : q * f]
    return t.reshape(len(t), q, f, q, f).mean(axis=(2, 4))


def sprite_sheet(tiles: np.ndarray, low: np.ndarray, high: np.ndarray,
                 quality: int = SPRITE_QUALITY) -> tuple[bytes, int, int]:
    """Grey ``(n, p, p)`` tiles -> one JPEG sheet, its tiles per row ``cols`` and ``stride``.

    Tile ``i`` starts at pixel ``(stride * (i // cols), stride * (i % cols))``; ``stride`` is
    ``p`` rounded up to JPEG's 8-pixel blocks, the margin filled by repeating the tile's edge,
    so no block mixes two tiles. Each tile is scaled from ``[low[i], high[i]]`` to 0-255 (a
    patch and its reconstruction can share one scale).
    """
    from PIL import Image

    n, p, _ = tiles.shape
    stride = 8 * int(np.ceil(p / 8))
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    span = np.where(high > low, high - low, 1.0)
    scaled = (tiles - low[:, None, None]) / span[:, None, None]
    grey = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    grey = np.pad(grey, ((0, rows * cols - n), (0, stride - p), (0, stride - p)), mode="edge")
    sheet = grey.reshape(rows, cols, stride, stride).transpose(0, 2, 1, 3)
    buf = io.BytesIO()
    Image.fromarray(sheet.reshape(rows * stride, cols * stride), mode="L").save(
        buf, format="JPEG", quality=quality)
    return buf.getvalue(), cols, stride


def _quantize(frames: np.ndarray) -> np.ndarray:
    """Frames -> uint8 for display, stretched between the 0.5th and 99.5th percentiles."""
    sample = frames.ravel()[:: max(1, frames.size // 1_000_000)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    span = hi - lo if hi > lo else 1.0
    return np.clip(np.rint((frames - lo) / span * 255.0), 0, 255).astype(np.uint8)


def _color_scale(v: np.ndarray, categorical: bool) -> tuple[float, float, list[str]]:
    """(low, high, palette) of the colour mapper for one value (as ``_JS_COLOR`` sets it)."""
    lo, hi = _finite_range(v)
    if categorical:
        k = max(int(round(hi)) + 1, 1)
        return -0.5, k - 0.5, [_CLASS_COLORS[j % len(_CLASS_COLORS)] for j in range(k)]
    return lo, hi, _ramp()


def _finite_range(v: np.ndarray) -> tuple[float, float]:
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return 0.0, 1.0
    lo, hi = float(ok.min()), float(ok.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _histogram(v: np.ndarray, categorical: bool) -> dict[str, list[float]]:
    """Counts of one value in the bins ``update_histogram`` (JavaScript) uses; none selected."""
    lo, hi = _finite_range(v)
    if categorical:
        lo, hi = lo - 0.5, hi + 0.5
    nb = int(round(hi - lo)) if categorical else 40
    edges = np.linspace(lo, hi, nb + 1)
    counts, _ = np.histogram(v[np.isfinite(v)], edges)
    return {"left": edges[:-1].tolist(), "right": edges[1:].tolist(),
            "all": counts.astype(float).tolist(), "selected": [0.0] * nb}


def _mosaic(tiles: np.ndarray) -> np.ndarray:
    rows, cols, h, w = tiles.shape
    gap = np.full((rows, cols, h + 1, w + 1), np.nan, np.float32)
    gap[:, :, :h, :w] = tiles
    return gap.transpose(0, 2, 1, 3).reshape(rows * (h + 1), cols * (w + 1))[:-1, :-1]


# ------------------------------------------------------------------------------ JavaScript
# Small callbacks only: copy a column, set a colour range, average the selection, count.

_JS_HELPERS = """
function finite_range(v) {
  let lo = Infinity, hi = -Infinity
  for (const x of v) { if (Number.isFinite(x)) { if (x < lo) lo = x; if (x > hi) hi = x } }
  if (!(lo <= hi)) { lo = 0; hi = 1 }
  if (lo == hi) { lo -= 0.5; hi += 0.5 }
  return [lo, hi]
}
function update_histogram(src, hsrc, name, categorical) {
  const v = src.data[name], sel = src.selected.indices
  let lo, hi, nb
  if (categorical.includes(name)) {
    const r = finite_range(v); lo = r[0] - 0.5; hi = r[1] + 0.5; nb = Math.round(hi - lo)
  } else { const r = finite_range(v); lo = r[0]; hi = r[1]; nb = 40 }
  const width = (hi - lo) / nb
  const all = new Float64Array(nb), part = new Float64Array(nb)
  const bin = (x) => Math.min(nb - 1, Math.max(0, Math.floor((x - lo) / width)))
  for (const x of v) { if (Number.isFinite(x)) all[bin(x)] += 1 }
  for (const i of sel) { if (Number.isFinite(v[i])) part[bin(v[i])] += 1 }
  const left = [], right = []
  for (let b = 0; b < nb; b++) { left.push(lo + b * width); right.push(lo + (b + 1) * width) }
  hsrc.data = {left: left, right: right, all: Array.from(all), selected: Array.from(part)}
}
"""

_JS_COLOR = """
const name = select.value
const v = src.data[name], c = src.data._c
for (let i = 0; i < v.length; i++) c[i] = v[i]
const r = finite_range(v)
if (categorical.includes(name)) {
  const k = Math.round(r[1]) + 1
  const pal = []
  for (let j = 0; j < Math.max(k, 1); j++) pal.push(class_colors[j % class_colors.length])
  mapper.palette = pal; mapper.low = -0.5; mapper.high = Math.max(k, 1) - 0.5
} else {
  mapper.palette = ramp; mapper.low = r[0]; mapper.high = r[1]
}
colorbar.title = name
hfig.xaxis[0].axis_label = name
src.change.emit()
update_histogram(src, hsrc, name, categorical)
"""

# HoverTool keeps the first `limit` hits in hit-test order after formatting every hit's
# tooltip, which takes seconds where thousands of points overlap; this filter keeps only the
# hit nearest to the pointer (computed once per pointer position), before any formatting.
_JS_NEAREST = """
const v = cb_data.vars, gv = v.glyph_view
const key = `${v.sx},${v.sy},${gv.model.id}`
if (cb_obj._la_key !== key) {
  let best = Infinity
  for (const j of v.indices) {
    const dx = gv.sx[j] - v.sx, dy = gv.sy[j] - v.sy
    if (dx * dx + dy * dy < best) best = dx * dx + dy * dy
  }
  cb_obj._la_key = key
  cb_obj._la_best = best
}
const dx = v.snap_sx - v.sx, dy = v.snap_sy - v.sy
return dx * dx + dy * dy <= cb_obj._la_best
"""

_JS_SPRITES = """
const root = document.documentElement.style
for (const [name, url] of Object.entries(sprites)) {
  if (root.getPropertyValue(name) === '') root.setProperty(name, url)
}
"""

_JS_AXES = """
const xs = src.data[xsel.value], ys = src.data[ysel.value]
const sx = src.data._sx, sy = src.data._sy
for (let i = 0; i < xs.length; i++) { sx[i] = xs[i]; sy[i] = ys[i] }
fig.xaxis[0].axis_label = xsel.value
fig.yaxis[0].axis_label = ysel.value
src.change.emit()
"""

_JS_SELECTION = """
const sel = src.selected.indices
const frame = slider == null ? 0 : slider.value
let here = 0
for (const i of sel) if (src.data._frame[i] == frame) here += 1
const rows = []
for (const name of names) {
  const v = src.data[name]
  let s = 0, m = 0
  for (const i of sel) if (Number.isFinite(v[i])) { s += v[i]; m += 1 }
  const label = name.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  rows.push(`<tr><th>${label}</th><td>${m ? (s / m).toPrecision(4) : '-'}</td></tr>`)
}
const header = `<p class="la-count">${sel.length} selected, ${here} on frame ${frame}</p>`
info.text = header + (sel.length ? `<table class="la-means">${rows.join('')}</table>` : '')
if (window_px > 0) {
  const half = Math.floor(window_px / 2), w = 2 * half + 1
  const acc = new Float64Array(w * w), cnt = new Float64Array(w * w)
  for (const i of sel) {
    const img = frames.data.image[src.data._frame[i]]
    const H = img.shape[0], W = img.shape[1]
    const r0 = Math.round(src.data._y[i] / px) - half, c0 = Math.round(src.data._x[i] / px) - half
    for (let a = 0; a < w; a++) {
      const r = r0 + a
      if (r < 0 || r >= H) continue
      for (let b = 0; b < w; b++) {
        const c = c0 + b
        if (c < 0 || c >= W) continue
        acc[a * w + b] += img[r * W + c]; cnt[a * w + b] += 1
      }
    }
  }
  // fill the mean patch image in place (BokehJS images are typed n-d arrays made in Python)
  const mean = mean_patch.data.image[0]
  for (let j = 0; j < w * w; j++) mean[j] = cnt[j] ? acc[j] / cnt[j] : NaN
  mean_patch.change.emit()
}
update_histogram(src, hsrc, color_select.value, categorical)
"""

_JS_FRAME = """
const f = slider.value
frame_filter.indices = [f]
const fr = src.data._frame, keep = new Array(fr.length)
for (let i = 0; i < fr.length; i++) keep[i] = fr[i] == f
points_view.booleans = keep
"""

_JS_TAP = """
const px = meta.px
const col = Math.round(cb_obj.x / px), row = Math.round(cb_obj.y / px)
if (row < 0 || col < 0 || row >= meta.ny || col >= meta.nx) return
const c = meta.nc, cube = cube_src.data.cube[0], p = (row * meta.nx + col)
const spec = Array.from(cube.slice(p * c, (p + 1) * c))
const data = {energy: energy, spectrum: spec}
if (comp_src != null) {
  const comps = comp_src.data.components[0], loads = comp_src.data.loadings[0]
  const k = comps.shape[0], rec = new Float64Array(c)
  for (let j = 0; j < c; j++) rec[j] = offset[j]
  for (let q = 0; q < k; q++) {
    const w = loads[p * k + q], contrib = new Array(c)
    for (let j = 0; j < c; j++) { contrib[j] = w * comps[q * c + j]; rec[j] += contrib[j] }
    data['contribution_' + q] = contrib
  }
  data.reconstruction = Array.from(rec)
}
spec_src.data = data
marker.data = {x: [col * px], y: [row * px]}
spec_fig.title.text = `pixel (row ${row}, col ${col}) at (${(col * px).toPrecision(4)}, ` +
  `${(row * px).toPrecision(4)}) ${meta.units}`
"""

_JS_MAP = """
map_filter.indices = [names.indexOf(select.value)]
const v = map_src.data.image[names.indexOf(select.value)]
const r = finite_range(v)
if (categorical.includes(select.value)) {
  const k = Math.round(r[1]) + 1, pal = []
  for (let j = 0; j < Math.max(k, 1); j++) pal.push(class_colors[j % class_colors.length])
  mapper.palette = pal; mapper.low = -0.5; mapper.high = Math.max(k, 1) - 0.5
} else { mapper.palette = ramp; mapper.low = r[0]; mapper.high = r[1] }
colorbar.title = select.value
"""


# ------------------------------------------------------------------------------ layouts


def _image_figure(h: int, w: int, px: float, units: str, title: str, name: str,
                  backend: str = "webgl", size: int = 540) -> Any:
    from bokeh.models import Range1d
    from bokeh.plotting import figure

    scale = size / max(h, w)
    # y grows downwards like image rows; the image glyph follows the flipped range
    fig = figure(title=title, width=max(200, int(w * scale)) + 60,
                 height=max(200, int(h * scale)) + 40,
                 x_range=Range1d(-0.5 * px, (w - 0.5) * px, bounds="auto"),
                 y_range=Range1d((h - 0.5) * px, -0.5 * px, bounds="auto"),
                 match_aspect=True, output_backend=backend, name=name,
                 tools="pan,wheel_zoom,box_select,lasso_select,reset,save",
                 active_scroll="wheel_zoom", active_drag="box_select",
                 x_axis_label=f"x ({units})",
                 y_axis_label=f"y ({units})")
    fig.grid.visible = False
    return fig


def _ramp() -> list[str]:
    from bokeh.palettes import Viridis256

    return list(Viridis256)


def _hover(renderer: Any, tooltip: str, install: Any) -> Any:
    """A hover tool showing ``tooltip`` for the one point nearest to the pointer; ``install``
    (a CustomJS or None) runs at every hover."""
    from bokeh.models import CustomJS, HoverTool

    return HoverTool(renderers=[renderer], tooltips=tooltip, limit=1, callback=install,
                     point_policy="snap_to_data", filters={"@_i": CustomJS(code=_JS_NEAREST)})


def _tooltip(data: ExplorerData, size_px: int, sheet_px: int, kinds: list[str]) -> str:
    """The tooltip template: thumbnails (tiles of the sheets at the point's offset), where the
    point is, and its values (with their standard deviations)."""
    thumbs = []
    for kind in kinds:
        thumbs.append(
            f'<div class="la-thumb" title="{kind}" style="width:{size_px}px;height:{size_px}px;'
            f"background-image:var(--la-{kind});background-size:{sheet_px}px auto;"
            f"background-position:-@{{_tx}}{{0}}px -@{{_ty}}{{0}}px;image-rendering:pixelated;"
            f'border:1px solid #999"></div>'
        )
    rows = []
    for name in data.values:
        fmt = "{0}" if name in data.categorical else "{0.0000}"
        std = f" &plusmn; @{{{name}__std}}{{0.0000}}" if name in data.std else ""
        rows.append(f'<tr><th>{_escape(name)}</th><td>@{{{name}}}{fmt}{std}</td></tr>')
    u = _escape(data.units)
    return (f'<div class="la-tip"><div style="display:flex;gap:4px">{"".join(thumbs)}</div>'
            f'<div class="la-where">#@{{_i}}{{0}}, frame @{{_frame}}{{0}}, '
            f"x = @{{_x}}{{0.000}} {u}, y = @{{_y}}{{0.000}} {u}</div>"
            f'<table style="font-size:11px">{"".join(rows)}</table></div>')


def explorer_layout(data: ExplorerData, backend: str = "webgl") -> Any:
    """The Bokeh layout of the linked views for ``data`` (what both the HTML file and
    Jupyter show). backend: ``webgl`` or ``canvas`` (see :func:`write_explorer`)."""
    from bokeh.layouts import column, row
    from bokeh.models import (
        BooleanFilter,
        CDSView,
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        IndexFilter,
        LinearColorMapper,
        Select,
        Slider,
    )
    from bokeh.palettes import Greys256
    from bokeh.plotting import figure

    n_frames, h, w = data.frames.shape
    px, units = float(data.pixel_size), data.units
    assert data.scatter is not None and data.color is not None and data.frame_index is not None

    # -- the one data source every view shares (selections are linked through it)
    cols: dict[str, Any] = {k: v.astype(np.float32) for k, v in data.values.items()}
    cols.update({f"{k}__std": v.astype(np.float32) for k, v in data.std.items()})
    cols["_x"] = (data.positions[:, 1] * px).astype(np.float32)
    cols["_y"] = (data.positions[:, 0] * px).astype(np.float32)
    cols["_frame"] = data.frame_index.astype(np.int32)
    cols["_i"] = np.arange(data.n, dtype=np.int32)
    cols["_sx"] = cols[data.scatter[0]].copy()
    cols["_sy"] = cols[data.scatter[1]].copy()
    cols["_c"] = cols[data.color].copy()

    sprites: dict[str, str] = {}
    tiles = {k: getattr(data, k) for k in ("patches", "reconstructions")
             if getattr(data, k) is not None}
    size_px = sheet_px = 0
    if tiles:
        ref = _shrink(data.patches if data.patches is not None else next(iter(tiles.values())))
        low, high = ref.min(axis=(1, 2)), ref.max(axis=(1, 2))
        for kind, t in tiles.items():
            jpeg, ncols, stride = sprite_sheet(_shrink(t), low, high)
            sprites[f"--la-{kind}"] = ("url(data:image/jpeg;base64,"
                                       f"{base64.b64encode(jpeg).decode('ascii')})")
        size_px = ref.shape[-1] * THUMBNAIL_ZOOM
        sheet_px = ncols * stride * THUMBNAIL_ZOOM
        cols["_tx"] = ((cols["_i"] % ncols) * stride * THUMBNAIL_ZOOM).astype(np.int32)
        cols["_ty"] = ((cols["_i"] // ncols) * stride * THUMBNAIL_ZOOM).astype(np.int32)
    src = ColumnDataSource(cols, name="points")

    categorical = list(data.categorical)
    ramp = _ramp()
    low, high, palette = _color_scale(cols["_c"], data.color in categorical)
    mapper = LinearColorMapper(palette=palette, low=low, high=high, nan_color="#bbbbbb",
                               low_color="#bbbbbb", name="color_mapper")
    frames_u8 = _quantize(data.frames)
    frame_src = ColumnDataSource({"image": list(frames_u8), "dw": [w * px] * n_frames,
                                  "dh": [h * px] * n_frames}, name="frames")
    frame_view = CDSView(filter=IndexFilter([0]))

    # -- image with the points
    img_fig = _image_figure(h, w, px, units, "image (frame 0)" if n_frames > 1 else "image",
                            "image_figure", backend)
    img_fig.image("image", source=frame_src, view=frame_view, x=-0.5 * px, y=-0.5 * px,
                  dw="dw", dh="dh", color_mapper=LinearColorMapper(Greys256, low=0,
                                                                  high=255))
    points_view = CDSView(filter=BooleanFilter((data.frame_index == 0).tolist())) \
        if n_frames > 1 else CDSView()
    tip = _tooltip(data, size_px, sheet_px, list(tiles))
    img_pts = img_fig.scatter("_x", "_y", source=src, view=points_view, size=5,
                              fill_color={"field": "_c", "transform": mapper}, line_color=None,
                              nonselection_fill_alpha=0.15, name="image_points")
    # the thumbnail sheets (CSS variable -> url) are set on the page's root element at the
    # first hover, not at load: parsing tens of MB of CSS would delay the first render, and
    # tooltips hang off the page body, outside the layout's own styles. One callback model,
    # so the sheets are written once.
    install = CustomJS(args=dict(sprites=sprites), code=_JS_SPRITES) if sprites else None
    img_fig.add_tools(_hover(img_pts, tip, install))

    # -- latent scatter
    sc_fig = figure(title="latent space", width=520, height=520, output_backend=backend,
                    tools="pan,wheel_zoom,box_select,lasso_select,reset,save",
                    active_scroll="wheel_zoom", active_drag="box_select",
                    x_axis_label=data.scatter[0],
                    y_axis_label=data.scatter[1], name="scatter_figure")
    sc_pts = sc_fig.scatter("_sx", "_sy", source=src, size=4,
                            fill_color={"field": "_c", "transform": mapper}, line_color=None,
                            nonselection_fill_alpha=0.15, name="scatter_points")
    sc_fig.add_tools(_hover(sc_pts, tip, install))
    colorbar = ColorBar(color_mapper=mapper, title=data.color, width=10)
    sc_fig.add_layout(colorbar, "right")

    # -- histogram of the colour value, all and selected
    hsrc = ColumnDataSource(_histogram(cols["_c"], data.color in categorical),
                            name="histogram")
    h_fig = figure(title="histogram (grey: all, orange: selected)", width=400, height=260,
                   tools="reset,save", x_axis_label=data.color, y_axis_label="count")
    h_fig.quad(left="left", right="right", bottom=0, top="all", source=hsrc,
               fill_color="#bbbbbb", line_color=None)
    h_fig.quad(left="left", right="right", bottom=0, top="selected", source=hsrc,
               fill_color="#ff7f0e", fill_alpha=0.8, line_color=None)

    # -- controls
    names = list(data.values)
    color_select = Select(title="colour by", value=data.color, options=names, width=160,
                          name="color_select")
    x_select = Select(title="scatter x", value=data.scatter[0], options=names, width=160,
                      name="x_select")
    y_select = Select(title="scatter y", value=data.scatter[1], options=names, width=160,
                      name="y_select")
    slider = Slider(start=0, end=n_frames - 1, value=0, step=1, title="frame",
                    width=300, name="frame_slider") if n_frames > 1 else None

    color_cb = CustomJS(args=dict(src=src, select=color_select, mapper=mapper, ramp=ramp,
                                  class_colors=list(_CLASS_COLORS), colorbar=colorbar,
                                  hsrc=hsrc, hfig=h_fig, categorical=categorical),
                        code=_JS_HELPERS + _JS_COLOR)
    color_select.js_on_change("value", color_cb)
    axes_cb = CustomJS(args=dict(src=src, xsel=x_select, ysel=y_select, fig=sc_fig),
                       code=_JS_AXES)
    x_select.js_on_change("value", axes_cb)
    y_select.js_on_change("value", axes_cb)

    # -- selection summary: count, mean values, mean patch
    info = Div(text='<p class="la-count">0 selected, 0 on frame 0</p>', width=260,
               name="selection_info")
    window_px = int(data.window) if data.window is not None else 0
    side_px = 2 * (window_px // 2) + 1
    mp_src = ColumnDataSource({"image": [np.full((side_px, side_px), np.nan, np.float32)],
                               "dw": [side_px], "dh": [side_px]}, name="mean_patch")
    mp_fig = figure(title="mean patch of the selection", width=200, height=200, tools="",
                    toolbar_location=None, x_range=(0, side_px), y_range=(side_px, 0))
    mp_fig.axis.visible = False
    mp_fig.grid.visible = False
    mp_fig.image("image", source=mp_src, x=0, y=0, dw="dw", dh="dh",
                 color_mapper=LinearColorMapper(Greys256, low=0, high=255))
    sel_cb = CustomJS(args=dict(src=src, info=info, names=names, frames=frame_src, px=px,
                                window_px=window_px, mean_patch=mp_src, hsrc=hsrc,
                                color_select=color_select, categorical=categorical,
                                slider=slider),
                      code=_JS_HELPERS + _JS_SELECTION)
    src.selected.js_on_change("indices", sel_cb)
    if slider is not None:
        slider.js_on_change("value", CustomJS(
            args=dict(slider=slider, frame_filter=frame_view.filter, points_view=points_view.filter,
                      src=src), code=_JS_FRAME))
        slider.js_on_change("value", sel_cb)  # the count on the frame shown
        slider.js_on_change("value", CustomJS(args=dict(fig=img_fig, slider=slider),
                                              code="fig.title.text = `image (frame ${slider.value})`"))

    side: list[Any] = [h_fig]
    if data.manifold is not None:
        mosaic = data.manifold
        m_fig = figure(title=data.manifold_label, width=300, height=300, tools="save",
                       toolbar_location=None, match_aspect=True,
                       x_range=(0, mosaic.shape[-1] * mosaic.shape[1]),
                       y_range=(mosaic.shape[-2] * mosaic.shape[0], 0))
        tiled = _mosaic(mosaic)
        m_fig.image([tiled], x=0, y=0, dw=tiled.shape[1], dh=tiled.shape[0],
                    color_mapper=LinearColorMapper(Greys256, nan_color="white"))
        m_fig.axis.visible = False
        m_fig.grid.visible = False
        side.append(m_fig)

    controls: list[Any] = [color_select, x_select, y_select]
    if slider is not None:
        controls.append(slider)
    title = Div(text=f"<h2 style='margin:4px 0'>{_escape(data.title)}</h2><p style='margin:0'>"
                     f"{data.n} samples on {n_frames} frame(s) of {h} x {w} px; drag a box "
                     "or lasso in either view to select, hover a point to inspect it</p>")
    root = column(title, row(*controls), row(img_fig, sc_fig),
                  row(h_fig if len(side) == 1 else column(*side[:1]), column(info, mp_fig),
                      *side[1:]), name="explorer")
    return root


def spectral_layout(data: SpectralExplorerData) -> Any:
    """The Bokeh layout of a spectrum image's explorer (maps, click -> spectrum)."""
    from bokeh.layouts import column, row
    from bokeh.models import (
        CDSView,
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        IndexFilter,
        Legend,
        LegendItem,
        LinearColorMapper,
        PanTool,
        Select,
    )
    from bokeh.plotting import figure

    ny, nx, c = data.spectra.shape
    px, units = float(data.pixel_size), data.units
    names = list(data.maps)
    ramp = _ramp()
    low, high, palette = _color_scale(data.maps[names[0]], names[0] in data.categorical)
    mapper = LinearColorMapper(palette=palette, low=low, high=high, nan_color="#bbbbbb",
                               name="color_mapper")
    map_src = ColumnDataSource({"image": [data.maps[k].astype(np.float32) for k in names],
                                "dw": [nx * px] * len(names), "dh": [ny * px] * len(names)},
                               name="maps")
    map_view = CDSView(filter=IndexFilter([0]))
    fig = _image_figure(ny, nx, px, units, "map (click a pixel)", "map_figure", size=420)
    fig.tools = [t for t in fig.tools if type(t).__name__ not in ("BoxSelectTool",
                                                                   "LassoSelectTool")]
    fig.toolbar.active_drag = fig.select_one({"type": PanTool})
    fig.image("image", source=map_src, view=map_view, x=-0.5 * px, y=-0.5 * px, dw="dw",
              dh="dh", color_mapper=mapper, name="map_image")
    colorbar = ColorBar(color_mapper=mapper, title=names[0], width=10)
    fig.add_layout(colorbar, "right")
    marker = ColumnDataSource({"x": [], "y": []}, name="marker")
    fig.scatter("x", "y", source=marker, marker="square", size=10, fill_color=None,
                line_color="red", line_width=2)
    select = Select(title="map", value=names[0], options=names, width=200, name="map_select")
    map_cb = CustomJS(args=dict(select=select, names=names, map_filter=map_view.filter,
                                map_src=map_src,
                                mapper=mapper, ramp=ramp, class_colors=list(_CLASS_COLORS),
                                colorbar=colorbar, categorical=list(data.categorical)),
                      code=_JS_HELPERS + _JS_MAP)
    select.js_on_change("value", map_cb)

    energy = data.energy.astype(np.float64)
    cube_src = ColumnDataSource({"cube": [data.spectra.astype(np.float32)]}, name="cube")
    spec_src = ColumnDataSource({"energy": energy, "spectrum": np.full(c, np.nan)},
                                name="spectrum")
    spec_fig = figure(title="click a pixel of the map", width=620, height=380,
                      x_axis_label=data.energy_label, tools="pan,wheel_zoom,box_zoom,reset,save",
                      name="spectrum_figure")
    items = [LegendItem(label="spectrum", renderers=[
        spec_fig.line("energy", "spectrum", source=spec_src, line_color="black", line_width=2)])]
    comp_src = None
    if data.components is not None and data.loadings is not None:
        assert data.component_names is not None
        comp_src = ColumnDataSource({"components": [data.components.astype(np.float32)],
                                     "loadings": [data.loadings.astype(np.float32)]},
                                    name="components")
        spec_src.data["reconstruction"] = np.full(c, np.nan)
        items.append(LegendItem(label="reconstruction", renderers=[
            spec_fig.line("energy", "reconstruction", source=spec_src, line_color="red",
                          line_width=2, line_dash="dashed")]))
        for q, cname in enumerate(data.component_names):
            spec_src.data[f"contribution_{q}"] = np.full(c, np.nan)
            items.append(LegendItem(label=cname, renderers=[
                spec_fig.line("energy", f"contribution_{q}", source=spec_src,
                              line_color=_CLASS_COLORS[q % len(_CLASS_COLORS)])]))
    legend = Legend(items=items, click_policy="hide")
    spec_fig.add_layout(legend, "right")
    offset = np.zeros(c) if data.offset is None else data.offset.astype(np.float64)
    tap = CustomJS(args=dict(meta=dict(px=px, ny=ny, nx=nx, nc=c, units=units),
                             cube_src=cube_src, comp_src=comp_src, energy=energy.tolist(),
                             offset=offset.tolist(), spec_src=spec_src, marker=marker,
                             spec_fig=spec_fig), code=_JS_TAP)
    fig.js_on_event("tap", tap)

    parts: list[Any] = [fig, spec_fig]
    if data.components is not None:
        assert data.component_names is not None
        c_fig = figure(title="components", width=420, height=260, x_axis_label=data.energy_label,
                       tools="pan,wheel_zoom,reset,save")
        for q, cname in enumerate(data.component_names):
            c_fig.line(energy, data.components[q], legend_label=cname,
                       line_color=_CLASS_COLORS[q % len(_CLASS_COLORS)])
        c_fig.legend.click_policy = "hide"
        parts.append(c_fig)
    title = Div(text=f"<h2 style='margin:4px 0'>{_escape(data.title)}</h2><p style='margin:0'>"
                     f"{ny} x {nx} spectra of {c} channels; choose a map, click a pixel</p>")
    root = column(title, select, row(*parts[:2]), *parts[2:], name="spectral_explorer")
    return root


def _escape(text: str) -> str:
    import html

    return html.escape(text)


# ------------------------------------------------------------------------------ outputs


def _as_data(obj: Any, **kwargs: Any) -> ExplorerData | SpectralExplorerData:
    if isinstance(obj, (ExplorerData, SpectralExplorerData)):
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} apply to result objects, not to "
                            f"{type(obj).__name__}")
        return obj
    from latentatlas.report.explorer_adapters import explorer_data

    return explorer_data(obj, **kwargs)


def _layout(data: ExplorerData | SpectralExplorerData, backend: str) -> Any:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return spectral_layout(data) if isinstance(data, SpectralExplorerData) \
        else explorer_layout(data, backend)


def write_explorer(path: str | os.PathLike[str], data: Any, *, backend: str = "webgl",
                   **kwargs: Any) -> Path:
    """Write the explorer as one self-contained HTML file (Bokeh's JavaScript inlined) and
    return its path.

    data : :class:`ExplorerData`, :class:`SpectralExplorerData`, or a result object the
        adapters know (``AnalysisResult``, ``GrapheneResult``, ``UnmixResult`` with
        ``cube=``, ...; ``kwargs`` go to :func:`~latentatlas.report.explorer_adapters.explorer_data`).
    backend : ``webgl`` draws the points on the GPU (fast to pan and zoom through 40,000
        points; browsers without WebGL fall back to canvas by themselves); ``canvas`` is
        faster to open where WebGL is emulated on the CPU (headless browsers without a GPU
        spend most of the first render copying the WebGL canvas: benchmarks/RESULTS.md).
    The file is written to a temporary name and renamed: it is complete or absent.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    d = _as_data(data, **kwargs)
    page = file_html(_layout(d, backend), resources=INLINE, title=d.title)
    return write_text_atomic(Path(path), page)



def explore(data: Any, *, backend: str = "webgl", **kwargs: Any) -> Any:
    """Show the explorer in a Jupyter notebook (the same layout as :func:`write_explorer`).

    data, backend, kwargs : as for :func:`write_explorer`. Returns the Bokeh layout shown.
    """
    from bokeh.io import output_notebook, show

    layout = _layout(_as_data(data, **kwargs), backend)
    output_notebook(hide_banner=True)
    show(layout)
    return layout
