"""Named latents returned by ``encode``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Latents:
    """Posterior means and standard deviations per sample.

    names: latent names, pose first (angle in radians, shift_x/shift_y in patch half-widths,
    log_scale), then content z1..zk. mean, std: (n, len(names)).
    """

    names: list[str]
    mean: np.ndarray
    std: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """The mean of one latent, (n,)."""
        if name not in self.names:
            raise KeyError(f"no latent {name!r}; this model has {self.names}")
        return self.mean[:, self.names.index(name)]

    @property
    def content(self) -> np.ndarray:
        """Means of the content latents z1..zk, (n, k)."""
        idx = [i for i, n in enumerate(self.names) if n.startswith("z")]
        return self.mean[:, idx]

    def active(self, threshold: float = 0.01) -> np.ndarray:
        """Boolean mask (len(names),) of the active latents: those whose posterior mean varies
        over the samples by more than ``threshold`` (variance; Burda et al. 2016's criterion).
        Inactive latents stay at the prior and carry nothing about the input."""
        return self.mean.var(0) > threshold

    def __len__(self) -> int:
        return len(self.mean)
