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

    def terms(self) -> dict[str, Tensor]:
        """Every term by its name in logs and history: total, reconstruction, elbo,
        ``kl_<name>`` per KL term, and the extras under their own names."""
        out = {"total": self.total, "reconstruction": self.reconstruction,
               "elbo": -self.negative_elbo}
        out.update({f"kl_{k}": v for k, v in self.kl.items()})
        out.update(self.extras)
        return out

    def scalars(self) -> dict[str, float]:
        """:meth:`terms` as floats."""
        return {k: float(v) for k, v in self.terms().items()}

    def to_tensors(self) -> dict[str, Tensor]:
        """A flat, reversible dict (for vmap): total, reconstruction, ``kl/<name>``,
        ``extras/<name>``. Inverse: :meth:`from_tensors`."""
        out = {"total": self.total, "reconstruction": self.reconstruction}
        out.update({f"kl/{k}": v for k, v in self.kl.items()})
        out.update({f"extras/{k}": v for k, v in self.extras.items()})
        return out

    @classmethod
    def from_tensors(cls, flat: dict[str, Tensor]) -> LossRecord:
        """The record :meth:`to_tensors` flattened."""
        return cls(total=flat["total"], reconstruction=flat["reconstruction"],
                   kl={k[3:]: v for k, v in flat.items() if k.startswith("kl/")},
                   extras={k[7:]: v for k, v in flat.items() if k.startswith("extras/")})
