"""HyperSpy both ways.

In: a HyperSpy signal (or anything with ``.data`` and ``.axes_manager``) becomes a
:class:`Dataset` whose axes follow the array's order (HyperSpy lists navigation and signal
axes x first, the array stores them y first), with names, scales, offsets and units kept.
Non-uniform spatial axes are refused (maps assume a pixel grid); a non-uniform spectral axis
keeps its coordinates.

Out: :func:`signal_dict` describes a calibrated array the way HyperSpy and rosettasciio do;
:func:`to_signal` makes a HyperSpy signal of it (needs ``hyperspy``), :func:`save_hspy` writes
a ``.hspy`` file that ``hs.load`` opens (needs only ``rosettasciio``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas import __version__
from latentatlas._files import write_atomic
from latentatlas.io._common import LoadError, default_axes, is_length_unit
from latentatlas.io.dataset import Axis, Dataset

__all__ = ["dataset_from_signal", "save_hspy", "signal_dict", "to_signal"]

_ENERGY_UNITS = {"ev", "kev", "mev"}


def _text(value: Any) -> str:
    """A HyperSpy name or unit as text; traits' ``Undefined`` (shown "<undefined>") is ''."""
    text = "" if value is None else str(value)
    return "" if text == "<undefined>" else text


def _array_order_axes(am: Any) -> list[Any]:
    """The axes of an axes manager in the order of the data array's dimensions."""
    nav = getattr(am, "navigation_axes", None)
    sig = getattr(am, "signal_axes", None)
    if nav is not None and sig is not None:
        # HyperSpy lists each group fastest-varying (x) first; the array is C-ordered
        return [*list(nav)[::-1], *list(sig)[::-1]]
    return list(getattr(am, "_axes", []))


def _kinds(navigate: list[bool | None], units: list[str]) -> list[str]:
    """spatial / spectral / frame for each axis, from HyperSpy's navigation split."""
    if any(n is None for n in navigate):  # a duck-typed object that does not say
        return ["spectral" if u.lower() in _ENERGY_UNITS else
                "spatial" if is_length_unit(u) else "" for u in units]
    n_sig = sum(1 for n in navigate if not n)
    n_nav = len(navigate) - n_sig
    if n_sig == 1:
        # spectra: the last two navigation axes are the scan, earlier ones frames
        return ["frame"] * max(0, n_nav - 2) + ["spatial"] * min(2, n_nav) + ["spectral"]
    if n_sig == 2:
        return ["frame"] * n_nav + ["spatial", "spatial"]
    return [""] * len(navigate)


def dataset_from_signal(sig: Any) -> Dataset:
    """A HyperSpy signal (duck-typed: ``.data``, ``.axes_manager``) as a :class:`Dataset`."""
    data = np.asarray(sig.data)  # computes lazy (dask) signals
    hs_axes = _array_order_axes(sig.axes_manager)
    if len(hs_axes) != data.ndim:
        axes = default_axes(data.shape)
    else:
        units = [_text(getattr(a, "units", "")) for a in hs_axes]
        navigate = [getattr(a, "navigate", None) for a in hs_axes]
        kinds = _kinds(navigate, units)
        default_names = ([f"axis_{i}" for i in range(data.ndim - 2)] + ["y", "x"]
                         if data.ndim >= 2 else ["axis_0"])
        axes = []
        for i, a in enumerate(hs_axes):
            name = _text(getattr(a, "name", "")) or (
                "energy" if kinds[i] == "spectral" else default_names[i])
            if bool(getattr(a, "is_uniform", True)):
                axes.append(Axis(name=name, scale=float(getattr(a, "scale", 1.0) or 1.0),
                                 offset=float(getattr(a, "offset", 0.0) or 0.0),
                                 units=units[i], kind=kinds[i]))
                continue
            if kinds[i] != "spectral":
                raise LoadError(
                    f"the signal's axis {name!r} is not uniform; latentatlas maps need evenly "
                    "spaced navigation and image axes: interpolate it onto a uniform axis "
                    "first (HyperSpy: signal.interpolate_on_axis)")
            values = np.asarray(a.axis, dtype=np.float64)
            step = float(np.mean(np.diff(values))) if values.size > 1 else 1.0
            axes.append(Axis(name=name, scale=step, offset=float(values[0]), units=units[i],
                             kind=kinds[i], values=values))
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


