"""Classes from latents: a Gaussian mixture, its size chosen by BIC unless given, and the
classes painted back at the positions the latents came from.

On real data the BIC often keeps falling slowly up to the largest size tried: a few
thousand patches make the BIC's penalty small, and a smooth, non-Gaussian cloud of latents
(a background trend, a continuous physical change) is fitted a little better by every extra
component. The size is therefore the elbow of the BIC curve, not its minimum: components
are added only while each one still gains at least ``min_gain`` of the total improvement
over one component (:func:`bic_elbow`).
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

__all__ = ["MIN_GAIN", "LatentLabels", "bic_elbow", "gmm_labels", "label_image"]

# A component is worth adding while it improves the BIC by at least this fraction of the
# whole improvement from one component to the best size tried.
MIN_GAIN = 0.1


@dataclass
class LatentLabels:
    """Result of :func:`gmm_labels`.

    labels : ``(n,)`` int, 0 for the most populated component, 1 for the next, ...
    probabilities : ``(n, k)`` posterior class probabilities (columns in label order).
    n_components : the number of components used.
    bic : component count -> BIC for every count tried (empty when ``n_components`` was given).
    bic_minimum : the count with the lowest BIC (None when ``n_components`` was given); it
        differs from ``n_components`` when the elbow rule stopped earlier.
    features : which latent columns were clustered.
    model : the fitted scikit-learn GaussianMixture (on standardised features).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    n_components: int
    bic: dict[int, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    model: GaussianMixture | None = None
    bic_minimum: int | None = None
    min_gain: float | None = None

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=self.n_components)
        return {"n_components": self.n_components, "counts": counts.tolist(),
                "bic": {str(k): v for k, v in self.bic.items()}, "features": self.features,
                "bic_minimum": self.bic_minimum,
                "rule": None if self.min_gain is None else
                f"BIC elbow: add a component while it gains >= {self.min_gain} of the total "
                "BIC improvement over one component"}


def bic_elbow(bic: dict[int, float], min_gain: float = MIN_GAIN) -> int:
    """The number of components at the elbow of a BIC curve ``{count: BIC}``.

    Counts are walked upwards; the next count is taken while it lowers the BIC by at least
    ``min_gain`` x (BIC of the smallest count - the lowest BIC). With ``min_gain=0`` this
    is the plain BIC minimum.
    """
    if not bic:
        raise ValueError("bic is empty: fit at least one mixture size")
    if not 0 <= min_gain < 1:
        raise ValueError(f"min_gain must be in [0, 1), got {min_gain}")
    counts = sorted(bic)
    best = min(counts, key=lambda k: bic[k])
    if min_gain == 0:
        return best
    total = bic[counts[0]] - bic[best]
    if total <= 0:
        return counts[0]
    chosen = counts[0]
    for k in counts[1:]:
        if bic[chosen] - bic[k] < min_gain * total:
            break
        chosen = k
    return chosen


def gmm_labels(
    X: Any,
    n_components: int | None = None,
    max_components: int = 6,
    covariance_type: str = "full",
    random_state: int = 0,
    n_init: int = 2,
    feature_names: list[str] | None = None,
    max_samples: int = 20000,
    min_gain: float = MIN_GAIN,
) -> LatentLabels:
    """Cluster ``X`` ``(n, d)`` (latent means) with a Gaussian mixture.

    Features are standardised first so latents on different scales weigh alike. With
    ``n_components=None`` every count from 1 to ``max_components`` is fitted and the count
    at the elbow of the BIC curve is kept (:func:`bic_elbow` with ``min_gain``; 0 keeps
    the BIC minimum).
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
        best = fitted[bic_elbow(bic, min_gain)]
        raw = best.predict(x)
        proba = best.predict_proba(x)
    # relabel by population so label 0 is always the majority class (stable across runs)
    order = np.argsort(-np.bincount(raw, minlength=best.n_components), kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    lowest = min(bic, key=lambda k: bic[k])
    log.info("GMM on %d samples: %d components (BIC over %s; lowest at %d)", n,
             best.n_components, counts, lowest)
    return LatentLabels(
        labels=relabel[raw],
        probabilities=proba[:, order],
        n_components=int(best.n_components),
        bic=bic if n_components is None else {},
        features=list(feature_names or []),
        model=best,
        bic_minimum=lowest if n_components is None else None,
        min_gain=min_gain if n_components is None else None,
    )


def label_image(
    labels: Any, centers: Any, image_shape: tuple[int, int], radius: float | None = None
) -> np.ndarray:
    """Classes painted as discs at their positions: ``(h, w)`` float, NaN off the atoms."""
    return paint_points(np.asarray(labels, dtype=np.float64), centers, image_shape, radius)
