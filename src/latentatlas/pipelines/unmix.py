"""The unmix job: a spectrum image file -> one method of the spectral toolbox -> a results
folder with the result (HDF5), its parameters (JSON), figures and a report.

``run_unmix`` is the Python entry point; ``latentatlas unmix`` is a thin shell over it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from latentatlas._files import safe_text
from latentatlas.pipelines.outputs import check_output, results_folder
from latentatlas.spectral import unmix
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
    **options: Any,
) -> UnmixRun:
    """Unmix or cluster the spectra of the file ``cube`` and write ``out``.

    out: results folder (``<method>.h5``, ``<method>_params.json``, figures, index.html),
    checked before any work (see :mod:`latentatlas.pipelines.outputs`). The other arguments
    are those of :func:`latentatlas.spectral.unmix`.
    """
    from latentatlas.io import load

    if method not in list_methods():
        raise ValueError(f"method must be one of {', '.join(list_methods())}, got {method!r}")
    source = os.fspath(cube)
    plan = None if out is None else check_output(out, [source], overwrite)
    data = load(source, channel=channel)
    t0 = time.perf_counter()
    result = unmix(data, method, n_components, crop=crop, bin=bin, poisson=poisson, scale=scale,
                   offset=offset, random_state=random_state, device=device, progress=progress,
                   **options)
    run = UnmixRun(result, seconds=time.perf_counter() - t0, cube=data)
    if plan is None:
        return run
    config = {"method": method, "n_components": n_components, "channel": channel, "crop": crop,
              "bin": bin, "poisson": poisson, "scale": scale, "offset": offset,
              "random_state": random_state, "options": options}
    with results_folder(plan, "unmix", config, [source]) as tmp:
        run.files = _write(run, tmp, safe_text(source), config)
    run.out = plan.path
    run.files = [plan.path / f.name for f in run.files]
    return run


def _write(run: UnmixRun, folder: Path, source: str, config: dict[str, Any]) -> list[Path]:
    from latentatlas.plots.spectral import save_figures
    from latentatlas.report import write_report

    result = run.result
    h5 = result.save(folder / f"{result.method}.h5")
    params = result.save_params(folder / f"{result.method}_params.json")
    figs = save_figures(result, folder)
    summary = {"method": result.method, "components": result.n_components,
               "spatial shape": list(result.spatial_shape), "seconds": round(run.seconds, 3),
               "relative reconstruction error": result.reconstruction_error}
    write_report(folder / "index.html", f"latentatlas unmix: {source}",
                 [(p.stem.replace("_", " "), p) for p in figs],
                 {"Summary": summary, "Parameters": config, "Method parameters": result.params})
    explorer = _write_spectral_explorer(run, folder)
    return [h5, params, *figs, folder / "index.html", *explorer]


def _write_spectral_explorer(run: UnmixRun, folder: Path) -> list[Path]:
    """explorer.html, or nothing (with the reason logged) for cubes the explorer cannot
    hold in one page."""
    from latentatlas.report import write_explorer

    try:
        return [write_explorer(folder / "explorer.html", run.result, cube=run.cube)]
    except ValueError as exc:
        log.warning("no explorer.html: %s", exc)
        return []
