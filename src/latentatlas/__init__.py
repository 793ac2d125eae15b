"""latentatlas: microscopy data to the few physical factors behind it.

The main entry points, importable from the top level (loaded on first use, so
``import latentatlas`` stays light):

- ``load(path)``: any supported file, array or HyperSpy signal -> data + calibrated axes
- ``analyze(image, atoms=..., model=...)``: atoms/windows -> VAE -> latent maps, labels, report
- ``unmix(cube, method=..., n_components=k)``: the spectral toolbox
- ``classify(folder, model=..., labelled_fraction=..., n_classes=..., out=...)``: a folder of
  labelled defect crops -> classes, scores beside baselines, report
- ``get_model(name, input_shape, ...)``, ``load_model(path)``, ``list_models()``: the VAE family
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "latentatlas.io",
    "load_all": "latentatlas.io",
    "analyze": "latentatlas.pipelines.analyze",
    "unmix": "latentatlas.spectral",
    "classify": "latentatlas.pipelines.classify",
    "get_model": "latentatlas.models",
    "load_model": "latentatlas.models",
    "list_models": "latentatlas.models",
}

# subpackages reachable as attributes (``la.io.load``) without importing them first
_SUBPACKAGES = ("analysis", "datasets", "descriptors", "io", "models", "nn", "pipelines",
                "plots", "report", "spectral", "train")

__all__ = ["__version__", *_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"latentatlas.{name}")
    raise AttributeError(f"module 'latentatlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
