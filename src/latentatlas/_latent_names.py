"""The names of a model's latents, in one place: the pose layout and the content latents.

A model's latents are its pose latents first, in the order of :class:`PoseLayout` (angle in
radians; shift in patch half-widths, x then y, or one ``shift`` for 1-D signals; log_scale),
then its content latents z1..zk. Free of torch, so reports and figures read names without
loading the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ANGLE = "angle"
SHIFTS_2D = ("shift_x", "shift_y")
SHIFT_1D = "shift"
SHIFT_NAMES = (*SHIFTS_2D, SHIFT_1D)
LOG_SCALE = "log_scale"
POSE_NAMES = (ANGLE, *SHIFT_NAMES, LOG_SCALE)
CONTENT_PREFIX = "z"
#: The number of content latents a model, a workflow or the CLI gets unless told otherwise.
DEFAULT_LATENT_DIM = 2


def content_latent_names(k: int) -> list[str]:
    """The names of k content latents: z1..zk."""
    return [f"{CONTENT_PREFIX}{i + 1}" for i in range(k)]


def is_content_latent(name: str) -> bool:
    """True for a content latent's name (z1, z2, ...), False for pose and other names."""
    return name.startswith(CONTENT_PREFIX) and name[len(CONTENT_PREFIX):].isdigit()


def content_columns(names: Sequence[str]) -> list[int]:
    """Indices of the content latents among ``names``."""
    return [i for i, n in enumerate(names) if is_content_latent(n)]


@dataclass(frozen=True)
class PoseLayout:
    """Which pose latents a model has and their order before the content latents.

    spatial_dims: 2 for images (shift_x, shift_y), 1 for spectra (shift).
    """

    rotation: bool = False
    translation: bool = False
    scale: bool = False
    spatial_dims: int = 2

    @property
    def shift_names(self) -> tuple[str, ...]:
        if not self.translation:
            return ()
        return SHIFTS_2D if self.spatial_dims == 2 else (SHIFT_1D,)

    @property
    def names(self) -> tuple[str, ...]:
        """The pose latents' names, in the encoder's order."""
        return ((ANGLE,) if self.rotation else ()) + self.shift_names + (
            (LOG_SCALE,) if self.scale else ())

    def __len__(self) -> int:
        return len(self.names)

    def split(self, latents: Any) -> tuple[Any, Any, Any]:
        """angle (n,), shift (n, spatial_dims) and log_scale (n,) from an array or tensor
        (n, m) whose first columns are the pose latents; None for a part the model lacks."""
        i = 0
        angle = shift = log_scale = None
        if self.rotation:
            angle, i = latents[:, 0], 1
        if self.translation:
            shift, i = latents[:, i : i + self.spatial_dims], i + self.spatial_dims
        if self.scale:
            log_scale = latents[:, i]
        return angle, shift, log_scale
