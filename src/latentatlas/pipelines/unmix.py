"""The unmix job: a spectrum image file -> one method of the spectral toolbox -> a results
folder with the result (HDF5), its parameters (JSON), figures and a report.

``run_unmix`` is the Python entry point; ``latentatlas unmix`` is a thin shell over it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from latentatlas._files import safe_text
from latentatlas.pipelines.outputs import check_output, results_folder, save_signals
from latentatlas.spectral import unmix
from latentatlas.spectral._blocks import BLOCK_BYTES
from latentatlas.spectral.result import UnmixResult
from latentatlas.spectral.unmix import list_methods

log = logging.getLogger(__name__)

__all__ = ["UnmixRun", "run_unmix"]


@dataclass
class UnmixRun:
    """What :func:`run_unmix` produced."""

    result: UnmixResult
    out: Path | None = None
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    cube: Any = None

    def explore(self, **options: Any) -> Any:
        """The interactive explorer (maps, spectra, reconstruction) in a Jupyter notebook."""
        from latentatlas.report import explore

        return explore(self.result, cube=self.cube, **options)


def run_unmix(
    cube: str | os.PathLike[str],
    method: str = "pca",
    n_components: int = 3,
    out: str | os.PathLike[str] | None = None,
    *,
    channel: int | str | None = None,
    crop: tuple[float | None, float | None] | None = None,
    bin: int = 1,
    poisson: bool = False,
    scale: Literal[False, "channel", "global"] = False,
    offset: Literal["min"] | float | None = None,
    random_state: int | None = 0,
    device: str = "cpu",
    progress: bool = False,
    overwrite: bool = False,
    figure_formats: Sequence[str] = (),
    memory_budget: int | str | None = None,
    **options: Any,
) -> UnmixRun:
    """Unmix or cluster the spectra of the file ``cube`` and write ``out``.

    out: results folder (``<method>.h5``, ``<method>_params.json``, the result as ``.hspy``
    signals that ``hs.load`` opens, figures, index.html), checked before any work (see
    :mod:`latentatlas.pipelines.outputs`). figure_formats: ``svg`` and/or ``pdf`` copies of
    every figure beside the PNGs. memory_budget: bytes (or ``"2 GB"``) the run should stay
    under; the cube is then read lazily, a block of spectra at a time, never whole (methods
    ``pca``, ``nmf``, ``kmeans``; a cube of any size, as long as its maps fit). The other
    arguments are those of :func:`latentatlas.spectral.unmix`.
    """
    from latentatlas.io import load

    if method not in list_methods():
        raise ValueError(f"method must be one of {', '.join(list_methods())}, got {method!r}")
    source = os.fspath(cube)
    plan = None if out is None else check_output(out, [source], overwrite)
    if memory_budget is None:
        data = load(source, channel=channel)
        block_bytes = BLOCK_BYTES
    else:
        data, block_bytes = _open_within(source, channel, memory_budget, n_components)
    t0 = time.perf_counter()
    result = unmix(data, method, n_components, crop=crop, bin=bin, poisson=poisson, scale=scale,
                   offset=offset, random_state=random_state, device=device, progress=progress,
                   block_bytes=block_bytes, **options)
    run = UnmixRun(result, seconds=time.perf_counter() - t0, cube=data)
    if plan is None:
        return run
    config = {"method": method, "n_components": n_components, "channel": channel, "crop": crop,
              "bin": bin, "poisson": poisson, "scale": scale, "offset": offset,
              "random_state": random_state, "options": options,
              "memory_budget": memory_budget, "block_bytes": block_bytes}
    with results_folder(plan, "unmix", config, [source]) as tmp:
        run.files = _write(run, tmp, source, config, tuple(figure_formats))
    run.out = plan.path
    run.files = [plan.path / f.name for f in run.files]
    return run


#: what a block in flight costs, in blocks: the Dask chunk, its tensor, the next block read
#: ahead and the method's temporaries
_BLOCK_COPIES = 8
#: arrays of one value per spectrum per component the methods hold (scores, distances, ...)
_MAPS_COPIES = 6


def _open_within(source: str, channel: int | str | None, memory_budget: int | str,
                 n_components: int) -> tuple[Any, int]:
    """The cube of ``source`` opened lazily in blocks of whole spectra, and the block size
    that keeps the run under ``memory_budget``."""
    from latentatlas.io import load_lazy
    from latentatlas.pipelines.stream import BASE_BYTES, parse_bytes

    budget = parse_bytes(memory_budget)
    data = load_lazy(source, channel=channel)
    shape = data.data.shape
    if len(shape) < 2:
        raise ValueError(f"{source} holds a {len(shape)}-D array; unmix needs spectra "
                         "(..., channels)")
    n_spectra = int(np.prod(shape[:-1]))
    maps = n_spectra * (n_components + 2) * 8 * _MAPS_COPIES
    room = budget - BASE_BYTES - maps
    spectrum_bytes = int(shape[-1]) * 4 * int(np.prod(shape[1:-1]))
    if room < _BLOCK_COPIES * spectrum_bytes:
        raise ValueError(
            f"memory_budget {budget / 1e9:.2f} GB is too small for {n_spectra:,} spectra and "
            f"k={n_components}: about {(BASE_BYTES + maps + _BLOCK_COPIES * spectrum_bytes) / 1e9:.2f}"
            " GB are needed (libraries, maps, one block of spectra); raise memory_budget")
    block_bytes = int(min(room // _BLOCK_COPIES, 256 * 2**20))
    rows = max(1, block_bytes // spectrum_bytes)  # whole rows of the map per block
    data.data = data.data.rechunk({0: rows, **{i: -1 for i in range(1, len(shape))}})
    log.info("unmix within %.2f GB: blocks of %d rows (%.0f MB)", budget / 1e9, rows,
             rows * spectrum_bytes / 1e6)
    return data, block_bytes


def _write(run: UnmixRun, folder: Path, source: str, config: dict[str, Any],
           formats: tuple[str, ...]) -> list[Path]:
    from latentatlas.plots.spectral import save_figures
    from latentatlas.report import write_report

    result = run.result
    h5 = result.save(folder / f"{result.method}.h5")
    params = result.save_params(folder / f"{result.method}_params.json")
    signals = save_signals(result.save_hspy, folder)
    figs = save_figures(result, folder, formats=formats)
    summary: dict[str, Any] = {
        "method": result.method, "components": result.n_components,
        "navigation shape": list(result.navigation_shape or result.spatial_shape),
        "relative reconstruction error": result.reconstruction_error,
        "seconds": run.seconds}
    if result.explained_variance_ratio is not None:
        summary["explained variance (cumulative)"] = float(
            np.sum(result.explained_variance_ratio))
    if result.labels is not None:
        summary["pixels per cluster"] = np.bincount(
            result.labels[result.labels >= 0].ravel()).tolist()
    captions = {"scree": "Explained variance per component (log scale) and cumulative",
                "components": "Component spectra beside their loading maps",
                "clusters": "Cluster map beside the mean spectrum of each cluster",
                "maps": "Embedding maps"}
    write_report(
        folder / "index.html", f"latentatlas unmix: {safe_text(Path(source).name)}",
        [(captions.get(p.stem.removeprefix(f"{result.method}_"), p.stem), p) for p in figs],
        {"Parameters": config, "Method parameters": result.params},
        summary=summary, inputs=[source], command="latentatlas unmix",
        calibration={"maps": result.calibration.describe(),
                     "energy axis": f"{result.energy_name} {result.energy[0]:.6g} to "
                                    f"{result.energy[-1]:.6g} {result.energy_units}".rstrip(),
                     "channels": int(result.energy.shape[0])})
    explorer = _write_spectral_explorer(run, folder)
    return [h5, params, *signals, *figs, folder / "index.html", *explorer]

def _write_spectral_explorer(run: UnmixRun, folder: Path) -> list[Path]:
    """explorer.html, or nothing (with the reason logged) for cubes the explorer cannot
    hold in one page."""
    from latentatlas.io import is_lazy
    from latentatlas.report import write_explorer
    from latentatlas.report.explorer import MAX_CUBE_VALUES

    if is_lazy(run.cube) and run.cube.data.size > MAX_CUBE_VALUES:
        log.warning("no explorer.html: the cube (%s values) is too large for one page; the "
                    "maps and figures hold the result", f"{run.cube.data.size:,}")
        return []
    try:
        return [write_explorer(folder / "explorer.html", run.result, cube=run.cube)]
    except ValueError as exc:
        log.warning("no explorer.html: %s", exc)
        return []
