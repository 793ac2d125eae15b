"""One entry point: ``load(path_or_array) -> Dataset``."""

from __future__ import annotations

import logging
import os
import re
import shutil
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
    default_max_bytes,
    format_bytes,
    require_regular_file,
    supported_text,
)
from latentatlas.io._hdf5 import check_hdf5, read_hdf5
from latentatlas.io._nanonis import read_3ds
from latentatlas.io._rsciio import read_rsciio, rsciio_can_read
from latentatlas.io._simple import read_npy, read_npz, read_tiff
from latentatlas.io.dataset import Dataset
from latentatlas.io.hyperspy import dataset_from_signal

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

        check_hdf5(path)
        with h5py.File(path, "r") as f:
            return "file_format" in f.attrs and "Experiments" in f
    except Exception:  # not readable as HDF5 at all: the HDF5 reader will say why
        return False


def read_rsciio_h5(path: Path, pick: Picker) -> list[Dataset]:
    from rsciio.hspy import file_reader

    from latentatlas.io._rsciio import _to_dataset

    check_hdf5(path)
    signals = file_reader(str(path), lazy=True)
    aliases = [[str(s["metadata"].get("General", {}).get("title", f"signal_{i}"))]
               for i, s in enumerate(signals)]
    return [_to_dataset(signals[i], pick) for i in pick.choose(aliases, 0)]


_COPY_CHUNK = 1 << 20


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path, pick: Picker) -> Path:
    """Stream ``member`` into ``folder``, never writing more than it declares, nor more than
    the memory budget or the free disk space allow."""
    size = member.file_size
    free = shutil.disk_usage(folder).free
    if size > free - (64 << 20):
        raise LoadError(f"{pick.source}: {member.filename} expands to {format_bytes(size)}, "
                        f"more than the free space in {folder.parent} ({format_bytes(free)})")
    pick.allow(size, f"archive member {member.filename!r}")
    pick.spent -= size  # only a bound on the copy: the reader accounts for its own arrays
    name = re.sub(r"[^\w.\-]", "_", Path(member.filename).name)[-120:]
    target = folder / (name if name.strip(".") else "member" + Path(member.filename).suffix)
    written = 0
    with zf.open(member) as src, open(target, "wb") as dst:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > size:
                raise LoadError(f"{pick.source}: {member.filename} expands past the "
                                f"{size} bytes it declares; the archive is damaged")
            dst.write(chunk)
    return target


def _read_zip(path: Path, pick: Picker) -> list[Dataset]:
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        usable = []
        for m in members:
            ext = Path(m.filename).suffix.lower()
            if ext != ".zip" and (ext in SUPPORTED_FORMATS or rsciio_can_read(ext.lstrip("."))):
                usable.append(m)
        if not usable:
            names = ", ".join(m.filename for m in members[:20]) or "(empty)"
            raise LoadError(f"{path}: the zip archive holds no file of a supported format "
                            f"({names}); {supported_text()}")
        if len(usable) > 1:
            log.info("%s holds %d loadable files; reading %s", path, len(usable),
                     usable[0].filename)
        member = usable[0]
        # The folder and what was written into it go away however the reading ends.
        with tempfile.TemporaryDirectory(prefix="latentatlas-zip-") as tmp:
            target = _extract(zf, member, Path(tmp), pick)
            reader, _ = _reader_for(target)
            inner = Picker(key=pick.key, mode=pick.mode, source=f"{path}[{member.filename}]",
                           max_bytes=pick.max_bytes - pick.spent,
                           file_size=target.stat().st_size)
            out = reader(target, inner)
            pick.names, pick.spent = inner.names, pick.spent + inner.spent
            # the data must not reference files in tmp once it is deleted
            for d in out:
                d.data = np.array(d.data)
                d.metadata["archive_member"] = member.filename
            return out


def _read_zarr(path: Path, pick: Picker, max_bytes: int | None) -> list[Dataset]:
    """A Zarr store (a folder) read whole, when it fits the budget; larger ones are for
    :func:`~latentatlas.io.load_lazy` (``--memory-budget`` on the command line)."""
    from latentatlas.io.lazy import load_lazy

    lazy = load_lazy(path, channel=pick.key)
    pick.names = [lazy.name or "data"]
    if pick.mode == "list":
        return []
    limit = default_max_bytes() if max_bytes is None else max_bytes
    if lazy.nbytes > limit:
        raise LoadError(f"{path} holds {format_bytes(lazy.nbytes)}, more than the "
                        f"{format_bytes(limit)} load() may use; read it lazily with "
                        "load_lazy(), or on the command line with --memory-budget")
    out = lazy.compute()
    out.source = path
    return [out]


