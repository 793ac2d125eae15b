"""Classes from latents: a Gaussian mixture, its size chosen from the data unless given, and
the classes painted back at the positions the latents came from.

The number of classes is not the number of Gaussians. On real data the BIC often keeps
falling up to the largest size tried: a few thousand patches make its penalty small, and a
curved or elongated cloud of latents (a class whose latents drift with a slow background, a
continuous physical change) is fitted better by every extra Gaussian. So the mixture is
fitted at the size with the lowest BIC, and its components are joined into classes where
they form one mode: two components are linked when, projected on the direction that best
separates them (Fisher's), the density of their points does not fall between them below
``MERGE_RATIO`` of its value at the lower of the two centres (:func:`valley_ratio`), and a
class is a chain of linked components (:func:`merge_components`). Classes are separated by a
dip in the density of the latents, not by a Gaussian's shape.

Not every mode is a class: a model's latents can also split one class into well separated
sub-modes (the rVAE's angle head picking one of two equivalent orientations of a nearly
symmetric site, each with its own content latents) or isolate a few outlying patches. Those
splits improve the BIC little compared with the splits between classes, so the count is
capped at the knee of the BIC curve (:func:`bic_knee`: the count farthest below the straight
line through the BIC of the smallest and of the largest count tried; scale-free, no
threshold). With more modes than the knee, the two classes whose merge loses the least
likelihood are joined until the knee's count is left (:func:`merge_cost`): classes stay
unions of the fitted components (a mixture refitted at the knee's size can cut a class
across, and did on a generated lattice).
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

__all__ = ["MERGE_RATIO", "LatentLabels", "bic_knee", "gmm_labels", "label_image",
           "merge_components", "merge_cost", "valley_ratio"]

# Two groups of latents are one class while the density between them stays above this
# fraction of the density at the lower of their two centres (1: merge only without any dip,
# 0: never merge). Stated, not fitted: two equal 1-D Gaussians give 0.5 at about 3.3 standard
# deviations apart, i.e. merged while they overlap enough to blur into one mode.
MERGE_RATIO = 0.5


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
                f"Gaussian mixture at the BIC minimum ({self.bic_minimum} components); "
                "components linked while the density of their points between them stays >= "
                f"{self.merge_ratio} of its value at their centres (Fisher projection), a "
                "class per chain of linked components; at most the knee of the BIC curve, "
                "reached by the merges that lose the least likelihood"}


def bic_knee(bic: dict[int, float]) -> int:
    """The knee of a BIC curve ``{count: BIC}``: the count farthest below the straight line
    joining the BIC of the smallest count tried to that of the largest (the smaller count
    among equals). When no count lies below that line (the BIC falls slowly first, then
    steeply: two Gaussians fit no better than one, three far better), the count with the
    lowest BIC."""
    if not bic:
        raise ValueError("bic is empty: fit at least one mixture size")
    counts = sorted(bic)
    first, last = counts[0], counts[-1]
    lowest = min(bic, key=lambda k: bic[k])
    if last == first:
        return lowest
    slope = (bic[last] - bic[first]) / (last - first)
    below = {k: bic[first] + slope * (k - first) - bic[k] for k in counts}
    most = max(below.values())
    if most <= 0:
        return lowest
    return min(k for k in counts if below[k] == most)


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


def merge_cost(a: np.ndarray, b: np.ndarray) -> float:
    """The log-likelihood lost when two groups of points ``a`` ``(n_a, d)`` and ``b``
    ``(n_b, d)``, each modelled by its own Gaussian, are modelled by one: (n_a + n_b) / 2
    log det(cov of both) - n_a / 2 log det(cov a) - n_b / 2 log det(cov b) (maximum-likelihood
    covariances, plus the mixture's 1e-4 on the diagonal)."""
    def half_n_logdet(p: np.ndarray) -> float:
        cov = np.atleast_2d(np.cov(p, rowvar=False, bias=True)) + 1e-4 * np.eye(p.shape[1])
        return 0.5 * len(p) * float(np.linalg.slogdet(cov)[1])
    return half_n_logdet(np.vstack([a, b])) - half_n_logdet(a) - half_n_logdet(b)


def merge_components(x: np.ndarray, components: np.ndarray, k: int,
                     ratio: float = MERGE_RATIO, at_most: int | None = None) -> np.ndarray:
    """Merge ``k`` mixture components into classes: ``x`` ``(n, d)`` points, ``components``
    ``(n,)`` each point's component (0..k-1). Two components are one mode when their
    :func:`valley_ratio` is >= ``ratio``; a class is a chain of such pairs (the components
    connected through them), so a curved cloud of several Gaussians is one class even where
    its two ends show a dip. With more classes than ``at_most``, the two classes whose merge
    loses the least likelihood (:func:`merge_cost`) are joined until ``at_most`` are left.
    Returns ``(k,)`` the class of every component, numbered 0.. in order of their first
    component."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if at_most is not None and at_most < 1:
        raise ValueError(f"at_most must be >= 1, got {at_most}")
    points = [x[components == c] for c in range(k)]
    group = np.arange(k)
    for a in range(k):
        for b in range(a + 1, k):
            if group[a] != group[b] and valley_ratio(points[a], points[b]) >= ratio:
                group[group == group[b]] = group[a]
    while at_most is not None and len(np.unique(group)) > at_most:
        ids = np.unique(group)
        members = {g: x[np.isin(components, np.flatnonzero(group == g))] for g in ids}
        _, g, h = min((merge_cost(members[g], members[h]), g, h)
                      for i, g in enumerate(ids) for h in ids[i + 1:])
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
    mode (:func:`merge_components` with ``merge_ratio``; 0 keeps every component), and
    further down to the knee of the BIC curve when that is smaller (:func:`bic_knee`, module
    docstring). A given ``n_components`` is used as it is.
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
        groups = merge_components(fit_x, sample, best.n_components, merge_ratio,
                                  at_most=bic_knee(bic))
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
