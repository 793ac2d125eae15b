"""One entry point: ``load(path_or_array) -> Dataset``."""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas.io._common import (
    SUPPORTED_FORMATS,
    LoadError,
    Picker,
    default_axes,
    supported_text,
)
from latentatlas.io._hdf5 import read_hdf5
from latentatlas.io._nanonis import read_3ds
from latentatlas.io._rsciio import read_rsciio, rsciio_can_read
from latentatlas.io._simple import read_npy, read_npz, read_tiff
from latentatlas.io.dataset import Axis, Dataset

log = logging.getLogger(__name__)

Reader = Callable[[Path, Picker], list[Dataset]]

_READERS: dict[str, Reader] = {
    ".npy": read_npy,
    ".npz": read_npz,
    ".tif": read_tiff,
    ".tiff": read_tiff,
    ".h5": read_hdf5,
    ".hdf5": read_hdf5,
    ".hf5": read_hdf5,
    ".3ds": read_3ds,
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _reader_for(path: Path) -> tuple[Reader, str]:
    ext = path.suffix.lower()
    if ext == ".zip":
        return _read_zip, "zip archive"
    if ext in _READERS:
        if ext in (".h5", ".hdf5") and _is_hyperspy_h5(path):
            return read_rsciio_h5, "HyperSpy HDF5"
        return _READERS[ext], SUPPORTED_FORMATS[ext]
    if ext and rsciio_can_read(ext.lstrip(".")):
        return read_rsciio, f"'{ext}' via rosettasciio"
    if ext in SUPPORTED_FORMATS:  # an rsciio format while rsciio is missing
        return read_rsciio, SUPPORTED_FORMATS[ext]
    raise LoadError(f"cannot load {path}: unknown file format '{ext or '(no extension)'}'; "
                    f"{supported_text()}")


def _is_hyperspy_h5(path: Path) -> bool:
    """HyperSpy files saved as .hdf5 carry a ``file_format`` attribute at the root."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "file_format" in f.attrs and "Experiments" in f
    except OSError:
        return False


def read_rsciio_h5(path: Path, pick: Picker) -> list[Dataset]:
    from rsciio.hspy import file_reader

    from latentatlas.io._rsciio import _to_dataset

    signals = file_reader(str(path), lazy=True)
    aliases = [[str(s["metadata"].get("General", {}).get("title", f"signal_{i}"))]
               for i, s in enumerate(signals)]
    return [_to_dataset(signals[i]) for i in pick.choose(aliases, 0)]


def _read_zip(path: Path, pick: Picker) -> list[Dataset]:
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        usable = []
        for m in members:
            ext = Path(m.filename).suffix.lower()
            if ext != ".zip" and (ext in SUPPORTED_FORMATS or rsciio_can_read(ext.lstrip("."))):
                usable.append(m)
        if not usable:
            names = ", ".join(m.filename for m in members) or "(empty)"
            raise LoadError(f"{path}: the zip archive holds no file of a supported format "
                            f"({names}); {supported_text()}")
        if len(usable) > 1:
            log.info("%s holds %d loadable files; reading %s", path, len(usable),
                     usable[0].filename)
        with tempfile.TemporaryDirectory(prefix="latentatlas-zip-") as tmp:
            # extract() sanitises member names, so nothing lands outside tmp
            target = Path(zf.extract(usable[0], tmp))
            reader, _ = _reader_for(target)
            out = reader(target, pick)
            # the data must not reference files in tmp once it is deleted
            for d in out:
                d.data = np.array(d.data)
                d.metadata["archive_member"] = usable[0].filename
            return out


def _from_hyperspy(sig: Any) -> Dataset:
    """Duck-typed HyperSpy signal: ``.data`` and ``.axes_manager``."""
    am = sig.axes_manager
    if hasattr(am, "_get_axes_in_natural_order"):
        hs_axes = list(am._get_axes_in_natural_order())
    else:
        hs_axes = list(getattr(am, "_axes", []))
    data = np.asarray(sig.data)
    axes = []
    for i, a in enumerate(hs_axes):
        units = str(getattr(a, "units", "") or "")
        if units == "<undefined>":
            units = ""
        axis_values = getattr(a, "axis", None)
        is_uniform = getattr(a, "is_uniform", True)
        axes.append(Axis(
            name=str(getattr(a, "name", "") or f"axis_{i}"),
            scale=float(getattr(a, "scale", 1.0) or 1.0),
            offset=float(getattr(a, "offset", 0.0) or 0.0),
            units=units,
            kind="" if getattr(a, "navigate", None) is None else
            ("spatial" if a.navigate else "signal"),
            values=None if is_uniform or axis_values is None else np.asarray(axis_values),
        ))
    if len(axes) != data.ndim:
        axes = default_axes(data.shape)
    meta: dict[str, Any] = {}
    md = getattr(sig, "metadata", None)
    if md is not None and hasattr(md, "as_dictionary"):
        meta = {"metadata": md.as_dictionary()}
    signal = meta.get("metadata", {}).get("Signal", {})
    general = meta.get("metadata", {}).get("General", {})
    return Dataset(data=data, axes=axes, metadata=meta,
                   signal_type=str(signal.get("signal_type", "") or ""),
                   quantity=str(signal.get("quantity", "") or ""),
                   name=str(general.get("title", "") or ""))


def _run(source: Any, pick: Picker) -> list[Dataset]:
    if isinstance(source, Dataset):
        pick.choose([[source.name or "data"]], 0)
        return [source]
    if isinstance(source, np.ndarray):
        pick.choose([["array"]], 0)
        return [Dataset(data=source, axes=default_axes(source.shape))]
    if hasattr(source, "data") and hasattr(source, "axes_manager"):
        pick.choose([["signal"]], 0)
        return [_from_hyperspy(source)]
    if not isinstance(source, (str, os.PathLike)):
        raise LoadError(
            f"load() takes a file path, a NumPy array or a HyperSpy signal, got "
            f"{type(source).__name__}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise LoadError(f"{path} is a folder; pass one data file ({supported_text()})")
    reader, fmt = _reader_for(path)
    pick.source = str(path)
    try:
        out = reader(path, pick)
    except LoadError:
        raise
    except ImportError as exc:
        raise LoadError(
            f"{path}: reading {fmt} needs an optional package ({exc}); install the extra with "
            "pip install 'latentatlas[io]'"
        ) from exc
    except (OSError, ValueError, EOFError, KeyError, IndexError, struct.error,
            zipfile.BadZipFile) as exc:
        raise LoadError(
            f"could not read {path} as {fmt}: {exc}. The file may be truncated or corrupt, "
            f"or not what its extension says; {supported_text()}"
        ) from exc
    for d in out:
        d.source = path
    return out


def load(
    source: str | os.PathLike[str] | np.ndarray | Dataset | Any,
    channel: int | str | None = None,
    *,
    signal: int | str | None = None,
    lazy: bool = False,
) -> Dataset:
    """Load a file, array or HyperSpy signal into a :class:`Dataset`.

    Parameters
    ----------
    source : path to a file (see ``SUPPORTED_FORMATS``), a NumPy array, a HyperSpy signal
        (anything with ``.data`` and ``.axes_manager``) or a ``Dataset`` (returned as is).
    channel : for files with several channels or signals, which one: an index or a name
        (quantity such as ``"PhaseRetrace"``, dataset name, signal title or type such as
        ``"EELS"``). Defaults: first image channel (NSID/USID HDF5), ``image_data`` or the
        largest dataset (plain HDF5), ``data`` or the largest array (.npz), channel 0
        (Nanonis), the first signal of highest dimensionality (rosettasciio formats).
    signal : alias of ``channel``.
    lazy : return a :class:`~latentatlas.io.lazy.LazyDataset` whose data is a Dask array
        over the file, read only when computed (``.npy``, ``.zarr``, HDF5, TIFF, arrays and
        HyperSpy signals; needs the ``scale`` extra). See :mod:`latentatlas.io.lazy`.

    Raises
    ------
    FileNotFoundError : the path does not exist.
    LoadError (a ValueError) : unknown format, truncated/corrupt file, unknown channel.
    """
    if channel is not None and signal is not None:
        raise ValueError("pass either channel= or signal= (they are the same), not both")
    key = channel if channel is not None else signal
    if lazy:
        from latentatlas.io.lazy import load_lazy

        return load_lazy(source, key)
    return _run(source, Picker(key=key))[0]


def load_all(source: str | os.PathLike[str] | np.ndarray | Any) -> list[Dataset]:
    """Every channel/signal of a file, in file order (e.g. all PFM channels of an .h5)."""
    return _run(source, Picker(mode="all"))


def list_channels(source: str | os.PathLike[str] | np.ndarray | Any) -> list[str]:
    """Names of the channels/signals ``channel=`` can pick, in index order."""
    pick = Picker(mode="list")
    _run(source, pick)
    return pick.names
