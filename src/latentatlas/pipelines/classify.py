"""Which defect is this? A folder of labelled crops in, classes out.

The job, step by step:

1. **Crops** (:func:`latentatlas.datasets.crops.load_labelled_crops`): one image per file,
   its class from its sub-folder or a CSV, its pixel size from the file's calibration.
2. **Patches** (:func:`prepare_defects`): every crop is centred on its defect (the centroid
   of the defect's given atom coordinates, or the bright dopant columns found in the image),
   resampled to one physical pixel size and cut into ``2 x views`` square patches: rotations
   by random angles, each also mirrored, so that the models learn classes that do not depend
   on how the lattice happened to lie in the microscope. Intensities run from the lattice's
   holes (0) to the defect's brightest dopant (1) and everything below ``dopant_threshold``
   is set to zero: the classes are told by the dopants and their arrangement, and what lies
   below (carbon lattice, noise, the imaging conditions of each frame) is what split crops
   of one class by the frame they came from (benchmarks/RESULTS.md, issue 14).
3. **Model** (:func:`classify_defects`):

   - ``ssvae`` / ``ssrvae``: semi-supervised (the second with rotation and translation
     latents). A stratified ``labelled_fraction`` of the crops gives its label (at least one
     crop of every class with two or more, never all of a class). Every loss term sees the
     class prior p(y) (the labels' frequencies) but the prediction does not: the network's
     logits plus log p(y) are the model's q(y | x) in training, the logits alone decide the
     class (logit adjustment, Menon et al. 2021), so a rare class is not out-voted by its
     prior (``logit_adjustment=0``: inverse-frequency weights on the labelled cross-entropy
     instead, the earlier default). The class must agree between two views of one crop
     (consistency). An optional
     ``validation_fraction`` of the labelled crops is held back as an explicit validation set
     (its labels are not trained on; scores after every epoch are in the history). The
     prediction (``semi_prediction="spread"``, the default) multiplies the classifier's
     probabilities by class-balanced label spreading from the seen crops over the PCA
     scores of the unrotated patches (:func:`spread_prediction`; its neighbours and reach
     are chosen by leave-one-labelled-out on the seen crops): a complex seen once is found
     again among the crops that look like it, which the view-trained classifier alone
     missed on the real library (benchmarks/RESULTS.md, issue 14). The classifier alone is
     scored beside it (``classifier``). Both are scored on the crops whose label the model
     did not see.
   - ``jvae`` / ``jrvae``: no labels. The joint VAE with a learned class prior: a Gaussian
     mixture over the content latents whose weights are fitted to the data, so classes
     keep their real sizes. The weights' Dirichlet ``prior_concentration`` is 1 (maximum
     likelihood: emptying a class is neither rewarded nor penalised; below 1 a class
     holding almost no crop empties, which let the big classes absorb rare ones; chosen by
     the ELBO, benchmarks/RESULTS.md, issue 14). K is ``n_classes``, by default the number of classes in the
     labels; the classes a run leaves empty are reported. ``restarts`` runs from different
     seeds, the one with the highest ELBO kept among those that use more than one class (no
     labels are used to choose). Scored on every labelled crop after matching its classes to
     the labels (Hungarian).

   Class probabilities of a crop are the mean over its views.
4. **Baselines** on the same patches and split: k-means and a GMM on PCA scores of the
   unrotated patches (matched to the labels like the joint VAE), and, for the
   semi-supervised models, logistic regression on the pixels and on the PCA scores and a
   small CNN (the VAE's classifier network trained on the labelled crops' views alone).
5. **Results**: ``results.json`` (configuration, split, scores of the model and of every
   baseline: accuracy, balanced accuracy, per-class recall, ARI, confusion matrix; and per
   crop: file, label, prediction, the classifier's prediction, probabilities, centre,
   content latents; the prediction rule and its leave-one-out scores), ``predictions.csv``,
   the model, figures (confusion, scores, galleries, latent abundance by class), ``index.html``
   and ``explorer.html`` (the crops' patches and latents, linked).

``classify`` is the Python entry point; ``latentatlas classify`` is a thin shell over it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentatlas._files import safe_text, write_text_atomic
from latentatlas._latent_names import content_columns
from latentatlas.analysis.abundance import AbundanceTable, latent_abundance
from latentatlas.analysis.classes import (
    class_scores,
    match_labels,
    neighbour_graph,
    spread_labels,
    stratified_labels,
)
from latentatlas.datasets.crops import LabelledCrops, load_labelled_crops
from latentatlas.descriptors.defects import defect_centre, defect_patches
from latentatlas.pipelines.outputs import OutputPlan, check_output, results_folder

if TYPE_CHECKING:
    from latentatlas.models.registry import Capabilities

log = logging.getLogger(__name__)

__all__ = ["CLASSIFY_MODELS", "ClassifyConfig", "ClassifyResult", "DefectSet", "classify",
           "classify_defects", "prepare_defects"]

#: The registered families the command trains; a family that needs labels is semi-supervised,
#: one with pose latents gets the transform decoder (the registry's capabilities).
CLASSIFY_MODELS: tuple[str, ...] = ("ssvae", "ssrvae", "jvae", "jrvae")
_CENTRES = ("auto", "given", "finder")
# Defaults by model kind (semi-supervised or not) for the fields left None, selected by
# cross-validation on the development library (benchmarks/RESULTS.md, issue 14).
_KIND_DEFAULTS: dict[bool, dict[str, Any]] = {
    True: {"dopant_threshold": 0.0, "encoder": "conv", "epochs": 20, "consistency": 0.0},
    False: {"dopant_threshold": 0.38, "encoder": "mlp", "epochs": 30, "consistency": 1.0},
}
_FINDERS = ("peaks", "log", "dcnn")
SEMI_PREDICTIONS = ("spread", "classifier")
#: (neighbours, alpha) of the label spreading, in the order that breaks ties of the
#: leave-one-labelled-out selection (fewer neighbours and shorter reach first)
SPREAD_GRID = ((5, 0.9), (5, 0.99), (10, 0.9), (10, 0.99), (20, 0.9), (20, 0.99))
# Leave-one-labelled-out hides at most this many seen crops of each class (the first ones):
# its cost is one spreading per hidden crop and grid entry, and a score per class from 20
# crops is enough to rank the grid. The dev library has at most 10 seen crops per class.
MAX_HIDDEN_PER_CLASS = 20


@dataclass(frozen=True)
class ClassifyConfig:
    """Every choice of a classify run (saved in ``results.json``). The kind defaults were
    selected by cross-validation on the LibraryNet development crops; ``logit_adjustment=1``
    was fixed a priori and ``prior_concentration=1`` chosen by the ELBO; ``semi_prediction``
    ``spread`` chooses its neighbours and reach per run from the seen labels alone, its design
    was compared with others on the same crops (benchmarks/RESULTS.md, issue 14).

    model: ``ssvae``, ``ssrvae`` (semi-supervised), ``jvae``, ``jrvae`` (no labels).
    labelled_fraction: fraction of the labelled crops whose label the semi-supervised model
        sees (stratified per class). validation_fraction: fraction of those held back as an
        explicit validation set (0: none, every seen label is trained on).
    n_classes: K (None: the number of classes in the labels).
    pixel_size: pm per pixel of the patches; window: patch side in pixels.
    views: random rotations per crop (each also mirrored: 2 x views patches per crop).
    dopant_threshold: intensities below this fraction of the brightest dopant are set to 0
        (None: the default of the model kind, see ``value``).
    centre: ``given`` (the defect's atom coordinates in the file), ``finder`` (the bright
        dopant columns found by ``finder``), ``auto`` (given where a crop has them).
    latent_dim, hidden, encoder, sigma (Gaussian likelihood width), epochs, batch_size, lr:
        the model and its training. consistency: weight of the class agreement between two
        views of a crop. Fields left None (dopant_threshold, encoder, epochs, consistency)
        take the default of the model kind (``_KIND_DEFAULTS``; ``value`` and ``resolved``).
        alpha: weight of the labelled cross-entropy (semi-supervised). logit_adjustment:
        tau of the semi-supervised model's logit adjustment (0: inverse-frequency weights).
        semi_prediction: how the semi-supervised prediction is made: ``classifier`` (argmax
        of the model's class probabilities) or ``spread`` (those probabilities times label
        spreading over the PCA scores of the patches, see :func:`spread_prediction`; both are
        scored and written).
        label_oversampling: the labelled views are repeated to about this fraction of each
        epoch. prior_concentration: Dirichlet alpha of the joint VAE's class prior.
        warmup: fraction of the joint VAE's epochs trained as a plain VAE before the classes.
        restarts: joint-VAE runs, the highest ELBO kept. cnn_epochs: the CNN baseline's.
    seed: model and baselines; split_seed: the labelled split (None: ``seed``).
    model_options: further config fields of the registered model.
    """

    model: str = "ssvae"
    labelled_fraction: float = 0.2
    validation_fraction: float = 0.0
    n_classes: int | None = None
    pixel_size: float = 30.0
    window: int = 32
    views: int = 6
    dopant_threshold: float | None = None
    centre: str = "auto"
    finder: str = "peaks"
    latent_dim: int = 4
    hidden: int = 128
    encoder: str | None = None
    sigma: float = 0.1
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 2e-3
    consistency: float | None = None
    alpha: float = 50.0
    logit_adjustment: float = 1.0
    semi_prediction: str = "spread"
    label_oversampling: float = 0.5
    prior_concentration: float = 1.0
    warmup: float = 0.5
    restarts: int = 4
    cnn_epochs: int = 80
    seed: int = 0
    split_seed: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in CLASSIFY_MODELS:
            raise ValueError(f"model must be one of {sorted(CLASSIFY_MODELS)}, got {self.model!r}")
        if not 0 < self.labelled_fraction < 1:
            raise ValueError(f"labelled_fraction must be in (0, 1), got {self.labelled_fraction}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got "
                             f"{self.validation_fraction}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 (or None for the labels' classes), got "
                             f"{self.n_classes}")
        if not self.pixel_size > 0:
            raise ValueError(f"pixel_size must be > 0 pm per pixel, got {self.pixel_size}")
        if self.window < 16 or self.window % 8:
            raise ValueError(f"window must be a multiple of 8 and >= 16 pixels, got {self.window}")
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.dopant_threshold is not None and not 0 <= self.dopant_threshold < 1:
            raise ValueError(f"dopant_threshold must be in [0, 1) or None (the model's "
                             f"default), got {self.dopant_threshold}")
        if self.centre not in _CENTRES:
            raise ValueError(f"centre must be one of {_CENTRES}, got {self.centre!r}")
        if self.finder not in _FINDERS:
            raise ValueError(f"finder must be one of {_FINDERS}, got {self.finder!r}")
        for name in ("latent_dim", "hidden", "epochs", "batch_size", "restarts", "cnn_epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.encoder not in (None, "mlp", "conv"):
            raise ValueError(f"encoder must be 'mlp', 'conv' or None, got {self.encoder!r}")
        if self.consistency is not None and self.consistency < 0:
            raise ValueError(f"consistency must be >= 0, got {self.consistency}")
        if not self.lr > 0 or not self.sigma > 0:
            raise ValueError(f"lr and sigma must be > 0, got {self.lr}, {self.sigma}")
        if self.logit_adjustment < 0:
            raise ValueError(f"logit_adjustment must be >= 0, got {self.logit_adjustment}")
        if self.semi_prediction not in SEMI_PREDICTIONS:
            raise ValueError(f"semi_prediction must be one of {SEMI_PREDICTIONS}, got "
                             f"{self.semi_prediction!r}")
        if not 0 < self.label_oversampling < 1:
            raise ValueError(f"label_oversampling must be in (0, 1), got "
                             f"{self.label_oversampling}")
        if not 0 < self.warmup < 1:
            raise ValueError(f"warmup must be in (0, 1), got {self.warmup}")

    @property
    def semi_supervised(self) -> bool:
        return _capabilities(self.model).needs_labels

    def value(self, name: str) -> Any:
        """The setting ``name`` in use: the field, or when it is None the default of the
        model kind (semi-supervised or joint)."""
        given = getattr(self, name)
        return _KIND_DEFAULTS[self.semi_supervised][name] if given is None else given

    def resolved(self) -> dict[str, Any]:
        """Every setting with the kind defaults filled in (what results.json records)."""
        out = self.to_dict()
        out.update({name: self.value(name) for name in _KIND_DEFAULTS[True]})
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DefectSet:
    """Crops ready for a model. views: (n, 2 V, w, w) rotated and mirrored patches of each
    crop; canonical: (n, w, w) the unrotated patch (for the baselines); centres: (n, 2)
    (row, col) in crop pixels; centring: how each centre was found (``given`` or a finder)."""

    crops: LabelledCrops
    views: np.ndarray
    canonical: np.ndarray
    centres: np.ndarray
    centring: list[str]

    def __len__(self) -> int:
        return len(self.crops)


@dataclass
class ClassifyResult:
    """What :func:`classify_defects` found. labelled / validation / scored: (n,) masks of
    the crops whose label the model saw, held back for validation, and scored on.
    predictions: (n,) label index per crop (-1: a joint-VAE class matched to no label);
    probabilities: (n, K) over the model's classes; class_ids: (K,) the label of each model
    class (-1 none). scores: ``model`` and ``baselines`` (name -> :func:`class_scores`).
    latent_names, latents, latents_std: the content latents of every crop, (n, d) posterior
    means and standard deviations averaged over its views. classifier_predictions: (n,) the
    argmax of ``probabilities`` alone (scores ``classifier``), prediction_scores: (n, K) the
    class scores ``predictions`` is the argmax of (``config.semi_prediction``; the
    probabilities themselves for ``classifier`` and the joint models), prediction_rule: how.
    restarts: (ELBO, classes occupied) of every joint-VAE restart. occupied: model classes
    holding a crop."""

    config: ClassifyConfig
    data: DefectSet
    n_classes: int
    labelled: np.ndarray
    validation: np.ndarray
    scored: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    class_ids: np.ndarray
    scores: dict[str, Any]
    baseline_predictions: dict[str, np.ndarray]
    model: Any
    latent_names: list[str]
    latents: np.ndarray
    latents_std: np.ndarray
    classifier_predictions: np.ndarray
    prediction_scores: np.ndarray
    prediction_rule: dict[str, Any]
    restarts: list[tuple[float, int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None

    @property
    def occupied(self) -> int:
        return int(len(np.unique(self.probabilities.argmax(1))))

    def abundance(self) -> AbundanceTable:
        """Per-class statistics of every content latent over the labelled crops, with eta and
        the Kruskal-Wallis p (does a latent differ between the defect classes?)."""
        return latent_abundance(self.latents, self.data.crops.labels, self.latent_names,
                                self.data.crops.class_names)


def crop_latents(model: Any, views: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names and (n, d) means and standard deviations of the content latents of every crop,
    averaged over its views (n, V, w, w); pose latents are left out (their mean over random
    rotations says nothing)."""
    n, v, w, _ = views.shape
    lat = model.encode(views.reshape(n * v, 1, w, w))
    idx = content_columns(lat.names)
    mean = np.asarray(lat.mean)[:, idx].reshape(n, v, -1).mean(1)
    std = np.asarray(lat.std)[:, idx].reshape(n, v, -1).mean(1)
    return [lat.names[i] for i in idx], mean, std


