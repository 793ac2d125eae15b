"""``latentatlas walls IMAGE_OR_STACK``: ferroelectric domain walls, a thin shell over
latentatlas.pipelines.walls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentatlas.cli.app import (
    FIGURE_FORMAT_HELP,
    OVERWRITE_HELP,
    app,
    fail,
    set_quiet,
    user_errors,
)

_PHASE = {"auto": None, "yes": True, "no": False}


@app.command()
def walls(
    inputs: Annotated[list[Path], typer.Argument(
        help="image or stack file(s) (npy, tif, PFM h5, ...); several images are stacked "
        "as frames in the order given")],
    method: Annotated[str, typer.Option(
        "--method", "-m", help="wall finder: canny, gaussian or dcnn")] = "gaussian",
    out: Annotated[Path, typer.Option("--out", "-o", help="results folder")] = Path(
        "results/walls"),
    channel: Annotated[str, typer.Option(
        "--channel", "-c", help="channel of a multi-channel file (index or name; default: the "
        "phase channel of PFM files)")] = "",
    phase: Annotated[str, typer.Option(
        help="treat the signal as PFM phase in degrees: auto (from the file's quantity/units), "
        "yes, no")] = "auto",
    sigma: Annotated[float, typer.Option(
        help="smoothing in pixels (negative = the method's default)")] = -1.0,
    noise: Annotated[float, typer.Option(
        help="changed fraction of repeated unswitched scans: the floor of the switch "
        "significance between consecutive frames")] = 0.0,
    figure_format: Annotated[list[str] | None, typer.Option(
        "--figure-format", "-F", help=FIGURE_FORMAT_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-f", help=OVERWRITE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    """Find domain walls; write the mask (walls.npy), an overlay PNG per frame, a descriptor
    table (walls.csv/json: wall count, switching degree, curvature, convexity, change to the
    next frame and its significance) and index.html."""
    from latentatlas.descriptors.walls import METHODS
    from latentatlas.pipelines.walls import run_walls

    set_quiet(quiet)
    if method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if phase not in _PHASE:
        raise fail(f"--phase must be auto, yes or no, got {phase!r}")
    if not 0 <= noise <= 1:
        raise fail(f"--noise must be a fraction in [0, 1], got {noise}")
    chan: int | str | None = None
    if channel:
        chan = int(channel) if channel.lstrip("-").isdigit() else channel
    with user_errors():
        run = run_walls(inputs, method, out, channel=chan, phase=_PHASE[phase],
                        sigma=None if sigma < 0 else sigma, noise=noise, overwrite=overwrite,
                        figure_formats=figure_format or ())
    for row in run.table:
        typer.echo(
            f"frame {row['frame']}: {row['wall_pixels']} wall pixels, {row['wall_count']} walls, "
            f"switching degree {row['switching_degree']:.3f}, curvature {row['curvature']:.4f} /px, "
            f"convexity {row['convexity']:.3f}, switch significance "
            f"{row['switch_significance']:.3f}"
        )
    typer.echo(f"results in {run.out}; report {run.out / 'index.html' if run.out else '-'}")
