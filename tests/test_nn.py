"""Building blocks: every decoder's output shape, the random poses of augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from latentatlas.nn.decoders import build_decoder
from latentatlas.nn.pose import random_pose_matrix, warp


@pytest.mark.parametrize("kind,base", [("mlp", "mlp"), ("conv", "mlp"), ("spatial", "mlp"),
                                       ("transform", "mlp"), ("transform", "conv")])
@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 13, 17), (3, 40), (1, 7)])
def test_every_decoder_gives_the_output_shape_it_was_built_for(kind: str, base: str,
                                                               shape: tuple[int, ...]) -> None:
    decoder = build_decoder(kind, 4, shape, hidden=16, layers=2, base=base)
    out = decoder(torch.randn(5, 4))
    assert out.shape == (5, *shape)
    out.sum().backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_random_poses_stay_within_their_bounds_and_zero_bounds_give_the_identity() -> None:
    like = torch.zeros(())
    torch.manual_seed(0)
    identity = random_pose_matrix(50, 2, 0.0, 0.0, 0.0, like)
    torch.testing.assert_close(identity, torch.eye(2, 3).expand(50, 2, 3))
    m = random_pose_matrix(2000, 2, 0.3, 0.1, 0.2, like)
    linear = m[:, :, :2]
    scale = torch.sqrt(torch.linalg.det(linear))  # inverse map: 1 / s
    angle = torch.atan2(linear[:, 1, 0], linear[:, 0, 0])
    assert scale.min() >= math.exp(-0.2) - 1e-5 and scale.max() <= math.exp(0.2) + 1e-5
    assert angle.abs().max() <= 0.3 + 1e-5 and angle.abs().max() > 0.25  # the range is used
    shift = -torch.linalg.solve(linear, m[:, :, 2:]).squeeze(-1)
    assert shift.abs().max() <= 0.1 + 1e-5 and shift.abs().max() > 0.09
    one_d = random_pose_matrix(10, 1, 0.3, 0.1, 0.0, like)
    assert one_d.shape == (10, 1, 2) and torch.all(one_d[:, 0, 0] == 1)


def test_a_random_pose_moves_an_image_by_the_shift_it_was_drawn_with() -> None:
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8, 8] = 1.0
    torch.manual_seed(1)
    matrix = random_pose_matrix(1, 2, 0.0, 0.25, 0.0, image)
    shift_px = -matrix[0, :, 2] * 8  # half-widths -> pixels
    moved = warp(image, matrix)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centre = torch.stack([(moved * cols).sum(), (moved * rows).sum()]) / moved.sum()
    torch.testing.assert_close(centre - 8, shift_px, atol=0.05, rtol=0)
