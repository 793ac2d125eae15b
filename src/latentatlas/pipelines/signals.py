"""Results as calibrated HyperSpy signals: the latent and label maps of analyze and graphene,
the wall masks of walls, on the input's spatial axes (pixel size, offset, units).

Each ``*_signal_dicts`` function returns ``{name: signal dictionary}``
(:func:`latentatlas.io.hyperspy.signal_dict`); :func:`to_signals` turns them into HyperSpy
signals (needs ``hyperspy``) and :func:`save_signal_dicts` into ``.hspy`` files (needs
``rosettasciio``), which ``hs.load`` opens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas.analysis.latent_maps import paint_points
from latentatlas.io.calibration import Calibration
from latentatlas.io.dataset import Axis
from latentatlas.io.hyperspy import save_hspy, signal_dict, to_signal

__all__ = ["analysis_signal_dicts", "graphene_signal_dicts", "save_signal_dicts", "to_signals",
           "walls_signal_dicts"]


def _image_axes(cal: Calibration, step: tuple[float, float] = (1.0, 1.0),
                start: tuple[float, float] = (0.0, 0.0)) -> list[Axis]:
    """y and x axes of a map whose pixel (r, c) sits at image pixel ``start + step * (r, c)``."""
    units = cal.units if cal.calibrated else ""
    sy, sx = cal.scale if cal.calibrated else (1.0, 1.0)
    oy, ox = cal.offset if cal.calibrated else (0.0, 0.0)
    return [Axis("y", scale=sy * step[0], offset=oy + sy * start[0], units=units, kind="spatial"),
            Axis("x", scale=sx * step[1], offset=ox + sx * start[1], units=units, kind="spatial")]


def _frames(n: int) -> list[Axis]:
    return [Axis("frame", kind="frame")] if n > 1 else []


def analysis_signal_dicts(result: Any) -> dict[str, dict[str, Any]]:
    """``latents``: one map per latent (navigation axes ``latent`` and, for stacks, ``frame``;
    atoms painted as discs on the image pixels, NaN between them; sliding windows on their
    grid); ``labels``: the class map. Values are the model's (angle in radians, shifts in
    patch half-widths); the latent names are in ``metadata.latentatlas``."""
    maps, lab = result.maps, result.labels
    cal: Calibration = getattr(result, "calibration", Calibration())
    n_frames = int(maps.n_frames)
    meta = {"command": "analyze", "latent_names": json.dumps(list(maps.names)),
            "model": str(result.config.model)}
    if maps.grid_shape is not None:
        rows, cols = maps.grid_shape
        c = np.asarray(maps.centers)[: rows * cols]
        step = ((c[:, 0].max() - c[:, 0].min()) / max(rows - 1, 1),
                (c[:, 1].max() - c[:, 1].min()) / max(cols - 1, 1))
        axes = _image_axes(cal, step, (float(c[:, 0].min()), float(c[:, 1].min())))
        latents = np.stack([maps.grid(n) for n in maps.names])  # (k, frames, rows, cols)
        labels = np.asarray(lab.labels, dtype=np.int64).reshape(n_frames, rows, cols)
    else:
        axes = _image_axes(cal)
        latents = np.stack([np.stack([maps.raster(n, f) for f in range(n_frames)])
                            for n in maps.names])
        sel = [np.asarray(maps.frames) == f for f in range(n_frames)]
        labels = np.stack([paint_points(lab.labels[s], maps.centers[s], maps.image_shape)
                           for s in sel])
    if n_frames == 1:
        latents, labels = latents[:, 0], labels[0]
    latent_axis = Axis("latent")
    return {
        "latents": signal_dict(latents, [latent_axis, *_frames(n_frames), *axes], 2,
                               "latent maps", metadata=meta),
        "labels": signal_dict(labels, [*_frames(n_frames), *axes], 2, "classes",
                              quantity="class", metadata=meta),
    }


def graphene_signal_dicts(result: Any) -> dict[str, dict[str, Any]]:
    """``latents`` (one map per latent, discs at the atoms of the input image) and
    ``predictions`` (the predicted ring label of every atom, NaN between atoms)."""
    cal: Calibration = getattr(result, "calibration", Calibration())
    axes = _image_axes(cal)
    shape = tuple(result.image.shape)
    latents = np.stack([paint_points(result.latents[:, i], result.centers, shape)
                        for i in range(len(result.latent_names))])
    meta = {"command": "graphene", "latent_names": json.dumps(list(result.latent_names)),
            "label_names": json.dumps(list(result.table.label_names)),
            "model": str(result.config.model)}
    return {
        "latents": signal_dict(latents, [Axis("latent"), *axes], 2, "latent maps",
                               metadata=meta),
        "predictions": signal_dict(result.label_image("predictions"), axes, 2,
                                   "predicted ring labels", quantity="ring label",
                                   metadata=meta),
    }


def walls_signal_dicts(mask: np.ndarray, calibration: Calibration | None,
                       sources: Sequence[str], method: str) -> dict[str, dict[str, Any]]:
    """``walls``: the wall mask (``(h, w)`` or ``(frames, h, w)``, 1 on walls) on the image's
    axes."""
    m = np.asarray(mask, dtype=np.uint8)
    axes = _image_axes(calibration or Calibration())
    meta = {"command": "walls", "method": method, "sources": json.dumps(list(sources))}
    return {"walls": signal_dict(m, [*_frames(m.shape[0] if m.ndim == 3 else 1), *axes], 2,
                                 f"{method} walls", quantity="wall", metadata=meta)}


def to_signals(docs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """HyperSpy signals of signal dictionaries (needs ``hyperspy``)."""
    return {name: to_signal(doc) for name, doc in docs.items()}


def save_signal_dicts(docs: Mapping[str, dict[str, Any]], folder: str | Path) -> list[Path]:
    """Each dictionary as ``<name>.hspy`` in ``folder`` (needs ``rosettasciio``)."""
    return [save_hspy(Path(folder) / f"{name}.hspy", doc) for name, doc in docs.items()]
