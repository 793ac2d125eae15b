"""report: a simple self-contained HTML page of figures and parameters, and the interactive
explorer linking the image and the latent space."""

from latentatlas.report.explorer import ExplorerData, SpectralExplorerData, explore, write_explorer
from latentatlas.report.html import flatten, write_report

__all__ = ["ExplorerData", "SpectralExplorerData", "explore", "flatten", "write_explorer",
           "write_report"]