# ------------------------------------------------------------------------------ patches


def prepare_defects(crops: LabelledCrops, config: ClassifyConfig) -> DefectSet:
    """Centre every crop on its defect and cut its views (see the module docstring)."""
    if len(crops) < 4:
        raise ValueError(f"{len(crops)} crops; classification needs at least 4")
    rng = np.random.default_rng(config.seed)
    views, canonical, centres, how = [], [], [], []
    for i, image in enumerate(crops.images):
        given = crops.defect_coords[i]
        if config.centre == "given" and given is None:
            name = crops.files[i] or f"crop {i}"
            raise ValueError(f"{safe_text(name)} has no defect coordinates; use centre='auto' "
                             "or 'finder' to find the defect in the image")
        use = given if config.centre != "finder" else None
        found = defect_centre(image, crops.pixel_sizes[i], use, finder=config.finder)
        angles = rng.uniform(0.0, 2 * np.pi, config.views)
        px = crops.pixel_sizes[i]
        v = defect_patches(image, px, found.centre, angles=angles, mirror=True,
                           target_pixel=config.pixel_size, window=config.window)
        c = defect_patches(image, px, found.centre, target_pixel=config.pixel_size,
                           window=config.window)[0]
        views.append(v)
        canonical.append(c)
        centres.append(found.centre)
        how.append(found.method)
    t = float(config.value("dopant_threshold"))

    def cut(a: np.ndarray) -> np.ndarray:
        return (np.clip(a - t, 0.0, None) / (1.0 - t)).astype(np.float32)

    return DefectSet(crops, cut(np.stack(views)), cut(np.stack(canonical)), np.stack(centres),
                     how)


