"""Encoders: an input batch -> a flat feature vector of ``out_dim`` numbers per sample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


class PolarAngleHead(nn.Module):
    """A rotation-equivariant angle estimator: turning the input about ``centre`` by phi adds
    phi to the angle (exactly for multiples of 360/bins degrees about a pixel-grid symmetric
    centre, up to interpolation otherwise), whatever the weights.

    The input is resampled on a polar grid about the centre (``size`` radii up to one
    half-width, ``bins`` directions counter-clockwise as displayed, the ``latentatlas.nn.pose``
    convention), where a rotation is a circular shift along the direction axis. Two
    convolutions that wrap around that axis give local features; a last layer correlates them,
    around the whole circle, with one learnt template spanning all radii and directions, which
    scores each direction by how well the whole object, read from that direction, matches. The
    angle is the best-scoring direction refined by a soft-argmax over its ``2 * window + 1``
    neighbours. An object with k-fold symmetry scores k directions alike; the winner then stands
    for any of them, which is all its images can tell.
    """

    def __init__(self, channels: int, size: int, bins: int = 48, width: int = 16,
                 window: int = 2) -> None:
        super().__init__()
        self.bins, self.window = bins, window
        radii = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # (R,)
        directions = torch.arange(bins, dtype=torch.float32) * (2 * math.pi / bins)  # (M,)
        offsets = torch.stack([radii[:, None] * torch.cos(directions),
                               -radii[:, None] * torch.sin(directions)], -1)  # (R, M, 2) = (x, y)
        self.register_buffer("offsets", offsets, persistent=False)
        self.convs = nn.ModuleList([nn.Conv2d(channels, width, 3, padding=(1, 0)),
                                    nn.Conv2d(width, width, 3, padding=(1, 0))])
        self.template = nn.Parameter(torch.randn(width, size, bins) / math.sqrt(width * size * bins))

    def scores(self, x: Tensor, centre: Tensor) -> Tensor:
        """Direction scores (n, bins) of images x (n, c, h, w) about centres (n, 2) (x, y)."""
        offsets: Tensor = self.offsets  # type: ignore[assignment]
        grid = centre[:, None, None, :].to(x.dtype) + offsets.to(x.dtype)  # (n, R, M, 2)
        h = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        for conv in self.convs:
            h = F.leaky_relu(conv(F.pad(h, (1, 1, 0, 0), mode="circular")), 0.1)
        # Circular correlation score[m] = sum_j template[..., j] h[..., (m + j) % M], as one
        # matrix product with the template rolled to every direction (a (M, M) convolution
        # costs ~10x more on CPU).
        rolled = torch.stack([torch.roll(self.template, m, -1) for m in range(self.bins)])
        return h.flatten(1) @ rolled.flatten(1).T.to(h.dtype)

    def forward(self, x: Tensor, centre: Tensor) -> Tensor:
        """Angles (n,) in radians, in [-pi, pi)."""
        s = self.scores(x, centre)
        best = s.argmax(-1, keepdim=True)  # (n, 1); no gradient, the refinement carries it
        steps = torch.arange(-self.window, self.window + 1, device=x.device)
        near = (best + steps) % self.bins  # (n, 2w + 1)
        weights = torch.softmax(s.gather(1, near), -1)
        position = best[:, 0].to(s.dtype) + (weights * steps.to(s.dtype)).sum(-1)
        angle = position * (2 * math.pi / self.bins)
        return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