def _run(source: Any, pick: Picker, max_bytes: int | None) -> list[Dataset]:
    if isinstance(source, Dataset):
        pick.choose([[source.name or "data"]], 0)
        return [source]
    if isinstance(source, np.ndarray):
        pick.choose([["array"]], 0)
        return [Dataset(data=source, axes=default_axes(source.shape))]
    if hasattr(source, "data") and hasattr(source, "axes_manager"):
        pick.choose([["signal"]], 0)
        return [dataset_from_signal(source)]
    if not isinstance(source, (str, os.PathLike)):
        raise LoadError(
            f"load() takes a file path, a NumPy array or a HyperSpy signal, got "
            f"{type(source).__name__}"
        )
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                  or max_bytes < 0):
        raise ValueError(f"max_bytes must be a number of bytes >= 0, got {max_bytes!r}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    pick.source = str(path)
    if path.suffix.lower() == ".zarr" and path.is_dir():
        return _read_zarr(path, pick, max_bytes)
    pick.file_size = require_regular_file(path)
    pick.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
    reader, fmt = _reader_for(path)
    try:
        out = reader(path, pick)
    except LoadError:
        raise
    except ImportError as exc:
        raise LoadError(
            f"{path}: reading {fmt} needs an optional package ({exc}); install the extra with "
            "pip install 'latentatlas[io]'"
        ) from exc
    except MemoryError as exc:
        raise LoadError(
            f"could not read {path} as {fmt}: it needs more memory than there is ({exc}); "
            "the file may be damaged, or too large for this machine"
        ) from exc
    except Exception as exc:  # every failure inside a reader is the file's, named as such
        raise LoadError(
            f"could not read {path} as {fmt}: {type(exc).__name__}: {str(exc)[:300]}. The file "
            f"may be truncated or corrupt, or not what its extension says; {supported_text()}"
        ) from exc
    for d in out:
        d.source = path
    return out


def load(
    source: str | os.PathLike[str] | np.ndarray | Dataset | Any,
    channel: int | str | None = None,
    *,
    signal: int | str | None = None,
    max_bytes: int | None = None,
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
    max_bytes : memory budget for the arrays read from the file. Every size a file declares
        is checked against it (and against the file's own size) before anything is
        allocated. Default: half of the memory still available to the process.
    lazy : return a :class:`~latentatlas.io.lazy.LazyDataset` whose data is a Dask array
        over the file, read only when computed (``.npy``, ``.zarr``, HDF5, TIFF, arrays and
        HyperSpy signals; needs the ``scale`` extra), whatever its size: ``max_bytes`` does
        not apply. See :mod:`latentatlas.io.lazy`.

    Only regular files are read (a FIFO or device is refused without being opened); HDF5
    files may not reach outside themselves (external links, external storage, virtual
    datasets).

    Raises
    ------
    FileNotFoundError : the path does not exist.
    LoadError (a ValueError) : unknown format, truncated/corrupt file, unknown channel, a
        declared size over the budget, or any other failure of a reader; the message names
        the file and the format.
    """
    if channel is not None and signal is not None:
        raise ValueError("pass either channel= or signal= (they are the same), not both")
    key = channel if channel is not None else signal
    if lazy:
        from latentatlas.io.lazy import load_lazy

        return load_lazy(source, key)
    return _run(source, Picker(key=key), max_bytes)[0]


def load_all(source: str | os.PathLike[str] | np.ndarray | Any, *,
             max_bytes: int | None = None) -> list[Dataset]:
    """Every channel/signal of a file, in file order (e.g. all PFM channels of an .h5);
    ``max_bytes`` bounds them all together (see ``load``)."""
    return _run(source, Picker(mode="all"), max_bytes)


def list_channels(source: str | os.PathLike[str] | np.ndarray | Any) -> list[str]:
    """Names of the channels/signals ``channel=`` can pick, in index order."""
    pick = Picker(mode="list")
    _run(source, pick, None)
    return pick.names
