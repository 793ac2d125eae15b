"""Model registry: names -> (model class, default config). Drives ``get_model``, loading and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RegisteredModel:
    """A family: its class, one-line description, config defaults and capabilities.

    example: the fewest further config values with which the family builds (e.g. a conditional
    VAE needs ``n_classes``); the registry-wide tests build every family with it.
    fit_labels: ``fit(X, y)`` takes class labels y (n,) (-1 = unlabelled where allowed).
    """

    model_class: Any  # a class with create(name, input_shape, ...) and from_saved(...)
    description: str
    defaults: dict[str, Any]
    example: dict[str, Any] = field(default_factory=dict)
    fit_labels: bool = False


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, model_class: type, description: str, *,
                   example: dict[str, Any] | None = None, fit_labels: bool = False,
                   **defaults: Any) -> None:
    """Make ``name`` available to get_model/load_model/the CLI with these config defaults.

    example and fit_labels: see :class:`RegisteredModel`.
    """
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = RegisteredModel(model_class, description, defaults, dict(example or {}),
                                      fit_labels)


def list_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {name: entry.description for name, entry in sorted(_REGISTRY.items())}


def registered(name: str) -> RegisteredModel:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


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
