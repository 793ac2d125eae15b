"""Semi-supervised VAE in the manner of Kingma et al. 2014 (M2).

A classifier q(y | x), an encoder q(z | x) (the core encoder, with optional pose latents for a
rotation-invariant model) and a decoder p(x | z, y) conditioned on the one-hot class. Labelled
and unlabelled samples travel in the same batches: ``y`` (n,) holds the class or -1.

Per sample:
    labelled:    -log p(x | z, y) + beta KL_z + alpha * CE(q(y|x), y)
    unlabelled:  E_q(y|x)[-log p(x | z, y)] + beta KL_z + KL(q(y|x) || uniform)

The expectation over y is exact (summed over the classes, as in M2) with ``enumerate_classes``
(default) or a Gumbel-softmax sample otherwise. For imbalanced classes: ``class_balanced``
weights each labelled sample's cross-entropy by the inverse frequency of its class among the
labels (every class then weighs the same), and ``class_prior="labelled"`` replaces the uniform
prior of the unlabelled KL term by the class frequencies of the labels (add-one smoothed).
``logit_adjustment`` (tau, Menon et al. 2021) lets the classifier network output class-balanced
logits f(x): every loss term uses q(y|x) = softmax(f(x) + tau log p(y)), the posterior under the
class prior p(y), while ``predict`` takes argmax f(x), the class of highest p(x | y)
(tau = 1), so a rare class is not out-voted by its prior.
``consistency`` adds KL(q(y|x) || q(y|x')) for a second view x' of the same object (``fit``'s
``groups``, e.g. rotated copies of one crop), on labelled and unlabelled samples alike.

By default q(z | x) does not see y, so one
encoding serves every class (a simplification against M2). ``encoder_sees_class`` gives M2's
q(z | x, y): each sample is encoded and decoded once per class, and KL_z too is averaged over
q(y | x). Knobs: ``alpha`` (classification weight), ``beta``, ``temperature``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentatlas.models.base import VAEModel
from latentatlas.models.conditional import check_labels
from latentatlas.models.config import MAX_CONDITION, VAEConfig, _fail
from latentatlas.models.joint import (
    MAX_ENUMERATED,
    DiscreteLatentModule,
    DiscreteModelMixin,
    categorical_kl,
    partner_index,
)
from latentatlas.models.losses import LossRecord, reconstruction_nll
from latentatlas.nn.encoders import ENCODERS
from latentatlas.nn.pose import invert_affine, warp
from latentatlas.train.schedules import Schedule


@dataclass(frozen=True)
class SSVAEConfig(VAEConfig):
    """VAEConfig plus the classes. condition_dim is set to n_classes.

    n_classes: number of classes (>= 2). alpha: weight of the labelled samples' cross-entropy
    (Kingma et al. use 0.1 N; here it multiplies a per-sample loss). temperature: Gumbel
    temperature when ``enumerate_classes`` is False. canonical_classifier: the classifier sees
    the input warped back by the pose the encoder infers (its posterior mean), i.e. in the
    decoder's canonical frame, so labels of upright samples teach the classes at every pose;
    needs pose latents. encoder_sees_class: q(z | x, y) as in M2 (needs ``enumerate_classes``;
    costs n_classes encoder and decoder passes per sample); ``encode`` then conditions on q(y | x).
    class_balanced: weight the labelled cross-entropy by inverse class frequency among the labels.
    class_prior: ``uniform`` or ``labelled`` (the labels' class frequencies, add-one smoothed,
    set by ``fit``) as the prior of the unlabelled samples' KL(q(y | x) || p(y)).
    consistency: weight of KL(q(y|x) || q(y|x')) over pairs of views of one object (``fit`` with
    ``groups``). logit_adjustment: tau >= 0; the losses see the network's logits plus tau
    log p(y), ``predict`` the logits alone (needs ``class_prior="labelled"``; 0: off).
    """

    n_classes: int = 10
    alpha: float = 50.0
    class_balanced: bool = False
    class_prior: str = "uniform"
    consistency: float = 0.0
    logit_adjustment: float = 0.0
    enumerate_classes: bool = True
    temperature: float = 0.67
    canonical_classifier: bool = False
    encoder_sees_class: bool = False

    def _validate(self) -> None:
        if not 2 <= self.n_classes <= MAX_CONDITION:
            _fail("n_classes", f"in [2, {MAX_CONDITION}]", self.n_classes)
        if self.condition_dim not in (0, self.n_classes):
            _fail(
                "condition_dim",
                f"0 or n_classes={self.n_classes} (set from n_classes)",
                self.condition_dim,
            )
        object.__setattr__(self, "condition_dim", int(self.n_classes))
        super()._validate()
        if self.alpha < 0:
            _fail("alpha", ">= 0", self.alpha)
        if self.class_prior not in ("uniform", "labelled"):
            _fail("class_prior", "'uniform' or 'labelled'", self.class_prior)
        if self.consistency < 0:
            _fail("consistency", ">= 0", self.consistency)
        if self.logit_adjustment < 0:
            _fail("logit_adjustment", ">= 0", self.logit_adjustment)
        if self.logit_adjustment and self.class_prior != "labelled":
            # under the uniform prior the adjustment is a constant: it would do nothing
            _fail("class_prior", "'labelled' with logit_adjustment > 0", self.class_prior)
        if not self.temperature > 0:
            _fail("temperature", "> 0", self.temperature)
        if self.enumerate_classes and self.n_classes > MAX_ENUMERATED:
            _fail(
                "enumerate_classes", f"False for more than {MAX_ENUMERATED} classes", self.n_classes
            )
        if self.canonical_classifier and not self.has_pose:
            _fail("canonical_classifier", "False without rotation, translation or scale latents",
                  self.canonical_classifier)
        if self.encoder_sees_class and not self.enumerate_classes:
            _fail("encoder_sees_class", "False when enumerate_classes is False",
                  self.encoder_sees_class)
        if self.encoder_sees_class and self.canonical_classifier:
            # The canonical view needs the pose from the encoder, which would need the class.
            _fail("encoder_sees_class", "False with canonical_classifier", self.encoder_sees_class)
        if self.encoder_sees_class and self.equivariant_angle:
            # That encoder replaces the core's, whose pose part the equivariant head completes.
            _fail("encoder_sees_class", "False with equivariant_angle", self.encoder_sees_class)


class SSVAEModule(DiscreteLatentModule):
    """Network and loss of the semi-supervised VAE. Batches: ``x`` and optionally ``y`` (n,)
    int64 with -1 for unlabelled samples (no ``y``: all unlabelled), ``weight`` (n,) of each
    labelled sample's cross-entropy (class balancing) and ``pair`` (a second view of each
    sample, for the consistency term)."""

    config: SSVAEConfig
    schedule_names: ClassVar[frozenset[str]] = frozenset(
        {"alpha", "temperature", "beta", "capacity", "gamma", "consistency"})

    def __init__(self, config: SSVAEConfig) -> None:
        super().__init__(config, (config.n_classes,))
        # log p(y) of the unlabelled KL term: uniform until fit() sets the labels' frequencies
        self.register_buffer("log_class_prior",
                             torch.full((config.n_classes,), -math.log(config.n_classes)))
        if config.encoder_sees_class:
            self.encoder = ENCODERS[config.encoder](
                config.input_shape, 2 * len(self.names), config.hidden, config.layers,
                condition_dim=config.n_classes,
            )

    def encode(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z | x), or with ``encoder_sees_class`` q(z | x, y) for the one-hot y ``condition``;
        without one, y is the classifier's q(y | x) (its expected one-hot)."""
        if self.config.encoder_sees_class and condition is None:
            condition = torch.softmax(self.discrete_logits(x)[0], -1)
        return super().encode(x, condition)

    def discrete_logits(self, x: Tensor) -> list[Tensor]:
        """Logits of q(y | x), (n, K) in a one-element list; see ``canonical_classifier``."""
        if self.config.canonical_classifier:
            x = self.canonical_view(x)
        return super().discrete_logits(x)

    def canonical_view(self, x: Tensor) -> Tensor:
        """x (n, c, *spatial) warped back by the encoder's mean pose, the inverse of the
        transform decoder's warp (``latentatlas.nn.pose`` convention)."""
        mu, _ = self.encode(x)
        # Not detached: the classification loss also trains the pose encoder (as in a spatial
        # transformer network). On the cards set that took validation accuracy from 0.905
        # (pose learnt from the reconstruction alone) to 0.99 (benchmarks/RESULTS.md).
        matrix = self.pose_matrix(mu)
        assert matrix is not None  # the config requires pose latents
        return warp(x, invert_affine(matrix))

    def forward(
        self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None
    ) -> LossRecord:
        knobs = knobs or {}
        c = self.config
        x = batch["x"]
        n = len(x)
        y = batch.get("y")
        if y is None:
            y = torch.full((n,), -1, dtype=torch.long, device=x.device)
        labelled = y >= 0
        logits = self.discrete_logits(x)
        if c.logit_adjustment:
            # the network gives balanced logits; the model's posterior adds the class prior
            logits = [logits[0] + c.logit_adjustment * cast(Tensor, self.log_class_prior)]
        terms = self.class_encoder_terms if c.encoder_sees_class else self.shared_encoder_terms
        nll, kl, reg, z, mu = terms(x, y, logits, knobs)
        kl_y = categorical_kl(logits[0], cast(Tensor, self.log_class_prior))
        mask = labelled.to(z.dtype)
        ce = F.cross_entropy(logits[0], y.clamp_min(0), reduction="none") * mask
        if "weight" in batch:
            ce = ce * batch["weight"].to(ce.dtype)
        classification = knobs.get("alpha", c.alpha) * ce.mean()
        total = (nll + reg + (1 - mask) * kl_y).mean() + classification
        kl["class"] = (1 - mask) * kl_y
        extras = {"classification": classification}
        weight = knobs.get("consistency", c.consistency)
        if weight and "pair" in batch:
            extras["consistency"] = weight * self.consistency_term(
                x, logits, 0.0, 0.0, 0.0, batch["pair"])
        extras.update(self.penalty_extras(x, None, z, mu, logits))
        for name, value in extras.items():
            if name != "classification":
                total = total + value
        return LossRecord(
            total=total,
            reconstruction=nll.mean(),
            kl={k: v.mean() for k, v in kl.items()},
            extras=extras,
        )


    # Each ``*_terms`` gives, per sample (n,): the reconstruction NLL (true class if labelled,
    # expectation over q(y | x) otherwise), the KL groups, the weighted regulariser; and the
    # sampled latents and means (n, n_latents) that penalties see.
    def shared_encoder_terms(
        self, x: Tensor, y: Tensor, logits: list[Tensor], knobs: Mapping[str, float]
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor]:
        """One q(z | x) for every class."""
        c = self.config
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        # Labelled samples: reconstruct with the true class. The clamp keeps -1 a valid index;
        # those rows are masked out.
        onehot_true = F.one_hot(y.clamp_min(0), c.n_classes).to(z.dtype)
        nll_true = reconstruction_nll(x, self.decode(z, onehot_true), c.likelihood, self.log_sigma)
        if c.enumerate_classes:
            nll_unl = self.enumerated_nll(x, z, logits)
        else:
            onehot = self.sample_discrete(logits, knobs.get("temperature", c.temperature))
            nll_unl = reconstruction_nll(x, self.decode(z, onehot), c.likelihood, self.log_sigma)
        kl = self.kl_terms(mu, logvar)
        reg = self.regulariser(torch.stack(list(kl.values())).sum(0), knobs)
        nll = torch.where(y >= 0, nll_true, nll_unl)
        return nll, kl, reg, z, mu

    def class_encoder_terms(
        self, x: Tensor, y: Tensor, logits: list[Tensor], knobs: Mapping[str, float]
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor]:
        """M2's q(z | x, y): every sample encoded and decoded once per class (K n rows).
        Labelled samples weight their true class by 1, unlabelled ones each class by q(y | x);
        the gradient of those weights is what the unlabelled data teaches the classifier."""
        c = self.config
        n, k = len(x), c.n_classes
        q = torch.softmax(logits[0], -1)
        weights = torch.where((y >= 0)[:, None], F.one_hot(y.clamp_min(0), k).to(q.dtype), q).T
        onehots = torch.eye(k, dtype=x.dtype, device=x.device).repeat_interleave(n, 0)
        xs = x.repeat(k, *([1] * (x.dim() - 1)))
        mu, logvar = self.encode(xs, onehots)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        raw = self.decode(z, onehots)
        nll = reconstruction_nll(xs, raw, c.likelihood, self.log_sigma).view(k, n)
        kl = {g: v.view(k, n) for g, v in self.kl_terms(mu, logvar).items()}
        reg = self.regulariser(torch.stack(list(kl.values())).sum(0), knobs)
        # Penalties see the latents of the most heavily weighted class of each sample.
        rows = weights.argmax(0) * n + torch.arange(n, device=x.device)
        return (
            (weights * nll).sum(0),
            {g: (weights * v).sum(0) for g, v in kl.items()},
            (weights * reg).sum(0),
            z[rows],
            mu[rows],
        )

    def regulariser(self, kl_z: Tensor, knobs: Mapping[str, float]) -> Tensor:
        """beta KL_z, or gamma |KL_z - C| when a ``capacity`` schedule runs; elementwise."""
        if "capacity" in knobs:
            return knobs.get("gamma", 1.0) * (kl_z - knobs["capacity"]).abs()
        return knobs.get("beta", self.config.beta) * kl_z


