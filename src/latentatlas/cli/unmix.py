"""CLI commands: unmix (registered on latentatlas.cli.app.app)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from latentatlas.cli.app import app

_SLOW = {"blu", "umap", "tsne", "autoencoder", "vae", "shiftvae", "hdbscan", "isomap"}


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise typer.BadParameter(f"--option must look like KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # plain strings need no quotes
    return key.strip(), value


def _parse_crop(text: str) -> tuple[float | None, float | None] | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise typer.BadParameter(f"--crop must be LOW:HIGH in axis units (either may be empty), "
                                 f"got {text!r}")
    return tuple(float(p) if p.strip() else None for p in parts)  # type: ignore[return-value]


def _load_cube(path: Path, channel: str) -> Any:
    """A Dataset from latentatlas.io.load when present, else a plain .npy array."""
    try:
        from latentatlas.io import load
    except ImportError:  # the io layer is optional for this command: .npy still works
        pass
    else:
        key: int | str | None = None
        if channel:
            key = int(channel) if channel.isdigit() else channel
        return load(path, channel=key)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: only .npy cubes can be read without latentatlas.io")
    import numpy as np

    return np.load(path, allow_pickle=False)


@app.command("unmix")
def unmix_command(
    cube: Annotated[Path, typer.Argument(
        help="spectrum image (ny, nx, channels): .npy or any file latentatlas.io.load reads "
             "(.h5/.hf5, .3ds, .emd/.zip, .dm4 ...)")],
    method: Annotated[str, typer.Option(
        "--method", "-m", help="pca, nmf, blu, kmeans, gmm, dbscan, hdbscan, isomap, umap, "
                               "tsne, som, autoencoder, vae, shiftvae")] = "pca",
    k: Annotated[int, typer.Option(
        "-k", "--n-components", help="components / clusters / dimensions")] = 3,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("results/unmix"),
    channel: Annotated[str, typer.Option(help="channel or signal of a multi-signal file")] = "",
    crop: Annotated[str, typer.Option(
        help="channel range LOW:HIGH in axis units, e.g. 450:900")] = "",
    bin: Annotated[int, typer.Option(help="spatial binning factor")] = 1,
    poisson: Annotated[bool, typer.Option(help="Poisson-normalise counts first")] = False,
    scale: Annotated[str, typer.Option(
        help="'channel' or 'global': divide by the standard deviation first")] = "",
    offset: Annotated[str, typer.Option(
        help="'min' (subtract the minimum) or a number to subtract")] = "",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (torch-backed methods)")] = "cpu",
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="method option KEY=VALUE, repeatable (e.g. -o max_iter=500)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Unmix or cluster the spectra of a cube; write result .h5, PNG figures and params JSON."""
    from latentatlas.plots.spectral import save_figures
    from latentatlas.spectral import unmix

    options = dict(_parse_option(o) for o in option or [])
    off: str | float | None = None
    if offset:
        off = offset if offset == "min" else float(offset)
    try:
        data = _load_cube(cube, channel)
        if not quiet:
            typer.echo(f"unmix: {method} with k={k} on {cube.name}"
                       + (" (slow method: progress below)" if method in _SLOW else ""), err=True)
        t0 = time.perf_counter()
        result = unmix(data, method, k, crop=_parse_crop(crop), bin=bin, poisson=poisson,
                       scale=scale or False,  # type: ignore[arg-type]
                       offset=off, random_state=seed, device=device,  # type: ignore[arg-type]
                       progress=not quiet, **options)
        elapsed = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        h5 = result.save(out / f"{method}.h5")
        params = result.save_params(out / f"{method}_params.json")
        figs = save_figures(result, out)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    err = "" if result.reconstruction_error is None else \
        f"; relative reconstruction error {result.reconstruction_error:.4g}"
    typer.echo(f"{method}: {result.n_components} components on {result.spatial_shape} in "
               f"{elapsed:.1f} s{err}")
    for p in (h5, params, *figs):
        typer.echo(f"wrote {p}")
