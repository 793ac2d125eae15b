"""Model configuration: a frozen dataclass validated once, saved as config.json."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from latentatlas._latent_names import DEFAULT_LATENT_DIM, PoseLayout, content_latent_names
from latentatlas.nn.decoders import DECODERS, GENERATORS, POSE_DECODERS
from latentatlas.nn.encoders import ENCODERS

LIKELIHOODS = ("gaussian", "bernoulli")

# Upper bounds on sizes: far above any model this library trains, low enough that no config
# (nor a tampered config.json) can ask for more memory or Python objects than a machine has
# before a saved model's weights are compared with it.
MAX_SIDE = 65_536  # each entry of input_shape
MAX_INPUT = 1 << 24  # numbers in one sample
MAX_LATENT = 4096
MAX_HIDDEN = 16_384
MAX_LAYERS = 64
MAX_CONV_LAYERS = 8  # the conv encoder doubles its width at every layer
MAX_CONDITION = 65_536  # condition_dim, classes of one discrete variable


def _fail(name: str, allowed: str, value: object) -> NoReturn:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise ValueError(f"{name} must be {allowed}, got {shown}")


def _coerce(name: str, kind: Any, value: object) -> Any:
    """``value`` as the field's declared type (int, float, bool, str, tuple[int, ...]), or a
    ValueError naming the field. Numbers must be finite; bools are not numbers here."""
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool:
        if is_bool:
            return bool(value)
        _fail(name, "true or false", value)
    if kind is int:
        if isinstance(value, (int, np.integer)) and not is_bool:
            return int(value)
        _fail(name, "an integer", value)
    if kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not is_bool:
            number = float(value)
            if math.isfinite(number):
                return number
        _fail(name, "a finite number", value)
    if kind is str:
        if isinstance(value, str):
            return value
        _fail(name, "a string", value)
    if kind == tuple[int, ...]:
        if isinstance(value, (tuple, list, np.ndarray)) and len(value) <= 64:
            return tuple(_coerce(name, int, v) for v in value)
        _fail(name, "a list of at most 64 integers", value)
    raise TypeError(f"no coercion for field {name} of type {kind}")  # a bug, not bad input


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    """Declared type of every field of the config class ``cls`` (cached)."""
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _FIELD_TYPES[cls]


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
    ``equivariant_angle`` (used only with ``rotation``): the angle's mean comes from a rotation-equivariant
    head (``latentatlas.nn.encoders.PolarAngleHead``: turning the input by phi adds phi to it)
    and the content latents are encoded from the input turned back by the inferred pose, so
    they cannot carry the rotation. Off, the angle is one more output of the encoder, and with
    several kinds of objects the content latents can take over part of the rotation
    (benchmarks/RESULTS.md, issue 21). The ``rvae`` family switches it on.
    """

    input_shape: tuple[int, ...]
    latent_dim: int = DEFAULT_LATENT_DIM
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
    equivariant_angle: bool = False

    def __post_init__(self) -> None:
        for name, kind in _field_types(type(self)).items():
            object.__setattr__(self, name, _coerce(name, kind, getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        """Ranges and combinations of the (already typed) fields; families extend it."""
        shape = self.input_shape
        if len(shape) not in (2, 3) or min(shape) < 1 or max(shape) > MAX_SIDE:
            _fail("input_shape", f"(channels, h, w) or (channels, length) with sizes in [1, "
                  f"{MAX_SIDE}]", shape)
        if math.prod(shape) > MAX_INPUT:
            _fail("input_shape", f"at most {MAX_INPUT} numbers per sample", shape)
        if not 1 <= self.latent_dim <= MAX_LATENT:
            _fail("latent_dim", f"in [1, {MAX_LATENT}]", self.latent_dim)
        if self.encoder not in ENCODERS:
            _fail("encoder", f"one of {tuple(ENCODERS)}", self.encoder)
        if self.decoder not in DECODERS:
            _fail("decoder", f"one of {tuple(DECODERS)}", self.decoder)
        if self.decoder_base not in GENERATORS:
            _fail("decoder_base", f"one of {tuple(GENERATORS)}", self.decoder_base)
        if self.likelihood not in LIKELIHOODS:
            _fail("likelihood", f"one of {LIKELIHOODS}", self.likelihood)
        if not 1 <= self.hidden <= MAX_HIDDEN:
            _fail("hidden", f"in [1, {MAX_HIDDEN}]", self.hidden)
        if not 1 <= self.layers <= MAX_LAYERS:
            _fail("layers", f"in [1, {MAX_LAYERS}]", self.layers)
        if self.encoder == "conv" and self.layers > MAX_CONV_LAYERS:
            _fail("layers", f"<= {MAX_CONV_LAYERS} with encoder='conv' (it doubles its width "
                  "at every layer)", self.layers)
        for name in ("sigma", "angle_prior", "shift_prior", "scale_prior"):
            if not getattr(self, name) > 0:
                _fail(name, "> 0", getattr(self, name))
        if self.beta < 0:
            _fail("beta", ">= 0", self.beta)
        if not 0 <= self.condition_dim <= MAX_CONDITION:
            _fail("condition_dim", f"in [0, {MAX_CONDITION}]", self.condition_dim)
        if self.rotation and len(shape) != 3:
            _fail("rotation", "False for 1-D signals (input_shape (c, L))", self.rotation)
        if self.equivariant_angle and not self.rotation:
            _fail("equivariant_angle", "False unless rotation is True (it infers the angle)",
                  self.equivariant_angle)
        if self.has_pose and self.decoder not in POSE_DECODERS:
            _fail("decoder", f"one of {tuple(POSE_DECODERS)} when rotation, translation or scale is on",
                  self.decoder)

    @property
    def has_pose(self) -> bool:
        return self.rotation or self.translation or self.scale

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1

    @property
    def pose(self) -> PoseLayout:
        """The pose latents and their order (before the content latents)."""
        return PoseLayout(self.rotation, self.translation, self.scale, self.spatial_dims)

    @property
    def latent_names(self) -> list[str]:
        """Names of the encoder's latents, pose first, then content z1..zk."""
        return [*self.pose.names, *content_latent_names(self.latent_dim)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> VAEConfig:
        """The config from its ``to_dict`` form (e.g. read from JSON); every field is checked
        for type and range, and any problem is a ValueError naming the field."""
        if not isinstance(values, dict):
            raise ValueError(f"a {cls.__name__} must be a mapping of field names to values, got "
                             f"{type(values).__name__}")
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = [str(k) for k in values if k not in known]
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)[:10]}; known: "
                             f"{sorted(known)}")
        missing = [f.name for f in fields if f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{cls.__name__} lacks the required fields {missing}")
        return cls(**values)


CHANNELS = ("first", "last")


def normalise_shape(shape: tuple[int, ...] | list[int], image: bool | None = None,
                    channels: str | None = None) -> tuple[int, ...]:
    """The channels-first input shape of a model: (c, h, w) for images, (c, L) for signals.

    (h, w) -> (1, h, w) and (L,) -> (1, L); a 2-tuple is read as an image (h, w) unless
    ``image`` is False, when it is (c, L). channels: how a shape with a channel axis is laid
    out: ``"first"`` ((c, h, w), (c, L)), ``"last"`` ((h, w, c), (L, c)), or None: channels
    first, except that a 3-tuple that looks channel-last (its last size at most 4, the other
    two larger, e.g. (256, 256, 1)) is refused rather than read as 256 channels of 256 x 1
    images.
    """
    if channels not in (None, *CHANNELS):
        _fail("channels", f"None or one of {CHANNELS}", channels)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return (1, shape[0])
    if len(shape) == 2 and image is not False:
        if channels == "last":
            raise ValueError(f"input_shape {shape} has no channel axis to move (an image (h, w)); "
                             "drop channels='last' or pass (h, w, c)")
        return (1, *shape)
    if channels == "last":
        return (shape[-1], *shape[:-1])
    if channels is None and len(shape) == 3 and shape[2] <= 4 < min(shape[0], shape[1]):
        raise ValueError(
            f"input_shape {shape} looks channel-last (h, w, c); models take channels first. "
            f"Pass ({shape[2]}, {shape[0]}, {shape[1]}), or channels='last' to convert, or "
            "channels='first' if it really is (c, h, w)")
    return shape
