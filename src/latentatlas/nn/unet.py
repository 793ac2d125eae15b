"""A small U-Net for dense (per-pixel) segmentation: atoms, domain walls, defects.

Kept deliberately small (a few hundred thousand parameters at ``base=16, depth=3``) so it
trains on a CPU in minutes and ships inside the package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; saved as JSON beside the weights."""

    in_channels: int = 1
    out_channels: int = 1
    base: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "base"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNet {name} must be a positive integer, got {value!r}")
        if not isinstance(self.depth, int) or not 1 <= self.depth <= 6:
            raise ValueError(f"UNet depth must be an integer in [1, 6], got {self.depth!r}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # Two 3x3 convolutions; BatchNorm-free (GroupNorm-free too) so a single image at
    # inference time behaves exactly like a training batch.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.1),
    )


class UNet(nn.Module):
    """U-Net returning per-pixel logits.

    Input (n, in_channels, h, w) of any h, w: the image is padded (reflect) to a multiple of
    ``2**depth`` and the output cropped back, so the result is (n, out_channels, h, w).
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, base: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        self.config = UNetConfig(in_channels, out_channels, base, depth)
        # Free-form, JSON-serialisable facts about training (normalisation, data) kept with
        # the weights by save_segmenter.
        self.metadata: dict[str, Any] = {}
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for wdt in widths[:-1]:
            self.down.append(_block(c, wdt))
            c = wdt
        self.bottom = _block(c, widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
            self.merge.append(_block(2 * widths[i], widths[i]))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, in_channels, h, w) -> logits (n, out_channels, h, w)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects input of shape (n, {self.config.in_channels}, h, w), "
                f"got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        m = 2**self.config.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # Reflect padding needs pad < size; fall back to replicate for tiny inputs.
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)[:, :, :h, :w]
