"""The typer application every command module registers on, and what the commands share:
clean errors instead of tracebacks, and a quiet switch that silences the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from latentatlas._files import safe_text

app = typer.Typer(
    name="latentatlas",
    help="From microscopy images, stacks and spectral cubes to latent maps and components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OVERWRITE_HELP = ("write into an existing --out that is not a latentatlas results folder; only "
                  "latentatlas's own files are replaced, other files are kept")


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise (status 2)."""
    typer.echo(f"error: {safe_text(message)}", err=True)
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
