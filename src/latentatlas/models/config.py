"""Model configuration: a frozen dataclass validated once, saved as config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ENCODERS = ("mlp", "conv")
DECODERS = ("mlp", "conv", "spatial", "transform")
LIKELIHOODS = ("gaussian", "bernoulli")


def _fail(name: str, allowed: str, value: object) -> None:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a model of the VAE family (not how it is trained).

    input_shape: (c, h, w) for images or (c, L) for 1-D signals; (h, w) and (L,) are read as one
    channel only when passed through ``normalise_shape``.
    Pose latents are optional: ``rotation`` (angle, radians, prior N(0, angle_prior^2)),
    ``translation`` (shift in patch half-widths, prior N(0, shift_prior^2)) and ``scale``
    (log-scale, prior N(0, scale_prior^2)). Content latents: ``latent_dim`` >= 1, prior N(0, 1).
    ``condition_dim`` > 0 makes the decoder conditional on a known vector per sample
    (a one-hot class or continuous factors).
    ``beta`` weights the KL terms; a schedule given to the training plan overrides it.
    """

    input_shape: tuple[int, ...]
    latent_dim: int = 2
    rotation: bool = False
    translation: bool = False
    scale: bool = False
    encoder: str = "mlp"
    decoder: str = "spatial"
    decoder_base: str = "mlp"
    hidden: int = 128
    layers: int = 2
    likelihood: str = "gaussian"
    sigma: float = 0.1
    learn_sigma: bool = False
    angle_prior: float = 1.0
    shift_prior: float = 0.1
    scale_prior: float = 0.1
    condition_dim: int = 0
    beta: float = 1.0
    pose_consistency: float = 0.0
    consistency_symmetric: bool = False
    consistency_pose: bool = False
    consistency_swap: bool = False
    angle_prior_uniform: bool = False
    equivariant_angle: bool = False
    consistency_content_moved: bool = False
    augment_angle: float = 0.25
    augment_shift: float = 0.1
    augment_scale: float = 0.1

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            _fail("input_shape", "(channels, h, w) or (channels, length) with positive sizes", shape)
        if self.latent_dim < 1:
            _fail("latent_dim", ">= 1", self.latent_dim)
        if self.encoder not in ENCODERS:
            _fail("encoder", f"one of {ENCODERS}", self.encoder)
        if self.decoder not in DECODERS:
            _fail("decoder", f"one of {DECODERS}", self.decoder)
        if self.decoder_base not in ("mlp", "conv"):
            _fail("decoder_base", "'mlp' or 'conv'", self.decoder_base)
        if self.likelihood not in LIKELIHOODS:
            _fail("likelihood", f"one of {LIKELIHOODS}", self.likelihood)
        if self.hidden < 1 or self.layers < 1:
            _fail("hidden and layers", ">= 1", (self.hidden, self.layers))
        for name in ("sigma", "angle_prior", "shift_prior", "scale_prior"):
            if not getattr(self, name) > 0:
                _fail(name, "> 0", getattr(self, name))
        if self.beta < 0:
            _fail("beta", ">= 0", self.beta)
        if self.condition_dim < 0:
            _fail("condition_dim", ">= 0", self.condition_dim)
        if self.rotation and len(shape) != 3:
            _fail("rotation", "False for 1-D signals (input_shape (c, L))", self.rotation)
        if self.has_pose and self.decoder not in ("spatial", "transform"):
            _fail("decoder", "'spatial' or 'transform' when rotation, translation or scale is on",
                  self.decoder)

    @property
    def has_pose(self) -> bool:
        return self.rotation or self.translation or self.scale

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1

    @property
    def latent_names(self) -> list[str]:
        """Names of the encoder's latents, pose first, then content z1..zk."""
        names = ["angle"] if self.rotation else []
        if self.translation:
            names += ["shift_x", "shift_y"] if self.spatial_dims == 2 else ["shift"]
        if self.scale:
            names.append("log_scale")
        return names + [f"z{i + 1}" for i in range(self.latent_dim)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)


def normalise_shape(shape: tuple[int, ...] | list[int], image: bool | None = None) -> tuple[int, ...]:
    """(h, w) -> (1, h, w) and (L,) -> (1, L); (c, h, w) and (c, L) pass through.

    A 2-tuple is ambiguous: (h, w) image or (c, L) signal. It is read as an image unless
    ``image`` is False.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return (1, shape[0])
    if len(shape) == 2 and image is not False:
        return (1, *shape)
    return shape
