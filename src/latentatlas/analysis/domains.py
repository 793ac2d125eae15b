"""Physical descriptors of ferroelectric domains and walls, detector scores, latent correlations.

* :func:`wall_f1` / :func:`wall_agreement`: precision, recall and F1 of wall pixels at a
  distance tolerance (2 pixels by default), for a detector against ground truth or between two
  detectors.
* :func:`wall_count`, :func:`switching_degree`, :func:`wall_curvature`,
  :func:`domain_convexity` and, between two frames, :func:`changed_fraction` and
  :func:`switch_significance` (against :func:`switch_noise_level` of repeated unswitched
  scans); for a batch of patches, :func:`domain_descriptors`.
* :func:`descriptor_correlations`: Pearson or Spearman correlation of every descriptor with
  every latent, as a small table.
* :func:`switching_time_map` / :func:`wall_evolution_map`: where and when walls moved in a stack.

Curvature is measured on sub-pixel wall contours (the 0.5 level of the lightly smoothed domain
map) as the derivative of the tangent angle along the wall, smoothed over ``window`` pixels of
arc length: a straight wall gives 0 and a closed circle of radius r gives 1/r (within about 2 %
for r >= 5 pixels; arcs clipped by the image border within about 15 %, the digitisation of
the disc near the border).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, stats
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours

from latentatlas._checks import check_array
from latentatlas.descriptors.walls import Walls, boundary_walls, find_walls

_EIGHT = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class WallScore:
    """Pixel-level wall detection score at a distance tolerance."""

    precision: float
    recall: float
    f1: float
    tolerance: float
    n_predicted: int
    n_true: int

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tolerance": self.tolerance,
            "n_predicted": float(self.n_predicted),
            "n_true": float(self.n_true),
        }


def _as_masks(predicted: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted)
    t = np.asarray(true)
    if p.shape != t.shape:
        raise ValueError(
            f"predicted {p.shape} and true {t.shape} wall masks must have the same shape"
        )
    if p.ndim not in (2, 3):
        raise ValueError(f"wall masks must be (h, w) or (t, h, w), got shape {p.shape}")
    p = p.astype(bool)
    t = t.astype(bool)
    return (p[None], t[None]) if p.ndim == 2 else (p, t)


def wall_f1(predicted: np.ndarray, true: np.ndarray, tolerance: float = 2.0) -> WallScore:
    """Precision / recall / F1 of wall pixels, a match being within ``tolerance`` pixels.

    predicted, true: (h, w) or (t, h, w) bool masks; for a stack the counts are pooled over
    frames. Precision = fraction of predicted wall pixels within ``tolerance`` (Euclidean) of
    a true wall pixel; recall = fraction of true wall pixels within ``tolerance`` of a
    predicted one. Both empty gives 1.0 (nothing to find, nothing found).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    ps, ts = _as_masks(predicted, true)
    hit_p = hit_t = n_p = n_t = 0
    for p, t in zip(ps, ts, strict=True):
        n_p += int(p.sum())
        n_t += int(t.sum())
        if t.any() and p.any():
            hit_p += int((ndimage.distance_transform_edt(~t)[p] <= tolerance).sum())
            hit_t += int((ndimage.distance_transform_edt(~p)[t] <= tolerance).sum())
    precision = hit_p / n_p if n_p else float(n_t == 0)
    recall = hit_t / n_t if n_t else float(n_p == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return WallScore(precision, recall, f1, float(tolerance), n_p, n_t)


def wall_agreement(a: np.ndarray, b: np.ndarray, tolerance: float = 2.0) -> float:
    """Symmetric agreement of two wall masks: the F1 of one against the other (symmetric)."""
    return wall_f1(a, b, tolerance).f1


def wall_count(walls: np.ndarray, min_pixels: int = 3) -> int:
    """Number of wall segments: 8-connected components of at least ``min_pixels`` pixels.

    walls: (h, w) bool. Components smaller than ``min_pixels`` are detector noise or a wall
    clipping a patch corner, not a wall.
    """
    w = np.asarray(walls, dtype=bool)
    if w.ndim != 2:
        raise ValueError(f"walls must be (h, w), got shape {w.shape}")
    labels, n = ndimage.label(w, structure=_EIGHT)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def switching_degree(domains: np.ndarray) -> float:
    """Fraction of the area in the switched (True) state. domains: (h, w) bool or [0, 1]."""
    d = check_array(domains, "domains", ndim=2, dtype=np.float64)
    return float(d.mean())


def _contour_turning(contour: np.ndarray, window: float, step: float = 0.5) -> tuple[float, float]:
    """(integral of |curvature| ds, length) of one polyline, curvature from windowed turning."""
    seg = np.diff(contour, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    keep = seglen > 1e-9
    if keep.sum() < 2:
        return 0.0, float(seglen.sum())
    pts = np.vstack([contour[:1], contour[1:][keep]])
    s = np.concatenate([[0.0], np.cumsum(seglen[keep])])
    length = float(s[-1])
    closed = np.allclose(contour[0], contour[-1])
    n = max(int(np.ceil(length / step)), 2)
    su = np.linspace(0.0, length, n + 1)
    res = np.column_stack([np.interp(su, s, pts[:, 0]), np.interp(su, s, pts[:, 1])])
    d = np.diff(res, axis=0)
    theta = np.unwrap(np.arctan2(d[:, 0], d[:, 1]))  # tangent angle at segment midpoints
    ds = length / n
    sig = max(window / 2 / ds, 1.0)  # Gaussian width in samples
    pad = int(np.ceil(4 * sig))
    if closed:
        # continue the angle around the loop: one turn adds +-2 pi
        total = theta[-1] - theta[0] + np.angle(np.exp(1j * (theta[0] - theta[-1])))
        reps = pad // len(theta) + 1
        before = np.concatenate([theta - (r + 1) * total for r in range(reps)][::-1])
        after = np.concatenate([theta + (r + 1) * total for r in range(reps)])
        ext = np.concatenate([before[len(before) - pad :], theta, after[:pad]])
    else:
        # odd reflection keeps a linear angle (constant curvature) linear past the ends
        ext = np.pad(theta, pad, mode="reflect", reflect_type="odd")
    kappa = ndimage.gaussian_filter1d(ext, sig, order=1, mode="nearest")[pad:-pad] / ds
    return float(np.abs(kappa).sum() * ds), length


def wall_curvature(domains: np.ndarray, window: float = 8.0, smooth: float = 1.0) -> float:
    """Mean absolute wall curvature (1/pixel) of a domain map; 0 when there is no wall.

    domains: (h, w) bool (True = switched) or a soft map in [0, 1]. The walls are the 0.5
    contours of the map smoothed by a Gaussian of ``smooth`` pixels (which removes the
    pixel staircase); curvature is the derivative of the tangent angle along the wall,
    smoothed by a Gaussian of ``window / 2`` pixels of arc length, averaged over the total wall
    length. Unsigned, so it does not depend on which side is switched: a straight wall gives 0,
    a circle of radius r gives 1/r. Samples within ``2 * smooth`` pixels of the image border are
    left out (the smoothing bends walls there).
    """
    d = check_array(domains, "domains", ndim=2, dtype=np.float64)
    if window <= 0:
        raise ValueError(f"window must be > 0 pixels, got {window}")
    if d.min() >= 0.5 or d.max() <= 0.5:
        return 0.0
    field = ndimage.gaussian_filter(d, smooth, mode="nearest") if smooth > 0 else d
    total = length = 0.0
    h, w = d.shape
    margin = 2.0 * smooth + 0.5
    for c in find_contours(field, 0.5):
        # the smoothing's edge mode bends walls to meet the border at right angles; drop the
        # few samples that feel it and measure the interior runs
        inner = (
            (c[:, 0] >= margin) & (c[:, 0] <= h - 1 - margin)
            & (c[:, 1] >= margin) & (c[:, 1] <= w - 1 - margin)
        )
        if inner.all():
            runs = [c]
        else:
            edges = np.flatnonzero(np.diff(np.concatenate([[0], inner.astype(np.int8), [0]])))
            runs = [c[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True)]
        for run in runs:
            if len(run) < 2:
                continue
            t, ln = _contour_turning(run, window)
            total += t
            length += ln
    return total / length if length > 0 else 0.0


def _hull_lattice_count(points: np.ndarray) -> int:
    """Number of integer points inside or on the convex hull of integer ``points`` (n, 2)."""
    try:
        hull = ConvexHull(points)
    except QhullError:
        # collinear (a one-pixel-wide straight run): the hull is the segment itself, and a
        # connected run already holds every lattice point on it
        return len(points)
    lo = points.min(axis=0)
    hi = points.max(axis=0)
    grid = np.stack(np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1),
                                indexing="ij"), -1).reshape(-1, 2)
    eq = hull.equations  # rows (a, b, c): a*r + b*c + c <= 0 inside
    inside = (grid @ eq[:, :2].T + eq[:, 2] <= 1e-9).all(axis=1)
    return int(inside.sum())


