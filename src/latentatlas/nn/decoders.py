"""Decoders: content latents (n, k) plus an optional pose -> raw outputs (n, c, *spatial).

Raw outputs are the mean of a Gaussian likelihood or the logits of a Bernoulli one. The pose
arrives as inverse affine matrices (n, D, D + 1) from ``latentatlas.nn.pose``; decoders that
cannot use a pose reject one.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from latentatlas.nn.encoders import mlp
from latentatlas.nn.pose import coordinate_grid, transform_coordinates, warp


class MLPDecoder(nn.Module):
    """Fully connected generator of the whole image at once (no pose)."""

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], hidden: int, layers: int) -> None:
        super().__init__()
        self.output_shape = output_shape
        self.net = mlp([latent_dim] + [hidden] * layers + [math.prod(output_shape)])

    def forward(self, z: Tensor, matrix: Tensor | None = None) -> Tensor:
        if matrix is not None:
            raise ValueError("the mlp decoder has no pose input; use decoder='spatial' or 'transform'")
        return self.net(z).view(-1, *self.output_shape)


class ConvDecoder(nn.Module):
    """Linear layers to a coarse feature map at 1/8 of the size, three x2 transposed
    convolutions (64 -> 32 -> 32 -> c channels), then a centred crop to size.

    The last convolution writes the output channels directly, so no wide layer runs at full
    resolution (a 32-channel full-resolution layer made the decoder ~6x slower on CPU).
    """

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], hidden: int, layers: int) -> None:
        super().__init__()
        channels, spatial = output_shape[0], output_shape[1:]
        self.output_shape = output_shape
        up = nn.ConvTranspose2d if len(spatial) == 2 else nn.ConvTranspose1d
        self.coarse = tuple(math.ceil(s / 8) for s in spatial)
        self.width = 64
        self.linear = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.1),
                                    nn.Linear(hidden, self.width * math.prod(self.coarse)),
                                    nn.LeakyReLU(0.1))
        self.body = nn.Sequential(
            up(self.width, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.1),
            up(32, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.1),
            up(32, channels, 4, stride=2, padding=1),
        )
        self.crop = tuple(slice((8 * c - s) // 2, (8 * c - s) // 2 + s)
                          for c, s in zip(self.coarse, spatial, strict=True))

    def forward(self, z: Tensor, matrix: Tensor | None = None) -> Tensor:
        if matrix is not None:
            raise ValueError("the conv decoder has no pose input; use decoder='spatial' or 'transform'")
        out = self.body(self.linear(z).view(-1, self.width, *self.coarse))
        return out[(slice(None), slice(None), *self.crop)]


class SpatialDecoder(nn.Module):
    """Coordinate-based generator (the spatial-VAE / rVAE design).

    Every pixel's coordinates, moved by the pose, go with the content latents through one MLP
    that outputs the C channel values at that pixel. The first layer is split into a coordinate
    part and a latent part so the latent projection is computed once per sample, not per pixel.
    """

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], hidden: int, layers: int) -> None:
        super().__init__()
        self.output_shape = output_shape
        spatial = output_shape[1:]
        self.register_buffer("grid", coordinate_grid(spatial), persistent=False)
        self.coord_in = nn.Linear(len(spatial), hidden, bias=False)
        self.latent_in = nn.Linear(latent_dim, hidden)
        self.body = mlp([hidden] * max(layers, 1) + [output_shape[0]])
        self.activation = nn.Tanh()

    def forward(self, z: Tensor, matrix: Tensor | None = None) -> Tensor:
        n = z.shape[0]
        grid: Tensor = self.grid  # type: ignore[assignment]
        coords = grid.expand(n, *grid.shape) if matrix is None else transform_coordinates(grid, matrix)
        h = self.activation(self.coord_in(coords.to(z.dtype)) + self.latent_in(z)[:, None, :])
        out = self.body(h)  # (n, P, c)
        return out.transpose(1, 2).reshape(n, *self.output_shape)


class TransformDecoder(nn.Module):
    """A canonical image from an MLP or conv decoder, then a differentiable affine warp by the
    pose (``latentatlas.nn.pose.warp``: bilinear, border repeated)."""

    def __init__(
        self,
        latent_dim: int,
        output_shape: tuple[int, ...],
        hidden: int,
        layers: int,
        base: str = "mlp",
    ) -> None:
        super().__init__()
        self.output_shape = output_shape
        self.canonical = GENERATORS[base](latent_dim, output_shape, hidden, layers)

    def forward(self, z: Tensor, matrix: Tensor | None = None) -> Tensor:
        image = self.canonical(z)
        return image if matrix is None else warp(image, matrix)


#: Decoders that render the image from the latents alone (also the bases of TransformDecoder).
GENERATORS: dict[str, type[MLPDecoder | ConvDecoder]] = {"mlp": MLPDecoder, "conv": ConvDecoder}
#: Decoders that can render a pose (rotation, translation, scale) of the object.
POSE_DECODERS: dict[str, type[nn.Module]] = {"spatial": SpatialDecoder, "transform": TransformDecoder}
#: Every decoder by the name a config uses.
DECODERS: dict[str, type[nn.Module]] = {**GENERATORS, **POSE_DECODERS}


def build_decoder(
    kind: str, latent_dim: int, output_shape: tuple[int, ...], hidden: int, layers: int, base: str
) -> nn.Module:
    """The decoder named ``kind`` (a key of :data:`DECODERS`); 'transform' warps a ``base``
    generator (a key of :data:`GENERATORS`)."""
    if kind == "transform":
        return TransformDecoder(latent_dim, output_shape, hidden, layers, base)
    return DECODERS[kind](latent_dim, output_shape, hidden, layers)
