"""The typer application every command module registers on."""

import typer

app = typer.Typer(
    name="latentatlas",
    help="From microscopy images, stacks and spectral cubes to latent maps and components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
