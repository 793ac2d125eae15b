"""Classes from latents: a Gaussian mixture, its size chosen from the data unless given, and
the classes painted back at the positions the latents came from.

The number of classes is not the number of Gaussians. On real data the BIC often keeps
falling up to the largest size tried: a few thousand patches make its penalty small, and a
curved or elongated cloud of latents (a class whose latents drift with a slow background, a
continuous physical change) is fitted better by every extra Gaussian. So the mixture is
fitted at the size with the lowest BIC, and then its components are merged, pair by pair,
while two of them form one mode: projected on the direction that best separates them
(Fisher's), the density of their points does not fall between them below ``MERGE_RATIO`` of
its value at the lower of the two centres (:func:`valley_ratio`, :func:`merge_components`).
Classes are separated by a dip in the density of the latents, not by a Gaussian's shape.
When the latents show more such modes than the elbow of the BIC curve supports (a component
kept while it gains >= ``MIN_GAIN`` of the total BIC improvement, :func:`bic_elbow`), the
modes are sub-structure of fewer classes and the mixture at the elbow is used instead: the
number of classes is the smaller of the two counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from latentatlas._checks import check_array
from latentatlas.analysis.latent_maps import paint_points

log = logging.getLogger(__name__)

__all__ = ["MERGE_RATIO", "MIN_GAIN", "LatentLabels", "bic_elbow", "gmm_labels", "label_image",
           "merge_components", "valley_ratio"]

# Two groups of latents are one class while the density between them stays above this
# fraction of the density at the lower of their two centres (1: merge only without any dip,
# 0: never merge). Stated, not fitted: two equal 1-D Gaussians give 0.5 at about 3.3 standard
# deviations apart, i.e. merged while they overlap enough to blur into one mode.
MERGE_RATIO = 0.5
# The elbow of the BIC curve: a component is worth adding while it improves the BIC by at
# least this fraction of the whole improvement from one component to the lowest BIC.
MIN_GAIN = 0.1


@dataclass
class LatentLabels:
    """Result of :func:`gmm_labels`.

    labels : ``(n,)`` int, 0 for the most populated class, 1 for the next, ...
    probabilities : ``(n, k)`` posterior class probabilities (columns in label order).
    n_components : the number of classes.
    bic : component count -> BIC for every count tried (empty when ``n_components`` was given).
    bic_minimum : the count with the lowest BIC, i.e. the Gaussians fitted before merging
        (None when ``n_components`` was given).
    features : which latent columns were clustered.
    model : the fitted scikit-learn GaussianMixture (on standardised features); it may have
        more components than there are classes.
    classes_of_components : ``(model.n_components,)`` the class (label) of every component.
    merge_ratio : the merge threshold used (None when ``n_components`` was given).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    n_components: int
    bic: dict[int, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    model: GaussianMixture | None = None
    bic_minimum: int | None = None
    classes_of_components: np.ndarray | None = None
    merge_ratio: float | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(m, n_components)`` of standardised features ``x`` ``(m, d)``
        (standardised as the fitted ones were), columns in label order."""
        assert self.model is not None and self.classes_of_components is not None
        p = self.model.predict_proba(x)
        out = np.zeros((len(x), self.n_components))
        np.add.at(out.T, self.classes_of_components, p.T)
        return out

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=self.n_components)
        return {"n_components": self.n_components, "counts": counts.tolist(),
                "bic": {str(k): v for k, v in self.bic.items()}, "features": self.features,
                "bic_minimum": self.bic_minimum,
                "rule": None if self.merge_ratio is None else
                f"Gaussian mixture at the BIC minimum ({self.bic_minimum} components), then "
                "components merged while the density of their points between them stays >= "
                f"{self.merge_ratio} of its value at their centres (Fisher projection); the "
                f"mixture at the BIC elbow (gain >= {MIN_GAIN}) when that gives fewer"}


def bic_elbow(bic: dict[int, float], min_gain: float = MIN_GAIN) -> int:
    """The number of components at the elbow of a BIC curve ``{count: BIC}``: the largest
    count whose own step (from the count below) still lowers the BIC by at least
    ``min_gain`` x (BIC of the smallest count - the lowest BIC). A small step followed by a
    large one (two Gaussians fit no better than one, three much better) does not stop it."""
    if not bic:
        raise ValueError("bic is empty: fit at least one mixture size")
    counts = sorted(bic)
    total = bic[counts[0]] - min(bic.values())
    chosen = counts[0]
    for below, k in zip(counts, counts[1:], strict=False):
        if total > 0 and bic[below] - bic[k] >= min_gain * total:
            chosen = k
    return chosen


def valley_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """How far the density dips between two groups of points ``a`` ``(n_a, d)`` and ``b``
    ``(n_b, d)``: both are projected on Fisher's direction (pooled covariance^-1 x the
    difference of their means), the density of the projections is estimated (Gaussian
    kernel, Silverman's bandwidth of the spread within the groups), and its minimum between
    the two projected means is divided by the lower of its values at the means. About 1: no
    dip, one mode; near 0: two separate groups."""
    if len(a) < 2 or len(b) < 2:
        return 1.0  # a group this small cannot show a dip: it is merged
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    pooled = (np.cov(a, rowvar=False, bias=True) * len(a)
              + np.cov(b, rowvar=False, bias=True) * len(b)) / (len(a) + len(b))
    pooled = np.atleast_2d(pooled) + 1e-9 * np.eye(a.shape[1])
    w = np.linalg.solve(pooled, mb - ma)
    pa, pb = float(ma @ w), float(mb @ w)
    if not pb > pa:
        return 1.0  # identical means: nothing separates them
    p = np.concatenate([a @ w, b @ w])
    # Silverman's rule on the spread within the groups (w' pooled w): the spread of all the
    # projections would count the gap itself and smooth it away
    bandwidth = 0.9 * float(np.sqrt(w @ pooled @ w)) * len(p) ** -0.2
    grid = np.linspace(pa, pb, 65)
    density = np.zeros(len(grid))
    for start in range(0, len(p), 4096):  # (4096, 65) at a time: memory stays small
        u = (grid[None, :] - p[start:start + 4096, None]) / bandwidth
        density += np.exp(-0.5 * u * u).sum(axis=0)
    return float(density.min() / min(density[0], density[-1]))


def merge_components(x: np.ndarray, components: np.ndarray, k: int,
                     ratio: float = MERGE_RATIO) -> np.ndarray:
    """Merge ``k`` mixture components into classes: ``x`` ``(n, d)`` points, ``components``
    ``(n,)`` each point's component (0..k-1). Repeatedly joins the two groups with the highest
    :func:`valley_ratio` while it is >= ``ratio``. Returns ``(k,)`` the group of every
    component, numbered 0.. in order of their first component."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    group = np.arange(k)
    while len(np.unique(group)) > 1:
        ids = np.unique(group)
        members = {g: x[np.isin(components, np.flatnonzero(group == g))] for g in ids}
        pairs = [(valley_ratio(members[g], members[h]), g, h)
                 for i, g in enumerate(ids) for h in ids[i + 1:]]
        best, g, h = max(pairs)
        if best < ratio:
            break
        group[group == h] = g
    return np.unique(group, return_inverse=True)[1]


def gmm_labels(
    X: Any,
    n_components: int | None = None,
    max_components: int = 6,
    covariance_type: str = "full",
    random_state: int = 0,
    n_init: int = 2,
    feature_names: list[str] | None = None,
    max_samples: int = 20000,
    merge_ratio: float = MERGE_RATIO,
) -> LatentLabels:
    """Cluster ``X`` ``(n, d)`` (latent means) with a Gaussian mixture.

    Features are standardised first so latents on different scales weigh alike. With
    ``n_components=None`` every count from 1 to ``max_components`` is fitted, the one with
    the lowest BIC is kept and its components are merged into classes while they form one
    mode (:func:`merge_components` with ``merge_ratio``; 0 keeps every component), unless
    the BIC elbow is smaller: then the mixture at the elbow (module docstring). A given
    ``n_components`` is used as it is.
    """
    x = check_array(X, "latents", ndim=2).astype(np.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples to cluster, got {n}")
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    fit_x = x
    if n > max_samples:
        pick = np.random.default_rng(random_state).choice(n, max_samples, replace=False)
        fit_x = x[pick]
    if n_components is not None:
        if not 1 <= n_components <= n:
            raise ValueError(f"n_components must be in [1, {n}] (the number of samples), "
                             f"got {n_components}")
        counts = [int(n_components)]
    else:
        if max_components < 1:
            raise ValueError(f"max_components must be >= 1, got {max_components}")
        counts = list(range(1, min(max_components, n) + 1))
    fitted: dict[int, GaussianMixture] = {}
    bic: dict[int, float] = {}
    # The covariances are tiny (d x d): BLAS threads only add overhead, which on a busy
    # machine made one fit take seconds instead of milliseconds.
    with threadpool_limits(1):
        for k in counts:
            gm = GaussianMixture(k, covariance_type=covariance_type, random_state=random_state,
                                 n_init=n_init, reg_covar=1e-4)
            gm.fit(fit_x)
            bic[k] = float(gm.bic(fit_x))
            fitted[k] = gm
        lowest = min(bic, key=lambda k: bic[k])
        best = fitted[lowest]
        components = best.predict(x)
    groups = np.arange(best.n_components)
    if n_components is None and merge_ratio > 0:
        sample = components if fit_x is x else best.predict(fit_x)
        groups = merge_components(fit_x, sample, best.n_components, merge_ratio)
        elbow = bic_elbow(bic)
        if elbow < int(groups.max()) + 1:
            # more modes than the BIC curve's elbow supports: sub-modes of a class (the
            # fewer classes of the two rules are kept), the mixture at the elbow
            best = fitted[elbow]
            components = best.predict(x)
            groups = np.arange(elbow)
    # classes by population so label 0 is always the majority class (stable across runs)
    n_classes = int(groups.max()) + 1
    order = np.argsort(-np.bincount(groups[components], minlength=n_classes), kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(n_classes)
    lab = LatentLabels(
        labels=relabel[groups[components]],
        probabilities=np.zeros((n, 0)),
        n_components=n_classes,
        bic=bic if n_components is None else {},
        features=list(feature_names or []),
        model=best,
        bic_minimum=lowest if n_components is None else None,
        classes_of_components=relabel[groups],
        merge_ratio=merge_ratio if n_components is None else None,
    )
    lab.probabilities = lab.predict_proba(x)
    log.info("GMM on %d samples: %d classes from %d components (BIC over %s)", n,
             n_classes, best.n_components, counts)
    return lab


def label_image(
    labels: Any, centers: Any, image_shape: tuple[int, int], radius: float | None = None
) -> np.ndarray:
    """Classes painted as discs at their positions: ``(h, w)`` float, NaN off the atoms."""
    return paint_points(np.asarray(labels, dtype=np.float64), centers, image_shape, radius)
