"""Lazy inputs: a :class:`Dataset` whose data is a Dask array over the file, read only when
(a part of it is) computed.

``load(path, lazy=True)`` (or :func:`load_lazy`) opens NumPy ``.npy`` (memory map), Zarr
(``.zarr`` folders), HDF5 (``.h5``/``.hdf5``/``.hf5`` datasets), TIFF (through tifffile's
Zarr view of the pages), Dask and NumPy arrays, and HyperSpy signals, lazy (``.as_lazy()``)
or not. Nothing but the file headers is read: the Dask array knows its shape, dtype and
chunks, and reads a chunk when a computation asks for it. Needs the ``scale`` extra
(``pip install 'latentatlas[scale]'``: dask, zarr, distributed).

Chunks follow the file's own chunking when it has one (Zarr, chunked HDF5, TIFF pages);
otherwise stacks are chunked by whole frames (about 128 MiB per chunk) and 2-D images in
square tiles, Dask's ``"auto"``.

:func:`save_zarr` writes an array (NumPy or Dask, chunk by chunk) with its axes as a Zarr
store that :func:`load_lazy` reads back calibrated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._files import atomic_directory
from latentatlas.io._common import LoadError, default_axes, require_regular_file
from latentatlas.io.dataset import Axis, Dataset

log = logging.getLogger(__name__)

__all__ = ["LAZY_FORMATS", "LazyDataset", "is_lazy", "load_lazy", "save_zarr"]

LAZY_FORMATS = {
    ".npy": "NumPy array (memory-mapped)",
    ".zarr": "Zarr array or group (a folder)",
    ".h5": "HDF5 dataset", ".hdf5": "HDF5 dataset", ".hf5": "HDF5 dataset",
    ".tif": "TIFF image or stack", ".tiff": "TIFF image or stack",
}
_ATTRS_KEY = "latentatlas"


def _dask() -> Any:
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "lazy loading needs dask: pip install 'latentatlas[scale]'") from exc
    return da


@dataclasses.dataclass(repr=False)
class LazyDataset(Dataset):
    """A :class:`Dataset` whose ``data`` is a ``dask.array.Array``: nothing is read until a
    computation asks for it. ``compute()`` reads it all into an ordinary Dataset."""

    data: Any  # a dask.array.Array

    def __post_init__(self) -> None:
        da = _dask()
        if not isinstance(self.data, da.Array):
            self.data = da.asarray(self.data)
        if len(self.axes) != self.data.ndim:
            raise ValueError(
                f"LazyDataset needs one Axis per data dimension: data has shape "
                f"{self.data.shape} but {len(self.axes)} axes were given")
        for ax, n in zip(self.axes, self.data.shape, strict=True):
            if ax.size == 0:
                ax.size = int(n)
            elif ax.size != n:
                raise ValueError(f"axis {ax.name!r} has size {ax.size} but the data dimension "
                                 f"has {n}")

    @property
    def nbytes(self) -> int:
        """Bytes the data would take in memory."""
        return int(self.data.nbytes)

    def compute(self) -> Dataset:
        """The same dataset with its data read into memory."""
        return Dataset(data=np.asarray(self.data.compute()),
                       axes=[dataclasses.replace(a) for a in self.axes],
                       metadata=dict(self.metadata), signal_type=self.signal_type,
                       quantity=self.quantity, units=self.units, source=self.source,
                       name=self.name)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = np.asarray(self.data.compute())
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        return "Lazy" + super().__repr__() + f" chunks={self.data.chunksize}"


def is_lazy(x: Any) -> bool:
    """True for a Dask array or a dataset holding one."""
    data = getattr(x, "data", x) if isinstance(x, Dataset) else x
    return type(data).__module__.startswith("dask.")


def _file_token(path: Path, *parts: Any) -> str:
    """A Dask name for an array read from ``path``: hashing the data itself, Dask's default,
    would read the whole file."""
    from dask.base import tokenize

    st = path.stat()
    return "latentatlas-" + tokenize(str(path.resolve()), st.st_mtime_ns, st.st_size, *parts)


class _MemmapReader:
    """Slices of a memory map as ordinary arrays. ``da.from_array`` copies any array that has
    a ``copy`` method, which for a memory map reads the whole file; this wrapper has none."""

    def __init__(self, mm: np.ndarray) -> None:
        self.mm = mm
        self.shape = mm.shape
        self.dtype = mm.dtype
        self.ndim = mm.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self.mm[key])


def _default_chunks(shape: tuple[int, ...]) -> Any:
    """Whole frames for stacks (the last two axes are an image), Dask's choice otherwise."""
    if len(shape) >= 3:
        return ("auto",) * (len(shape) - 2) + (-1, -1)
    return "auto"


