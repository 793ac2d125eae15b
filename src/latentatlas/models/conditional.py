"""Conditional VAE: a known class (one-hot) or known continuous factors condition the decoder.

The network is the core ``VAEModule`` with ``condition_dim`` > 0; this module adds a config that
knows about classes and a user-facing model that accepts integer labels wherever a condition is
expected, so ``fit(X, y)``, ``decode(z, condition=labels)`` and ``manifold(label=k)`` just work.

Discrete: ``get_model("cvae", shape, n_classes=3)`` gives one latent space per class.
Continuous: ``get_model("cvae", shape, condition_dim=2)`` conditions on a known factor vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentatlas._checks import check_array
from latentatlas.models.base import VAEModel
from latentatlas.models.config import MAX_CONDITION, VAEConfig, _fail
from latentatlas.train.plan import train_fields
from latentatlas.train.schedules import Schedule


def one_hot_labels(
    labels: object, sizes: tuple[int, ...] | list[int], name: str = "labels"
) -> np.ndarray:
    """Integer labels (n,) or (n, m) for m discrete variables -> one-hots (n, sum(sizes)).

    Raises ValueError for non-integer values or labels outside [0, K).
    """
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integer class indices, got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(sizes):
        raise ValueError(
            f"{name} must have shape (n,) or (n, {len(sizes)}) (one column per discrete "
            f"variable), got {np.asarray(labels).shape}"
        )
    parts = []
    for j, k in enumerate(sizes):
        col = arr[:, j]
        if col.size and (col.min() < 0 or col.max() >= k):
            raise ValueError(
                f"{name} must lie in [0, {k}) for a variable with {k} classes, "
                f"got values in [{col.min()}, {col.max()}]"
            )
        parts.append(np.eye(k, dtype=np.float32)[col])
    return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class ConditionalConfig(VAEConfig):
    """VAEConfig plus ``n_classes``: > 0 for a discrete condition (then condition_dim = n_classes),
    0 for continuous factors given by ``condition_dim``."""

    n_classes: int = 0

    def _validate(self) -> None:
        super()._validate()
        if self.n_classes < 0 or self.n_classes == 1 or self.n_classes > MAX_CONDITION:
            _fail("n_classes", f"0 (continuous condition) or in [2, {MAX_CONDITION}]",
                  self.n_classes)
        if self.n_classes:
            if self.condition_dim not in (0, self.n_classes):
                _fail(
                    "condition_dim",
                    f"0 or n_classes={self.n_classes} when n_classes is set",
                    self.condition_dim,
                )
            object.__setattr__(self, "condition_dim", self.n_classes)
        elif self.condition_dim == 0:
            raise ValueError(
                "a conditional VAE needs n_classes (discrete labels, e.g. n_classes=3) "
                "or condition_dim (number of continuous factors per sample)"
            )


class ConditionalVAE(VAEModel):
    """Conditional VAE. With ``n_classes`` the condition may be given as integer labels (n,);
    otherwise as a float array (n, condition_dim)."""

    config_class = ConditionalConfig
    config: ConditionalConfig

    def _condition(self, condition: object | None, n: int) -> Tensor | None:
        k = self.config.n_classes
        if k and condition is not None:
            arr = np.asarray(condition)
            if arr.ndim == 0:
                arr = np.full(n, arr)
            if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and k != 1):
                arr = arr.reshape(-1)
                if len(arr) != n:
                    raise ValueError(f"labels must have {n} entries, got {len(arr)}")
                return torch.from_numpy(one_hot_labels(arr, (k,)))
        return super()._condition(condition, n)

    def fit(  # type: ignore[override]  # labels y come before condition
        self, X: object, y: object | None = None, condition: object | None = None,
        schedules: dict[str, Schedule] | None = None, **kwargs: Any
    ) -> ConditionalVAE:
        """Train on X (n, *input_shape) with class labels ``y`` (n,) or continuous ``condition``
        (n, condition_dim). Further keyword arguments as ``VAEModel.fit``."""
        prepared = self.prepare_fit(X, y, condition=condition, schedules=schedules,
                                    **train_fields(kwargs))
        self._train(prepared, **kwargs)
        return self

    def manifold(
        self,
        n: int = 8,
        dims: tuple[int, int] = (0, 1),
        extent: float = 2.0,
        condition: object | None = None,
        label: int | None = None,
    ) -> np.ndarray:
        """``VAEModel.manifold`` for one class ``label`` (discrete) or one ``condition`` vector."""
        if label is not None:
            if not self.config.n_classes:
                raise ValueError(
                    "label= needs a discrete conditional model (n_classes > 0); "
                    "pass condition= for continuous factors"
                )
            condition = one_hot_labels([label], (self.config.n_classes,))[0]
        return super().manifold(n, dims, extent, condition=condition)

    def traversal(self, n: int = 8, dim: int = 0, extent: float = 2.0) -> np.ndarray:
        """Rows = classes, columns = content latent ``dim`` swept over +-extent prior std.

        Returns (n_classes, n, *input_shape); other content latents are 0, pose is 0.
        """
        k = self.config.n_classes
        if not k:
            raise ValueError("traversal needs a discrete conditional model (n_classes > 0)")
        if not 0 <= dim < self.config.latent_dim:
            raise ValueError(f"dim must be in [0, {self.config.latent_dim}), got {dim}")
        values = np.linspace(-extent, extent, n, dtype=np.float32)
        z = np.zeros((k * n, self.config.latent_dim), np.float32)
        z[:, dim] = np.tile(values, k)
        labels = np.repeat(np.arange(k), n)
        return self.decode(z, condition=labels).reshape(k, n, *self.config.input_shape)


def check_labels(y: object, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Integer labels (n,) in [0, n_classes) or -1 for unlabelled, as int64."""
    arr = check_array(y, name, ndim=1, dtype=np.float64)
    if len(arr) != n:
        raise ValueError(f"{name} must have one entry per sample ({n}), got {len(arr)}")
    if not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must be integer class indices (-1 = unlabelled)")
    out = arr.astype(np.int64)
    if out.min() < -1 or out.max() >= n_classes:
        raise ValueError(
            f"{name} must lie in [0, {n_classes}) or be -1 (unlabelled), got values in "
            f"[{out.min()}, {out.max()}]"
        )
    return out
