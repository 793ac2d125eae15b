"""Many files, one analysis: a batch run and re-running any results folder.

``run_batch`` applies one command (analyze, unmix, walls, graphene) with one set of options
to every input file, each into its own subfolder of one results folder, with a table of the
headline numbers across files (``summary.csv`` and ``index.html``). A file that fails is
recorded in the table with its error; the others still run. An analyze batch can reuse one
trained model for every file (``model_from``), so their latents share one space.

``run_config`` reads the same from a TOML file::

    command = "analyze"              # analyze, unmix, walls or graphene
    inputs = ["scans/*.h5"]          # files or glob patterns, relative to this file
    out = "results/batch"            # relative to this file
    model_from = "results/run1"      # optional (analyze): reuse this run's trained model
    scheduler = "local"              # optional: files in parallel on a Dask cluster ("local"
    workers = 4                      # or a scheduler address; see pipelines.parallel)
    [options]                        # the command's options, as in its Python function
    atoms = "peaks"
    epochs = 10

``rerun`` repeats a results folder from what its marker (``latentatlas-run.json``) recorded:
the command, its configuration and its inputs.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentatlas._files import safe_text, write_text_atomic
from latentatlas._repr import html_summary, text_summary
from latentatlas.pipelines.outputs import check_output, read_marker, results_folder

log = logging.getLogger(__name__)

__all__ = ["COMMANDS", "BatchRun", "expand_inputs", "rerun", "run_batch", "run_config"]


# ------------------------------------------------------------------------------ commands
# Each runner: (input, out folder, options, overwrite) -> summary row (headline numbers).

def _analyze(source: str, out: Path, options: dict[str, Any], overwrite: bool
             ) -> dict[str, Any]:
    from latentatlas.pipelines.analyze import analyze

    opts = dict(options)
    res = analyze(source, opts.pop("atoms", "peaks"), opts.pop("window", None),
                  opts.pop("model", "rvae"), out, progress=False, overwrite=overwrite, **opts)
    row: dict[str, Any] = {"patches": len(res.patches), "classes": res.labels.n_components,
                           "patches per class": res.labels.summary().get("counts")}
    row.update({f"score {k}": v for k, v in res.scores.items()})
    return row


def _unmix(source: str, out: Path, options: dict[str, Any], overwrite: bool
           ) -> dict[str, Any]:
    from latentatlas.pipelines.unmix import run_unmix

    opts = dict(options)
    extra = opts.pop("options", {}) or {}
    run = run_unmix(source, opts.pop("method", "pca"), opts.pop("n_components", 3), out,
                    overwrite=overwrite, **opts, **extra)
    return {"components": run.result.n_components,
            "reconstruction error": run.result.reconstruction_error}


def _walls(source: str, out: Path, options: dict[str, Any], overwrite: bool
           ) -> dict[str, Any]:
    from latentatlas.pipelines.walls import run_walls

    opts = dict(options)
    run = run_walls(source, opts.pop("method", "gaussian"), out, overwrite=overwrite, **opts)
    first = run.table[0]
    return {k: first[k] for k in ("wall_pixels", "wall_count", "switching_degree", "curvature")}


def _graphene(source: str, out: Path, options: dict[str, Any], overwrite: bool
              ) -> dict[str, Any]:
    from latentatlas.pipelines.graphene import analyze_graphene

    res = analyze_graphene(source, out=out, overwrite=overwrite, **options)
    return {"atoms": len(res.coords), **{k: res.scores.get(k) for k in (
        "accuracy", "balanced_accuracy", "majority_baseline")}}


Runner = Callable[[str, Path, dict[str, Any], bool], dict[str, Any]]
COMMANDS: dict[str, Runner] = {"analyze": _analyze, "unmix": _unmix, "walls": _walls,
                               "graphene": _graphene}


# ------------------------------------------------------------------------------ batch


@dataclass
class BatchRun:
    """What :func:`run_batch` did: one row per input (``input``, ``folder``, ``status``,
    ``seconds`` and the command's headline numbers) and the results folder."""

    command: str
    rows: list[dict[str, Any]]
    out: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]

    def _summary(self) -> dict[str, Any]:
        return {"command": self.command, "inputs": len(self.rows),
                "failed": len(self.failed), "out": self.out}

    def __repr__(self) -> str:
        return text_summary("BatchRun", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("BatchRun", self._summary())


def expand_inputs(patterns: Sequence[str | os.PathLike[str]], base: Path | None = None
                  ) -> list[str]:
    """Files named by ``patterns`` (paths or glob patterns, relative to ``base``), sorted
    within each pattern, each once."""
    files: list[str] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        full = text if base is None or os.path.isabs(text) else os.fspath(base / text)
        matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        if not matches:
            raise ValueError(f"no file matches {safe_text(text)!r}")
        files += [m for m in matches if m not in files]
    return files


def _folder_names(inputs: Sequence[str]) -> list[str]:
    """One subfolder name per input: its stem, numbered where stems repeat."""
    stems = [Path(p).stem or "input" for p in inputs]
    return [s if stems.count(s) == 1 else f"{s}-{i + 1}" for i, s in enumerate(stems)]


def run_batch(
    command: str,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    *,
    model_from: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    scheduler: str | Any | None = None,
    workers: int = 2,
) -> BatchRun:
    """Run ``command`` with ``options`` on every file of ``inputs`` (paths or globs), each
    into ``out/<file stem>/``; write ``summary.csv`` and ``index.html`` across files.

    model_from: (analyze) a previous analyze results folder whose trained model every file
    reuses, so all files are encoded in one latent space.
    scheduler, workers: ``None`` runs the files one after the other here; ``"local"`` on a
    local Dask cluster of ``workers`` processes, a scheduler address or a
    ``distributed.Client`` on that cluster (its workers must see the same file system):
    :func:`latentatlas.pipelines.parallel.run_many`.
    """
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
    files = expand_inputs(inputs)
    if not files:
        raise ValueError("give at least one input file")
    opts = dict(options or {})
    if model_from is not None:
        if command != "analyze":
            raise ValueError("model_from reuses an analyze model; it works with command "
                             f"'analyze', not {command!r}")
        opts["model_from"] = os.fspath(Path(model_from).resolve())
    plan = check_output(out, files, overwrite)
    config = {"command": command, "inputs": [safe_text(f) for f in files], "options": opts}
    rows: list[dict[str, Any]] = []
    with results_folder(plan, "run", config, files) as tmp:
        names = _folder_names(files)
        if scheduler is None:
            for source, name in zip(files, names, strict=True):
                t = time.perf_counter()
                row: dict[str, Any] = {"input": safe_text(source), "folder": name}
                try:
                    numbers = COMMANDS[command](source, tmp / name, opts, False)
                    row.update(status="ok", **numbers)
                except (ValueError, FileNotFoundError, OSError) as exc:
                    log.warning("%s failed on %s: %s", command, safe_text(source), exc)
                    row.update(status=f"failed: {safe_text(exc)}")
                row["seconds"] = round(time.perf_counter() - t, 2)
                rows.append(row)
        else:
            from latentatlas.pipelines.parallel import Job, run_many

            jobs = [Job(name, COMMANDS[command], (source, tmp / name, opts, False))
                    for source, name in zip(files, names, strict=True)]
            for source, outcome in zip(files, run_many(jobs, scheduler, workers), strict=True):
                row = {"input": safe_text(source), "folder": outcome.name}
                if outcome.ok:
                    row.update(status="ok", **outcome.value)
                else:
                    log.warning("%s failed on %s: %s", command, safe_text(source),
                                outcome.error)
                    row.update(status=f"failed: {safe_text(outcome.error)}")
                row["seconds"] = round(outcome.seconds, 2)
                rows.append(row)
        _write_summary(tmp, command, rows, opts, files)
    run = BatchRun(command, rows, plan.path, opts)
    log.info("%s on %d files (%d failed); summary in %s", command, len(rows), len(run.failed),
             safe_text(plan.path / "index.html"))
    return run


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _write_summary(folder: Path, command: str, rows: list[dict[str, Any]],
                   options: dict[str, Any], inputs: Sequence[str]) -> None:
    from latentatlas.report import write_report

    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = [",".join(keys)] + [",".join(_cell(r.get(k)) for k in keys) for r in rows]
    write_text_atomic(folder / "summary.csv", "\n".join(lines) + "\n")
    ok = sum(r["status"] == "ok" for r in rows)
    tables = {f"{r['folder']}": {k: v for k, v in r.items() if k != "folder"} for r in rows}
    write_report(
        folder / "index.html", f"latentatlas run: {command} on {len(rows)} files", (),
        {"Options": options, **tables},
        text=f"One results folder per input, each with its own report ({ok} of {len(rows)} "
             "succeeded); the table is also in summary.csv.",
        summary={r["folder"]: _headline(r) for r in rows},
        inputs=inputs, command=f"latentatlas run ({command})")


def _headline(row: Mapping[str, Any]) -> str:
    if row["status"] != "ok":
        return str(row["status"])
    skip = {"input", "folder", "status"}
    from latentatlas.report.html import format_value

    return "; ".join(f"{k} {format_value(v)}" for k, v in row.items() if k not in skip)


# ------------------------------------------------------------------------------ config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc


def run_config(path: str | os.PathLike[str], *, overwrite: bool = False,
               scheduler: str | None = None, workers: int | None = None) -> BatchRun:
    """Run the batch described by the TOML file ``path`` (see the module docstring);
    ``scheduler`` and ``workers``, when given, replace the file's (``workers`` with no
    scheduler anywhere: a local cluster)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no batch configuration at {path}")
    doc = _read_toml(path)
    allowed = {"command", "inputs", "out", "model_from", "options", "scheduler", "workers"}
    unknown = set(doc) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; the keys are "
                         f"{', '.join(sorted(allowed))}")
    for key in ("command", "inputs"):
        if key not in doc:
            raise ValueError(f"{path} needs '{key}' (see latentatlas.pipelines.batch)")
    inputs = doc["inputs"] if isinstance(doc["inputs"], list) else [doc["inputs"]]
    base = path.parent
    model_from = doc.get("model_from")
    if scheduler is None:
        scheduler = doc.get("scheduler", "local" if workers is not None else None)
    return run_batch(
        doc["command"], expand_inputs(inputs, base), base / doc.get("out", "results/batch"),
        doc.get("options", {}),
        model_from=None if model_from is None else base / model_from, overwrite=overwrite,
        scheduler=scheduler, workers=workers if workers is not None else int(doc.get("workers", 2)))


# ------------------------------------------------------------------------------ rerun


def rerun(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
          overwrite: bool = False) -> Any:
    """Run again what made the results folder ``folder`` (command, configuration and inputs
    from its marker), into ``out`` (default: ``folder`` itself, replaced when done)."""
    marker = read_marker(Path(folder))
    if marker is None:
        raise ValueError(f"{safe_text(folder)} is not a latentatlas results folder (no "
                         "latentatlas-run.json); give the folder a command wrote")
    command, config = marker.get("command"), dict(marker.get("config") or {})
    inputs = [str(p) for p in marker.get("inputs", [])]
    target = Path(out) if out is not None else Path(folder)
    if command == "run":
        return run_batch(config["command"], config["inputs"], target, config.get("options"),
                         overwrite=overwrite)
    if command not in COMMANDS:
        raise ValueError(f"{safe_text(folder)} was written by {command!r}, which cannot be "
                         f"re-run; re-runnable: {', '.join(COMMANDS)}, run")
    if not inputs:
        raise ValueError(f"{safe_text(folder)} records no input file (an example or an array): "
                         "run the command again by hand")
    if command == "analyze":
        if config.get("atoms") == "given":
            raise ValueError("this analyze run used coordinates passed as an array; they were "
                             "not saved as a file, so it cannot be re-run from its folder")
        from latentatlas.pipelines.analyze import analyze

        source: Any = inputs[0] if len(inputs) == 1 else inputs
        return analyze(source, progress=False, out=target, overwrite=overwrite, **config)
    if command == "graphene":
        from latentatlas.pipelines.graphene import analyze_graphene

        coords = inputs[1] if len(inputs) > 1 else None
        return analyze_graphene(inputs[0], coords=coords, out=target, overwrite=overwrite,
                                **config)
    if command == "unmix":
        from latentatlas.pipelines.unmix import run_unmix

        extra = config.pop("options", {}) or {}
        config.pop("block_bytes", None)  # recorded for the reader; derived from memory_budget
        return run_unmix(inputs[0], out=target, overwrite=overwrite, **config, **extra)
    from latentatlas.pipelines.walls import run_walls

    return run_walls(inputs if len(inputs) > 1 else inputs[0], out=target, overwrite=overwrite,
                     **config)