# ------------------------------------------------------------------------------- readers


def _open_npy(path: Path, chunks: Any) -> LazyDataset:
    da = _dask()
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise LoadError(f"{path}: cannot be memory-mapped ({exc}); object arrays cannot be "
                        "read lazily, load it with lazy=False") from exc
    data = da.from_array(_MemmapReader(mm), chunks=chunks or _default_chunks(mm.shape),
                         name=_file_token(path, chunks), asarray=False)
    return LazyDataset(data=data, axes=default_axes(mm.shape), name=path.stem)


def _axes_from_attrs(attrs: dict[str, Any], shape: tuple[int, ...]) -> list[Axis]:
    saved = attrs.get("axes")
    if not isinstance(saved, list) or len(saved) != len(shape):
        return default_axes(shape)
    axes = []
    for a, n in zip(saved, shape, strict=True):
        values = a.get("values")
        axes.append(Axis(name=str(a.get("name", "")), scale=float(a.get("scale", 1.0)),
                         offset=float(a.get("offset", 0.0)), units=str(a.get("units", "")),
                         size=int(n), kind=str(a.get("kind", "")),
                         values=None if values is None else np.asarray(values, np.float64)))
    return axes


def _open_zarr(path: Path, channel: int | str | None, chunks: Any) -> LazyDataset:
    import zarr

    da = _dask()
    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        members = dict(node.arrays())
        names = sorted(members)
        if not names:
            raise LoadError(f"{path}: the Zarr group holds no array")
        if channel is None:
            sizes = [int(np.prod(members[n].shape)) for n in names]
            name = "data" if "data" in names else names[int(np.argmax(sizes))]
        elif isinstance(channel, int):
            if not 0 <= channel < len(names):
                raise LoadError(f"{path}: channel {channel} out of range; arrays: {names}")
            name = names[channel]
        elif channel in names:
            name = channel
        else:
            raise LoadError(f"{path}: no array {channel!r} in the Zarr group; arrays: {names}")
        arr = node[name]
    else:
        arr, name = node, path.stem
    assert isinstance(arr, zarr.Array)
    saved = arr.attrs.get(_ATTRS_KEY)
    attrs: dict[str, Any] = dict(saved) if isinstance(saved, dict) else {}
    data = da.from_zarr(arr, chunks=chunks) if chunks is not None else da.from_zarr(arr)
    return LazyDataset(data=data, axes=_axes_from_attrs(attrs, tuple(arr.shape)),
                       metadata=dict(attrs.get("metadata", {}) or {}),
                       signal_type=str(attrs.get("signal_type", "")),
                       quantity=str(attrs.get("quantity", "")),
                       units=str(attrs.get("units", "")), name=str(attrs.get("name", name)))


def _open_hdf5(path: Path, channel: int | str | None, chunks: Any) -> LazyDataset:
    import h5py

    from latentatlas.io._hdf5 import check_hdf5

    da = _dask()
    check_hdf5(path)  # nothing outside the file (external links, storage, virtual datasets)
    f = h5py.File(path, "r")  # stays open: the Dask graph reads from it
    found: list[h5py.Dataset] = []

    def visit(_: str, obj: Any) -> None:
        if (isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf" and obj.size > 1
                and obj.attrs.get("CLASS", b"") != b"DIMENSION_SCALE"):
            found.append(obj)

    f.visititems(visit)
    if not found:
        f.close()
        raise LoadError(f"{path}: the HDF5 file holds no numeric dataset")
    names = [d.name for d in found]
    if any("Position_Indices" in d.attrs for d in found):
        f.close()
        raise LoadError(f"{path}: USID files are stored as 2-D tables that need reshaping; "
                        "load it with lazy=False")
    if channel is None:
        short = [n.rsplit("/", 1)[-1] for n in names]
        preferred = [i for i, s in enumerate(short) if s in ("image_data", "data")]
        idx = preferred[0] if preferred else int(np.argmax([d.size for d in found]))
    elif isinstance(channel, int):
        if not 0 <= channel < len(found):
            f.close()
            raise LoadError(f"{path}: channel {channel} out of range; datasets: {names}")
        idx = channel
    else:
        matches = [i for i, n in enumerate(names)
                   if channel in (n, n.rsplit("/", 1)[-1], str(found[i].attrs.get("quantity", "")))]
        if not matches:
            f.close()
            raise LoadError(f"{path}: no dataset {channel!r}; datasets: {names}")
        idx = matches[0]
    ds = found[idx]
    axes = default_axes(ds.shape)
    for i in range(ds.ndim):  # NSID and other files with HDF5 dimension scales
        dim = ds.dims[i]
        if len(dim) and dim[0].shape == (ds.shape[i],):
            from latentatlas.io.dataset import axis_from_values

            scale_ds = dim[0]
            units = scale_ds.attrs.get("units", "")
            kind = scale_ds.attrs.get("dimension_type", "")
            axes[i] = axis_from_values(
                str(dim.label or scale_ds.attrs.get("name", axes[i].name)), scale_ds[()],
                units.decode() if isinstance(units, bytes) else str(units),
                (kind.decode() if isinstance(kind, bytes) else str(kind)).lower())
    default = ds.chunks or _default_chunks(ds.shape)
    data = da.from_array(ds, chunks=chunks or default, lock=True,
                         name=_file_token(path, ds.name, chunks))
    quantity = ds.attrs.get("quantity", "")
    return LazyDataset(data=data, axes=axes, metadata={"path": ds.name},
                       quantity=quantity.decode() if isinstance(quantity, bytes) else str(quantity),
                       name=ds.name.rsplit("/", 1)[-1])