def _axis_dict(axis: Axis, size: int, navigate: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": axis.name, "size": int(size), "units": axis.units,
                         "navigate": bool(navigate)}
    if axis.values is not None:
        d["axis"] = np.asarray(axis.values, dtype=np.float64)
    else:
        d["scale"] = float(axis.scale)
        d["offset"] = float(axis.offset)
    return d


def signal_dict(
    data: np.ndarray,
    axes: Sequence[Axis],
    signal_dims: int,
    title: str,
    quantity: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dictionary HyperSpy and rosettasciio build a signal from: ``data`` with one
    :class:`Axis` per dimension in array order, the last ``signal_dims`` of them signal axes.
    ``metadata`` goes under ``metadata.latentatlas`` (e.g. the method and source file)."""
    arr = np.asarray(data)
    if len(axes) != arr.ndim:
        raise ValueError(f"signal_dict needs one Axis per dimension: data {arr.shape}, "
                         f"{len(axes)} axes")
    if not 0 <= signal_dims <= arr.ndim:
        raise ValueError(f"signal_dims must be 0..{arr.ndim}, got {signal_dims}")
    n_nav = arr.ndim - signal_dims
    md: dict[str, Any] = {"General": {"title": title}, "Signal": {"signal_type": ""}}
    if quantity:
        md["Signal"]["quantity"] = quantity
    if metadata:
        md["latentatlas"] = dict(metadata)
    return {
        "data": arr,
        "axes": [_axis_dict(a, n, i < n_nav)
                 for i, (a, n) in enumerate(zip(axes, arr.shape, strict=True))],
        "metadata": md,
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "package_info": {"name": "latentatlas", "version": __version__},
        "learning_results": {},
        "models": {},
    }


def to_signal(doc: Mapping[str, Any]) -> Any:
    """A HyperSpy signal (``Signal1D``, ``Signal2D`` or ``BaseSignal``) from a
    :func:`signal_dict`. Needs ``hyperspy`` (``pip install 'latentatlas[hyperspy]'``)."""
    try:
        import hyperspy.api as hs
    except ImportError as exc:
        raise ImportError("results as HyperSpy signals need hyperspy: pip install "
                          "'latentatlas[hyperspy]'") from exc
    n_sig = sum(1 for a in doc["axes"] if not a["navigate"])
    cls = {1: hs.signals.Signal1D, 2: hs.signals.Signal2D}.get(n_sig, hs.signals.BaseSignal)
    axes = [{k: v for k, v in a.items() if k != "navigate"} for a in doc["axes"]]
    if cls is hs.signals.BaseSignal:
        sig = cls(doc["data"], axes=axes, metadata=doc["metadata"])
        return sig.transpose(signal_axes=n_sig) if n_sig else sig
    return cls(doc["data"], axes=axes, metadata=doc["metadata"])


def save_hspy(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> Path:
    """Write a :func:`signal_dict` as a ``.hspy`` file (``hs.load`` opens it), atomically.
    Needs ``rosettasciio`` (``pip install 'latentatlas[io]'``)."""
    try:
        from rsciio.hspy import file_writer
    except ImportError as exc:
        raise ImportError("writing .hspy files needs rosettasciio: pip install "
                          "'latentatlas[io]'") from exc
    path = Path(path)
    if path.suffix != ".hspy":
        raise ValueError(f"a HyperSpy file name ends in .hspy, got {path.name}")
    write_atomic(path, lambda tmp: file_writer(str(tmp), dict(doc), show_progressbar=False))
    return path
