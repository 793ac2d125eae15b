"""``latentatlas walls IMAGE_OR_STACK``: ferroelectric domain walls, a thin shell over
latentatlas.descriptors.walls and latentatlas.analysis.domains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from latentatlas.cli.app import app


def _load_frames(paths: list[Path], channel: str) -> tuple[np.ndarray, bool]:
    """(h, w) or (t, h, w) array from one file or several same-size images, and whether the
    signal is a PFM phase (degrees)."""
    from latentatlas.io import list_channels, load

    frames, is_phase = [], []
    for path in paths:
        chan: int | str | None = None
        if channel:
            chan = int(channel) if channel.lstrip("-").isdigit() else channel
        elif path.suffix.lower() in (".h5", ".hdf5", ".hf5"):
            # PFM files hold height, amplitude and phase; walls live in the phase
            names = list_channels(path)
            phase_names = [n for n in names if "phase" in n.lower() and "nap" not in n.lower()]
            chan = phase_names[0] if phase_names else None
        data = load(path, channel=chan)
        frames.append(np.asarray(data.data, dtype=np.float64))
        is_phase.append("phase" in (data.quantity + data.name).lower() or data.units == "deg")
    if len(frames) == 1:
        return frames[0], is_phase[0]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or frames[0].ndim != 2:
        raise ValueError(f"several inputs must be single images of one shape, got {shapes}")
    return np.stack(frames), all(is_phase)


@app.command()
def walls(
    inputs: Annotated[list[Path], typer.Argument(
        help="image or stack file(s) (npy, tif, PFM h5, ...); several images are stacked "
        "as frames in the order given")],
    method: Annotated[str, typer.Option(help="wall finder: canny, gaussian or dcnn")] = "gaussian",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("results/walls"),
    channel: Annotated[str, typer.Option(
        help="channel of a multi-channel file (index or name; default: the phase channel of "
        "PFM files)")] = "",
    phase: Annotated[str, typer.Option(
        help="treat the signal as PFM phase in degrees: auto (from the file's quantity/units), "
        "yes, no")] = "auto",
    sigma: Annotated[float, typer.Option(
        help="smoothing in pixels (negative = the method's default)")] = -1.0,
) -> None:
    """Find domain walls; write the mask (walls.npy), an overlay PNG per frame and a
    descriptor table (walls.csv/json: wall count, switching degree, curvature)."""
    from latentatlas.analysis.domains import analyze_walls, save_walls
    from latentatlas.descriptors.walls import METHODS
    from latentatlas.plots.domains import walls_figure
    from latentatlas.plots.maps import save_figure

    if method not in METHODS:
        typer.echo(f"error: --method must be one of {', '.join(METHODS)}, got {method!r}",
                   err=True)
        raise typer.Exit(2)
    if phase not in ("auto", "yes", "no"):
        typer.echo(f"error: --phase must be auto, yes or no, got {phase!r}", err=True)
        raise typer.Exit(2)
    try:
        image, looks_like_phase = _load_frames(inputs, channel)
        use_phase = looks_like_phase if phase == "auto" else phase == "yes"
        found, table = analyze_walls(image, method, phase=use_phase,
                                     sigma=None if sigma < 0 else sigma)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    paths = save_walls(out, found, table)
    frames = image[None] if image.ndim == 2 else image
    masks = found.mask[None] if found.mask.ndim == 2 else found.mask
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        save_figure(walls_figure(frame, mask, f"{method} walls, frame {i}"),
                    out / f"walls_{i:03d}.png")
    for row in table:
        typer.echo(
            f"frame {int(row['frame'])}: {int(row['wall_pixels'])} wall pixels, "
            f"{int(row['wall_count'])} walls, switching degree {row['switching_degree']:.3f}, "
            f"curvature {row['curvature']:.4f} /px"
        )
    typer.echo(f"mask {paths['mask']}, table {paths['table']}, overlays in {out}")