_TIFF_AXES = {"Y": ("y", "spatial"), "X": ("x", "spatial"), "Z": ("z", "spatial"),
              "T": ("time", "frame"), "Q": ("frame", "frame"), "I": ("frame", "frame"),
              "C": ("channel", ""), "S": ("sample", "")}


def _read_tiff_page(path: str, series: int, key: int) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path, series=series, key=key))


def _open_tiff(path: Path, channel: int | str | None, chunks: Any) -> LazyDataset:
    """Uncompressed contiguous data as a memory map; otherwise one delayed read per page
    (each read opens the file and closes it again, so no handle outlives a computation)."""
    import dask
    import tifffile

    da = _dask()
    with tifffile.TiffFile(path) as tf:
        n_series = len(tf.series)
        index = channel if isinstance(channel, int) else 0
        if not 0 <= index < n_series:
            raise LoadError(f"{path}: series {channel} out of range (the file has {n_series})")
        series = tf.series[index]
        letters, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
        n_pages = len(series.pages)
        first = series.pages[0] if n_pages else None
        page_shape = tuple(first.shape) if first is not None else ()
    try:
        mm = tifffile.memmap(path, series=index, mode="r")
    except ValueError:  # compressed or scattered pages
        mm = None
    if mm is not None:
        data = da.from_array(_MemmapReader(mm), chunks=chunks or _default_chunks(shape),
                             name=_file_token(path, index, chunks), asarray=False)
    elif n_pages * int(np.prod(page_shape)) == int(np.prod(shape)):
        read = dask.delayed(_read_tiff_page, pure=True)
        pages = [da.from_delayed(read(str(path), index, k), shape=page_shape, dtype=dtype)
                 for k in range(n_pages)]
        data = (da.stack(pages) if n_pages > 1 else pages[0]).reshape(shape)
        if chunks is not None:
            data = data.rechunk(chunks)
    else:
        raise LoadError(f"{path}: the pages of this TIFF cannot be read one at a time; load "
                        "it with lazy=False")
    axes = [Axis(name, kind=kind) for name, kind in
            (_TIFF_AXES.get(c, (f"axis_{c}", "")) for c in letters)]
    if len(axes) != data.ndim:
        axes = default_axes(data.shape)
    return LazyDataset(data=data, axes=axes, name=path.stem)


class _SignalShape:
    """A HyperSpy signal with its data replaced by a zero-byte view of the same shape, so
    the eager converter reads the axes and metadata without computing the data."""

    def __init__(self, sig: Any) -> None:
        self.data = np.broadcast_to(np.zeros((), dtype=sig.data.dtype), sig.data.shape)
        self.axes_manager = sig.axes_manager
        self.metadata = getattr(sig, "metadata", None)


def _from_signal(sig: Any, chunks: Any) -> LazyDataset:
    from latentatlas.io.api import load

    da = _dask()
    described = load(_SignalShape(sig))
    data = sig.data if isinstance(sig.data, da.Array) else da.from_array(
        sig.data, chunks=chunks or _default_chunks(sig.data.shape), name=False)
    if chunks is not None and isinstance(sig.data, da.Array):
        data = data.rechunk(chunks)
    return LazyDataset(data=data, axes=described.axes, metadata=described.metadata,
                       signal_type=described.signal_type, quantity=described.quantity,
                       units=described.units, name=described.name)


