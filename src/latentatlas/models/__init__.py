"""The VAE family: configs, networks, the user-facing model and the registry of names."""

from latentatlas.models.base import VAEModel, load_model
from latentatlas.models.config import VAEConfig
from latentatlas.models.latents import Latents
from latentatlas.models.losses import LossRecord, PenaltyInput
from latentatlas.models.registry import Capabilities, get_model, list_models, register_model

_POSE = Capabilities(has_pose=True)

register_model("vae", VAEModel, "plain VAE: content latents only", decoder="mlp")
# Pose-aware families (here and the class-aware ones below) default to the transform decoder: on
# CPU it trains >10x faster than the spatial (coordinate MLP) decoder at equal ELBO
# (benchmarks/RESULTS.md); decoder="spatial" is one argument away.
register_model("shiftvae", VAEModel, "shift-invariant VAE: translation + content latents (1-D or 2-D)",
               translation=True, decoder="transform", capabilities=_POSE)
# The equivariant angle head makes the angle latent follow the true angle of every object kind
# (four-shape set: |circular r| 1.000 per shape vs 0.06-0.99 for the plain encoder, and lower
# reconstruction error; benchmarks/RESULTS.md, issue 21); each epoch costs ~5x more on CPU.
register_model("rvae", VAEModel, "rotation- and translation-invariant VAE (rVAE)",
               rotation=True, translation=True, decoder="transform", equivariant_angle=True,
               capabilities=_POSE)

__all__ = ["Latents", "LossRecord", "PenaltyInput", "VAEConfig", "VAEModel", "get_model",
           "list_models", "load_model", "register_model"]

# Classes and uncertainty (issue 4): conditional, joint, semi-supervised VAEs and ensembles.
from latentatlas.models.conditional import ConditionalVAE  # noqa: E402
from latentatlas.models.ensemble import Ensemble  # noqa: E402
from latentatlas.models.joint import JointVAE  # noqa: E402
from latentatlas.models.semisupervised import SSVAE  # noqa: E402

register_model("cvae", ConditionalVAE, "conditional VAE: a known class (n_classes) or known "
               "factors (condition_dim) condition the decoder", decoder="mlp",
               example={"n_classes": 3},
               capabilities=Capabilities(needs_labels=True, takes_condition=True))
register_model("jvae", JointVAE, "joint VAE (Dupont 2018): continuous + discrete latents, "
               "no labels", decoder="mlp", capabilities=Capabilities(has_classes=True))
register_model("jrvae", JointVAE, "joint rVAE: discrete classes + rotation, translation, content",
               rotation=True, translation=True, decoder="transform",
               capabilities=Capabilities(has_classes=True, has_pose=True))
register_model("ssvae", SSVAE, "semi-supervised VAE (Kingma M2): classifier q(y|x) + labelled and "
               "unlabelled data", decoder="mlp",
               capabilities=Capabilities(needs_labels=True, has_classes=True))
# The canonical classifier made the cards benchmark robust over seeds (0.989-1.000 where the plain
# classifier gave 0.844-0.990; benchmarks/RESULTS.md).
register_model("ssrvae", SSVAE, "rotation- and translation-invariant semi-supervised VAE",
               rotation=True, translation=True, decoder="transform", canonical_classifier=True,
               capabilities=Capabilities(needs_labels=True, has_classes=True, has_pose=True))
register_model("ensemble", Ensemble, "N members of one family (member=..., n_members=8) trained "
               "in one vectorised pass; aligned classes and their dispersion",
               example={"n_members": 2}, capabilities=None, member="jvae")
