"""The record every model's loss returns and the training plan consumes.

It lives in ``train`` (below ``models``) so that the plan never imports a model package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


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
