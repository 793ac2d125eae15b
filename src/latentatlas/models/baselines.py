"""A plain supervised classifier to set beside the class-aware VAEs: the same network as their
classifier q(y | x), trained on the labelled samples alone.

Semi-supervised results mean something only next to this baseline, on the same data and
split: it sees what the semi-supervised VAE's classifier sees of the labels (the same network,
views and class-balanced cross-entropy) and nothing of the unlabelled samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentatlas._checks import check_array
from latentatlas.models.conditional import check_labels
from latentatlas.models.config import normalise_shape
from latentatlas.models.losses import LossRecord
from latentatlas.nn.encoders import ENCODERS
from latentatlas.train.plan import TrainConfig, train

__all__ = ["ClassifierModule", "NetClassifier"]


class ClassifierModule(nn.Module):
    """An encoder network (``mlp`` or ``conv``) giving class logits; its loss is the
    cross-entropy, optionally weighted per sample. Batches: ``x``, ``y`` (n,), ``weight``."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, hidden: int = 128,
                 layers: int = 2, encoder: str = "conv") -> None:
        super().__init__()
        self.net = ENCODERS[encoder](input_shape, n_classes, hidden, layers)

    def forward(self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None
                ) -> LossRecord:
        ce = F.cross_entropy(self.net(batch["x"]), batch["y"], reduction="none")
        if "weight" in batch:
            ce = ce * batch["weight"].to(ce.dtype)
        loss = ce.mean()
        return LossRecord(total=loss, reconstruction=loss.detach() * 0,
                          extras={"classification": loss})


class NetClassifier:
    """A small supervised network classifier (by default a CNN, the ``conv`` encoder).

    input_shape: (c, h, w) or (h, w) (channels first, as for the VAEs). class_balanced:
    weight each sample's cross-entropy by the inverse frequency of its class.
    """

    def __init__(self, input_shape: tuple[int, ...] | list[int], n_classes: int,
                 hidden: int = 128, layers: int = 2, encoder: str = "conv",
                 class_balanced: bool = True, seed: int = 0) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {encoder!r}")
        self.input_shape = normalise_shape(input_shape)
        self.n_classes = n_classes
        self.class_balanced = class_balanced
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = ClassifierModule(self.input_shape, n_classes, hidden, layers, encoder)
        self.history: dict[str, list[float]] = {}

    def _as_tensor(self, X: object) -> Tensor:
        arr = check_array(X, "X", ndim=(len(self.input_shape), len(self.input_shape) + 1))
        if arr.ndim == len(self.input_shape):
            arr = arr[:, None]
        if arr.shape[1:] != self.input_shape:
            raise ValueError(f"X samples have shape {arr.shape[1:]}, the classifier takes "
                             f"{self.input_shape} (channels first)")
        return torch.from_numpy(np.ascontiguousarray(arr))

    def fit(self, X: object, y: object, **train_options: Any) -> NetClassifier:
        """Train on the samples with a label (y >= 0; -1 marks unlabelled ones, skipped).
        train_options: TrainConfig fields; every labelled sample is trained on (no hold-out)."""
        x = self._as_tensor(X)
        labels = check_labels(y, len(x), self.n_classes)
        keep = labels >= 0
        if not keep.any():
            raise ValueError("y has no labelled sample; the supervised baseline needs labels")
        data = {"x": x[torch.from_numpy(keep)], "y": torch.from_numpy(labels[keep])}
        if self.class_balanced:
            counts = np.bincount(labels[keep], minlength=self.n_classes).astype(np.float64)
            present = counts > 0
            per_class = np.zeros(self.n_classes)
            per_class[present] = keep.sum() / (present.sum() * counts[present])
            data["weight"] = torch.from_numpy(per_class[labels[keep]]).float()
        config = TrainConfig(**{"test_fraction": 0.0, **train_options})
        self.history = train(self.module, data, config)
        self.module.to("cpu")
        return self

    @torch.no_grad()
    def predict_proba(self, X: object, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities (n, n_classes)."""
        x = self._as_tensor(X)
        self.module.eval()
        out = [torch.softmax(self.module.net(x[i : i + batch_size]), -1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    def predict(self, X: object) -> np.ndarray:
        """Most probable class (n,)."""
        return self.predict_proba(X).argmax(1)
