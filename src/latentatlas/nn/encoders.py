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
    """Flattens (n, c, *spatial) and applies an MLP."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp([math.prod(input_shape)] + [hidden] * layers + [out_dim])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class ConvEncoder(nn.Module):
    """Strided convolutions (2-D for images, 1-D for spectra), then a linear head."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
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
        self.head = mlp([n_features, hidden, out_dim])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "conv": ConvEncoder}
