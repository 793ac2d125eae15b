"""Readers for NumPy .npy/.npz and TIFF images/stacks."""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from latentatlas.io._common import LoadError, Picker, clean_value, default_axes, format_bytes
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

_MAX_NPY_HEADER = 1 << 16  # numpy writes a few hundred bytes; its own limit is 10,000


def _npy_header(f: IO[bytes], source: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and Fortran order of the .npy stream ``f``, leaving it at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, _MAX_NPY_HEADER)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, _MAX_NPY_HEADER)
    else:
        raise LoadError(f"{source}: .npy format version {version} is not supported (1.0, 2.0)")
    if dtype.hasobject:
        raise LoadError(
            f"{source}: holds pickled Python objects, which latentatlas never unpickles "
            "(unsafe); if you trust the file, np.load(path, allow_pickle=True) it yourself "
            "and pass the array"
        )
    return dtype, tuple(int(n) for n in shape), bool(fortran)


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize


def read_npy(path: Path, pick: Picker) -> list[Dataset]:
    pick.choose([[path.stem]], 0)
    if pick.mode == "list":
        return []
    with open(path, "rb") as f:
        dtype, shape, fortran = _npy_header(f, str(path))
        n_bytes = _nbytes(dtype, shape)
        left = pick.file_size - f.tell()
        if n_bytes > left:
            raise LoadError(f"{path}: truncated .npy: shape {shape} of {dtype} needs "
                            f"{format_bytes(n_bytes)} after the header, the file has "
                            f"{format_bytes(left)}")
        pick.allow(n_bytes, f"the array {shape} of {dtype}")
        data = np.fromfile(f, dtype=dtype, count=math.prod(shape))
    data = data.reshape(shape, order="F" if fortran else "C")
    return [Dataset(data=data, axes=default_axes(data.shape), name=path.stem)]


def read_npz(path: Path, pick: Picker) -> list[Dataset]:
    """Only the chosen array is read (plus the 1-D arrays that calibrate its axes); the others'
    headers tell their shapes."""
    with zipfile.ZipFile(path) as zf:
        headers: dict[str, tuple[zipfile.ZipInfo, np.dtype, tuple[int, ...], bool]] = {}
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            if info.compress_size > pick.file_size:
                raise LoadError(f"{path}: member {info.filename!r} declares "
                                f"{info.compress_size} bytes, more than the whole archive")
            with zf.open(info) as f:
                dtype, shape, fortran = _npy_header(f, f"{path}[{info.filename}]")
                if _nbytes(dtype, shape) > info.file_size - f.tell():
                    raise LoadError(f"{path}: member {info.filename!r} declares shape {shape} of "
                                    f"{dtype}, more than its {info.file_size} bytes hold")
            headers[info.filename[:-4]] = (info, dtype, shape, fortran)

        def read(key: str) -> np.ndarray:
            info, dtype, shape, _ = headers[key]
            pick.allow(_nbytes(dtype, shape), f"array {key!r} {shape} of {dtype}")
            with zf.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False,
                                                max_header_size=_MAX_NPY_HEADER)

        keys = [k for k, (_, dt, shape, _) in headers.items() if dt.kind in "biuf" and shape]
        if not keys:
            raise LoadError(f"{path}: the archive holds no numeric arrays")
        if "data" in keys:
            default = keys.index("data")
        else:
            default = int(np.argmax([math.prod(headers[k][2]) for k in keys]))
        out = []
        for i in pick.choose([[k] for k in keys], default):
            data = read(keys[i])
            axes = default_axes(data.shape)
            # a 1-D array whose length matches exactly one dimension is that dimension's axis
            # (e.g. an energy vector stored beside a spectrum image)
            for k, (_, dt, shape, _) in headers.items():
                if k == keys[i] or len(shape) != 1 or dt.kind not in "iuf":
                    continue
                dims = [d for d, n in enumerate(data.shape) if n == shape[0]]
                if len(dims) == 1:
                    axes[dims[0]] = axis_from_values(k, read(k))
            out.append(Dataset(data=data, axes=axes, name=keys[i]))
        return out


_TIFF_AXES = {"Y": ("y", "spatial"), "X": ("x", "spatial"), "Z": ("z", "spatial"),
              "T": ("time", "frame"), "Q": ("frame", "frame"), "I": ("frame", "frame"),
              "C": ("channel", ""), "S": ("sample", "")}