# ------------------------------------------------------------------------------ split


def _split(y: np.ndarray, config: ClassifyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Masks (n,) of the crops whose label is trained on and of the validation crops."""
    known = y >= 0
    split_seed = config.seed if config.split_seed is None else config.split_seed
    if not config.semi_supervised:
        return np.zeros(len(y), bool), np.zeros(len(y), bool)
    if known.sum() < 2:
        raise ValueError("the semi-supervised models need labelled crops (sub-folders or a CSV "
                         "with a label column); use --model jvae for unlabelled crops")
    seen = np.zeros(len(y), bool)
    seen[known] = stratified_labels(y[known], config.labelled_fraction, split_seed)
    validation = np.zeros(len(y), bool)
    if config.validation_fraction > 0:
        idx = np.flatnonzero(seen)
        held = stratified_labels(y[idx], config.validation_fraction, split_seed + 1)
        validation[idx[held]] = True
        seen &= ~validation
    if len(np.unique(y[seen])) < 2:
        raise ValueError(f"the labelled part ({int(seen.sum())} crops) holds fewer than two "
                         "classes; raise labelled_fraction")
    return seen, validation


# ------------------------------------------------------------------------------ model


def _train_options(config: ClassifyConfig, seed: int, epochs: int | None = None) -> dict[str, Any]:
    return dict(epochs=epochs or config.value("epochs"), batch_size=config.batch_size,
                lr=config.lr, seed=seed, progress=False, test_fraction=0.0)


def _capabilities(model: str) -> Capabilities:
    from latentatlas.models.registry import capabilities

    return capabilities(model)


def _model_config(config: ClassifyConfig) -> dict[str, Any]:
    return {"latent_dim": config.latent_dim, "hidden": config.hidden,
            "encoder": config.value("encoder"),
            "decoder": "transform" if _capabilities(config.model).has_pose else "mlp",
            "sigma": config.sigma, "consistency": config.value("consistency"),
            **config.model_options}


def _fit_semi(data: DefectSet, y: np.ndarray, seen: np.ndarray, validation: np.ndarray,
              k: int, config: ClassifyConfig) -> tuple[Any, np.ndarray]:
    from latentatlas.models import get_model

    n, v, w, _ = data.views.shape
    X = data.views.reshape(n * v, 1, w, w)
    groups = np.repeat(np.arange(n), v)
    train_y = np.repeat(np.where(seen, y, -1), v)
    # one rare-class correction at a time: the logit adjustment, or without it inverse
    # class-frequency weights on the labelled cross-entropy
    options: dict[str, Any] = {"n_classes": k, "alpha": config.alpha,
                               "class_balanced": not config.logit_adjustment,
                               "class_prior": "labelled",
                               "logit_adjustment": config.logit_adjustment,
                               **_model_config(config)}
    if _capabilities(config.model).has_pose:  # ssrvae: its classifier sees the crop as given
        options.setdefault("canonical_classifier", False)
    model = get_model(config.model, (1, w, w), seed=config.seed, **options)
    val = None
    if validation.any():
        val = (data.views[validation].reshape(-1, 1, w, w), np.repeat(y[validation], v))
    model.fit(X, train_y, labelled_fraction=config.label_oversampling, groups=groups,
              validation=val, **_train_options(config, config.seed))
    return model, model.predict_proba(X).reshape(n, v, -1).mean(1)


def _fit_joint(data: DefectSet, k: int, config: ClassifyConfig
               ) -> tuple[Any, np.ndarray, list[tuple[float, int]]]:
    from latentatlas.models import get_model

    n, v, w, _ = data.views.shape
    X = data.views.reshape(n * v, 1, w, w)
    groups = np.repeat(np.arange(n), v)
    options = {**_model_config(config), "discrete": (k,), "class_prior": "learned",
               "prior_concentration": config.prior_concentration}
    if _capabilities(config.model).has_pose:  # jrvae
        options.setdefault("capacity_covers_pose", False)
    runs = []
    for r in range(config.restarts):
        seed = config.seed * config.restarts + r
        model = get_model(config.model, (1, w, w), seed=seed, **options)
        model.fit(X, groups=groups, warmup=config.warmup, **_train_options(config, seed))
        proba = model.predict_proba(X).reshape(n, v, -1).mean(1)
        occupied = len(np.unique(proba.argmax(1)))
        runs.append((model.elbo(X), occupied, model, proba))
        log.info("restart %d (seed %d): ELBO %.2f, %d classes occupied", r, seed, runs[-1][0],
                 occupied)
    # the highest ELBO wins, but a run that put every crop in one class answers no question
    # about classes (and such merged runs reached the highest ELBO on the real library):
    # it is kept only when every restart merged
    split = [run for run in runs if run[1] > 1] or runs
    _, _, best, proba = max(split, key=lambda run: run[0])
    return best, proba, [(run[0], run[1]) for run in runs]


# ------------------------------------------------------------------------------ prediction


def spread_prediction(spaces: dict[str, np.ndarray], y: np.ndarray, seen: np.ndarray,
                      proba: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The semi-supervised prediction ``spread``: class scores (n, K), rows summing to 1, and
    a record of how they were made.

    The model's class probabilities ``proba`` (n, K) are multiplied by class-balanced label
    spreading (:func:`spread_labels`) from the seen labels (``y`` where ``seen``) over the
    crops' features in one of ``spaces`` (name -> (n, d), label-free; in the pipeline the PCA
    scores of the unrotated patches, where crops of one rare complex can sit together although
    the view-trained classifier has seen one of them). The
    space, neighbours and alpha (``SPREAD_GRID``) come from leave-one-labelled-out on the seen
    crops alone: each seen crop of a class with two or more seen crops is hidden in turn and
    predicted by the spreading alone (the classifier was trained on its label, so its
    probabilities would vouch for themselves); the highest balanced accuracy wins, ties go to
    the earlier space, then the earlier grid entry. No label of an unseen crop is used.
    """
    n, k = proba.shape
    labels = np.where(seen, y, -1)
    counts = np.bincount(labels[seen], minlength=k)
    held = np.flatnonzero(seen & (counts[np.clip(labels, 0, None)] >= 2))
    held = np.concatenate([held[y[held] == c][:MAX_HIDDEN_PER_CLASS]
                           for c in np.unique(y[held])]).astype(np.int64) if len(held) else held
    loo: dict[str, float] = {}
    candidates = [(space, nb, a) for space in spaces for nb, a in SPREAD_GRID]
    # the graph depends on the space and the neighbours only: built once for all hidden crops
    graphs = {(space, nb): neighbour_graph(spaces[space], nb)
              for space, nb, _ in candidates}
    for space, neighbours, alpha in candidates:
        hits = np.zeros(len(held), bool)
        for j, i in enumerate(held):
            hidden = labels.copy()
            hidden[i] = -1
            hits[j] = (spread_labels(graphs[space, neighbours], hidden, alpha)[i].argmax()
                       == y[i])
        recalls = [hits[y[held] == c].mean() for c in np.unique(y[held])]
        loo[f"{space}/{neighbours}/{alpha:g}"] = float(np.mean(recalls)) if recalls else 0.0
    values = list(loo.values())
    space, neighbours, alpha = candidates[max(range(len(values)), key=lambda g: (values[g], -g))]
    spread = np.zeros((n, k))
    scores = spread_labels(graphs[space, neighbours], labels, alpha)
    spread[:, :scores.shape[1]] = scores
    combined = proba * spread
    total = combined.sum(1, keepdims=True)
    combined = np.where(total > 0, combined / np.where(total > 0, total, 1.0), proba)
    info = {"rule": "classifier probabilities x class-balanced label spreading; space, "
                    "neighbours and alpha by leave-one-labelled-out on the seen crops",
            "space": space, "neighbours": neighbours, "alpha": alpha,
            "held_out_crops": len(held), "loo_balanced_accuracy (space/neighbours/alpha)": loo}
    return combined, info


# ------------------------------------------------------------------------------ baselines


def _pca_scores(data: DefectSet, config: ClassifyConfig) -> np.ndarray:
    """(n, <= 10) PCA scores of the flattened unrotated patches (no labels)."""
    from sklearn.decomposition import PCA

    n = len(data)
    flat = data.canonical.reshape(n, -1).astype(np.float64)
    return PCA(min(10, n - 1, flat.shape[1]), random_state=config.seed).fit_transform(flat)


def _matched(y: np.ndarray, clusters: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Cluster numbers -> label indices by Hungarian matching on the scored crops (-1 for a
    cluster matched to none)."""
    mapping = match_labels(y[scored], clusters[scored])
    return np.array([mapping.get(int(c), -1) for c in clusters], np.int64)


def _baselines(data: DefectSet, y: np.ndarray, seen: np.ndarray, scored: np.ndarray, k: int,
               config: ClassifyConfig) -> dict[str, np.ndarray]:
    """Predicted label index per crop (n,) of every baseline on the same patches and split."""
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture

    flat = data.canonical.reshape(len(data), -1).astype(np.float64)
    scores = _pca_scores(data, config)
    out: dict[str, np.ndarray] = {}
    if scored.any():
        km = KMeans(k, n_init=10, random_state=config.seed).fit_predict(scores)
        out["kmeans_pca"] = _matched(y, km, scored)
        gmm = GaussianMixture(k, covariance_type="diag", n_init=4, random_state=config.seed)
        out["gmm_pca"] = _matched(y, gmm.fit(scores).predict(scores), scored)
    if not config.semi_supervised:
        return out
    for name, features in (("logreg_pixels", flat), ("logreg_pca", scores)):
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
        out[name] = clf.fit(features[seen], y[seen]).predict(features).astype(np.int64)
    from latentatlas.models.baselines import NetClassifier

    nv, v, w, _ = data.views.shape
    cnn = NetClassifier((1, w, w), k, hidden=config.hidden, encoder="conv", seed=config.seed)
    cnn.fit(data.views.reshape(nv * v, 1, w, w), np.repeat(np.where(seen, y, -1), v),
            **_train_options(config, config.seed, config.cnn_epochs))
    proba = cnn.predict_proba(data.views.reshape(nv * v, 1, w, w)).reshape(nv, v, -1).mean(1)
    out["cnn"] = proba.argmax(1).astype(np.int64)
    return out


# ------------------------------------------------------------------------------ run


def classify_defects(data: DefectSet, config: ClassifyConfig, with_baselines: bool = True
                     ) -> ClassifyResult:
    """Train the configured model on prepared crops, score it and its baselines
    (``with_baselines=False``: the model alone, e.g. beside baselines already measured on the
    same crops, split and seed)."""
    timings: dict[str, float] = {}
    crops = data.crops
    y = crops.labels
    names = crops.class_names
    k = config.n_classes or len(names)
    if k < 2:
        raise ValueError("the number of classes is not known: the crops carry no labels; pass "
                         "n_classes (--n-classes)")
    if config.semi_supervised and k < len(names):
        raise ValueError(f"n_classes={k} is fewer than the {len(names)} classes of the labels; "
                         "the semi-supervised models need one class per label")
    seen, validation = _split(y, config)
    known = y >= 0
    scored = known & ~seen & ~validation
    t = time.perf_counter()
    restarts: list[tuple[float, int]] = []
    if config.semi_supervised:
        model, proba = _fit_semi(data, y, seen, validation, k, config)
        class_ids = np.arange(k)
        class_ids[class_ids >= len(names)] = -1
    else:
        model, proba, restarts = _fit_joint(data, k, config)
        raw = proba.argmax(1)
        mapping = match_labels(y[known], raw[known]) if known.any() else {}
        class_ids = np.array([mapping.get(c, -1) for c in range(k)], np.int64)
    predictions = class_ids[proba.argmax(1)]
    classifier_predictions = predictions
    latent_names, latents, latents_std = crop_latents(model, data.views)
    prediction_scores, rule = proba, {"rule": "argmax of the model's class probabilities"}
    if config.semi_supervised and config.semi_prediction == "spread":
        # label-free features only: the content latents of the seen crops were trained with
        # their labels, so leaving one out would flatter them (as it would the classifier)
        spaces = {"pca": _pca_scores(data, config)}
        prediction_scores, rule = spread_prediction(spaces, y, seen, proba)
        predictions = class_ids[prediction_scores.argmax(1)]
    timings["model"] = time.perf_counter() - t
    t = time.perf_counter()
    baselines = _baselines(data, y, seen, scored, k, config) if with_baselines else {}
    timings["baselines"] = time.perf_counter() - t
    scores: dict[str, Any] = {"scored_crops": int(scored.sum())}
    if scored.any():
        scores["model"] = class_scores(y[scored], predictions[scored], names)
        if config.semi_supervised:
            scores["classifier"] = class_scores(y[scored], classifier_predictions[scored], names)
        scores["baselines"] = {b: class_scores(y[scored], p[scored], names)
                               for b, p in baselines.items()}
        log.info("%s: accuracy %.3f, balanced accuracy %.3f on %d crops; baselines %s",
                 config.model, scores["model"]["accuracy"], scores["model"]["balanced_accuracy"],
                 int(scored.sum()), {b: round(s["balanced_accuracy"], 3)
                                     for b, s in scores["baselines"].items()})
    return ClassifyResult(config, data, k, seen, validation, scored, predictions, proba,
                          class_ids, scores, baselines, model, latent_names, latents,
                          latents_std, classifier_predictions, prediction_scores, rule,
                          restarts, timings)


def classify(
    folder: str | os.PathLike[str] | LabelledCrops,
    model: str = "ssvae",
    labelled_fraction: float = 0.2,
    n_classes: int | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    labels: str | os.PathLike[str] | None = None,
    input_pixel_size: float | None = None,
    overwrite: bool = False,
    **options: Any,
) -> ClassifyResult:
    """Classes of the defect crops in ``folder`` (see the module docstring).

    folder: a folder of crops (``FOLDER/<class>/<file>``, or files with a CSV of
        ``file,label``) or crops already loaded. labels: the CSV (default: found in folder).
    input_pixel_size: pm per pixel of every crop, for crops without a calibration.
    out: results folder (None: nothing written). An existing folder that is not a latentatlas
        results folder is refused unless ``overwrite`` (see :mod:`latentatlas.pipelines.outputs`).
    options: further :class:`ClassifyConfig` fields.
    """
    t_all = time.perf_counter()
    config = ClassifyConfig(model=model, labelled_fraction=labelled_fraction,
                            n_classes=n_classes, **options)
    inputs = [os.fspath(p) for p in (folder, labels) if isinstance(p, (str, os.PathLike))]
    plan = None if out is None else check_output(out, inputs, overwrite)
    t = time.perf_counter()
    crops = folder if isinstance(folder, LabelledCrops) else load_labelled_crops(
        folder, labels=labels, pixel_size=input_pixel_size)
    data = prepare_defects(crops, config)
    prepared = time.perf_counter() - t
    result = classify_defects(data, config)
    result.timings = {"prepare": prepared, **result.timings}
    if plan is not None:
        t = time.perf_counter()
        name = "crops" if isinstance(folder, LabelledCrops) else safe_text(folder)
        result.out = _write(result, name, plan, inputs)
        result.timings["write"] = time.perf_counter() - t
    result.timings["total"] = time.perf_counter() - t_all
    return result


# ------------------------------------------------------------------------------ output


def _crop_records(result: ClassifyResult) -> list[dict[str, Any]]:
    crops = result.data.crops
    names = crops.class_names

    def name_of(k: int) -> str | None:
        return names[k] if 0 <= k < len(names) else None

    out = []
    for i, crop_name in enumerate(crops.names()):
        out.append({
            "crop": crop_name,
            "file": None if crops.files[i] is None else safe_text(crops.files[i]),
            "label": name_of(int(crops.labels[i])),
            "label_seen": bool(result.labelled[i]),
            "validation": bool(result.validation[i]),
            "scored": bool(result.scored[i]),
            "prediction": name_of(int(result.predictions[i])),
            "classifier_prediction": name_of(int(result.classifier_predictions[i])),
            "model_class": int(result.probabilities[i].argmax()),
            "probabilities": [round(float(p), 5) for p in result.probabilities[i]],
            "centre_row_col": [round(float(c), 2) for c in result.data.centres[i]],
            "centring": result.data.centring[i],
            "pixel_size_pm": round(float(crops.pixel_sizes[i]), 4),
            "latents": {name: round(float(v), 5)
                        for name, v in zip(result.latent_names, result.latents[i], strict=True)},
        })
    return out


def _summary(result: ClassifyResult, source: str) -> dict[str, Any]:
    crops = result.data.crops
    names = crops.class_names
    cfg = result.config
    return {
        "source": source,
        "config": cfg.resolved(),
        "classes": list(names),
        "class_counts": crops.counts(),
        "n_classes": result.n_classes,
        "n_classes_rule": ("given (n_classes)" if cfg.n_classes else
                           "the number of classes in the labels"),
        "model_class_labels": [names[c] if c >= 0 else None for c in result.class_ids],
        "occupied_model_classes": result.occupied,
        "split": {
            "labelled_seen": int(result.labelled.sum()),
            "validation": int(result.validation.sum()),
            "scored": int(result.scored.sum()),
            "rule": ("stratified labelled_fraction of the labelled crops (>= 1 per class with "
                     ">= 2 crops, never all), validation_fraction of those held back; scored "
                     "on the rest" if cfg.semi_supervised else
                     "no labels used in training; scored on every labelled crop after "
                     "Hungarian matching of the model's classes to the labels"),
        },
        "prediction_rule": result.prediction_rule,
        "scores": result.scores,
        "restarts_elbo_and_classes": result.restarts,
        "history": {k: v for k, v in getattr(result.model, "history", {}).items()
                    if k.startswith(("train/elbo", "train/total", "validation/"))},
        "timings": result.timings,
    }


def _predictions_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["crop", "label", "prediction", "classifier_prediction", "label_seen",
                     "validation", "scored", "centring", "probability"])
    for r in records:
        writer.writerow([r["crop"], r["label"] or "", r["prediction"] or "",
                         r["classifier_prediction"] or "", r["label_seen"], r["validation"],
                         r["scored"], r["centring"], max(r["probabilities"])])
    return buf.getvalue()


def _figures(result: ClassifyResult, folder: Path) -> list[tuple[str, Path]]:
    from matplotlib.figure import Figure

    from latentatlas.plots.abundance import plot_abundance
    from latentatlas.plots.classes import (
        plot_class_gallery,
        plot_confusion,
        plot_method_scores,
    )
    from latentatlas.plots.latents import plot_history
    from latentatlas.plots.style import save_figure

    crops = result.data.crops
    names = list(crops.class_names)
    figs: list[tuple[str, Path]] = []
    scores = result.scores
    if "model" in scores:
        counts = np.asarray(scores["model"]["confusion"])
        rows = np.flatnonzero(counts.sum(1) > 0)
        cols = np.flatnonzero(counts.sum(0) > 0)
        col_names = [*names, "unmatched"]
        fig = Figure(figsize=(7, 6), layout="tight")
        plot_confusion(fig.subplots(), counts[np.ix_(rows, cols)],
                       true_names=[names[r] for r in rows], pred_names=[col_names[c] for c in cols])
        figs.append((f"Confusion matrix of {result.config.model} on the {scores['scored_crops']} "
                     "scored crops (rows: true class, fractions of the row)",
                     save_figure(fig, folder / "confusion.png")))
        table = _scored_methods(result)
        fig = Figure(figsize=(8, 4), layout="tight")
        plot_method_scores(fig.subplots(), table)
        figs.append(("Accuracy and balanced accuracy of the model and its baselines on the same "
                     "crops and split", save_figure(fig, folder / "scores.png")))
    fig = Figure(figsize=(8, 1.2 + 0.9 * len(names)), layout="tight")
    pred = np.where(result.predictions < 0, len(names), result.predictions)
    plot_class_gallery(fig.subplots(), result.data.canonical, pred, [*names, "unmatched"])
    figs.append(("Patches (unrotated, after the dopant threshold) by predicted class",
                 save_figure(fig, folder / "gallery.png")))
    fig = Figure(figsize=(8, 1.2 + 0.9 * len(names)), layout="tight")
    plot_class_gallery(fig.subplots(), result.data.canonical, crops.labels, names)
    figs.append(("Patches by true class (the labels of the folder)",
                 save_figure(fig, folder / "gallery_labels.png")))
    if (crops.labels >= 0).any():
        abundance = result.abundance()
        fig = Figure(figsize=(1.5 + 1.2 * len(abundance.latents),
                              1.0 + 0.5 * len(abundance.classes)), layout="tight")
        plot_abundance(fig.subplots(), abundance)
        figs.append(("Latent abundance: each content latent's mean over the crops of each "
                     "class, in units of its overall standard deviation (eta: how much of the "
                     "latent's variance the class explains)",
                     save_figure(fig, folder / "abundance.png")))
    history = getattr(result.model, "history", {})
    if history.get("train/elbo"):
        fig = Figure(figsize=(6, 4), layout="tight")
        plot_history(fig.subplots(), history, "elbo")
        figs.append(("Training ELBO per epoch", save_figure(fig, folder / "history.png")))
    return figs


def _verdict(result: ClassifyResult) -> str:
    """One sentence: the model against its best baseline on each score."""
    scores = result.scores
    if "model" not in scores:
        return ""
    m, model = scores["model"], result.config.model
    metrics = (("accuracy", "balanced_accuracy") if result.config.semi_supervised
               else ("ari", "accuracy"))
    parts = []
    for metric in metrics:
        best = max(scores["baselines"], key=lambda b: scores["baselines"][b][metric])
        b = scores["baselines"][best][metric]
        word = "above" if m[metric] > b else "not above"
        parts.append(f"{metric.replace('_', ' ')} {m[metric]:.3f}, {word} the best baseline "
                     f"({best} {b:.3f})")
    return f"{model} on {scores['scored_crops']} scored crops: " + "; ".join(parts) + "."


def _scored_methods(result: ClassifyResult) -> dict[str, dict[str, Any]]:
    """Method name -> scores: the prediction, the classifier alone (semi-supervised, when
    the prediction is another rule), the baselines."""
    scores, model = result.scores, result.config.model
    if not result.config.semi_supervised:
        return {model: scores["model"], **scores["baselines"]}
    rule = result.config.semi_prediction
    out = {f"{model} ({rule})": scores["model"]}
    if rule != "classifier":
        out[f"{model} (classifier alone)"] = scores["classifier"]
    return {**out, **scores["baselines"]}


def _calibration(result: ClassifyResult) -> dict[str, Any]:
    sizes = np.round(result.data.crops.pixel_sizes, 4)
    values, counts = np.unique(sizes, return_counts=True)
    w, px = result.data.canonical.shape[-1], result.config.pixel_size
    return {"crop pixel sizes (pm: crops)": {f"{v:g}": int(c)
                                             for v, c in zip(values, counts, strict=True)},
            "patch pixel size": f"{px:g} pm (every crop resampled to it)",
            "patch": f"{w} x {w} px = {w * px:g} x {w * px:g} pm"}


def _write(result: ClassifyResult, source: str, plan: OutputPlan, inputs: list[str]) -> Path:
    from latentatlas.report import write_explorer, write_report

    records = _crop_records(result)
    summary = _summary(result, source)
    with results_folder(plan, "classify", result.config.to_dict(), inputs) as tmp:
        write_text_atomic(tmp / "results.json",
                          json.dumps({**summary, "crops": records}, indent=2, default=safe_text))
        write_text_atomic(tmp / "predictions.csv", _predictions_csv(records))
        result.model.save(tmp / "model")
        figs = _figures(result, tmp)
        scores = result.scores
        lines: dict[str, Any] = {
            "crops": f"{len(result.data)} ("
                     + ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items()) + ")",
            "model": f"{result.config.model}, K = {result.n_classes} ({result.occupied} occupied)",
            "labels seen": int(result.labelled.sum()),
        }
        if "model" in scores:
            lines.update({f"{result.config.model} {m.replace('_', ' ')}":
                          round(scores["model"][m], 3) for m in ("accuracy", "balanced_accuracy",
                                                                 "ari")})
        tables: dict[str, dict[str, Any]] = {
            "Input": {"source": source, "crops": len(result.data), "classes": summary["class_counts"],
                      "centring": {m: result.data.centring.count(m)
                                   for m in sorted(set(result.data.centring))}},
            "Split": summary["split"],
        }
        if "model" in scores:
            tables["Scores (scored crops)"] = {
                name: {m: round(s[m], 3) for m in ("accuracy", "balanced_accuracy", "ari")}
                for name, s in _scored_methods(result).items()}
            tables["Recall per class"] = {name: s["recall"]
                                          for name, s in _scored_methods(result).items()}
        if (result.data.crops.labels >= 0).any():
            tables["Latent abundance by class (eta, Kruskal-Wallis p, class means)"] = \
                result.abundance().as_dict()
        tables["Classes"] = {"K": result.n_classes, "rule": summary["n_classes_rule"],
                             "occupied": result.occupied,
                             "labels of the model's classes": summary["model_class_labels"]}
        if result.restarts:
            tables["Restarts (ELBO per crop view, classes occupied; the highest ELBO using "
                   "more than one class kept)"] = {
                f"restart {i}": f"{e:.2f}, {c}" for i, (e, c) in enumerate(result.restarts)}
        tables["Parameters"] = result.config.resolved()
        tables["Timings (s)"] = {k: round(v, 2) for k, v in result.timings.items()}
        write_report(tmp / "index.html", f"latentatlas classify: {source}", figs, tables,
                     summary=lines, verdict=_verdict(result), inputs=inputs,
                     command="latentatlas classify", calibration=_calibration(result))
        write_explorer(tmp / "explorer.html", result)
    return plan.path
