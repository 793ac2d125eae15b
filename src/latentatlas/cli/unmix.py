"""CLI commands: unmix (registered on latentatlas.cli.app.app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from latentatlas.cli.app import (
    FIGURE_FORMAT_HELP,
    OVERWRITE_HELP,
    app,
    fail,
    parse_options,
    set_quiet,
    user_errors,
)

_SLOW = {"blu", "umap", "tsne", "autoencoder", "vae", "shiftvae", "hdbscan", "isomap"}


def _parse_crop(text: str) -> tuple[float | None, float | None] | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise typer.BadParameter(f"--crop must be LOW:HIGH in axis units (either may be empty), "
                                 f"got {text!r}")
    try:
        return tuple(float(p) if p.strip() else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise typer.BadParameter(f"--crop must be two numbers LOW:HIGH, got {text!r}") from None


@app.command("unmix")
def unmix_command(
    cube: Annotated[Path, typer.Argument(
        help="spectrum image (ny, nx, channels), line scan (n, channels) or (..., ny, nx, "
             "channels): .npy or any file latentatlas.io.load reads (.h5/.hf5, .3ds, .emd/.zip, "
             ".dm4, .hspy ...)")],
    method: Annotated[str, typer.Option(
        "--method", "-m", help="pca, nmf, blu, kmeans, gmm, dbscan, hdbscan, isomap, umap, "
                               "tsne, som, autoencoder, vae, shiftvae")] = "pca",
    k: Annotated[int, typer.Option(
        "-k", "--n-components", help="components / clusters / dimensions")] = 3,
    out: Annotated[str, typer.Option(
        "--out", "-o", help="results folder (default: results/unmix/METHOD)")] = "",
    channel: Annotated[str, typer.Option(
        "--channel", "-c", help="channel or signal of a multi-signal file (index or name; "
                                "see the names with --list-channels)")] = "",
    crop: Annotated[str, typer.Option(
        help="channel range LOW:HIGH in axis units, e.g. 450:900")] = "",
    bin: Annotated[int, typer.Option(help="spatial binning factor")] = 1,
    poisson: Annotated[bool, typer.Option(help="Poisson-normalise counts first")] = False,
    scale: Annotated[str, typer.Option(
        help="'channel' or 'global': divide by the standard deviation first")] = "",
    offset: Annotated[str, typer.Option(
        help="'min' (subtract the minimum) or a number to subtract")] = "",
    seed: Annotated[int, typer.Option("--seed", "-s", help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (torch-backed methods)")] = "cpu",
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-p", help="method option KEY=VALUE, repeatable (e.g. -p max_iter=500)")
    ] = None,
    figure_format: Annotated[list[str] | None, typer.Option(
        "--figure-format", "-F", help=FIGURE_FORMAT_HELP)] = None,
    memory_budget: Annotated[str, typer.Option(
        "--memory-budget", help="read the cube lazily, a block of spectra at a time, and stay "
                                "under this memory, e.g. '2 GB' (pca, nmf, kmeans; for cubes "
                                "larger than memory)")] = "",
    list_channels: Annotated[bool, typer.Option(
        "--list-channels", help="print the channels/signals of CUBE and exit")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-f", help=OVERWRITE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Unmix or cluster the spectra of a cube; write result .h5, params JSON, PNG figures and
    index.html into one results folder."""
    from latentatlas.pipelines.unmix import run_unmix
    from latentatlas.spectral.unmix import list_methods

    set_quiet(quiet)
    if list_channels:
        from latentatlas.io import list_channels as channels_of

        with user_errors():
            for i, name in enumerate(channels_of(cube)):
                typer.echo(f"{i}: {name}")
        return
    if method not in list_methods():
        raise fail(f"--method must be one of {', '.join(list_methods())}, got {method!r}")
    if k < 1:
        raise fail(f"-k must be >= 1, got {k}")
    if bin < 1:
        raise fail(f"--bin must be >= 1, got {bin}")
    if scale not in ("", "channel", "global"):
        raise fail(f"--scale must be channel or global, got {scale!r}")
    off: Literal["min"] | float | None = None
    if offset:
        try:
            off = "min" if offset == "min" else float(offset)
        except ValueError:
            raise fail(f"--offset must be 'min' or a number, got {offset!r}") from None
    options = parse_options(option, "--option")
    key: int | str | None = None
    if channel:
        key = int(channel) if channel.isdigit() else channel
    if not quiet:
        typer.echo(f"unmix: {method} with k={k} on {cube.name}"
                   + (" (slow method: progress below)" if method in _SLOW else ""), err=True)
    with user_errors():
        run = run_unmix(cube, method, k, out or Path("results") / "unmix" / method, channel=key,
                        crop=_parse_crop(crop), bin=bin, poisson=poisson,
                        scale=scale or False,  # type: ignore[arg-type]
                        offset=off, random_state=seed, device=device, progress=not quiet,
                        overwrite=overwrite, figure_formats=figure_format or (),
                        memory_budget=memory_budget or None, **options)
    result = run.result
    err = "" if result.reconstruction_error is None else \
        f"; relative reconstruction error {result.reconstruction_error:.4g}"
    typer.echo(f"{method}: {result.n_components} components on {result.spatial_shape} in "
               f"{run.seconds:.1f} s{err}")
    typer.echo(f"results in {run.out}; report {run.out / 'index.html' if run.out else '-'}")
