"""The loss record every model returns, and the likelihood and KL pieces it is built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Normal, kl_divergence


@dataclass
class LossRecord:
    """Batch means of each term. ``total`` is what is minimised.

    kl: named KL terms (unweighted, nats per sample). extras: any further terms, already
    weighted, that were added to the total (penalties, classification losses).
    """

    total: Tensor
    reconstruction: Tensor
    kl: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def negative_elbo(self) -> Tensor:
        """Reconstruction NLL plus the unweighted KL terms: the quantity a VAE bounds."""
        out = self.reconstruction
        for value in self.kl.values():
            out = out + value
        return out

    def scalars(self) -> dict[str, float]:
        """Every term as a float, keyed for logs and history."""
        out = {"total": float(self.total), "reconstruction": float(self.reconstruction),
               "elbo": -float(self.negative_elbo)}
        out.update({f"kl_{k}": float(v) for k, v in self.kl.items()})
        out.update({k: float(v) for k, v in self.extras.items()})
        return out


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