def _check_tiff_ifds(path: Path, size: int) -> None:
    """Follow the chain of image file directories (IFDs) and refuse it when it loops back:
    tifffile's own loop detection misses some cycles and then never returns."""
    with open(path, "rb") as f:
        head = f.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 16:
            return  # not a TIFF: tifffile will say so
        (version,) = struct.unpack(order + "H", head[2:4])
        if version == 42:
            (offset,) = struct.unpack(order + "I", head[4:8])
            count_fmt, tag_size, next_fmt = order + "H", 12, order + "I"
        elif version == 43:  # BigTIFF
            (offset,) = struct.unpack(order + "Q", head[8:16])
            count_fmt, tag_size, next_fmt = order + "Q", 20, order + "Q"
        else:
            return
        count_size, next_size = struct.calcsize(count_fmt), struct.calcsize(next_fmt)
        seen: set[int] = set()
        while 0 < offset and offset + count_size <= size:
            if offset in seen:
                raise LoadError(f"{path}: the TIFF's chain of image directories loops back to "
                                f"byte {offset}; the file is damaged")
            seen.add(offset)
            f.seek(offset)
            (n_tags,) = struct.unpack(count_fmt, f.read(count_size))
            f.seek(offset + count_size + n_tags * tag_size)
            raw = f.read(next_size)
            if len(raw) < next_size:
                return
            (offset,) = struct.unpack(next_fmt, raw)


def read_tiff(path: Path, pick: Picker) -> list[Dataset]:
    import tifffile

    _check_tiff_ifds(path, pick.file_size)
    with tifffile.TiffFile(path) as tf:
        series = tf.series
        if not series:
            raise LoadError(f"{path}: TIFF holds no image series")
        idx = pick.choose([[s.name or f"series_{i}", f"series_{i}"]
                           for i, s in enumerate(series)], 0)
        ij: dict[str, Any] = dict(tf.imagej_metadata or {})
        out = []
        for i in idx:
            s = series[i]
            _check_tiff_series(path, s, pick)
            data = s.asarray()
            page = tf.pages.first
            tags = {t.name: clean_value(t.value) for t in page.tags.values()
                    if t.name not in ("StripOffsets", "StripByteCounts", "TileOffsets",
                                      "TileByteCounts")}
            unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
            sx = sy = 1.0
            if unit and unit != "pixel":
                # ImageJ stores pixels per unit as a rational
                for tag, attr in (("XResolution", "x"), ("YResolution", "y")):
                    r = tags.get(tag)
                    if isinstance(r, (tuple, list)) and len(r) == 2 and r[0]:
                        if attr == "x":
                            sx = float(r[1]) / float(r[0])
                        else:
                            sy = float(r[1]) / float(r[0])
            else:
                unit = ""
            axes = []
            for letter in s.axes:
                name, kind = _TIFF_AXES.get(letter, (f"axis_{letter}", ""))
                if letter == "Y":
                    axes.append(Axis(name, scale=sy, units=unit, kind=kind))
                elif letter == "X":
                    axes.append(Axis(name, scale=sx, units=unit, kind=kind))
                elif letter == "Z" and "spacing" in ij:
                    axes.append(Axis(name, scale=float(ij["spacing"]), units=unit, kind=kind))
                else:
                    axes.append(Axis(name, kind=kind))
            if len(axes) != data.ndim:
                axes = default_axes(data.shape, "image")
            meta = {"tags": tags, "imagej": {k: clean_value(v) for k, v in ij.items()}}
            out.append(Dataset(data=data, axes=axes, metadata=meta, name=s.name or path.stem))
        return out


def _check_tiff_series(path: Path, series: Any, pick: Picker) -> None:
    """The series' pixel data lies inside the file and its array fits the budget."""
    shape = tuple(int(n) for n in series.shape)
    n_bytes = math.prod(shape) * np.dtype(series.dtype).itemsize
    pick.allow(n_bytes, f"TIFF series {series.name or ''} {shape} of {series.dtype}")
    offset = getattr(series, "dataoffset", None)
    if offset is not None and offset + n_bytes > pick.file_size:  # one contiguous block
        raise LoadError(f"{path}: the TIFF series {shape} of {series.dtype} needs "
                        f"{format_bytes(n_bytes)} from byte {offset}, past the end of the file "
                        f"({pick.file_size} bytes); it is truncated or damaged")
    for page in series.pages:
        if page is None:
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset + count > pick.file_size:
                raise LoadError(f"{path}: TIFF pixel data at byte {offset} (+{count}) lies past "
                                f"the end of the file ({pick.file_size} bytes); it is truncated "
                                "or damaged")
