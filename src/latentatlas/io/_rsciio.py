"""Formats read through the optional rosettasciio extra (.dm3/.dm4/.emd/.hspy and others).

Multi-signal files (e.g. Velox .emd with images, several EELS windows and an EDS map): the
default is the first signal of the highest dimensionality, i.e. the spectrum image when
there is one; ``channel=`` (alias ``signal=``) picks another by index, title or signal type.
"""

from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas.io._common import HDF5_MAGIC, LoadError, Picker, is_length_unit
from latentatlas.io._hdf5 import check_hdf5
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

log = logging.getLogger(__name__)

_ENERGY_UNITS = {"ev", "kev", "mev"}


def _plugin_for(ext: str) -> str | None:
    """rosettasciio module name that reads files ending in ``ext`` (no dot), if any."""
    try:
        from rsciio import IO_PLUGINS
    except ImportError:
        return None
    preferred = {"dm3": "rsciio.digitalmicrograph", "dm4": "rsciio.digitalmicrograph",
                 "emd": "rsciio.emd", "hspy": "rsciio.hspy"}
    if ext.lower() in preferred:
        return preferred[ext.lower()]
    for plugin in IO_PLUGINS:
        if ext in plugin["file_extensions"] or ext.lower() in plugin["file_extensions"]:
            return str(plugin["api"])
    return None


def rsciio_can_read(ext: str) -> bool:
    return _plugin_for(ext) is not None


def _axes(sig: dict[str, Any]) -> list[Axis]:
    axes = []
    n = len(sig["axes"])
    unnamed = ["y", "x"] if n == 2 else [f"axis_{i}" for i in range(n)]
    for i, a in enumerate(sig["axes"]):
        name = str(a.get("name") or unnamed[i])
        units = str(a.get("units") or "")
        if units == "<undefined>":
            units = ""
        if units.lower() in _ENERGY_UNITS:
            kind = "spectral"
        elif is_length_unit(units) or name.lower() in ("x", "y"):
            kind = "spatial"
        else:
            kind = ""
        if "axis" in a and a["axis"] is not None:
            axes.append(axis_from_values(name, np.asarray(a["axis"]), units, kind))
        else:
            axes.append(Axis(name, scale=float(a.get("scale", 1.0)),
                             offset=float(a.get("offset", 0.0)), units=units, kind=kind))
    return axes


def _nbytes(sig: dict[str, Any]) -> int:
    data = sig["data"]
    return math.prod(int(n) for n in data.shape) * np.dtype(data.dtype).itemsize


def _to_dataset(sig: dict[str, Any], pick: Picker) -> Dataset:
    """A Dataset from one rosettasciio signal dict, checked against the memory budget (lazy
    data before it is computed, eager data before it goes further)."""
    pick.allow(_nbytes(sig), f"signal {tuple(sig['data'].shape)} of {sig['data'].dtype}")
    data = np.asarray(sig["data"])  # materialises lazy (dask) arrays
    axes = _axes(sig)
    # Keep the spectral (energy) axis last, as (ny, nx, channels) everywhere else in
    # latentatlas; some DigitalMicrograph spectrum images come energy-first.
    energy = [i for i, a in enumerate(axes) if a.kind == "spectral"]
    if len(energy) == 1 and energy[0] != len(axes) - 1 and data.ndim > 1:
        data = np.moveaxis(data, energy[0], -1)
        axes.append(axes.pop(energy[0]))
    md = dict(sig.get("metadata", {}))
    signal = md.get("Signal", {})
    general = md.get("General", {})
    meta = {"metadata": md, "original_metadata": sig.get("original_metadata", {})}
    return Dataset(
        data=data,
        axes=axes,
        metadata=meta,
        signal_type=str(signal.get("signal_type", "") or ""),
        quantity=str(signal.get("quantity", "") or ""),
        name=str(general.get("title", "") or ""),
    )


def _signal_range(sig: dict[str, Any]) -> str:
    """``"800-1146 eV"``: the span of a signal's last axis, which tells apart the windows of
    one detector (three Velox EELS spectrum images differ only there)."""
    a = sig["axes"][-1]
    if a.get("axis") is not None:
        values = np.asarray(a["axis"], dtype=np.float64)
        lo, hi = float(values[0]), float(values[-1])
    else:
        lo = float(a.get("offset", 0.0))
        hi = lo + float(a.get("scale", 1.0)) * (int(a["size"]) - 1)
    units = str(a.get("units") or "")
    return f"{lo:.4g}-{hi:.4g}" + (f" {units}" if units and units != "<undefined>" else "")


def _unique_names(signals: list[dict[str, Any]]) -> list[str]:
    """``"title (shape)"`` for every signal, with the last axis' range added where that
    name is shared, and ``#index`` where even that is."""
    names = []
    for i, s in enumerate(signals):
        title = str(s.get("metadata", {}).get("General", {}).get("title", "") or f"signal_{i}")
        names.append(f"{title} {tuple(int(a['size']) for a in s['axes'])}")
    names = [f"{n} {_signal_range(s)}" if names.count(n) > 1 and s["axes"] else n
             for n, s in zip(names, signals, strict=True)]
    return [n if names.count(n) == 1 else f"{n} #{i}" for i, n in enumerate(names)]


def read_rsciio(path: Path, pick: Picker) -> list[Dataset]:
    ext = path.suffix.lstrip(".")
    api = _plugin_for(ext)
    if api is None:
        raise LoadError(
            f"{path}: format '.{ext}' needs the optional rosettasciio reader; install it with "
            "pip install 'latentatlas[io]' (rosettasciio, sparse)"
        )
    module = importlib.import_module(api)
    with open(path, "rb") as f:
        if f.read(8) == HDF5_MAGIC:  # .emd, .hspy, NeXus...: nothing outside the file
            check_hdf5(path)
    # Eager reading: lazy (dask) reading of sparse Velox EDS maps is several times slower (and
    # the first one compiles numba code for seconds), so no lazy pass learns the sizes first.
    # DigitalMicrograph data is memory-mapped (bounded by the file); a Velox stream expands
    # into the array its metadata declares, checked against the budget only once read.
    signals = module.file_reader(str(path))
    if not signals:
        raise LoadError(f"{path}: rosettasciio found no signal in the file")
    displays = _unique_names(signals)
    aliases = []
    for i, s in enumerate(signals):
        md = s.get("metadata", {})
        title = str(md.get("General", {}).get("title", "") or f"signal_{i}")
        stype = str(md.get("Signal", {}).get("signal_type", "") or "")
        aliases.append([displays[i], title, stype, f"signal_{i}"] if stype else
                       [displays[i], title, f"signal_{i}"])
    ndims = [len(s["axes"]) for s in signals]
    default = ndims.index(max(ndims))
    if len(signals) > 1 and pick.key is None and pick.mode == "one":
        log.info("%s holds %d signals; loading #%d (%s); pass channel= to pick another",
                 path, len(signals), default, aliases[default][0])
    return [_to_dataset(signals[i], pick) for i in pick.choose(aliases, default, rank=ndims)]
