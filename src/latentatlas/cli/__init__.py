"""Command-line interface: a thin shell over the Python API, one module per command group."""

import logging

from latentatlas.cli import (  # noqa: F401  (register commands)
    analyze,
    batch,
    classify,
    graphene,
    models,
    unmix,
    walls,
)
from latentatlas.cli.app import app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()
