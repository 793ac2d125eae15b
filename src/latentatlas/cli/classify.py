"""``latentatlas classify FOLDER``: defect classes from a folder of labelled crops, a thin
shell over ``latentatlas.pipelines.classify.classify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentatlas.cli.app import OVERWRITE_HELP, app, fail, set_quiet, user_errors


@app.command()
def classify(
    folder: Annotated[Path, typer.Argument(
        help="folder of crops: FOLDER/<class>/<crop file> (the label is the sub-folder's "
        "name), or crop files with a CSV 'file,label'")],
    out: Annotated[Path, typer.Option(help="results folder")],
    model: Annotated[str, typer.Option(
        help="ssvae or ssrvae (semi-supervised: a stratified --labelled-fraction of the labels "
        "is seen), jvae or jrvae (no labels: joint VAE with a learned class prior)")] = "ssvae",
    labelled_fraction: Annotated[float, typer.Option(
        help="fraction of the labelled crops whose label the semi-supervised model sees")] = 0.2,
    n_classes: Annotated[int, typer.Option(
        help="number of classes K (0 = the number of classes in the labels)")] = 0,
    semi_prediction: Annotated[str, typer.Option(
        help="semi-supervised prediction: spread (the classifier's probabilities times "
        "class-balanced label spreading over the crops, chosen by leave-one-labelled-out) or "
        "classifier (its probabilities alone); both are scored")] = "spread",
    validation_fraction: Annotated[float, typer.Option(
        help="fraction of the seen labels held back as an explicit validation set")] = 0.0,
    labels: Annotated[str, typer.Option(help="CSV of file,label (default: the CSV in FOLDER, "
                                        "else the sub-folder names)")] = "",
    input_pixel_size: Annotated[float, typer.Option(
        help="pm per pixel of every crop, for crops without a calibration (0 = from the "
        "files)")] = 0.0,
    centre: Annotated[str, typer.Option(
        help="auto (the defect's coordinates in the file where present, else found), given, "
        "or finder (the bright dopant columns found in the image)")] = "auto",
    epochs: Annotated[int, typer.Option(
        help="training epochs (0 = the model's default: 20 semi-supervised, 30 joint)")] = 0,
    seed: Annotated[int, typer.Option(help="random seed (model, split, baselines)")] = 0,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
    quiet: Annotated[bool, typer.Option(help="warnings and errors only")] = False,
) -> None:
    """Centre every crop on its defect at one physical scale, train the model, and write
    per-crop predictions, scores beside baselines (results.json), figures and index.html."""
    from latentatlas.pipelines.classify import CLASSIFY_MODELS
    from latentatlas.pipelines.classify import classify as run

    set_quiet(quiet)
    if model not in CLASSIFY_MODELS:
        raise fail(f"--model must be one of {', '.join(sorted(CLASSIFY_MODELS))}, got {model!r}")
    if n_classes < 0 or input_pixel_size < 0 or epochs < 0:
        raise fail("--n-classes, --input-pixel-size and --epochs must be >= 0")
    with user_errors():
        result = run(folder, model=model, labelled_fraction=labelled_fraction,
                     n_classes=n_classes or None, out=out, labels=labels or None,
                     input_pixel_size=input_pixel_size or None, overwrite=overwrite,
                     validation_fraction=validation_fraction, centre=centre, epochs=epochs or None,
                     seed=seed, semi_prediction=semi_prediction)
    crops = result.data.crops
    typer.echo(f"{len(crops)} crops, classes {crops.counts()}; {result.n_classes} model classes "
               f"({result.occupied} occupied)")
    scores = result.scores
    if "model" in scores:
        s = scores["model"]
        typer.echo(f"{model}: accuracy {s['accuracy']:.3f}, balanced accuracy "
                   f"{s['balanced_accuracy']:.3f} on {scores['scored_crops']} scored crops")
        if "classifier" in scores and semi_prediction != "classifier":
            c = scores["classifier"]
            typer.echo(f"  {model} classifier alone: accuracy {c['accuracy']:.3f}, balanced "
                       f"accuracy {c['balanced_accuracy']:.3f}")
        for name, b in scores["baselines"].items():
            typer.echo(f"  {name}: accuracy {b['accuracy']:.3f}, balanced accuracy "
                       f"{b['balanced_accuracy']:.3f}")
    typer.echo(f"report: {result.out / 'index.html' if result.out else '-'}")
