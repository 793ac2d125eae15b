"""Model registry: names -> (model class, default config, capabilities). Drives ``get_model``,
loading, ensembles, the pipelines and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Capabilities:
    """What the models of a family do, so callers ask the registry instead of the model's type.

    needs_labels: ``fit(X, y)`` learns from class labels y (n,) (-1 = unknown where the family
    allows it, e.g. ssvae) and refuses to train without them; families without it refuse y.
    takes_condition: the decoder is conditioned on a known class or factor vector, which
    ``reconstruct``/``decode``/``manifold`` take as ``condition`` (the conditional VAE).
    has_classes: ``predict_proba(X)`` gives class probabilities (n, K), ``predict`` the class.
    has_pose: the family's default config has pose latents (angle, shifts) before the content.
    """

    needs_labels: bool = False
    takes_condition: bool = False
    has_classes: bool = False
    has_pose: bool = False


@dataclass(frozen=True)
class RegisteredModel:
    """A family: its class, one-line description, config defaults and capabilities.

    example: the fewest further config values with which the family builds (e.g. a conditional
    VAE needs ``n_classes``); the registry-wide tests build every family with it.
    capabilities: see :class:`Capabilities`; None for a family of members of another family
    (an ensemble), whose capabilities are its ``member`` family's (:func:`capabilities`).
    """

    model_class: Any  # a class with create(name, input_shape, ...) and from_saved(...)
    description: str
    defaults: dict[str, Any]
    example: dict[str, Any] = field(default_factory=dict)
    capabilities: Capabilities | None = Capabilities()


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, model_class: type, description: str, *,
                   example: dict[str, Any] | None = None,
                   capabilities: Capabilities | None = Capabilities(), **defaults: Any) -> None:
    """Make ``name`` available to get_model/load_model/the CLI with these config defaults.

    example and capabilities: see :class:`RegisteredModel`. A family of members (capabilities
    None) must have a default ``member``.
    """
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    if capabilities is None and "member" not in defaults:
        raise ValueError(f"{name!r}: a family of members (capabilities=None) needs a default "
                         "member=...")
    _REGISTRY[name] = RegisteredModel(model_class, description, defaults, dict(example or {}),
                                      capabilities)


def list_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {name: entry.description for name, entry in sorted(_REGISTRY.items())}


def registered(name: str) -> RegisteredModel:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def capabilities(name: str, config: Mapping[str, Any] | None = None) -> Capabilities:
    """The capabilities of family ``name`` built with ``config`` (get_model's keyword
    arguments): its own, or for an ensemble those of its ``member`` family."""
    entry = registered(name)
    if entry.capabilities is not None:
        return entry.capabilities
    member = {**entry.defaults, **(config or {})}["member"]
    if registered(member).capabilities is None:
        raise ValueError(f"the member of {name!r} must be a model family, got {member!r}")
    return capabilities(member)


def get_model(name: str, input_shape: tuple[int, ...] | list[int], seed: int = 0,
              signal_dims: int | None = None, channels: str | None = None, **config: Any) -> Any:
    """A new, untrained model of the registered family ``name``.

    input_shape: (h, w), (c, h, w) for images; (L,) for spectra, or (c, L) with signal_dims=1.
    channels: ``"last"`` to give (h, w, c) or (L, c) instead (converted to channels first);
    without it a shape that looks channel-last, e.g. (256, 256, 1), is refused with an error
    (``latentatlas.models.config.normalise_shape``). Further keyword arguments override the
    family's config defaults (see its config class).
    """
    entry = registered(name)
    return entry.model_class.create(name, input_shape, seed=seed, signal_dims=signal_dims,
                                    channels=channels, **{**entry.defaults, **config})
