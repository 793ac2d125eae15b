"""Loading: one ``load()`` for files, arrays and HyperSpy signals, returning a calibrated
:class:`Dataset` (data, one :class:`Axis` per dimension, metadata)."""

from latentatlas.io._common import SUPPORTED_FORMATS, LoadError
from latentatlas.io.api import list_channels, load, load_all
from latentatlas.io.dataset import Axis, Dataset, axis_from_values
from latentatlas.io.lazy import LazyDataset, is_lazy, load_lazy, save_zarr

__all__ = [
    "SUPPORTED_FORMATS",
    "Axis",
    "Dataset",
    "LazyDataset",
    "LoadError",
    "axis_from_values",
    "is_lazy",
    "list_channels",
    "load",
    "load_all",
    "load_lazy",
    "save_zarr",
]
