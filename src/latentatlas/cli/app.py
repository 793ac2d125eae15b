"""The typer application every command module registers on, and what the commands share:
clean errors instead of tracebacks, and a quiet switch that silences the log."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from latentatlas import __version__
from latentatlas._files import safe_text

app = typer.Typer(
    name="latentatlas",
    help="From microscopy images, stacks and spectral cubes to latent maps and components. "
    "Every command writes one results folder with an index.html report; short flags are the "
    "same everywhere: -o/--out, -c/--channel, -m/--method or --model, -k (components or "
    "classes), -e/--epochs, -s/--seed, -F/--figure-format, -f/--overwrite, -q/--quiet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"latentatlas {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", callback=_show_version,
                                 is_eager=True, help="print the version and exit"),
) -> None:
    """Options of the program itself (the commands have their own)."""


OVERWRITE_HELP = ("write into an existing --out that is not a latentatlas results folder; only "
                  "latentatlas's own files are replaced, other files are kept")


FIGURE_FORMAT_HELP = "also write every figure as svg or pdf (repeatable); PNGs are always written"


# Python parameter names that hints in error messages use, and the options that set them
_FLAGS = {
    "atoms": "--atoms", "bin": "--bin", "channel": "--channel", "coords": "--coords",
    "crop": "--crop", "device": "--device", "epochs": "--epochs", "latent_dim": "--latent-dim",
    "method": "--method", "n_components": "-k", "offset": "--offset",
    "overwrite": "--overwrite", "poisson": "--poisson", "scale": "--scale", "sigma": "--sigma",
    "signal": "--channel", "stride": "--stride", "window": "--window",
}
_HINT = re.compile(r"\b(" + "|".join(sorted(_FLAGS, key=len, reverse=True))
                   + r")=(['\"]?)([\w.:-]*)\2")


def cli_syntax(message: str) -> str:
    """Hints written for the Python API in command-line syntax: ``pass channel=`` ->
    ``pass --channel``, ``offset='min'`` -> ``--offset min``, ``overwrite=True`` ->
    ``--overwrite``."""

    def swap(m: re.Match[str]) -> str:
        flag, value = _FLAGS[m.group(1)], m.group(3)
        if value == "True":
            return flag
        return f"{flag} {value}" if value else flag

    return _HINT.sub(swap, message)


def parse_options(texts: list[str] | None, flag: str) -> dict[str, Any]:
    """KEY=VALUE options (VALUE read as JSON when it parses, else as a plain string)."""
    options: dict[str, Any] = {}
    for text in texts or []:
        if "=" not in text:
            raise typer.BadParameter(f"{flag} must look like KEY=VALUE, got {text!r}")
        key, raw = text.split("=", 1)
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw  # plain strings need no quotes
    return options


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` (hints in CLI syntax) and return the exit to raise (status 2)."""
    typer.echo(f"error: {safe_text(cli_syntax(message))}", err=True)
    return typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input, a refused output folder, an unreadable file: one line on stderr, status 2."""
    try:
        yield
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError) as exc:
        raise fail(str(exc)) from exc
    except MemoryError as exc:
        raise fail("out of memory; use a smaller input, a crop or binning") from exc


def set_quiet(quiet: bool) -> None:
    """``--quiet``: warnings and errors only."""
    logging.getLogger("latentatlas").setLevel(logging.WARNING if quiet else logging.INFO)