def domain_convexity(domains: np.ndarray) -> float:
    """Area-weighted convexity of the switched domains of a window, in (0, 1].

    domains: (h, w) bool, True = switched. Each 8-connected switched domain scores its pixel
    count over the number of pixel centres inside the convex hull of its pixel centres (the
    digital convex hull): exactly 1 for a digitised disc, square or any other convex shape,
    less for an L-shape, a crescent or a domain pinned at a point while its neighbours grew.
    The window's value is the mean over domains weighted by their area (the fraction of the
    switched area that sits in convex domains). A window with no switched pixel has no
    domain to be concave and scores 1.
    """
    d = np.asarray(domains)
    if d.ndim != 2:
        raise ValueError(f"domains must be (h, w), got shape {d.shape}")
    labels, n = ndimage.label(d.astype(bool), structure=_EIGHT)
    if n == 0:
        return 1.0
    areas = np.zeros(n)
    ratios = np.zeros(n)
    for i, box in enumerate(ndimage.find_objects(labels)):
        points = np.argwhere(labels[box] == i + 1)
        areas[i] = len(points)
        ratios[i] = len(points) / _hull_lattice_count(points)
    return float((areas * ratios).sum() / areas.sum())


def changed_fraction(before: np.ndarray, after: np.ndarray) -> float:
    """Fraction of the window whose state differs between two frames (either direction).

    before, after: (h, w) bool domain maps of the same place at t and t + k.
    """
    a = np.asarray(before, dtype=bool)
    b = np.asarray(after, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"before {a.shape} and after {b.shape} must be (h, w) maps of one shape")
    return float((a != b).mean())


