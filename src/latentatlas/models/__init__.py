"""The VAE family: configs, networks, the user-facing model and the registry of names."""

from latentatlas.models.base import VAEModel, load_model
from latentatlas.models.config import VAEConfig
from latentatlas.models.latents import Latents
from latentatlas.models.losses import LossRecord, PenaltyInput
from latentatlas.models.registry import get_model, list_models, register_model

register_model("vae", VAEModel, "plain VAE: content latents only", decoder="mlp")
register_model("shiftvae", VAEModel, "shift-invariant VAE: translation + content latents (1-D or 2-D)",
               translation=True, decoder="spatial")
register_model("rvae", VAEModel, "rotation- and translation-invariant VAE (rVAE)",
               rotation=True, translation=True, decoder="spatial")

__all__ = ["Latents", "LossRecord", "PenaltyInput", "VAEConfig", "VAEModel", "get_model",
           "list_models", "load_model", "register_model"]
