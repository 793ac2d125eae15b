"""Readers for NumPy .npy/.npz and TIFF images/stacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentatlas.io._common import LoadError, Picker, clean_value, default_axes
from latentatlas.io.dataset import Axis, Dataset, axis_from_values


def read_npy(path: Path, pick: Picker) -> list[Dataset]:
    pick.choose([[path.stem]], 0)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise LoadError(
                f"{path}: holds pickled Python objects, which latentatlas never unpickles "
                "(unsafe); if you trust the file, np.load(path, allow_pickle=True) it yourself "
                "and pass the array"
            ) from exc
        raise
    if pick.mode == "list":
        return []
    return [Dataset(data=data, axes=default_axes(data.shape), name=path.stem)]


def read_npz(path: Path, pick: Picker) -> list[Dataset]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    keys = [k for k, a in arrays.items() if a.dtype.kind in "biuf" and a.ndim >= 1]
    if not keys:
        raise LoadError(f"{path}: the archive holds no numeric arrays")
    if "data" in keys:
        default = keys.index("data")
    else:
        default = int(np.argmax([arrays[k].size for k in keys]))
    out = []
    for i in pick.choose([[k] for k in keys], default):
        data = arrays[keys[i]]
        axes = default_axes(data.shape)
        # a 1-D array whose length matches exactly one dimension is that dimension's axis
        # (e.g. an energy vector stored beside a spectrum image)
        for k, arr in arrays.items():
            if k == keys[i] or arr.ndim != 1 or arr.dtype.kind not in "iuf":
                continue
            dims = [d for d, n in enumerate(data.shape) if n == arr.size]
            if len(dims) == 1:
                axes[dims[0]] = axis_from_values(k, arr)
        out.append(Dataset(data=data, axes=axes, name=keys[i]))
    return out


_TIFF_AXES = {"Y": ("y", "spatial"), "X": ("x", "spatial"), "Z": ("z", "spatial"),
              "T": ("time", "frame"), "Q": ("frame", "frame"), "I": ("frame", "frame"),
              "C": ("channel", ""), "S": ("sample", "")}


def read_tiff(path: Path, pick: Picker) -> list[Dataset]:
    import tifffile

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
