"""``latentatlas graphene IMAGE``: ring-labelled class-aware VAEs on graphene, a thin shell over
``latentatlas.pipelines.graphene.analyze_graphene``."""

from __future__ import annotations

from pathlib import Path

import typer

from latentatlas._latent_names import DEFAULT_LATENT_DIM
from latentatlas.cli.app import (
    FIGURE_FORMAT_HELP,
    OVERWRITE_HELP,
    app,
    set_quiet,
    user_errors,
)


@app.command()
def graphene(
    image: str = typer.Argument(
        ..., help="graphene image file (npy, npz, tif, h5, dm3/dm4, ...) or example:graphene "
        "for a generated sheet with Stone-Wales defects, divacancies and Si atoms"),
    coords: str = typer.Option(
        "", help="atom coordinates: .npy (n, 2) (row, col) or (n, 3) (row, col, class), or .npz "
        "(array 'coords'); default: found with --atoms. Pickled files (the AtomNet *-coord.npy "
        "dicts) are refused: convert them once with np.save('xyc.npy', "
        "np.load(f, allow_pickle=True)[()][0]) if you trust them"),
    model: str = typer.Option("ssvae", "--model", "-m", help="ssvae (semi-supervised), jvae (no "
                              "labels) or cvae (conditioned on the ring label); all rotation-invariant"),
    window: int = typer.Option(0, "--window", "-w", help="patch side in resampled pixels "
                               "(0 = about 4.8 bond lengths)"),
    bond_pixels: float = typer.Option(5.0, help="resample so a C-C bond spans this many pixels "
                                      "(0 = keep the image scale)"),
    labelled_fraction: float = typer.Option(0.1, help="fraction of ring labels the ssvae sees"),
    epochs: int = typer.Option(20, "--epochs", "-e", help="training epochs"),
    latent_dim: int = typer.Option(DEFAULT_LATENT_DIM, help="number of content latents"),
    atoms: str = typer.Option("dcnn", help="atom finder without --coords: dcnn (trained on "
                              "low-dose graphene), peaks, log"),
    seed: int = typer.Option(0, "--seed", "-s", help="random seed"),
    out: str = typer.Option("results/graphene", "--out", "-o", help="results folder (a previous latentatlas "
                            "results folder there is replaced; anything else is refused)"),
    figure_format: list[str] = typer.Option([], "--figure-format", "-F",  # noqa: B006
                                            help=FIGURE_FORMAT_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", "-f", help=OVERWRITE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="no progress bars, warnings and errors only"),
) -> None:
    """Atoms -> rings -> ring labels -> sub-images -> class-aware VAE; scores against the
    ring labels, figures, results.npz and index.html in OUT."""
    from latentatlas.pipelines.graphene import analyze_graphene

    set_quiet(quiet)
    with user_errors():
        result = analyze_graphene(
            image, coords=coords or None, model=model, window=window or None,
            labelled_fraction=labelled_fraction, epochs=epochs, out=Path(out), seed=seed,
            progress=not quiet, bond_pixels=bond_pixels or None, latent_dim=latent_dim,
            atoms=atoms, overwrite=overwrite, figure_formats=figure_format,
        )
    s = result.scores
    elements = ", ".join(f"{e} {n}" for e, n in result.element_counts().items())
    typer.echo(f"{len(result.coords)} atoms ({elements}), {len(result.rings.rings)} rings "
               f"{result.rings.size_counts()}; {len(result.patches)} patches")
    if "accuracy" in s:
        typer.echo(f"{model}: accuracy {s['accuracy']:.3f}, balanced accuracy "
                   f"{s['balanced_accuracy']:.3f} (majority baseline {s['majority_baseline']:.3f}) "
                   f"on {s['n_scored']} atoms")
    typer.echo(f"report: {result.out / 'index.html' if result.out else '-'}")
