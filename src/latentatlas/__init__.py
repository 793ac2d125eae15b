"""latentatlas: microscopy data to the few physical factors behind it."""

__version__ = "0.1.0"