class SSVAE(DiscreteModelMixin, VAEModel):
    """Semi-supervised VAE: ``fit(X, y)`` with y = -1 for unlabelled samples; ``predict`` and
    ``predict_proba`` give the classifier's q(y | x). Pose latents make it rotation- and
    shift-invariant in its continuous part (``get_model("ssrvae", ...)``)."""

    config_class = SSVAEConfig
    module_class = SSVAEModule
    config: SSVAEConfig
    module: SSVAEModule

    def prepare_fit(
        self,
        X: object,
        y: object,
        schedules: dict[str, Schedule] | None = None,
        labelled_fraction: float | None = 0.1,
        groups: object | None = None,
        **train_options: Any,
    ) -> tuple[dict[str, Tensor], dict[str, Schedule]]:
        """The data dict (``x``, ``y``, and ``weight``, ``pair`` as the config asks) and the
        schedules ``fit`` hands to the training plan. Sets the class prior from the labels
        when ``class_prior="labelled"``."""
        x = self._as_tensor(X)
        c = self.config
        labels = check_labels(y, len(x), c.n_classes)
        lab = labels >= 0
        n_lab = int(lab.sum())
        if n_lab == 0:
            raise ValueError(
                "y has no labelled sample (all -1); use the joint VAE ('jvae') "
                "for fully unsupervised classes"
            )
        if train_options.get("test_fraction", 0.0):
            raise ValueError(
                "the semi-supervised VAE does not hold samples out at random (labelled ones "
                "would be lost silently); pass test_fraction=0 and give a validation set "
                "explicitly: fit(..., validation=(X_val, y_val))")
        counts = np.bincount(labels[lab], minlength=c.n_classes).astype(np.float64)
        if c.class_prior == "labelled":
            prior = (counts + 1.0) / (counts.sum() + c.n_classes)
            self.module.log_class_prior.copy_(torch.from_numpy(np.log(prior)).float())  # type: ignore[operator]
        index = np.arange(len(x))
        if labelled_fraction is not None:
            if not 0 < labelled_fraction < 1:
                raise ValueError(
                    f"labelled_fraction must be in (0, 1) or None, got {labelled_fraction}"
                )
            n_unl = len(x) - n_lab
            repeats = math.floor(labelled_fraction * n_unl / ((1 - labelled_fraction) * n_lab))
            if repeats > 1:
                index = np.concatenate([index] + [np.flatnonzero(lab)] * (repeats - 1))
        idx = torch.from_numpy(index)
        data = {"x": x[idx], "y": torch.from_numpy(labels[index])}
        if c.class_balanced:
            # inverse class frequency among the labels, mean 1 over the labelled samples
            present = counts > 0
            per_class = np.zeros(c.n_classes)
            per_class[present] = n_lab / (present.sum() * counts[present])
            weight = np.where(lab, per_class[np.maximum(labels, 0)], 0.0)
            data["weight"] = torch.from_numpy(weight[index]).float()
        if groups is not None:
            partner = partner_index(groups, len(x), int(train_options.get("seed", 0)))
            data["pair"] = x[torch.from_numpy(partner[index])]
        elif c.consistency:
            raise ValueError("consistency > 0 needs pairs of views: pass groups (the object "
                             "each sample shows) to fit")
        return data, dict(schedules or {})

    def fit(  # type: ignore[override]  # labels y are required
        self,
        X: object,
        y: object,
        schedules: dict[str, Schedule] | None = None,
        labelled_fraction: float | None = 0.1,
        groups: object | None = None,
        validation: tuple[object, object] | None = None,
        **kwargs: Any,
    ) -> SSVAE:
        """Train on X (n, *input_shape) with labels y (n,): the class, or -1 where unknown.

        Every sample is trained on: the training plan's random hold-out (``test_fraction``)
        is refused here, because it would drop labelled samples without a word. A validation
        set is given explicitly instead: ``validation=(X_val, y_val)``; its accuracy and
        balanced accuracy after each epoch go into ``history`` (``validation/accuracy``,
        ``validation/balanced_accuracy``).
        labelled_fraction: when the labelled samples make up less than this fraction of the
        data, they are repeated (whole copies) until they reach about it, so that each batch
        carries some labels; None keeps the data as given. groups: (n,) the object each
        sample shows, for the consistency term. Further keyword arguments are TrainConfig
        fields and checkpoint options, as in ``VAEModel.fit``.
        """
        kwargs.setdefault("test_fraction", 0.0)
        data, merged = self.prepare_fit(X, y, schedules, labelled_fraction, groups, **kwargs)
        scores: dict[str, list[float]] = {}
        callback = kwargs.pop("on_epoch_end", None)
        if validation is not None:
            x_val = self._as_tensor(validation[0], "validation X")
            y_val = check_labels(validation[1], len(x_val), self.config.n_classes, "validation y")
            known = y_val >= 0
            if not known.any():
                raise ValueError("the validation labels are all -1; give labelled samples")

            def validate(epoch: int, values: dict[str, float]) -> None:
                was_training = self.module.training
                pred = self.predict(x_val[torch.from_numpy(known)])
                self.module.train(was_training)
                truth = y_val[known]
                recall = [float((pred[truth == k] == k).mean()) for k in np.unique(truth)]
                scores.setdefault("validation/accuracy", []).append(float((pred == truth).mean()))
                scores.setdefault("validation/balanced_accuracy", []).append(float(np.mean(recall)))
                if callback is not None:
                    callback(epoch, values)

            kwargs["on_epoch_end"] = validate
        elif callback is not None:
            kwargs["on_epoch_end"] = callback
        self._fit_data(data, merged, **kwargs)
        self.history.update(scores)
        return self

    def score(self, X: object, y: object) -> float:
        """Accuracy of ``predict`` against true labels y (n,)."""
        labels = check_labels(y, len(np.asarray(X)), self.config.n_classes)
        return float((self.predict(X) == labels).mean())
