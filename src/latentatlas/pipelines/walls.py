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
from typing import Any

import numpy as np

from latentatlas._files import safe_text, write_atomic, write_text_atomic
from latentatlas.analysis.domains import analyze_walls
from latentatlas.descriptors.walls import METHODS, Walls
from latentatlas.pipelines.outputs import check_output, results_folder

log = logging.getLogger(__name__)

__all__ = ["WallsRun", "load_frames", "run_walls", "save_walls"]


@dataclass
class WallsRun:
    """What :func:`run_walls` produced: the walls, one table row per frame, the frames'
    source files, and the results folder (None when not written)."""

    walls: Walls
    table: list[dict[str, Any]]
    sources: list[str]
    out: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def load_frames(paths: Sequence[str | os.PathLike[str]], channel: int | str | None = None
                ) -> tuple[np.ndarray, bool, list[str]]:
    """``(h, w)`` or ``(t, h, w)`` from one file or several same-size images, whether the
    signal is a PFM phase (degrees), and the source file of every frame."""
    from latentatlas.io import list_channels, load

    frames, is_phase, sources = [], [], []
    for path in paths:
        chan = channel
        if chan is None and Path(path).suffix.lower() in (".h5", ".hdf5", ".hf5"):
            # PFM files hold height, amplitude and phase; walls live in the phase
            names = list_channels(path)
            phase_names = [n for n in names if "phase" in n.lower() and "nap" not in n.lower()]
            chan = phase_names[0] if phase_names else None
        data = load(path, channel=chan)
        arr = np.asarray(data.data, dtype=np.float64)
        frames.append(arr)
        is_phase.append("phase" in (data.quantity + data.name).lower() or data.units == "deg")
        sources += [safe_text(path)] * (arr.shape[0] if arr.ndim == 3 else 1)
    if len(frames) == 1:
        return frames[0], is_phase[0], sources
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or frames[0].ndim != 2:
        raise ValueError(f"several inputs must be single images of one shape, got {shapes}")
    return np.stack(frames), all(is_phase), sources


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
) -> WallsRun:
    """Find domain walls in every frame and describe them.

    inputs: an image or stack file, or several same-size image files taken as frames.
    phase: treat the signal as PFM phase in degrees (None: from the file's quantity/units).
    noise: the changed fraction repeated unswitched scans show (``switch_noise_level``), the
    floor of the switch significance between consecutive frames (0: none known).
    out: results folder (walls.npy/csv/json, one overlay PNG per frame, index.html); checked
    before any work (see :mod:`latentatlas.pipelines.outputs`).
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
    image, looks_like_phase, frame_sources = load_frames(paths, channel)
    use_phase = looks_like_phase if phase is None else phase
    found, rows = analyze_walls(image, method, phase=use_phase, noise=noise, sigma=sigma)
    table: list[dict[str, Any]] = [
        {"frame": int(r["frame"]), "source": frame_sources[i],
         "wall_pixels": int(r["wall_pixels"]), "wall_count": int(r["wall_count"]),
         **{k: r[k] for k in ("switching_degree", "curvature", "convexity",
                              "changed_fraction", "switch_significance")}}
        for i, r in enumerate(rows)]
    run = WallsRun(found, table, frame_sources, timings={"walls": time.perf_counter() - t})
    if plan is not None:
        config = {"method": method, "channel": channel, "phase": use_phase, "sigma": sigma,
                  "noise": noise}
        with results_folder(plan, "walls", config, sources) as tmp:
            _write(run, image, tmp, config)
        run.out = plan.path
    return run


def _write(run: WallsRun, image: np.ndarray, folder: Path, config: dict[str, Any]) -> None:
    from latentatlas.plots.domains import walls_figure
    from latentatlas.plots.maps import save_figure
    from latentatlas.report import write_report

    save_walls(folder, run.walls, run.table)
    frames = image[None] if image.ndim == 2 else image
    masks = run.walls.mask[None] if run.walls.mask.ndim == 2 else run.walls.mask
    figs = []
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        path = save_figure(walls_figure(frame, mask, f"{run.walls.method} walls, frame {i}"),
                           folder / f"walls_{i:03d}.png")
        figs.append((f"Frame {i} ({run.sources[i]}): walls over the signal", path))
    tables = {f"Frame {r['frame']}": r for r in run.table}
    write_report(folder / "index.html", f"latentatlas walls: {run.sources[0]}", figs,
                 {"Parameters": {**config, "params": dict(run.walls.params)}, **tables})
