"""report: a simple self-contained HTML page of figures and parameters."""

from latentatlas.report.html import flatten, write_report

__all__ = ["flatten", "write_report"]
