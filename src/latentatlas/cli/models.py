"""CLI commands for the VAE family: ``models``, ``train``, ``encode``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from latentatlas._latent_names import DEFAULT_LATENT_DIM
from latentatlas.cli.app import OVERWRITE_HELP, app, set_quiet, user_errors


@app.command("models")
def models_command() -> None:
    """List the registered models."""
    from latentatlas.models import list_models

    for name, description in list_models().items():
        typer.echo(f"{name:12s} {description}")


@app.command("train")
def train_command(
    data: str = typer.Argument(..., help="samples file: .npy/.npz/.tif/.h5... with (n, h, w), "
                               "(n, c, h, w) or (n, L) samples; or example:shapes / example:peaks"),
    out: Path | None = typer.Option(None, help="run folder (default: the --resume folder, else "
                                    "results/train); a previous latentatlas run there is replaced, "
                                    "anything else is refused"),
    model: str = typer.Option("rvae", help="model name (see `latentatlas models`)"),
    latent_dim: int = typer.Option(DEFAULT_LATENT_DIM, help="number of content latents"),
    decoder: str = typer.Option("", help="mlp, conv, spatial or transform (default: the model's)"),
    likelihood: str = typer.Option("gaussian", help="gaussian or bernoulli"),
    signal_dims: int = typer.Option(0, help="1 for spectra, 2 for images (0: from the array's shape)"),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    accelerator: str = typer.Option("auto", help="cpu, cuda, gpu, auto (passed to Lightning Fabric)"),
    devices: str = typer.Option("1", help="number of devices or 'auto'"),
    precision: str = typer.Option("", help="e.g. 32-true, bf16-mixed (default: bf16-mixed on GPU)"),
    checkpoint_every: int = typer.Option(0, help="save a resumable training state every N epochs "
                                         "into RUN/checkpoints/"),
    resume: Path | None = typer.Option(None, help="run folder whose checkpoints/ to resume from"),
    labels: Path | None = typer.Option(None, help="integer class per sample (-1 = unknown), for "
                                       "models that learn from labels (cvae, ssvae, ssrvae)"),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar, warnings and errors only"),
) -> None:
    """Train a model on a samples file; write the model, latents and figures to a run folder."""
    from latentatlas.pipelines.train import train_run
    from latentatlas.train.plan import TrainConfig

    set_quiet(quiet)
    options = {"latent_dim": latent_dim, "likelihood": likelihood}
    if decoder:
        options["decoder"] = decoder
    train_options: dict[str, Any] = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         accelerator=accelerator,
                         devices=int(devices) if devices.isdigit() else devices,
                         precision=precision or None, checkpoint_every=checkpoint_every,
                         progress=not quiet)
    with user_errors():
        TrainConfig(**train_options)  # every option checked before any work
        run = train_run(data, out or resume or Path("results/train"), model=model,
                        signal_dims=signal_dims or None, model_options=options,
                        resume_from=resume, labels=labels, overwrite=overwrite, **train_options)
    typer.echo(f"trained {model} on {run.n_samples} samples; test ELBO {run.test_elbo:.4g}; "
               f"results in {run.out}")


@app.command("encode")
def encode_command(
    run: Path = typer.Argument(..., help="a run folder written by `latentatlas train`"),
    data: str = typer.Argument(..., help="samples file of the shape the model was trained on"),
    out: Path = typer.Option(Path("latents.npz"), help="output .npz with names, mean, std"),
    overwrite: bool = typer.Option(False, help="replace an existing --out that latentatlas "
                                   "did not write (an input is never replaced)"),
) -> None:
    """Encode samples with a trained model; write their latent means and standard deviations."""
    from latentatlas.pipelines.train import encode_file

    with user_errors():
        latents = encode_file(run, data, out, overwrite=overwrite)
    typer.echo(f"{len(latents)} samples, latents {', '.join(latents.names)} -> {out}")
