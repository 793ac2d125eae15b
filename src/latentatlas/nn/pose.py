"""Pose transforms shared by the spatial and transform decoders.

Conventions (one place, used everywhere):
- Coordinates live on a grid in [-1, 1] along each axis: x runs along columns (left to right), y along
  rows (top to bottom), so a shift of 1 is one patch half-width.
- A pose (angle, shift, log-scale) maps a canonical object to the observed one: the canonical point p
  appears at q = s * R(angle) p + t. The angle is counter-clockwise as the image is displayed (rows
  downwards), in radians, so R = [[cos, sin], [-sin, cos]] in (x, y-down) coordinates.
- Decoders need the inverse map, observed pixel q -> canonical point p = R^T (q - t) / s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def coordinate_grid(spatial_shape: tuple[int, ...], device: torch.device | None = None) -> Tensor:
    """Pixel-centre coordinates in [-1, 1], shape (P, D) with D = len(spatial_shape).

    For images the columns are (x, y); for 1-D signals the single column is x. Matches
    ``torch.nn.functional.affine_grid(..., align_corners=False)``.
    """
    axes = [(torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1 for n in spatial_shape]
    if len(axes) == 1:
        return axes[0][:, None]
    rows, cols = torch.meshgrid(axes[0], axes[1], indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


def inverse_pose_matrix(
    n: int,
    dims: int,
    angle: Tensor | None,
    shift: Tensor | None,
    log_scale: Tensor | None,
    like: Tensor,
) -> Tensor:
    """Affine matrices (n, D, D + 1) taking observed coordinates to canonical ones.

    angle: (n,) radians or None; shift: (n, D) or None; log_scale: (n,) or None.
    """
    eye = torch.eye(dims, dtype=like.dtype, device=like.device).expand(n, dims, dims)
    linear = eye
    if angle is not None:
        if dims != 2:
            raise ValueError("rotation needs 2-D images; 1-D signals support only shift and scale")
        c, s = torch.cos(angle), torch.sin(angle)
        # R^T for R = [[c, s], [-s, c]]
        linear = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    if log_scale is not None:
        linear = linear * torch.exp(-log_scale)[:, None, None]
    t = shift if shift is not None else torch.zeros(n, dims, dtype=like.dtype, device=like.device)
    offset = -(linear @ t.unsqueeze(-1))
    return torch.cat([linear, offset], dim=-1)


def random_pose_matrix(
    n: int, dims: int, max_angle: float, max_shift: float, max_log_scale: float, like: Tensor
) -> Tensor:
    """Inverse pose matrices (n, D, D + 1) of poses drawn uniformly: angle in +-max_angle (2-D
    only), shift in +-max_shift per axis, log-scale in +-max_log_scale; for ``warp``."""

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, dtype=like.dtype, device=like.device) * 2 - 1

    angle = uniform(n) * max_angle if dims == 2 and max_angle > 0 else None
    shift = uniform(n, dims) * max_shift if max_shift > 0 else None
    log_scale = uniform(n) * max_log_scale if max_log_scale > 0 else None
    return inverse_pose_matrix(n, dims, angle, shift, log_scale, like)


def transform_coordinates(grid: Tensor, matrix: Tensor) -> Tensor:
    """Apply (n, D, D + 1) affine matrices to a (P, D) grid -> (n, P, D)."""
    return grid @ matrix[:, :, :-1].transpose(1, 2) + matrix[:, None, :, -1]


def invert_affine(matrix: Tensor) -> Tensor:
    """The inverse maps of (n, D, D + 1) affine matrices: x -> A x + b becomes A^-1 (x - b)."""
    linear_inv = torch.linalg.inv(matrix[:, :, :-1])
    return torch.cat([linear_inv, -(linear_inv @ matrix[:, :, -1:])], dim=-1)


def warp(image: Tensor, matrix: Tensor) -> Tensor:
    """Resample images (n, c, h, w) or signals (n, c, L) so that output pixel q shows the input at
    ``matrix`` q (coordinates as in ``coordinate_grid``), bilinearly.

    Outside the input's field of view the border is repeated, which for patches on a flat
    background is the background itself.
    """
    if image.dim() == 3:  # 1-D signal: warp as a one-row image
        # Built out of place (not by writing into zeros) so torch.func.vmap can batch it.
        zero = torch.zeros_like(matrix[:, 0, 0])
        full = torch.stack([torch.stack([matrix[:, 0, 0], zero, matrix[:, 0, 1]], -1),
                            torch.stack([zero, zero + 1, zero], -1)], -2)
        return warp(image.unsqueeze(2), full).squeeze(2)
    grid = F.affine_grid(matrix.to(image.dtype), list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