def switch_noise_level(
    scans: np.ndarray, window: int | None = None, quantile: float = 0.99
) -> float:
    """How much of a window repeated scans without switching show as changed: the noise floor
    of :func:`switch_significance`.

    scans: (k >= 2, h, w) bool domain maps of one area scanned k times with no field applied
    between the scans (segmented exactly as the frames to be compared). The changed fraction
    of every pair of scans is taken over every ``window`` x ``window`` window (stride
    ``window // 2``; None: the whole frame), and its ``quantile`` returned: a change below it
    is what noise alone produces in that fraction of windows.
    """
    d = np.asarray(scans, dtype=bool)
    if d.ndim != 3 or len(d) < 2:
        raise ValueError(
            f"scans must be (k >= 2, h, w) repeated domain maps of one area, got shape {d.shape}"
        )
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if window is not None and not 1 <= window <= min(d.shape[1:]):
        raise ValueError(f"window must be in [1, {min(d.shape[1:])}] pixels, got {window}")
    values = []
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            changed = (d[i] != d[j]).astype(np.float64)
            if window is None:
                values.append(np.array([changed.mean()]))
            else:
                step = max(window // 2, 1)
                view = np.lib.stride_tricks.sliding_window_view(changed, (window, window))
                values.append(view[::step, ::step].mean(axis=(-2, -1)).ravel())
    return float(np.quantile(np.concatenate(values), quantile))


def switch_significance(before: np.ndarray, after: np.ndarray, noise: float = 0.0) -> float:
    """The part of a window's change between two frames that noise cannot explain.

    before, after: (h, w) bool domain maps of the same place at t and t + k. noise: the
    changed fraction repeated unswitched scans reach (:func:`switch_noise_level` at the same
    window size). Returns ``max(changed_fraction - noise, 0)``: 0 for identical frames and for
    a change no larger than the noise, the changed fraction itself for a clean switch
    (noise 0), and in between the switched area in excess of the noise floor.
    """
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be a fraction in [0, 1], got {noise}")
    return max(changed_fraction(before, after) - noise, 0.0)


def _check_stack(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (h, w) or (n, h, w), got shape {arr.shape}")
    return arr


def domain_descriptors(
    domains: np.ndarray,
    walls: np.ndarray | None = None,
    window: float = 8.0,
    min_pixels: int = 3,
    later: np.ndarray | None = None,
    noise: float = 0.0,
) -> dict[str, np.ndarray]:
    """Physical descriptors of each patch.

    domains: (n, h, w) (or (h, w)) bool / [0, 1] maps, True = switched. walls: matching wall
    masks (default: the inner boundary of each domain map, the generator's convention).
    window: arc length (pixels) of the curvature smoothing. later: the same patches k frames
    later (n, h, w); with it the change between the two is described too, against the
    ``noise`` floor of :func:`switch_significance`.
    Returns {"wall_count": (n,) int, "switching_degree", "curvature", "convexity": (n,) float}
    and, with ``later``, "changed_fraction" and "switch_significance" (n,) float.
    """
    dom = _check_stack(domains, "domains").astype(np.float64)
    if walls is None:
        wal = np.stack([boundary_walls(d > 0.5) for d in dom])
    else:
        wal = _check_stack(walls, "walls").astype(bool)
        if wal.shape != dom.shape:
            raise ValueError(f"walls {wal.shape} must match domains {dom.shape}")
    binary = dom > 0.5
    out = {
        "wall_count": np.array([wall_count(w, min_pixels) for w in wal], dtype=np.int64),
        "switching_degree": dom.reshape(len(dom), -1).mean(axis=1),
        "curvature": np.array([wall_curvature(d, window) for d in dom]),
        "convexity": np.array([domain_convexity(d) for d in binary]),
    }
    if later is not None:
        nxt = _check_stack(later, "later").astype(np.float64) > 0.5
        if nxt.shape != binary.shape:
            raise ValueError(f"later {nxt.shape} must match domains {binary.shape}")
        out["changed_fraction"] = np.array(
            [changed_fraction(a, b) for a, b in zip(binary, nxt, strict=True)])
        out["switch_significance"] = np.array(
            [switch_significance(a, b, noise) for a, b in zip(binary, nxt, strict=True)])
    return out


def patch_descriptors(
    domains: np.ndarray,
    centers: np.ndarray,
    window: int,
    frames: np.ndarray | None = None,
    walls: np.ndarray | None = None,
    curvature_window: float = 8.0,
    delay: int | None = None,
    noise: float = 0.0,
) -> dict[str, np.ndarray]:
    """Descriptors of the patches cut at ``centers`` (as for the image patches of a VAE).

    domains: (h, w) or (t, h, w) bool domain map of the whole image (e.g. ``Walls.domains``
    of the gaussian method); walls: matching wall masks (default: the domain boundaries).
    centers: (m, 2) (row, col), all inside the image with a full window; frames: (m,) for
    stacks. delay: for a stack, also describe the change of each window from its frame to
    ``delay`` frames later (every ``frames + delay`` must exist), against ``noise`` (see
    :func:`switch_significance`). Returns :func:`domain_descriptors` of the m patches.
    """
    dom = np.asarray(domains, dtype=bool)
    dom = dom[None] if dom.ndim == 2 else dom
    if dom.ndim != 3:
        raise ValueError(f"domains must be (h, w) or (t, h, w), got shape {dom.shape}")
    pts = np.rint(np.asarray(centers, dtype=np.float64)).astype(np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"centers must be a non-empty (m, 2) array, got shape {pts.shape}")
    frm = np.zeros(len(pts), np.int64) if frames is None else np.asarray(frames, np.int64)
    half = window // 2
    h, w = dom.shape[-2:]
    top, left = pts[:, 0] - half, pts[:, 1] - half
    if (top < 0).any() or (left < 0).any() or (top + window > h).any() or (left + window > w).any():
        raise ValueError(
            "some centres lie within window/2 of the border; pass the centres of patches that "
            "were kept (Patches.centers), not the raw coordinates"
        )
    rows = top[:, None] + np.arange(window)
    cols = left[:, None] + np.arange(window)

    def cut(stack: np.ndarray, at: np.ndarray) -> np.ndarray:
        return stack[at[:, None, None], rows[:, :, None], cols[:, None, :]]

    w_p = None
    if walls is not None:
        wal = np.asarray(walls, dtype=bool)
        wal = wal[None] if wal.ndim == 2 else wal
        if wal.shape != dom.shape:
            raise ValueError(f"walls {wal.shape} must match domains {dom.shape}")
        w_p = cut(wal, frm)
    later = None
    if delay is not None:
        if delay < 1 or (frm + delay).max() >= len(dom):
            raise ValueError(
                f"delay {delay} needs frame {int((frm + delay).max())} but the stack has "
                f"{len(dom)} frames; keep patches whose frame + delay exists (delay >= 1)"
            )
        later = cut(dom, frm + delay)
    return domain_descriptors(cut(dom, frm), w_p, window=curvature_window, later=later,
                              noise=noise)


@dataclass(frozen=True)
class CorrelationTable:
    """Correlation of descriptors (rows) with latents (columns). values: (d, k), NaN where a
    column is constant."""

    values: np.ndarray
    descriptors: tuple[str, ...]
    latents: tuple[str, ...]
    method: str

    def to_markdown(self, digits: int = 2) -> str:
        head = "| descriptor | " + " | ".join(self.latents) + " |"
        sep = "|---" * (len(self.latents) + 1) + "|"
        rows = [
            f"| {d} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |"
            for d, row in zip(self.descriptors, self.values, strict=True)
        ]
        return "\n".join([head, sep, *rows])

    def strongest(self, descriptor: str) -> tuple[str, float]:
        """The latent most correlated (in absolute value) with ``descriptor``."""
        i = self.descriptors.index(descriptor)
        row = np.nan_to_num(np.abs(self.values[i]), nan=-1.0)
        j = int(np.argmax(row))
        return self.latents[j], float(self.values[i, j])


def descriptor_correlations(
    descriptors: Mapping[str, np.ndarray],
    latents: np.ndarray,
    latent_names: Sequence[str] | None = None,
    method: str = "spearman",
) -> CorrelationTable:
    """Correlation of each descriptor (n,) with each latent column of ``latents`` (n, k).

    method: "spearman" (rank; robust to the nonlinear ways latents encode physics) or
    "pearson". Constant columns give NaN rather than a warning.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    z = check_array(latents, "latents", ndim=(1, 2), dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    names = tuple(latent_names) if latent_names is not None else tuple(
        f"z{i + 1}" for i in range(z.shape[1])
    )
    if len(names) != z.shape[1]:
        raise ValueError(f"{len(names)} latent names given for {z.shape[1]} latent columns")
    if not descriptors:
        raise ValueError("descriptors is empty; pass e.g. the dict from domain_descriptors")
    rows = []
    for key, val in descriptors.items():
        v = check_array(val, f"descriptor {key!r}", ndim=1, dtype=np.float64)
        if len(v) != len(z):
            raise ValueError(f"descriptor {key!r} has {len(v)} values for {len(z)} latent rows")
        row = []
        for j in range(z.shape[1]):
            col = z[:, j]
            if np.ptp(v) == 0 or np.ptp(col) == 0 or len(v) < 3:
                row.append(np.nan)
            elif method == "spearman":
                row.append(float(stats.spearmanr(v, col).statistic))
            else:
                row.append(float(np.corrcoef(v, col)[0, 1]))
        rows.append(row)
    return CorrelationTable(np.array(rows), tuple(descriptors), names, method)


def wall_table(
    walls: Walls,
    domains: np.ndarray | None = None,
    curvature_window: float = 8.0,
    delay: int = 1,
    noise: float = 0.0,
) -> list[dict[str, float]]:
    """One row of descriptors per frame: wall pixels, wall count, switching degree, curvature,
    convexity and, for frame t of a stack, the change to frame t + ``delay`` (changed fraction
    and :func:`switch_significance` against ``noise``; NaN where t + delay is past the end).

    domains: (h, w) / (t, h, w) bool domain map (default ``walls.domains``); without one the
    domain descriptors are NaN (canny and dcnn give walls only).
    """
    if delay < 1:
        raise ValueError(f"delay must be >= 1 frame, got {delay}")
    dom = walls.domains if domains is None else np.asarray(domains, dtype=bool)
    masks = walls.mask[None] if walls.mask.ndim == 2 else walls.mask
    doms = None if dom is None else (dom[None] if dom.ndim == 2 else dom)
    if doms is not None and doms.shape != masks.shape:
        raise ValueError(f"domains {doms.shape} must match the wall masks {masks.shape}")
    rows = []
    for i, m in enumerate(masks):
        d = None if doms is None else doms[i]
        later = None if doms is None or i + delay >= len(doms) else doms[i + delay]
        change = (np.nan, np.nan) if d is None or later is None else (
            changed_fraction(d, later), switch_significance(d, later, noise))
        rows.append({
            "frame": float(i),
            "wall_pixels": float(m.sum()),
            "wall_count": float(wall_count(m)),
            "switching_degree": np.nan if d is None else float(d.mean()),
            "curvature": np.nan if d is None else wall_curvature(d, curvature_window),
            "convexity": np.nan if d is None else domain_convexity(d),
            "changed_fraction": change[0],
            "switch_significance": change[1],
        })
    return rows


def analyze_walls(
    image: np.ndarray, method: str = "gaussian", phase: bool = False, noise: float = 0.0,
    **kw: Any,
) -> tuple[Walls, list[dict[str, float]]]:
    """Find walls and describe every frame.

    image: (h, w) or (t, h, w); method/phase/kw as for
    :func:`~latentatlas.descriptors.walls.find_walls`. The domain map for the domain
    descriptors comes from the method when it segments domains, else from the gaussian
    method with default settings. noise: the floor of the switch significance between
    consecutive frames (:func:`switch_noise_level`). Returns (walls, :func:`wall_table` rows).
    """
    walls = find_walls(image, method, phase=phase, **kw)
    domains = walls.domains
    if domains is None:
        domains = find_walls(image, "gaussian", phase=phase).domains
    return walls, wall_table(walls, domains, noise=noise)


def latent_trajectories(
    values: np.ndarray, centers: np.ndarray, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Arrange one latent of time-delay patches by place and time.

    values: (n,) latent of each patch; centers: (n, 2) patch centres; frames: (n,) start
    frame of each patch (``Patches.frames``). Returns (places (p, 2) unique centres,
    trajectories (p, n_times) with NaN where a place has no patch at that frame). Forward
    pairs are ``traj[:, :-1]`` vs ``traj[:, 1:]``.
    """
    v = check_array(values, "values", ndim=1, dtype=np.float64)
    c = np.rint(check_array(centers, "centers", ndim=2, dtype=np.float64)).astype(np.int64)
    f = np.asarray(frames, dtype=np.int64).ravel()
    if not len(v) == len(c) == len(f):
        raise ValueError(f"values ({len(v)}), centers ({len(c)}), frames ({len(f)}) must match")
    places, which = np.unique(c, axis=0, return_inverse=True)
    traj = np.full((len(places), int(f.max()) + 1), np.nan)
    traj[which.ravel(), f] = v
    return places, traj


def forward_pairs(trajectories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(latent at t, latent at t+1) over every place and t where both exist."""
    tr = np.asarray(trajectories, dtype=np.float64)
    if tr.ndim != 2 or tr.shape[1] < 2:
        raise ValueError(f"trajectories must be (places, times >= 2), got shape {tr.shape}")
    a, b = tr[:, :-1].ravel(), tr[:, 1:].ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def wall_displacement(walls: np.ndarray) -> np.ndarray:
    """How far each wall pixel of frame t + 1 lies from the walls of frame t.

    walls: (t >= 2, h, w) bool. The distance transform of frame t's walls read at frame
    t + 1's wall pixels: 0 or 1 where a wall stayed put (within a pixel), the local wall
    travel where it moved, inf when frame t has no wall. Returns (t - 1, h, w) float, NaN off
    the walls of frame t + 1.
    """
    w = np.asarray(walls, dtype=bool)
    if w.ndim != 3 or len(w) < 2:
        raise ValueError(f"walls must be a stack (t >= 2, h, w), got shape {w.shape}")
    out = np.full((len(w) - 1, *w.shape[1:]), np.nan)
    for t in range(len(w) - 1):
        dist = ndimage.distance_transform_edt(~w[t]) if w[t].any() else np.full(w.shape[1:], np.inf)
        out[t][w[t + 1]] = dist[w[t + 1]]
    return out


def pinning_map(
    walls: np.ndarray, domains: np.ndarray, still: float = 1.0, min_growth: float = 0.002
) -> np.ndarray:
    """Where walls stay put while the switched area grows: a count per pixel.

    walls, domains: (t, h, w) bool stacks of a switching sequence. For every step t -> t + 1
    in which the switched fraction changes by more than ``min_growth`` (the field is driving
    the walls; either state may be the growing one, so a segmentation that labels the
    states the other way round gives the same map), each wall pixel of frame t + 1 within
    ``still`` pixels of a wall of frame t (:func:`wall_displacement`) counts once. Walls that
    move with the field never count twice at one pixel; walls held by a defect count at
    every step. Returns (h, w) int: the number of growing steps in which the pixel was a
    still wall.
    """
    w = np.asarray(walls, dtype=bool)
    d = np.asarray(domains, dtype=bool)
    if w.shape != d.shape:
        raise ValueError(f"walls {w.shape} and domains {d.shape} must match")
    if still < 0 or min_growth < 0:
        raise ValueError(f"still and min_growth must be >= 0, got {still} and {min_growth}")
    disp = wall_displacement(w)
    growth = np.diff(d.reshape(len(d), -1).mean(axis=1))
    counts = np.zeros(w.shape[1:], np.int64)
    for t in np.flatnonzero(np.abs(growth) > min_growth):
        counts += disp[t] <= still  # NaN (no wall) compares False
    return counts


def pinning_sites(
    pinning: np.ndarray, min_steps: int = 2, min_pixels: int = 3
) -> np.ndarray:
    """Centres of the places where walls were held: the area-weighted centroids of the
    8-connected groups of pixels still in at least ``min_steps`` growing steps.

    pinning: (h, w) counts from :func:`pinning_map`; groups smaller than ``min_pixels`` are
    dropped (a wall stalling for a moment, not a defect). Returns (k, 2) (row, col) float.
    """
    counts = np.asarray(pinning)
    if counts.ndim != 2:
        raise ValueError(f"pinning must be an (h, w) map, got shape {counts.shape}")
    if min_steps < 1:
        raise ValueError(f"min_steps must be >= 1, got {min_steps}")
    labels, n = ndimage.label(counts >= min_steps, structure=_EIGHT)
    if n == 0:
        return np.zeros((0, 2))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes >= min_pixels) + 1
    if len(keep) == 0:
        return np.zeros((0, 2))
    return np.asarray(ndimage.center_of_mass(counts.astype(np.float64), labels, keep)).reshape(-1, 2)


def pinned_fraction(
    pinning: np.ndarray, centers: np.ndarray, window: int, min_steps: int = 2
) -> np.ndarray:
    """Per patch: the fraction of its pixels that held a wall in at least ``min_steps``
    growing steps, a descriptor to correlate with the patch's latents.

    pinning: (h, w) counts from :func:`pinning_map`; centers: (m, 2) (row, col) patch
    centres with a full window inside the image. Returns (m,) float.
    """
    counts = np.asarray(pinning)
    pts = np.rint(np.asarray(centers, dtype=np.float64)).astype(np.int64)
    if counts.ndim != 2 or pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"pinning must be (h, w) and centers (m, 2), got {counts.shape} and "
                         f"{pts.shape}")
    half = window // 2
    h, w = counts.shape
    top, left = pts[:, 0] - half, pts[:, 1] - half
    if (top < 0).any() or (left < 0).any() or (top + window > h).any() or (left + window > w).any():
        raise ValueError("some centres lie within window/2 of the border; pass Patches.centers")
    held = (counts >= min_steps).astype(np.float64)
    # window sums from the integral image: one pass for every patch
    cum = np.pad(held.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    b, r = top + window, left + window
    return (cum[b, r] - cum[top, r] - cum[b, left] + cum[top, left]) / window**2


def switching_time_map(domains: np.ndarray) -> np.ndarray:
    """First frame at which each pixel is switched; NaN where it never is.

    domains: (t, h, w) bool. Returns (h, w) float.
    """
    d = np.asarray(domains, dtype=bool)
    if d.ndim != 3:
        raise ValueError(f"domains must be a stack (t, h, w), got shape {d.shape}")
    first = np.argmax(d, axis=0).astype(np.float64)
    first[~d.any(axis=0)] = np.nan
    return first


def wall_evolution_map(walls: np.ndarray) -> np.ndarray:
    """Last frame in which each pixel was on a wall; NaN where no wall ever passed.

    walls: (t, h, w) bool. Shown with a sequential colour map it draws the successive wall
    positions of a switching movie as contour lines. Returns (h, w) float.
    """
    w = np.asarray(walls, dtype=bool)
    if w.ndim != 3:
        raise ValueError(f"walls must be a stack (t, h, w), got shape {w.shape}")
    t = w.shape[0]
    last = (t - 1 - np.argmax(w[::-1], axis=0)).astype(np.float64)
    last[~w.any(axis=0)] = np.nan
    return last


__all__ = [
    "CorrelationTable",
    "analyze_walls",
    "wall_table",
    "WallScore",
    "changed_fraction",
    "descriptor_correlations",
    "domain_convexity",
    "domain_descriptors",
    "forward_pairs",
    "latent_trajectories",
    "patch_descriptors",
    "pinned_fraction",
    "pinning_map",
    "pinning_sites",
    "switch_noise_level",
    "switch_significance",
    "switching_degree",
    "switching_time_map",
    "wall_agreement",
    "wall_count",
    "wall_curvature",
    "wall_displacement",
    "wall_evolution_map",
    "wall_f1",
]
