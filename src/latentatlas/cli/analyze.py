"""``latentatlas analyze IMAGE``: the main job, a thin shell over latentatlas.pipelines.analyze."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from latentatlas._latent_names import DEFAULT_LATENT_DIM
from latentatlas.cli.app import (
    FIGURE_FORMAT_HELP,
    OVERWRITE_HELP,
    app,
    fail,
    parse_options,
    set_quiet,
    user_errors,
)


@app.command()
def analyze(
    image: list[str] = typer.Argument(  # noqa: B006  (typer's variadic argument)
        ..., help="image/stack file (npy, npz, tif, h5, dm3/dm4, emd, hspy, ...), several files "
        "taken as the frames of one stack, or example:lattice for a generated lattice with two "
        "kinds of sites"),
    atoms: str = typer.Option("peaks", help="atom finder: peaks, log, dcnn; none = sliding "
                              "windows"),
    atom_model: str = typer.Option("general", help="weights for --atoms dcnn: general, graphene "
                                   "(low-dose graphene) or a path"),
    window: int = typer.Option(0, "--window", "-w", help="patch side in pixels (0 = automatic)"),
    spacing: float = typer.Option(0.0, help="atom spacing in pixels for the atom finder "
                                  "(0 = estimated)"),
    stride: int = typer.Option(0, help="sliding-window step with --atoms none (0 = window/4)"),
    model: str = typer.Option("rvae", "--model", "-m", help="VAE family member (see latentatlas models)"),
    latent_dim: int = typer.Option(DEFAULT_LATENT_DIM, help="number of content latents"),
    model_option: list[str] = typer.Option([], "--model-option", "-M",  # noqa: B006
                                           help="model config KEY=VALUE, repeatable (e.g. -M "
                                           "equivariant_angle=false: the rVAE's faster plain "
                                           "encoder)"),
    epochs: int = typer.Option(0, "--epochs", "-e", help="training epochs (0 = chosen for the "
                               "number of patches: about 3000 optimiser steps)"),
    train_samples: int = typer.Option(5000, help="train on at most this many patches "
                                      "(random subset; 0 = all); all are encoded"),
    classes: int = typer.Option(0, "--classes", "-k", help="GMM components (0 = chosen by BIC)"),
    channel: str = typer.Option("", "--channel", "-c", help="channel of a multi-channel file "
                                "(index or name); several, comma-separated, become the channels "
                                "of each patch"),
    time_delay: int = typer.Option(1, help="stacks: frames t..t+k-1 as the channels of each "
                                   "patch (time-delay descriptors; 1 = off)"),
    lag: int = typer.Option(1, help="frames between the time-delay channels"),
    normalize: str = typer.Option("auto", help="patch normalisation: auto (background for "
                                  "atoms, image for windows), background (slow background and "
                                  "contrast changes removed), standardize, patch, image, none"),
    invert: bool = typer.Option(False, help="negate the image (dark atoms, e.g. ABF)"),
    seed: int = typer.Option(0, "--seed", "-s", help="random seed"),
    model_from: str = typer.Option("", "--model-from", help="reuse the trained model of this "
                                   "analyze results folder (no training; its patch size)"),
    out: str = typer.Option("results/analyze", "--out", "-o", help="results folder (a previous latentatlas "
                            "results folder there is replaced; anything else is refused)"),
    figure_format: list[str] = typer.Option([], "--figure-format", "-F",  # noqa: B006
                                            help=FIGURE_FORMAT_HELP),
    memory_budget: str = typer.Option("", "--memory-budget", help="stream a movie or image "
                                      "larger than memory (Zarr, HDF5, TIFF, .npy) chunk by "
                                      "chunk under this budget, e.g. '4 GB'; results in "
                                      "results.zarr (empty = read the input whole)"),
    overwrite: bool = typer.Option(False, "--overwrite", "-f", help=OVERWRITE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="no progress bars, warnings and errors only"),
) -> None:
    """Find atoms (or slide windows), train a VAE on the patches, map latents and classes."""
    from latentatlas.pipelines.analyze import analyze as run

    set_quiet(quiet)

    chans: list[int | str] = [int(c) if c.lstrip("-").isdigit() else c
                              for c in channel.split(",") if c]
    chan: int | str | list[int | str] | None = (
        None if not chans else chans[0] if len(chans) == 1 else chans)
    options: dict[str, Any] = dict(
        atoms=atoms, window=window or None, model=model, out=Path(out), progress=not quiet,
        latent_dim=latent_dim, epochs=epochs or None, n_components=classes or None,
        channel=chan, normalize=normalize, seed=seed,
        atom_options={**({"spacing": spacing} if spacing > 0 else {}),
                      **({"model": atom_model} if atoms == "dcnn" else {})},
        train_samples=train_samples or None, invert=invert, time_delay=time_delay, lag=lag,
        overwrite=overwrite, model_from=model_from or None,
        model_options=parse_options(model_option, "--model-option"))
    if memory_budget:
        _stream(image, memory_budget, figure_format, options)
        return
    with user_errors():
        result = run(image[0] if len(image) == 1 else image, stride=stride or None,
                     figure_formats=figure_format, **options)
    lab = result.labels
    typer.echo(f"{len(result.patches)} patches, {lab.n_components} classes "
               f"{lab.summary()['counts']}; results in {result.out}")
    if "adjusted_rand" in result.scores:
        typer.echo(f"adjusted Rand index against the generated truth: "
                   f"{result.scores['adjusted_rand']:.3f}")
    if result.activity is not None and result.activity.collapsed:
        typer.echo(f"WARNING: {result.activity.warning()}", err=True)
    if result.baselines is not None:
        typer.echo(f"verdict: {result.baselines.verdict}")
    typer.echo(f"report: {result.out / 'index.html' if result.out else '-'}")


def _stream(image: list[str], memory_budget: str, figure_format: list[str],
            options: dict[str, Any]) -> None:
    """``--memory-budget``: the same analysis through pipelines.stream.analyze_stream."""
    from latentatlas.pipelines.stream import analyze_stream

    if len(image) != 1:
        raise fail("--memory-budget streams one file (a movie or a large image); run the "
                   "files one by one or as a batch (latentatlas run)")
    if figure_format:
        raise fail("--figure-format is not available with --memory-budget (the streamed "
                   "run writes PNG figures of the first frame)")
    with user_errors():
        res = analyze_stream(image[0], memory_budget=memory_budget, **options)
    typer.echo(f"{res.n_patches} patches in {res.n_frames} frames, {res.n_classes} classes; "
               f"peak memory {res.peak_rss_bytes / 1e9:.2f} GB (budget "
               f"{res.memory_budget / 1e9:.2f} GB), {res.timings['per_frame']:.2f} s per frame; "
               f"results in {res.store}")
    typer.echo(f"report: {res.out / 'index.html'}")
