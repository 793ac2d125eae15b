"""Named latents returned by ``encode``, and the one rule that says which latents are in use.

Posterior collapse: a latent whose posterior ignores the input sits at the prior for every
sample, so its posterior means barely differ between samples compared with the posterior's
own width. :func:`latent_activity` measures exactly that, per latent, and is the rule every
part of latentatlas uses (``Latents.active``, the analyze results, the report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latentatlas._latent_names import content_columns, is_content_latent

__all__ = ["ACTIVE_RATIO", "LatentActivity", "Latents", "content_columns", "is_content_latent",
           "latent_activity"]

# A latent is active when the spread (standard deviation over samples) of its posterior means
# is at least this fraction of its mean posterior standard deviation. For Gaussian posteriors
# the information a latent carries about a sample is about 0.5 * ln(1 + ratio^2) nats, so 0.5
# means at least 0.11 nats; a collapsed latent has ratio ~ 0 (0.004-0.26 on the collapsed real
# PFM runs of issue 13), a used one well above 1. For a unit prior, Burda et al.'s (2016)
# "variance of the means > 0.01" corresponds to a ratio of about 0.1: this rule is stricter.
ACTIVE_RATIO = 0.5


@dataclass(frozen=True)
class LatentActivity:
    """Per-latent statistics of the posterior over a set of samples, and which latents are used.

    names: latent names. kl: mean KL(q(z|x) || prior) per latent (nats per sample).
    mean_variance: variance of the posterior means over the samples. ratio: standard
    deviation of the posterior means over the mean posterior standard deviation. active:
    ratio >= threshold. threshold: the ratio used.
    """

    names: tuple[str, ...]
    kl: np.ndarray
    mean_variance: np.ndarray
    ratio: np.ndarray
    active: np.ndarray
    threshold: float

    @property
    def content(self) -> list[str]:
        """Names of the content latents (z1..zk)."""
        return [n for n in self.names if is_content_latent(n)]

    @property
    def active_names(self) -> list[str]:
        return [n for n, a in zip(self.names, self.active, strict=True) if a]

    @property
    def active_content(self) -> list[str]:
        return [n for n in self.active_names if is_content_latent(n)]

    @property
    def collapsed(self) -> bool:
        """True when no content latent is active: the content maps show noise, not the data."""
        return bool(self.content) and not self.active_content

    def warning(self) -> str | None:
        """A sentence for logs and reports when the content latents collapsed, else None."""
        if not self.collapsed:
            return None
        worst = ", ".join(f"{n} {r:.2f}" for n, r in zip(self.names, self.ratio, strict=True)
                          if is_content_latent(n))
        return (f"posterior collapse: no content latent is active (spread of the posterior "
                f"means / posterior std: {worst}; active needs >= {self.threshold}). The content "
                "maps and the classes built on them show noise; train longer, lower beta or "
                "check the normalisation")

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rule": "active when std over samples of the posterior mean >= threshold x mean "
                    "posterior std",
            "latents": {n: {"kl": float(k), "mean_variance": float(v), "ratio": float(r),
                            "active": bool(a)}
                        for n, k, v, r, a in zip(self.names, self.kl, self.mean_variance,
                                                 self.ratio, self.active, strict=True)},
            "active_content": self.active_content,
            "collapsed": self.collapsed,
        }


def latent_activity(
    mean: Any,
    std: Any,
    names: list[str] | tuple[str, ...],
    prior_std: Any = None,
    threshold: float = ACTIVE_RATIO,
) -> LatentActivity:
    """Which latents are used, from posterior means and standard deviations.

    mean, std: ``(n, k)`` posterior means and standard deviations of ``n`` samples.
    names: the ``k`` latent names. prior_std: ``(k,)`` standard deviation of each latent's
    zero-mean Gaussian prior (default 1). threshold: the ratio rule (see ``ACTIVE_RATIO``).
    """
    mu = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(std, dtype=np.float64)
    if mu.ndim != 2 or sd.shape != mu.shape or mu.shape[1] != len(names):
        raise ValueError(f"mean and std must both be (n, {len(names)}) for the latents {list(names)}"
                         f", got {mu.shape} and {sd.shape}")
    if len(mu) < 2:
        raise ValueError(f"need at least 2 samples to tell active latents, got {len(mu)}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    prior = np.ones(mu.shape[1]) if prior_std is None else np.broadcast_to(
        np.asarray(prior_std, dtype=np.float64), (mu.shape[1],))
    sd = np.maximum(sd, 1e-12)
    kl = (np.log(prior / sd) + (sd**2 + mu**2) / (2 * prior**2) - 0.5).mean(axis=0)
    var = mu.var(axis=0)
    ratio = np.sqrt(var) / sd.mean(axis=0)
    return LatentActivity(tuple(names), kl, var, ratio, ratio >= threshold, float(threshold))


@dataclass
class Latents:
    """Posterior means and standard deviations per sample.

    names: latent names, pose first (angle in radians, shift_x/shift_y in patch half-widths,
    log_scale), then content z1..zk. mean, std: (n, len(names)). prior_std: (len(names),)
    standard deviation of each latent's prior (None: 1 for all).
    """

    names: list[str]
    mean: np.ndarray
    std: np.ndarray
    prior_std: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        """The mean of one latent, (n,)."""
        if name not in self.names:
            raise KeyError(f"no latent {name!r}; this model has {self.names}")
        return self.mean[:, self.names.index(name)]

    @property
    def content_names(self) -> list[str]:
        """Names of the content latents z1..zk (the others are pose latents)."""
        return [n for n in self.names if is_content_latent(n)]

    @property
    def content(self) -> np.ndarray:
        """Means of the content latents z1..zk, (n, k)."""
        return self.mean[:, content_columns(self.names)]

    def activity(self, threshold: float = ACTIVE_RATIO) -> LatentActivity:
        """Per-latent KL, spread of the means and the active/collapsed verdict
        (:func:`latent_activity`)."""
        return latent_activity(self.mean, self.std, self.names, self.prior_std, threshold)

    def active(self, threshold: float = ACTIVE_RATIO) -> np.ndarray:
        """Boolean mask (len(names),) of the active latents (:func:`latent_activity`'s rule).
        Inactive latents stay at the prior and carry nothing about the input."""
        return self.activity(threshold).active

    def __len__(self) -> int:
        return len(self.mean)
