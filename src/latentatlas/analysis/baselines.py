"""Simple baselines beside every latent model, on the same patches, and a one-line verdict.

A latent map means something only if it shows more than a plain statistic of the patch would.
For the patches a model saw this module computes

* plain descriptors of every patch from the raw (un-normalised) image: mean intensity,
  standard deviation and the fraction of pixels above the image median, per channel; the
  slow background level at the patch (:func:`background_level`); and for PFM the switched
  fraction and the wall density of the window (:func:`pfm_descriptors`);
* PCA of the patches the model saw (the first components as per-patch scores, i.e. maps);
* k-means (as many classes as the model's) and a BIC-sized Gaussian mixture on the PCA
  scores, with the adjusted Rand index (ARI) between their classes and the model's;
* the Spearman correlation of every latent with every descriptor and PCA score;

* the share of the background level's variance that the classes explain (eta squared):
  classes of interleaved sublattices explain almost none of it, classes that cut the image
  into a bright and a dark region most of it;

and says in one line whether the model found anything the baselines did not: an active
latent that no descriptor or principal component explains, alone (|rho| <
``EXPLAINED_RHO``) or together (the ranks of all of them, in a linear fit, explain less than
``EXPLAINED_RHO**2`` of the latent's rank variance), or classes that differ from PCA k-means
(ARI < ``AGREE_ARI``). Such a latent or split is only *not shown by the baselines*: it may be
structure or an artefact. Where physical descriptors of the patches are known (``PHYSICAL``:
the PFM switched fraction and wall density) the verdict is decided on them instead: the model
adds something only if a latent follows one of them better than every plain descriptor and
principal component (by ``MARGIN`` in |rho|), or its classes explain more of its variance
than the PCA k-means classes do; otherwise the verdict says the baselines explain as much.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from latentatlas._checks import check_array
from latentatlas.analysis.labels import gmm_labels
from latentatlas.models.latents import LatentActivity, content_columns, is_content_latent

log = logging.getLogger(__name__)

__all__ = ["AGREE_ARI", "BACKGROUND_SHARE", "EXPLAINED_RHO", "MARGIN", "PHYSICAL", "Baselines",
           "PhysicsMatch", "background_level", "background_share", "compute_baselines",
           "patch_boxes",
           "pfm_descriptors", "plain_descriptors", "spearman_table", "verdict",
           "window_means"]

# A latent whose |Spearman rho| with a descriptor or a principal component reaches this is
# "explained" by it: the map shows that descriptor again (rank order 0.9 ~ the same picture).
EXPLAINED_RHO = 0.9
# Classes agreeing with PCA k-means at this ARI or more are "the same classes as PCA".
AGREE_ARI = 0.8
# Classes explaining at least this share of the background level's variance are reported as
# splitting the image by its background.
BACKGROUND_SHARE = 0.5
# Descriptors of the physics, when known (pfm_descriptors): the verdict asks whether the model
# follows them better than the plain descriptors and the principal components do.
PHYSICAL = ("switched_fraction", "wall_density")
# "Better" means by at least this much |Spearman rho| (latents) or eta squared (classes); the
# spread of the PFM latents' |rho| over three training seeds was up to ~0.1 (RESULTS.md).
MARGIN = 0.05


@dataclass(frozen=True)
class PhysicsMatch:
    """How well the model and its baselines follow one physical descriptor of the patches.

    latent, latent_rho : the active latent with the largest |Spearman rho| with it ("" and
        0.0 when no latent is active).
    baseline, baseline_rho : the same over every other descriptor and principal component.
    classes_model, classes_kmeans : eta squared of the descriptor on the model's classes and
        on the PCA k-means classes (None without classes).
    """

    latent: str
    latent_rho: float
    baseline: str
    baseline_rho: float
    classes_model: float | None = None
    classes_kmeans: float | None = None

    @property
    def model_adds(self) -> bool:
        """A latent or the classes follow the descriptor better than every baseline."""
        if abs(self.latent_rho) >= abs(self.baseline_rho) + MARGIN:
            return True
        return (self.classes_model is not None and self.classes_kmeans is not None
                and self.classes_model >= self.classes_kmeans + MARGIN)

    def to_dict(self) -> dict[str, Any]:
        return {"latent": {"by": self.latent, "rho": _num(self.latent_rho)},
                "baseline": {"by": self.baseline, "rho": _num(self.baseline_rho)},
                "classes_eta2": {"model": _num(self.classes_model),
                                 "pca_kmeans": _num(self.classes_kmeans)},
                "model_adds": self.model_adds}


@dataclass
class Baselines:
    """Baselines computed on the patches a model saw, and how the model compares.

    latent_names : the model's latents (columns of ``correlations``).
    descriptors : name -> ``(n,)`` value per patch (plain statistics, physical descriptors).
    pca_scores : ``(n, k)`` scores of the first ``k`` principal components of the patches.
    pca_explained : ``(k,)`` fraction of the patch variance each component explains.
    correlations : ``(d + k, len(latent_names))`` Spearman rho of every descriptor, then every
        PCA score (rows, in ``row_names`` order) with every latent; NaN for constant columns.
    row_names : descriptor names then ``PC1..PCk``.
    kmeans_labels : ``(n,)`` k-means on the PCA scores with the model's number of classes.
    gmm_labels : ``(n,)`` BIC-sized Gaussian mixture on the PCA scores.
    gmm_components : size of that mixture.
    ari_kmeans, ari_gmm : ARI of the model's classes against each (None without classes).
    activity : the model's latent activity (collapse check).
    explained : latent -> (the row that explains it best, its rho).
    joint_r2 : latent -> R^2 of its ranks on the ranks of every descriptor and PCA score
        together (a linear least-squares fit with intercept).
    redundant : pairs of active content latents that carry the same signal (|rho| >=
        ``EXPLAINED_RHO`` with each other) and their rho.
    background_share_model, background_share_kmeans : eta squared of the ``background``
        descriptor on the model's classes and on the PCA k-means classes (None without it).
    physics : for every ``PHYSICAL`` descriptor present, the model against its baselines.
    verdict : one line for the report.
    """

    latent_names: list[str]
    descriptors: dict[str, np.ndarray]
    pca_scores: np.ndarray
    pca_explained: np.ndarray
    correlations: np.ndarray
    row_names: list[str]
    kmeans_labels: np.ndarray
    gmm_labels: np.ndarray
    gmm_components: int
    ari_kmeans: float | None
    ari_gmm: float | None
    activity: LatentActivity
    explained: dict[str, tuple[str, float]] = field(default_factory=dict)
    joint_r2: dict[str, float] = field(default_factory=dict)
    redundant: list[tuple[str, str, float]] = field(default_factory=list)
    background_share_model: float | None = None
    background_share_kmeans: float | None = None
    physics: dict[str, PhysicsMatch] = field(default_factory=dict)
    verdict: str = ""

    def rho(self, row: str, latent: str) -> float:
        """Spearman rho of one descriptor (or ``PCk``) with one latent."""
        return float(self.correlations[self.row_names.index(row),
                                       self.latent_names.index(latent)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly block for the results file and the report (no per-patch arrays)."""
        return {
            "verdict": self.verdict,
            "activity": self.activity.to_dict(),
            "correlations_spearman": {
                row: {lat: _num(self.correlations[i, j]) for j, lat in
                      enumerate(self.latent_names)}
                for i, row in enumerate(self.row_names)},
            "explained_by": {k: {"by": by, "rho": _num(r), "joint_r2": _num(self.joint_r2[k])}
                             for k, (by, r) in self.explained.items()},
            "redundant_pairs": [{"a": a, "b": b, "rho": _num(r)} for a, b, r in self.redundant],
            "pca_explained_variance": [float(v) for v in self.pca_explained],
            "pca_kmeans": {"n_classes": int(len(np.unique(self.kmeans_labels))),
                           "ari_vs_model": _num(self.ari_kmeans)},
            "pca_gmm": {"n_classes": int(self.gmm_components),
                        "ari_vs_model": _num(self.ari_gmm)},
            "background_share": {"model": _num(self.background_share_model),
                                 "pca_kmeans": _num(self.background_share_kmeans)},
            "physics": {k: m.to_dict() for k, m in self.physics.items()},
            "thresholds": {"explained_rho": EXPLAINED_RHO, "agree_ari": AGREE_ARI,
                           "background_share": BACKGROUND_SHARE, "physics_margin": MARGIN,
                           "active_ratio": self.activity.threshold},
        }


