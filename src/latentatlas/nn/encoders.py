"""Encoders: an input batch -> a flat feature vector of ``out_dim`` numbers per sample."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mlp(
    sizes: list[int], activation: type[nn.Module] = nn.Tanh, last_activation: bool = False
) -> nn.Sequential:
    """A plain multilayer perceptron on the sizes given, e.g. [in, 128, 128, out]."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattens (n, c, *spatial) and applies an MLP.

    condition_dim > 0: forward also takes a condition (n, condition_dim), e.g. a one-hot class,
    appended to the flattened input.
    """

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: int, layers: int,
                 condition_dim: int = 0) -> None:
        super().__init__()
        self.condition_dim = condition_dim
        self.net = mlp([math.prod(input_shape) + condition_dim] + [hidden] * layers + [out_dim])

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return self.net(_with_condition(x.flatten(1), condition, self.condition_dim))


class ConvEncoder(nn.Module):
    """Strided convolutions (2-D for images, 1-D for spectra), then a linear head.

    condition_dim > 0: forward also takes a condition (n, condition_dim), appended to the
    convolutional features before the head.
    """

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: int, layers: int,
                 condition_dim: int = 0) -> None:
        super().__init__()
        self.condition_dim = condition_dim
        channels, spatial = input_shape[0], input_shape[1:]
        conv = nn.Conv2d if len(spatial) == 2 else nn.Conv1d
        blocks: list[nn.Module] = []
        width = 32
        for _ in range(max(layers, 1)):
            blocks += [conv(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            channels, width = width, width * 2
        self.features = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            n_features = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.head = mlp([n_features + condition_dim, hidden, out_dim])

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return self.head(_with_condition(self.features(x), condition, self.condition_dim))


def _with_condition(features: Tensor, condition: Tensor | None, condition_dim: int) -> Tensor:
    """(n, f) features with the condition (n, condition_dim) appended; checks it is given
    exactly when the encoder was built for one."""
    if condition_dim == 0:
        if condition is not None:
            raise ValueError("condition given to an encoder built with condition_dim=0")
        return features
    if condition is None or condition.shape[-1] != condition_dim:
        got = None if condition is None else tuple(condition.shape)
        raise ValueError(f"this encoder needs a condition of shape (n, {condition_dim}), got {got}")
    return torch.cat([features, condition.to(features.dtype)], dim=-1)


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "conv": ConvEncoder}
