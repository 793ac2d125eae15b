"""The walls job: PFM phase images (one file, a stack, or several files as frames) -> domain
walls, a descriptor table per frame, overlays and a report in one results folder.

``run_walls`` is the Python entry point; ``latentatlas walls`` is a thin shell over it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from latentatlas._files import safe_text, write_atomic, write_text_atomic
from latentatlas._repr import html_summary, text_summary
from latentatlas.analysis.domains import analyze_walls
from latentatlas.descriptors.walls import METHODS, Walls
from latentatlas.io.calibration import Calibration
from latentatlas.pipelines.outputs import check_output, results_folder, save_signals

log = logging.getLogger(__name__)

__all__ = ["Frames", "WallsRun", "load_frames", "run_walls", "save_walls"]


@dataclass
class WallsRun:
    """What :func:`run_walls` produced: the walls, one table row per frame, the frames'
    source files, and the results folder (None when not written)."""

    walls: Walls
    table: list[dict[str, Any]]
    sources: list[str]
    out: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    image: np.ndarray | None = None

    def _summary(self) -> dict[str, Any]:
        return {"method": self.walls.method, "frames": len(self.table),
                "wall_pixels": [r["wall_pixels"] for r in self.table],
                "wall_count": [r["wall_count"] for r in self.table],
                "calibration": self.calibration.describe(), "out": self.out}

    def __repr__(self) -> str:
        return text_summary("WallsRun", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("WallsRun", self._summary())

    def plot(self) -> dict[str, Any]:
        """One overlay figure per frame, ``{"walls_000": Figure, ...}`` (needs ``image``)."""
        return {name: fig for name, (_, fig) in _figure_set(self).items()}

    def to_signals(self) -> dict[str, Any]:
        """The wall mask as a calibrated HyperSpy signal (needs ``hyperspy``)."""
        from latentatlas.pipelines.signals import to_signals, walls_signal_dicts

        return to_signals(walls_signal_dicts(self.walls.mask, self.calibration, self.sources,
                                             self.walls.method))


class Frames(NamedTuple):
    """What :func:`load_frames` read: ``(h, w)`` or ``(t, h, w)`` images, whether they are PFM
    phase in degrees, the source file of every frame, and the pixel size."""

    image: np.ndarray
    is_phase: bool
    sources: list[str]
    calibration: Calibration


def load_frames(paths: Sequence[str | os.PathLike[str]], channel: int | str | None = None
                ) -> Frames:
    """``(h, w)`` or ``(t, h, w)`` from one file or several same-size images, whether the
    signal is a PFM phase (degrees), the source file of every frame, and the pixel size (of
    the first file)."""
    from latentatlas.io import list_channels, load

    frames, is_phase, sources = [], [], []
    calibrations: list[Calibration] = []
    for path in paths:
        chan = channel
        if chan is None and Path(path).suffix.lower() in (".h5", ".hdf5", ".hf5"):
            # PFM files hold height, amplitude and phase; walls live in the phase
            names = list_channels(path)
            phase_names = [n for n in names if "phase" in n.lower() and "nap" not in n.lower()]
            chan = phase_names[0] if phase_names else None
        data = load(path, channel=chan)
        arr = np.asarray(data.data, dtype=np.float64)
        calibrations.append(Calibration.from_axes(data.axes))
        frames.append(arr)
        is_phase.append("phase" in (data.quantity + data.name).lower() or data.units == "deg")
        sources += [safe_text(path)] * (arr.shape[0] if arr.ndim == 3 else 1)
    if len(frames) == 1:
        return Frames(frames[0], is_phase[0], sources, calibrations[0])
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or frames[0].ndim != 2:
        raise ValueError(f"several inputs must be single images of one shape, got {shapes}")
    if len(set(calibrations)) > 1:
        log.warning("the frames have different pixel sizes (%s); the maps use the first's",
                    ", ".join(sorted({c.describe() for c in calibrations})))
    return Frames(np.stack(frames), all(is_phase), sources, calibrations[0])


def save_walls(out: str | os.PathLike[str], walls: Walls, table: Sequence[Mapping[str, Any]]
               ) -> dict[str, Path]:
    """Write ``walls.npy`` (bool mask), ``walls.csv`` (the table: counts as integers, the
    source file of every frame) and ``walls.json`` (method, settings, table) into ``out``,
    each atomically. Returns the paths."""
    out_dir = Path(out)
    paths = {"mask": out_dir / "walls.npy", "table": out_dir / "walls.csv",
             "summary": out_dir / "walls.json"}

    def cell(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value.replace('"', '""') + '"'
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        return f"{float(value):.6g}"

    keys = list(table[0]) if table else []
    lines = [",".join(keys)] + [",".join(cell(row[k]) for k in keys) for row in table]

    def write_npy(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, walls.mask)

    doc = {"method": walls.method, "params": dict(walls.params), "frames": [dict(r) for r in table]}
    write_atomic(paths["mask"], write_npy)
    write_text_atomic(paths["table"], "\n".join(lines) + "\n")
    write_text_atomic(paths["summary"], json.dumps(doc, indent=2, default=float, allow_nan=True))
    return paths


def run_walls(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    method: str = "gaussian",
    out: str | os.PathLike[str] | None = None,
    *,
    channel: int | str | None = None,
    phase: bool | None = None,
    sigma: float | None = None,
    noise: float = 0.0,
    overwrite: bool = False,
    figure_formats: Sequence[str] = (),
) -> WallsRun:
    """Find domain walls in every frame and describe them.

    inputs: an image or stack file, or several same-size image files taken as frames.
    phase: treat the signal as PFM phase in degrees (None: from the file's quantity/units).
    noise: the changed fraction repeated unswitched scans show (``switch_noise_level``), the
    floor of the switch significance between consecutive frames (0: none known).
    out: results folder (walls.npy/csv/json, walls.hspy, one overlay PNG per frame,
    index.html); checked before any work (see :mod:`latentatlas.pipelines.outputs`).
    figure_formats: ``svg`` and/or ``pdf`` copies of every figure beside the PNGs.
    """
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be a fraction in [0, 1], got {noise}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise ValueError("give at least one image or stack file")
    sources = [os.fspath(p) for p in paths]
    plan = None if out is None else check_output(out, sources, overwrite)
    t = time.perf_counter()
    image, looks_like_phase, frame_sources, calibration = load_frames(paths, channel)
    use_phase = looks_like_phase if phase is None else phase
    found, rows = analyze_walls(image, method, phase=use_phase, noise=noise, sigma=sigma)
    table: list[dict[str, Any]] = [
        {"frame": int(r["frame"]), "source": frame_sources[i],
         "wall_pixels": int(r["wall_pixels"]), "wall_count": int(r["wall_count"]),
         **{k: r[k] for k in ("switching_degree", "curvature", "convexity",
                              "changed_fraction", "switch_significance")}}
        for i, r in enumerate(rows)]
    run = WallsRun(found, table, frame_sources, timings={"walls": time.perf_counter() - t},
                   calibration=calibration, image=image)
    if plan is not None:
        config = {"method": method, "channel": channel, "phase": use_phase, "sigma": sigma,
                  "noise": noise}
        with results_folder(plan, "walls", config, sources) as tmp:
            _write(run, tmp, config, sources, tuple(figure_formats))
        run.out = plan.path
    return run


def _figure_set(run: WallsRun) -> dict[str, Any]:
    """name -> (caption, Figure): the walls over the signal, one figure per frame."""
    from latentatlas.plots.domains import walls_figure

    if run.image is None:
        raise ValueError("this WallsRun holds no image to draw the walls on")
    frames = run.image[None] if run.image.ndim == 2 else run.image
    masks = run.walls.mask[None] if run.walls.mask.ndim == 2 else run.walls.mask
    return {f"walls_{i:03d}": (
        f"Frame {i} ({run.sources[i]}): {run.walls.method} walls over the signal",
        walls_figure(frame, mask, f"{run.walls.method} walls, frame {i}",
                     calibration=run.calibration))
        for i, (frame, mask) in enumerate(zip(frames, masks, strict=True))}


def _write(run: WallsRun, folder: Path, config: dict[str, Any], inputs: list[str],
           formats: tuple[str, ...]) -> None:
    from latentatlas.pipelines.signals import save_signal_dicts, walls_signal_dicts
    from latentatlas.plots.style import save_figure
    from latentatlas.report import write_report

    save_walls(folder, run.walls, run.table)
    save_signals(lambda f: save_signal_dicts(
        walls_signal_dicts(run.walls.mask, run.calibration, run.sources, run.walls.method), f),
        folder)
    figs = [(caption, save_figure(fig, folder / f"{name}.png", formats=formats))
            for name, (caption, fig) in _figure_set(run).items()]
    keys = ("wall_pixels", "wall_count", "switching_degree", "curvature")
    summary: dict[str, Any] = {"method": run.walls.method, "frames": len(run.table)}
    if len(run.table) == 1:
        summary.update({k: run.table[0][k] for k in keys})
    else:
        summary.update({f"{k} (first, last frame)": [run.table[0][k], run.table[-1][k]]
                        for k in keys})
    summary["curvature units"] = "1/px"
    tables: dict[str, Any] = {
        "Parameters": {**config, "params": dict(run.walls.params)},
        **{f"Frame {r['frame']}": r for r in run.table}}
    write_report(folder / "index.html", f"latentatlas walls: {safe_text(Path(run.sources[0]).name)}",
                 figs, tables, summary=summary, inputs=inputs, command="latentatlas walls",
                 calibration={"pixel size": run.calibration.describe()})
    _write_explorer(run, folder)


def _write_explorer(run: WallsRun, folder: Path) -> None:
    """explorer.html: patches cut at wall pixels, placed by their first two principal
    components (no model is trained here) and coloured by their local wall descriptors."""
    from latentatlas.descriptors.walls import wall_patches
    from latentatlas.models.latents import Latents
    from latentatlas.pipelines.analyze import explorer_calibration
    from latentatlas.report import write_explorer
    from latentatlas.report.explorer_adapters import from_walls

    image = run.image
    if image is None or not run.walls.mask.any():
        log.info("no walls found: no explorer.html")
        return
    h, w = image.shape[-2:]
    window = int(np.clip(min(h, w) // 8, 8, 48))
    patches = wall_patches(image, run.walls, window)
    if len(patches) < 3:
        return
    flat = patches.data.reshape(len(patches), -1).astype(np.float64)
    flat -= flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    scores = flat @ vt[:2].T
    latents = Latents(["pc1", "pc2"][: scores.shape[1]], scores, np.zeros_like(scores))
    calibration = explorer_calibration(run.calibration)
    write_explorer(folder / "explorer.html",
                   from_walls(image, run.walls, patches, latents, **calibration))