def load_lazy(source: Any, channel: int | str | None = None, *, chunks: Any = None
              ) -> LazyDataset:
    """Open ``source`` without reading its data: a :class:`LazyDataset` over a Dask array.

    Parameters
    ----------
    source : a path (see ``LAZY_FORMATS``), a Dask or NumPy array, a :class:`Dataset` or a
        HyperSpy signal (lazy or not).
    channel : which array of a Zarr group or dataset of an HDF5 file (name, path or index;
        default ``data``/``image_data`` or the largest), or which TIFF series (index).
    chunks : Dask chunks, e.g. ``(16, -1, -1)`` for 16 whole frames per chunk; default the
        file's own chunking, else whole frames (stacks) or Dask's ``"auto"`` (images).
    """
    da = _dask()
    if isinstance(source, LazyDataset):
        return source
    if isinstance(source, Dataset):
        return LazyDataset(data=da.from_array(source.data, chunks=chunks or _default_chunks(
            source.shape), name=False), axes=source.axes, metadata=source.metadata,
            signal_type=source.signal_type, quantity=source.quantity, units=source.units,
            source=source.source, name=source.name)
    if isinstance(source, da.Array):
        return LazyDataset(data=source if chunks is None else source.rechunk(chunks),
                           axes=default_axes(source.shape))
    if isinstance(source, np.ndarray):
        return LazyDataset(data=da.from_array(source, chunks=chunks or _default_chunks(
            source.shape), name=False), axes=default_axes(source.shape))
    if hasattr(source, "data") and hasattr(source, "axes_manager"):
        return _from_signal(source, chunks)
    if not isinstance(source, (str, os.PathLike)):
        raise LoadError(f"load_lazy() takes a path, an array, a Dataset or a HyperSpy signal, "
                        f"got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    ext = path.suffix.lower()
    if ext not in LAZY_FORMATS:
        raise LoadError(
            f"cannot read {path} lazily: '{ext or '(no extension)'}' is not one of "
            f"{', '.join(sorted(LAZY_FORMATS))}; load it with lazy=False, or convert it once "
            "with latentatlas.io.lazy.save_zarr(load(path), 'data.zarr')")
    if ext == ".zarr" and not path.is_dir():
        raise LoadError(f"{path}: a {LAZY_FORMATS[ext]} should be a folder")
    if ext != ".zarr":
        require_regular_file(path)  # never a FIFO or device, which could block forever
    try:
        if ext == ".npy":
            out = _open_npy(path, chunks)
        elif ext == ".zarr":
            out = _open_zarr(path, channel, chunks)
        elif ext in (".tif", ".tiff"):
            out = _open_tiff(path, channel, chunks)
        else:
            out = _open_hdf5(path, channel, chunks)
    except LoadError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise LoadError(f"could not open {path} lazily as {LAZY_FORMATS[ext]}: {exc}. The file "
                        "may be truncated or corrupt, or not what its extension says") from exc
    out.source = path
    log.info("opened %s lazily: %s, chunks %s", path, out.shape, out.data.chunksize)
    return out


# ------------------------------------------------------------------------------- writing


def save_zarr(data: Any, path: str | os.PathLike[str], *, chunks: Any = None,
              overwrite: bool = False) -> Path:
    """Write an array or dataset (NumPy, Dask, lazy; read and written chunk by chunk) as a
    Zarr array with its axes, which :func:`load_lazy` reads back calibrated.

    The store appears complete or not at all (written under a temporary name and renamed).
    An existing ``path`` is replaced only with ``overwrite``, and only when it is a file or a
    Zarr array (never another folder).
    """
    import zarr

    da = _dask()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if path.is_dir() and not any((path / f).is_file() for f in ("zarr.json", ".zarray")):
        raise FileExistsError(f"{path} is a folder but not a Zarr array: overwrite replaces "
                              "only a file or a Zarr array; choose another path")
    ds = data if isinstance(data, Dataset) else None
    arr = ds.data if ds is not None else data
    darr = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=chunks or
                                                               _default_chunks(np.shape(arr)))
    if chunks is not None:
        darr = darr.rechunk(chunks)
    axes = ds.axes if ds is not None else default_axes(darr.shape)
    attrs: dict[str, Any] = {"axes": [{"name": a.name, "scale": a.scale, "offset": a.offset, "units": a.units,
                       "kind": a.kind, "values": None if a.values is None else
                       np.asarray(a.values).tolist()} for a in axes]}
    if ds is not None:
        attrs.update(name=ds.name, quantity=ds.quantity, units=ds.units,
                     signal_type=ds.signal_type)
    if path.is_file():
        path.unlink()
    with atomic_directory(path) as tmp:
        z = zarr.create_array(str(tmp), shape=darr.shape, chunks=darr.chunksize,
                              dtype=darr.dtype)
        z.attrs[_ATTRS_KEY] = attrs
        da.store(darr, z, lock=False)
    return path