def _num(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


# ------------------------------------------------------------------------ descriptors


def plain_descriptors(
    raw: Any, image_median: Any, channel_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Mean, standard deviation and fraction above the image median of every patch.

    raw : ``(n, c, w, w)`` patches cut from the un-normalised image (or ``(n, w, w)``).
    image_median : ``(c,)`` median of each channel over the whole image (stack).
    channel_names : names used as suffixes when there is more than one channel.
    Returns ``{"mean": (n,), "std": (n,), "above_median": (n,)}`` for one channel, else the
    same keys suffixed ``_<channel name>``.
    """
    x = check_array(raw, "raw patches", ndim=(3, 4), dtype=np.float64)
    x = x[:, None] if x.ndim == 3 else x
    med = np.broadcast_to(np.asarray(image_median, dtype=np.float64), (x.shape[1],))
    names = list(channel_names) if channel_names is not None else [
        f"ch{i}" for i in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} channel names for {x.shape[1]} channels")
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        suffix = "" if x.shape[1] == 1 else f"_{name}"
        ch = x[:, i].reshape(len(x), -1)
        out[f"mean{suffix}"] = ch.mean(axis=1)
        out[f"std{suffix}"] = ch.std(axis=1)
        out[f"above_median{suffix}"] = (ch > med[i]).mean(axis=1)
    return out


def background_level(image: Any, centers: Any, sigma: float, frames: Any = None) -> np.ndarray:
    """The slow background at every patch: the image smoothed with a Gaussian of ``sigma``
    pixels (a few patch sizes), read at the patch centres.

    image : ``(h, w)`` or ``(t, h, w)`` raw image (one channel). centers : ``(m, 2)``.
    Returns ``(m,)``.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    img = img[None] if img.ndim == 2 else img
    smooth = ndimage.gaussian_filter(img, (0, sigma, sigma), mode="nearest")
    rc = np.rint(np.asarray(centers, dtype=np.float64)).astype(np.int64)
    rc = np.clip(rc, 0, np.array(img.shape[1:]) - 1)
    frm = np.zeros(len(rc), np.int64) if frames is None else np.asarray(frames, np.int64)
    return np.asarray(smooth[frm, rc[:, 0], rc[:, 1]])


def background_share(labels: Any, values: Any) -> float:
    """Eta squared: the share of the variance of ``values`` ``(n,)`` explained by the class
    ``labels`` ``(n,)`` (between-class over total sum of squares; 0 for one class)."""
    lab = np.asarray(labels).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(lab) != len(v):
        raise ValueError(f"labels ({len(lab)}) and values ({len(v)}) must have equal length")
    total = float(((v - v.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    _, inv = np.unique(lab, return_inverse=True)
    counts = np.bincount(inv)
    means = np.bincount(inv, weights=v) / counts
    return float((counts * (means - v.mean()) ** 2).sum() / total)


def patch_boxes(patches: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(rows, cols)`` of every patch, as the extractors cut them.

    Sliding windows (``grid_shape`` set) are centred at ``top + (window - 1) / 2``; patches
    around atoms at ``round(centre) - window // 2`` (see ``extract_patches``).
    """
    c = np.asarray(patches.centers, dtype=np.float64)
    if patches.grid_shape is not None:
        tl = np.rint(c - (patches.window - 1) / 2.0).astype(np.int64)
    else:
        tl = np.rint(c).astype(np.int64) - patches.window // 2
    return tl[:, 0], tl[:, 1]


def window_means(maps: Any, tops: Any, lefts: Any, window: int,
                 frames: Any = None) -> np.ndarray:
    """Mean of ``maps`` ``(h, w)`` or ``(t, h, w)`` over every ``window x window`` box whose
    top-left corner is ``(tops[i], lefts[i])`` in frame ``frames[i]``; boxes are clipped to
    the image. Returns ``(m,)`` (one summed-area table, no loop over boxes)."""
    m = np.asarray(maps, dtype=np.float64)
    m = m[None] if m.ndim == 2 else m
    t, h, w = m.shape
    top = np.clip(np.asarray(tops, np.int64), 0, h)
    left = np.clip(np.asarray(lefts, np.int64), 0, w)
    bottom = np.clip(top + window, 0, h)
    right = np.clip(left + window, 0, w)
    frm = np.zeros(len(top), np.int64) if frames is None else np.asarray(frames, np.int64)
    sat = np.zeros((t, h + 1, w + 1))
    sat[:, 1:, 1:] = m.cumsum(1).cumsum(2)
    total = (sat[frm, bottom, right] - sat[frm, top, right] - sat[frm, bottom, left]
             + sat[frm, top, left])
    area = np.maximum((bottom - top) * (right - left), 1)
    return np.asarray(total / area)


def pfm_descriptors(phase: Any, patches: Any) -> dict[str, np.ndarray]:
    """Switched fraction and wall density of every patch, from the PFM phase.

    phase : ``(h, w)`` or ``(t, h, w)`` phase in degrees (the frames of ``patches``). Domains
    and walls come from the Gaussian wall finder on the polarisation projection of the phase
    (``find_walls(phase, "gaussian", phase=True)``: minority state = switched). Returns
    ``{"switched_fraction": (m,), "wall_density": (m,)}``, wall pixels per patch pixel.
    """
    from latentatlas.descriptors.walls import find_walls

    walls = find_walls(np.asarray(phase, dtype=np.float64), "gaussian", phase=True)
    assert walls.domains is not None  # the gaussian method segments domains
    tops, lefts = patch_boxes(patches)
    frames = np.asarray(patches.frames)
    return {
        "switched_fraction": window_means(walls.domains, tops, lefts, patches.window, frames),
        "wall_density": window_means(walls.mask, tops, lefts, patches.window, frames),
    }


# ------------------------------------------------------------------------ statistics


def spearman_table(rows: Mapping[str, np.ndarray], columns: np.ndarray) -> np.ndarray:
    """Spearman rho of every row vector ``(n,)`` with every column of ``columns`` ``(n, k)``;
    NaN where either is constant. Returns ``(len(rows), k)``."""
    cols = np.asarray(columns, dtype=np.float64)
    rank_c = np.apply_along_axis(stats.rankdata, 0, cols)
    out = np.full((len(rows), cols.shape[1]), np.nan)
    for i, v in enumerate(rows.values()):
        r = stats.rankdata(np.asarray(v, dtype=np.float64))
        for j in range(cols.shape[1]):
            if np.ptp(r) > 0 and np.ptp(rank_c[:, j]) > 0:
                out[i, j] = np.corrcoef(r, rank_c[:, j])[0, 1]
    return out


def _joint_r2(rows: Mapping[str, np.ndarray], columns: np.ndarray) -> list[float]:
    """R^2 of the ranks of every column of ``columns`` ``(n, k)`` on the ranks of all rows."""
    design = np.column_stack([np.ones(len(columns))] + [stats.rankdata(v) for v in rows.values()])
    out = []
    for j in range(columns.shape[1]):
        y = stats.rankdata(columns[:, j])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        total = float(((y - y.mean()) ** 2).sum())
        out.append(1.0 - float((resid**2).sum()) / total if total > 0 else 0.0)
    return out


def _strongest(table: np.ndarray, names: Sequence[str]) -> tuple[str, float]:
    """The name and rho of the largest |rho| in a one-row or one-column table ("", 0.0 when
    empty or all NaN)."""
    rho = table.ravel()
    mag = np.nan_to_num(np.abs(rho), nan=-1.0)
    if not len(names) or mag.max() < 0:
        return "", 0.0
    i = int(np.argmax(mag))
    return names[i], float(rho[i])


def _physics(rows: Mapping[str, np.ndarray], z: np.ndarray, names: Sequence[str],
             activity: LatentActivity, labels: np.ndarray | None,
             km_labels: np.ndarray) -> dict[str, PhysicsMatch]:
    """Every ``PHYSICAL`` descriptor in ``rows`` against the active latents and against the
    other rows (plain descriptors and PCA scores)."""
    out: dict[str, PhysicsMatch] = {}
    active = [names.index(n) for n in activity.active_names]
    baselines = {k: v for k, v in rows.items() if k not in PHYSICAL}
    for target in PHYSICAL:
        if target not in rows:
            continue
        v = rows[target][:, None]
        lat = _strongest(spearman_table({"t": v[:, 0]}, z[:, active]),
                         [names[i] for i in active])
        base = _strongest(spearman_table(baselines, v), list(baselines))
        out[target] = PhysicsMatch(
            latent=lat[0], latent_rho=lat[1], baseline=base[0], baseline_rho=base[1],
            classes_model=None if labels is None else background_share(labels, v[:, 0]),
            classes_kmeans=None if labels is None else background_share(km_labels, v[:, 0]))
    return out


def compute_baselines(
    patches: Any,
    latents: Any,
    latent_names: Sequence[str],
    activity: LatentActivity,
    model_labels: Any = None,
    descriptors: Mapping[str, np.ndarray] | None = None,
    n_pca: int | None = None,
    max_components: int = 6,
    seed: int = 0,
    max_samples: int = 20000,
) -> Baselines:
    """Baselines on the patches the model saw, compared with the model.

    patches : ``(n, ...)`` the model's input (normalised patches), flattened for PCA.
    latents : ``(n, k)`` posterior means, columns named ``latent_names``.
    activity : :func:`~latentatlas.models.latents.latent_activity` of those latents.
    model_labels : ``(n,)`` the model's classes (None: no class comparison).
    descriptors : name -> ``(n,)`` plain / physical descriptors (:func:`plain_descriptors`,
        :func:`pfm_descriptors`).
    n_pca : principal components to keep (default: as many as content latents, at least 2).
    max_components : the largest mixture tried for the PCA-GMM baseline.
    max_samples : PCA and k-means are fitted on a seeded subset of at most this many patches
        (then applied to all).
    """
    x = check_array(patches, "patches", dtype=np.float64)
    x = x.reshape(len(x), -1)
    z = check_array(latents, "latents", ndim=2, dtype=np.float64)
    names = list(latent_names)
    if z.shape != (len(x), len(names)):
        raise ValueError(f"latents must be ({len(x)}, {len(names)}) (one row per patch, one "
                         f"column per latent name), got {z.shape}")
    desc = {k: check_array(v, f"descriptor {k!r}", ndim=1, dtype=np.float64)
            for k, v in (descriptors or {}).items()}
    for k, v in desc.items():
        if len(v) != len(x):
            raise ValueError(f"descriptor {k!r} has {len(v)} values for {len(x)} patches")
    n_content = len(content_columns(names))
    n_pcs = n_pca if n_pca is not None else max(2, n_content)
    n_pcs = int(min(n_pcs, x.shape[1], len(x)))
    fit_idx = np.arange(len(x))
    if len(x) > max_samples:
        fit_idx = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))
    with threadpool_limits(1):
        pca = PCA(n_components=n_pcs, random_state=seed).fit(x[fit_idx])
        scores = pca.transform(x)
    pcs = {f"PC{i + 1}": scores[:, i] for i in range(n_pcs)}
    rows = {**desc, **pcs}
    corr = spearman_table(rows, z)

    labels = None if model_labels is None else np.asarray(model_labels).ravel()
    n_classes = 1 if labels is None else max(1, len(np.unique(labels)))
    with threadpool_limits(1):
        km = KMeans(n_clusters=min(n_classes, len(x)), n_init=4, random_state=seed)
        km.fit(scores[fit_idx])
        km_labels = km.predict(scores)
    gmm = gmm_labels(scores, max_components=max_components, random_state=seed,
                     feature_names=list(pcs))
    ari_km = ari_gmm = None
    if labels is not None:
        ari_km = float(adjusted_rand_score(labels, km_labels))
        ari_gmm = float(adjusted_rand_score(labels, gmm.labels))

    row_names = list(rows)
    explained: dict[str, tuple[str, float]] = {}
    for j, name in enumerate(names):
        col = np.nan_to_num(np.abs(corr[:, j]), nan=-1.0)
        i = int(np.argmax(col))
        explained[name] = (row_names[i], float(corr[i, j]))
    joint_r2 = dict(zip(names, _joint_r2(rows, z), strict=True))
    active_content = activity.active_content
    redundant: list[tuple[str, str, float]] = []
    for a_i, a in enumerate(active_content):
        for b in active_content[a_i + 1:]:
            r = float(stats.spearmanr(z[:, names.index(a)], z[:, names.index(b)]).statistic)
            if abs(r) >= EXPLAINED_RHO:
                redundant.append((a, b, r))
    share_model = share_km = None
    if "background" in desc:
        share_km = background_share(km_labels, desc["background"])
        if labels is not None:
            share_model = background_share(labels, desc["background"])
    result = Baselines(
        latent_names=names, descriptors=desc, pca_scores=scores,
        pca_explained=np.asarray(pca.explained_variance_ratio_), correlations=corr,
        row_names=row_names, kmeans_labels=km_labels, gmm_labels=gmm.labels,
        gmm_components=gmm.n_components, ari_kmeans=ari_km, ari_gmm=ari_gmm,
        activity=activity, explained=explained, joint_r2=joint_r2, redundant=redundant,
        background_share_model=share_model, background_share_kmeans=share_km,
        physics=_physics(rows, z, names, activity, labels, km_labels),
    )
    result.verdict = verdict(result, n_classes if labels is not None else None)
    return result


def verdict(b: Baselines, n_classes: int | None) -> str:
    """One line: collapsed or not, what each active content latent follows, whether the
    classes are PCA's, and whether anything is left that the baselines did not show."""
    act = b.activity
    if act.collapsed:
        ratios = ", ".join(f"{n} {r:.2f}" for n, r in zip(act.names, act.ratio, strict=True)
                           if is_content_latent(n))
        return (f"COLLAPSED: no content latent is active (spread/posterior std {ratios}; "
                f"needs >= {act.threshold}): the content maps and classes show noise. "
                f"Baseline PCA: PC1 explains {b.pca_explained[0]:.0%} of the variance.")
    parts, new = [], []
    for name in act.active_content:
        by, r = b.explained[name]
        if abs(r) >= EXPLAINED_RHO:
            parts.append(f"{name} follows {by} (rho {r:+.2f})")
        elif b.joint_r2[name] >= EXPLAINED_RHO**2:
            parts.append(f"{name} is a mix of the descriptors and PCs (R2 {b.joint_r2[name]:.2f}; "
                         f"closest {by}, rho {r:+.2f})")
        else:
            parts.append(f"{name} is not explained by the descriptors and PCs (closest {by}, "
                         f"rho {r:+.2f}; together R2 {b.joint_r2[name]:.2f})")
            new.append(name)
    inactive = [n for n in act.content if n not in act.active_content]
    if inactive:
        parts.append(f"inactive: {', '.join(inactive)}")
    for a, c, r in b.redundant:
        parts.append(f"{a} and {c} carry the same signal (rho {r:+.2f})")
    new_classes = False
    if n_classes is not None and b.ari_kmeans is not None:
        if n_classes <= 1:
            parts.append("one class")
        else:
            same = b.ari_kmeans >= AGREE_ARI
            share = b.background_share_model
            by_background = share is not None and share >= BACKGROUND_SHARE
            # classes that cut the image by its background are no finding, whatever PCA does
            new_classes = not same and not by_background
            parts.append(f"{n_classes} classes, ARI {b.ari_kmeans:.2f} vs PCA k-means "
                         f"({'same' if same else 'different'} split)")
            if by_background:
                parts.append(f"the classes split the image by its slow background level (they "
                             f"explain {share:.0%} of its variance): regions, not structure, "
                             "unless the structure is that large")
    if b.physics:
        # the physics is known: what the model shows beyond the baselines is judged on it
        def match(t: str, m: PhysicsMatch) -> str:
            model = f"{m.latent} {abs(m.latent_rho):.2f}" if m.latent else "no active latent"
            text = f"{t} |rho| {model} vs {m.baseline} {abs(m.baseline_rho):.2f}"
            if m.classes_model is not None and m.classes_kmeans is not None:
                text += (f", classes eta2 {m.classes_model:.2f} vs PCA k-means "
                         f"{m.classes_kmeans:.2f}")
            return text

        adds = [t for t, m in b.physics.items() if m.model_adds]
        listed = "; ".join(match(t, m) for t, m in b.physics.items())
        if adds:
            head = f"Beyond the baselines on {', '.join(adds)}: {listed}."
        else:
            head = (f"The baselines explain as much: no latent and no class split follows "
                    f"{' or '.join(b.physics)} better than a plain descriptor or PC ({listed}).")
    elif new or new_classes:
        found = ", ".join(new + (["classes"] if new_classes else []))
        head = (f"Not shown by the baselines: {found} (structure or artefact: compare the "
                "maps).")
    else:
        head = "Nothing beyond the baselines: the active latents repeat descriptors or PCs."
    return head + " " + "; ".join(parts) + "."
