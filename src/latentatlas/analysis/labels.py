"""Classes from latents: a Gaussian mixture, its size chosen by BIC unless given, and the
classes painted back at the positions the latents came from."""

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

__all__ = ["LatentLabels", "gmm_labels", "label_image"]


@dataclass
class LatentLabels:
    """Result of :func:`gmm_labels`.

    labels : ``(n,)`` int, 0 for the most populated component, 1 for the next, ...
    probabilities : ``(n, k)`` posterior class probabilities (columns in label order).
    n_components : the number of components used.
    bic : component count -> BIC for every count tried (empty when ``n_components`` was given).
    features : which latent columns were clustered.
    model : the fitted scikit-learn GaussianMixture (on standardised features).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    n_components: int
    bic: dict[int, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    model: GaussianMixture | None = None

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=self.n_components)
        return {"n_components": self.n_components, "counts": counts.tolist(),
                "bic": {str(k): v for k, v in self.bic.items()}, "features": self.features}


def gmm_labels(
    X: Any,
    n_components: int | None = None,
    max_components: int = 6,
    covariance_type: str = "full",
    random_state: int = 0,
    n_init: int = 2,
    feature_names: list[str] | None = None,
    max_samples: int = 20000,
) -> LatentLabels:
    """Cluster ``X`` ``(n, d)`` (latent means) with a Gaussian mixture.

    Features are standardised first so latents on different scales weigh alike. With
    ``n_components=None`` every count from 1 to ``max_components`` is fitted and the one
    with the lowest BIC is kept.
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
    best: GaussianMixture | None = None
    bic: dict[int, float] = {}
    # The covariances are tiny (d x d): BLAS threads only add overhead, which on a busy
    # machine made one fit take seconds instead of milliseconds.
    with threadpool_limits(1):
        for k in counts:
            gm = GaussianMixture(k, covariance_type=covariance_type, random_state=random_state,
                                 n_init=n_init, reg_covar=1e-4)
            gm.fit(fit_x)
            score = float(gm.bic(fit_x))
            bic[k] = score
            if best is None or score < bic[best.n_components]:
                best = gm
        assert best is not None
        raw = best.predict(x)
        proba = best.predict_proba(x)
    # relabel by population so label 0 is always the majority class (stable across runs)
    order = np.argsort(-np.bincount(raw, minlength=best.n_components), kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    log.info("GMM on %d samples: %d components (BIC over %s)", n, best.n_components, counts)
    return LatentLabels(
        labels=relabel[raw],
        probabilities=proba[:, order],
        n_components=int(best.n_components),
        bic=bic if n_components is None else {},
        features=list(feature_names or []),
        model=best,
    )


def label_image(
    labels: Any, centers: Any, image_shape: tuple[int, int], radius: float | None = None
) -> np.ndarray:
    """Classes painted as discs at their positions: ``(h, w)`` float, NaN off the atoms."""
    return paint_points(np.asarray(labels, dtype=np.float64), centers, image_shape, radius)
