"""Classes found by models compared with labels, traversals, and uncertainty maps.

- ``confusion_matrix`` / ``match_labels`` / ``cluster_accuracy``: unsupervised classes are
  numbered arbitrarily, so they are matched to the true labels by the Hungarian algorithm
  before an accuracy is quoted.
- ``traversal_grid``: rows = classes, columns = one continuous latent swept through its prior,
  for any model with a ``traversal`` method (cvae, jvae, ssvae).
- ``latents_by_class``: latent coordinates grouped per class, for scatter plots.
- ``uncertainty_map``: per-patch values (e.g. ensemble dispersion) painted back on the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import cg
from scipy.spatial import cKDTree

from latentatlas._checks import check_array
from latentatlas.models.ensemble import align_to_reference, summarise

__all__ = ["align_to_reference", "cluster_accuracy", "confusion_matrix", "latents_by_class",
           "match_labels", "neighbour_graph", "score_predictions", "spread_labels", "stratified_labels",
           "summarise", "traversal_grid", "uncertainty_map"]


def _labels(x: object, name: str) -> np.ndarray:
    arr = check_array(x, name, ndim=1, dtype=np.float64)
    if not np.all(arr == np.round(arr)) or arr.min() < 0:
        raise ValueError(f"{name} must be non-negative integer class indices")
    return arr.astype(np.int64)


def confusion_matrix(true: object, pred: object, n_true: int | None = None,
                     n_pred: int | None = None) -> np.ndarray:
    """Counts (n_true, n_pred): entry [a, b] = samples of true class a given class b."""
    t, p = _labels(true, "true"), _labels(pred, "pred")
    if len(t) != len(p):
        raise ValueError(f"true and pred must have the same length, got {len(t)} and {len(p)}")
    kt = max(int(t.max()) + 1, n_true or 0)
    kp = max(int(p.max()) + 1, n_pred or 0)
    out = np.zeros((kt, kp), np.int64)
    np.add.at(out, (t, p), 1)
    return out


def match_labels(true: object, pred: object) -> dict[int, int]:
    """Hungarian matching of predicted classes to true classes maximising agreement.

    Returns {predicted class: true class} for every matched predicted class; with more
    predicted than true classes the extra ones stay unmatched.
    """
    counts = confusion_matrix(true, pred)
    rows, cols = linear_sum_assignment(-counts)
    return {int(c): int(r) for r, c in zip(rows, cols, strict=True)}


def cluster_accuracy(true: object, pred: object) -> float:
    """Accuracy of predicted classes after the best one-to-one renaming (Hungarian)."""
    counts = confusion_matrix(true, pred)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / counts.sum())


def traversal_grid(model: Any, n: int = 8, dim: int = 0, extent: float = 2.0,
                   **kwargs: Any) -> np.ndarray:
    """(n_classes, n, *input_shape) decodings: rows = classes, columns = content latent ``dim``
    from -extent to +extent prior standard deviations (the model's ``traversal``)."""
    if not hasattr(model, "traversal"):
        raise ValueError(f"{type(model).__name__} has no classes to traverse; use a cvae, jvae "
                         "or ssvae model")
    out: np.ndarray = model.traversal(n=n, dim=dim, extent=extent, **kwargs)
    return out


def latents_by_class(latents: object, labels: object) -> dict[int, np.ndarray]:
    """Latent coordinates (n, d) split by class: {class: (n_class, d)}."""
    z = check_array(latents, "latents", ndim=(1, 2))
    z = z.reshape(len(z), -1)
    y = _labels(labels, "labels")
    if len(y) != len(z):
        raise ValueError(f"latents and labels must have the same length, got {len(z)}, {len(y)}")
    return {int(k): z[y == k] for k in np.unique(y)}


def uncertainty_map(values: object, coords: object, image_shape: tuple[int, int],
                    radius: float | None = None) -> np.ndarray:
    """Paint per-patch values back on the image they were cut from.

    values: (n,) e.g. ensemble uncertainty; coords: (n, 2) patch centres as (row, col) pixels;
    image_shape: (h, w). Each pixel takes the value of its nearest patch centre, or NaN when
    that centre is further than ``radius`` pixels (default: no limit).
    Returns (h, w) float32.
    """
    v = check_array(values, "values", ndim=1)
    c = check_array(coords, "coords", ndim=2, dtype=np.float64)
    if c.shape != (len(v), 2):
        raise ValueError(f"coords must be (n, 2) (row, col) with n = {len(v)}, got {c.shape}")
    h, w = (int(s) for s in image_shape)
    if h < 1 or w < 1:
        raise ValueError(f"image_shape must be positive (h, w), got {image_shape}")
    rows, cols = np.mgrid[0:h, 0:w]
    pixels = np.stack([rows.ravel(), cols.ravel()], 1)
    dist, idx = cKDTree(c).query(pixels)
    out = v[idx].astype(np.float32)
    if radius is not None:
        out[dist > radius] = np.nan
    return out.reshape(h, w)


def stratified_labels(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Mask ``(n,)`` of a seeded ``fraction`` of each class (round half up), at least one atom
    of every class with two or more atoms, never all atoms of a class."""
    lab = np.asarray(labels)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(lab), bool)
    for k in np.unique(lab):
        idx = np.flatnonzero(lab == k)
        if len(idx) < 2:
            continue
        take = int(np.clip(np.floor(fraction * len(idx) + 0.5), 1, len(idx) - 1))
        mask[rng.choice(idx, take, replace=False)] = True
    return mask


def score_predictions(true: np.ndarray, pred: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over the true classes present), the majority
    baseline (accuracy of always answering the most frequent class) and per-class recall."""
    t, p = np.asarray(true), np.asarray(pred)
    if len(t) == 0:
        return {"n_scored": 0}
    present = np.unique(t)
    recall = {names[int(k)]: float((p[t == k] == k).mean()) for k in present}
    counts = np.bincount(t)
    return {
        "n_scored": len(t),
        "accuracy": float((t == p).mean()),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "majority_baseline": float(counts.max() / len(t)),
        "majority_class": names[int(counts.argmax())],
        "recall": recall,
        "support": {names[int(k)]: int(counts[k]) for k in present},
    }


def class_scores(true: object, pred: object, names: tuple[str, ...]) -> dict[str, Any]:
    """Every score of a classification against true labels, for reports and JSON.

    true: (n,) label indices into ``names``; pred: (n,) predicted indices, -1 for a class of
    an unsupervised model matched to no label. Returns ``score_predictions`` (accuracy,
    balanced accuracy = mean recall over the true classes present, majority baseline,
    per-class recall and support) plus ``ari`` (adjusted Rand index, which needs no
    matching) and ``confusion``: counts with rows = true classes in ``names`` order and
    columns = ``names`` then ``unmatched``.
    """
    from sklearn.metrics import adjusted_rand_score

    t = np.asarray(true, np.int64)
    p = np.asarray(pred, np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"true and pred must be (n,) of one length, got {t.shape}, {p.shape}")
    if len(t) and (t.min() < 0 or t.max() >= len(names) or p.min() < -1 or p.max() >= len(names)):
        raise ValueError(f"labels must lie in [0, {len(names)}) (pred may also be -1)")
    out = score_predictions(t, p, names)
    if len(t) == 0:
        return out
    k = len(names)
    out["ari"] = float(adjusted_rand_score(t, p))
    out["confusion"] = confusion_matrix(t, np.where(p < 0, k, p), n_true=k, n_pred=k + 1).tolist()
    return out


def neighbour_graph(features: object, neighbours: int = 10) -> sparse.csr_matrix:
    """The normalised neighbour graph ``S`` (n x n, sparse) that :func:`spread_labels` spreads
    labels along; built once per feature space, since it does not depend on the labels.

    features: (n, d), each column standardised here. Every sample is joined to its
    ``neighbours`` nearest (symmetrised), with Gaussian weights whose width is the median
    neighbour distance; ``S = D^-1/2 W D^-1/2``. Sparse: memory and time grow with
    n x neighbours, not n^2.
    """
    x = check_array(features, "features", ndim=2).astype(np.float64)
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    n = len(x)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    k = min(neighbours, n - 1)
    dist, idx = cKDTree(x).query(x, k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    width = float(np.median(dist)) or 1.0
    w = sparse.csr_matrix((np.exp(-(dist.ravel() / width) ** 2),
                           (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    w = w.maximum(w.T)
    d = np.asarray(w.sum(1)).ravel()
    inv = sparse.diags(np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0))
    return (inv @ w @ inv).tocsr()


def spread_labels(graph: sparse.csr_matrix, labels: object, alpha: float = 0.99,
                  balanced: bool = True) -> np.ndarray:
    """Class scores ``(n, K)`` of every sample from the labels of a few, spread along the
    :func:`neighbour_graph` ``graph`` (label spreading, Zhou et al. 2004).

    labels: (n,) class index, -1 unknown; K = max label + 1 (a class without a labelled
    sample gets a zero column). The scores solve F = alpha S F + (1 - alpha) Y. balanced:
    every class column is scaled to unit total mass before the rows are normalised (class
    mass normalisation, Zhu et al. 2003, towards equal masses): a class seeded by one sample
    is not out-voted by one seeded by ten. Rows sum to 1 (a sample the graph does not reach:
    uniform over the seeded classes).
    """
    y = check_array(labels, "labels", ndim=1, dtype=np.float64)
    if not np.all(y == np.round(y)) or y.min() < -1:
        raise ValueError("labels must be class indices >= 0, or -1 for an unknown label")
    y = y.astype(np.int64)
    n = graph.shape[0]
    if len(y) != n:
        raise ValueError(f"the graph holds {n} samples but labels {len(y)}")
    if not (y >= 0).any():
        raise ValueError("spread_labels needs at least one labelled sample (label >= 0)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    seeds = np.zeros((n, int(y.max()) + 1))
    seeds[y >= 0, y[y >= 0]] = 1.0
    # I - alpha S is symmetric positive definite (S's eigenvalues lie in [-1, 1]): conjugate
    # gradients, one class column at a time (a direct sparse solve fills in on kNN graphs)
    a = (sparse.identity(n) - alpha * graph).tocsr()
    f = np.column_stack([cg(a, (1 - alpha) * col, rtol=1e-10, atol=0.0, maxiter=10 * n)[0]
                         for col in seeds.T])
    f = np.clip(f, 0.0, None)
    if balanced:
        mass = f.sum(0)
        f = f / np.where(mass > 0, mass, 1.0)
    rows = f.sum(1, keepdims=True)
    seeded = (seeds.sum(0) > 0).astype(np.float64)
    return np.where(rows > 0, f / np.where(rows > 0, rows, 1.0), seeded / seeded.sum())
