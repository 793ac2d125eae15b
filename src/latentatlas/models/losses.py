"""The likelihood and KL pieces every model's loss is built from.

``LossRecord`` (what every model returns) lives in :mod:`latentatlas.train.record`, below the
models, because the training plan consumes it; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Normal, kl_divergence

from latentatlas.train.record import LossRecord as LossRecord


@dataclass
class PenaltyInput:
    """What a penalty (a physics-based prior term) sees for one batch.

    x: the batch (n, c, ...); reconstruction: the likelihood mean (n, c, ...);
    latents: sampled latents by name, each (n,); means: posterior means by name, each (n,).
    """

    x: Tensor
    reconstruction: Tensor
    latents: dict[str, Tensor]
    means: dict[str, Tensor]


# A penalty returns a scalar added (times its weight) to the loss, e.g. a prior that the angle
# stays small, or that the reconstruction is non-negative. See VAEModel.add_penalty.
Penalty = Callable[[PenaltyInput], Tensor]


def reconstruction_nll(x: Tensor, output: Tensor, likelihood: str, log_sigma: Tensor) -> Tensor:
    """Negative log-likelihood per sample (n,) of ``x`` under the decoder ``output``."""
    dist: Normal | Bernoulli
    if likelihood == "gaussian":
        dist = Normal(output, log_sigma.exp().to(output.dtype), validate_args=False)
    else:
        # x may be grey levels in [0, 1]: the continuous relaxation of the Bernoulli.
        dist = Bernoulli(logits=output, validate_args=False)
    return -dist.log_prob(x.to(output.dtype)).flatten(1).sum(1)


def normal_kl(mu: Tensor, logvar: Tensor, prior_scale: float) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, prior_scale^2)) summed over the last axis -> (n,)."""
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.full_like(mu, prior_scale))
    return kl_divergence(posterior, prior).sum(-1)
