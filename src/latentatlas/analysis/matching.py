"""Matching predicted points (atoms) to reference points: precision, recall, F1, position error."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from latentatlas._checks import check_array


class MatchScores(NamedTuple):
    """precision, recall and F1 of the one-to-one matching, and the RMS distance of matched pairs
    (pixels; NaN when nothing matched)."""

    precision: float
    recall: float
    f1: float
    rmse: float


def _points(x: object, name: str) -> np.ndarray:
    arr = check_array(x, name, ndim=2, allow_empty=True, dtype=np.float64)
    if arr.size and arr.shape[1] != 2:
        raise ValueError(f"{name} must be (n, 2) (row, col) coordinates, got shape {arr.shape}")
    return arr.reshape(-1, 2)


def match_indices(
    pred: np.ndarray, true: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of pred (n, 2) to true (m, 2) within ``radius``.

    Mutual nearest neighbours are matched first, then removed, and the step repeats on the
    rest; with points further apart than twice the radius (atoms) this equals the optimal
    (Hungarian) assignment, at KD-tree cost. Returns index arrays (k,), (k,) of matched pairs.
    """
    p, t = _points(pred, "pred"), _points(true, "true")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 pixels, got {radius!r}")
    matched_p: list[np.ndarray] = []
    matched_t: list[np.ndarray] = []
    free_p, free_t = np.arange(len(p)), np.arange(len(t))
    while len(free_p) and len(free_t):
        tree_t, tree_p = cKDTree(t[free_t]), cKDTree(p[free_p])
        d_pt, j = tree_t.query(p[free_p], distance_upper_bound=radius)
        _, i = tree_p.query(t[free_t], distance_upper_bound=radius)
        ok = np.isfinite(d_pt)
        ok[ok] = i[j[ok]] == np.flatnonzero(ok)  # mutual: true j's nearest pred is this one
        if not ok.any():
            break
        mp, mt = free_p[ok], free_t[j[ok]]
        matched_p.append(mp)
        matched_t.append(mt)
        free_p = np.setdiff1d(free_p, mp)
        free_t = np.setdiff1d(free_t, mt)
    if not matched_p:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(matched_p), np.concatenate(matched_t)


class MatchCounts(NamedTuple):
    """Raw tallies of a matching, for pooling over many images: matched pairs, counted
    predictions, counted references and the sum of squared distances of matched pairs."""

    matched: int
    n_pred: int
    n_true: int
    sq_error: float


def match_counts(
    pred: np.ndarray,
    true: np.ndarray,
    radius: float = 1.5,
    *,
    shape: tuple[int, int] | None = None,
    border: float = 0.0,
) -> MatchCounts:
    """Tallies behind :func:`match_points` (same arguments)."""
    p, t = _points(pred, "pred"), _points(true, "true")
    ip, it = match_indices(p, t, radius)
    n_p, n_t = len(p), len(t)
    if border > 0:
        if shape is None:
            raise ValueError("border needs the image shape (h, w): pass shape=image.shape")
        h, w = shape

        def n_inner_unmatched(x: np.ndarray, matched: np.ndarray) -> int:
            rest = np.delete(x, matched, axis=0)
            inner = (
                (rest[:, 0] >= border)
                & (rest[:, 0] <= h - 1 - border)
                & (rest[:, 1] >= border)
                & (rest[:, 1] <= w - 1 - border)
            )
            return int(inner.sum())

        n_p = len(ip) + n_inner_unmatched(p, ip)
        n_t = len(it) + n_inner_unmatched(t, it)
    sq = float(np.sum((p[ip] - t[it]) ** 2))
    return MatchCounts(len(ip), n_p, n_t, sq)


def scores_from_counts(counts: MatchCounts) -> MatchScores:
    """Precision, recall, F1 and RMSE from (possibly pooled) :class:`MatchCounts`."""
    k, n_p, n_t, sq = counts
    if n_p == 0 and n_t == 0:
        return MatchScores(1.0, 1.0, 1.0, float("nan"))
    precision = k / n_p if n_p else 0.0
    recall = k / n_t if n_t else 0.0
    f1 = 2 * k / (n_p + n_t)
    rmse = float(np.sqrt(sq / k)) if k else float("nan")
    return MatchScores(precision, recall, f1, rmse)


def match_points(
    pred: np.ndarray,
    true: np.ndarray,
    radius: float = 1.5,
    *,
    shape: tuple[int, int] | None = None,
    border: float = 0.0,
) -> MatchScores:
    """Precision, recall, F1 and RMSE of predicted points against reference points.

    pred: (n, 2), true: (m, 2), (row, col) in pixels. A prediction is correct when it is
    matched one-to-one to a reference point within ``radius`` pixels. With ``shape`` (h, w) and
    ``border`` > 0, unmatched points of either set closer than ``border`` to the image edge are
    not counted (reference lists often omit columns cut by the edge). To pool several images,
    sum :func:`match_counts` and call :func:`scores_from_counts`.
    """
    return scores_from_counts(match_counts(pred, true, radius, shape=shape, border=border))
