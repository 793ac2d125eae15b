"""``latentatlas run CONFIG.toml`` (one analysis over many files) and ``latentatlas rerun RUN``
(a results folder again, from its own record): thin shells over latentatlas.pipelines.batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentatlas.cli.app import OVERWRITE_HELP, app, set_quiet, user_errors


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(
        help="batch file (TOML): command, inputs (files or globs), out, options, and "
             "optionally model_from (an analyze run whose model every file reuses)")],
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="run the files in parallel on a local Dask cluster of this "
                                "many processes (0 = as the file says; serial by default)")] = 0,
    scheduler: Annotated[str, typer.Option(
        "--scheduler", help="a Dask scheduler address (tcp://host:8786) to run the files on "
                            "(its workers must see the same files); 'local' for a local "
                            "cluster")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", "-f", help=OVERWRITE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    """Apply one command with one set of options to many files; one results folder per file
    and a summary table across them (summary.csv, index.html)."""
    from latentatlas.pipelines.batch import run_config

    set_quiet(quiet)
    with user_errors():
        if workers < 0:
            raise ValueError(f"--workers must be >= 0, got {workers}")
        run = run_config(config, overwrite=overwrite,
                         scheduler=scheduler or None,
                         workers=workers or None)
    for row in run.rows:
        typer.echo(f"{row['folder']}: {row['status']} ({row['seconds']} s)")
    typer.echo(f"{len(run.rows) - len(run.failed)} of {len(run.rows)} files done; summary "
               f"{run.out / 'index.html'}")
    if run.failed:
        raise typer.Exit(1)


@app.command("rerun")
def rerun_command(
    folder: Annotated[Path, typer.Argument(help="a results folder written by latentatlas")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write the new results here (default: replace FOLDER)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-f", help=OVERWRITE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    """Run again the command that wrote FOLDER, with the configuration and inputs its
    latentatlas-run.json recorded."""
    from latentatlas.pipelines.batch import rerun

    set_quiet(quiet)
    with user_errors():
        rerun(folder, out, overwrite=overwrite)
    typer.echo(f"results in {out or folder}")
