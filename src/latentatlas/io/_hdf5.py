"""HDF5 reader: NSID (pyNSID/sidpy), USID (pycroscopy) main datasets, or plain datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentatlas.io._common import LoadError, Picker, clean_value, default_axes, natural_key
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

_SKIP_ATTRS = {"DIMENSION_LIST", "DIMENSION_LABELS", "REFERENCE_LIST", "CLASS", "NAME"}
_USID_REFS = ("Position_Indices", "Position_Values", "Spectroscopic_Indices",
              "Spectroscopic_Values")


def _attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in obj.attrs:
        if k in _SKIP_ATTRS or k in _USID_REFS:
            continue
        try:
            out[k] = clean_value(obj.attrs[k])
        except Exception:  # exotic attribute types (references, opaque) carry no analysis value
            continue
    return out


def _is_usid(ds: h5py.Dataset) -> bool:
    return ds.ndim == 2 and all(r in ds.attrs for r in _USID_REFS)


def _is_nsid(ds: h5py.Dataset) -> bool:
    if "quantity" not in ds.attrs:
        return False
    return "data_type" in ds.attrs or any(len(ds.dims[i]) > 0 for i in range(ds.ndim))


def _numeric(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind in "biuf" and ds.size > 1


def _collect(f: h5py.File) -> tuple[list[h5py.Dataset], str]:
    """Main datasets in natural path order and the layout name."""
    usid: list[h5py.Dataset] = []
    nsid: list[h5py.Dataset] = []
    plain: list[h5py.Dataset] = []

    def visit(name: str, obj: h5py.HLObject) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        if _is_usid(obj):
            usid.append(obj)
        elif _is_nsid(obj):
            nsid.append(obj)
        elif _numeric(obj) and obj.attrs.get("CLASS", b"") != b"DIMENSION_SCALE":
            plain.append(obj)

    f.visititems(visit)
    for lst in (usid, nsid, plain):
        lst.sort(key=lambda d: natural_key(d.name))
    if usid or nsid:
        return usid + nsid, "USID" if usid else "NSID"
    return plain, "HDF5"


def _aliases(ds: h5py.Dataset) -> list[str]:
    names = []
    for key in ("quantity", "title"):
        if key in ds.attrs:
            names.append(str(clean_value(ds.attrs[key])))
    names += [ds.name.rsplit("/", 1)[-1], ds.name]
    return names


def _nsid_axes(ds: h5py.Dataset) -> list[Axis]:
    axes = []
    for i in range(ds.ndim):
        dim = ds.dims[i]
        label = dim.label or f"axis_{i}"
        if len(dim) == 0:
            axes.append(Axis(label, size=ds.shape[i]))
            continue
        scale_ds = dim[0]
        a = _attrs(scale_ds)
        kind = str(a.get("dimension_type", "")).lower()
        name = str(a.get("name", label))
        values = np.asarray(scale_ds[()], dtype=np.float64)
        if values.size != ds.shape[i]:
            axes.append(Axis(name, units=str(a.get("units", "")), size=ds.shape[i], kind=kind))
        else:
            axes.append(axis_from_values(name, values, str(a.get("units", "")), kind))
    return axes


def _group_metadata(ds: h5py.Dataset) -> dict[str, Any]:
    """Attributes of the dataset, its group, and the ``original_metadata``/``metadata`` groups."""
    meta: dict[str, Any] = {"attrs": _attrs(ds), "path": ds.name}
    parent = ds.parent
    for sub in ("original_metadata", "metadata"):
        if sub in parent and isinstance(parent[sub], h5py.Group):
            meta[sub] = _attrs(parent[sub])
    return meta


def _read_nsid(ds: h5py.Dataset) -> Dataset:
    meta = _group_metadata(ds)
    attrs = meta["attrs"]
    return Dataset(
        data=ds[()],
        axes=_nsid_axes(ds),
        metadata=meta,
        signal_type=str(attrs.get("data_type", "")),
        quantity=str(attrs.get("quantity", "")),
        units=str(attrs.get("units", "")),
        name=ds.name.rsplit("/", 1)[-1],
    )


def _usid_dims(
    f: h5py.File, ds: h5py.Dataset, ind_key: str, val_key: str, transpose: bool
) -> tuple[list[int], list[Axis]]:
    """Sizes (slowest first) and axes of the position or spectroscopic dimensions."""
    ind = np.asarray(f[ds.attrs[ind_key]][()])
    val_ds = f[ds.attrs[val_key]]
    val = np.asarray(val_ds[()], dtype=np.float64)
    if transpose:  # spectroscopic tables are stored (n_dims, n_steps)
        ind, val = ind.T, val.T
    labels = [str(x) for x in clean_value(f[ds.attrs[ind_key]].attrs.get("labels", []))]
    units = [str(x) for x in clean_value(f[ds.attrs[ind_key]].attrs.get("units", []))]
    n_dims = ind.shape[1]
    labels += [f"dim_{k}" for k in range(len(labels), n_dims)]
    units += [""] * (n_dims - len(units))
    sizes = [int(ind[:, k].max()) + 1 for k in range(n_dims)]
    # USID convention: the first dimension varies fastest; check it rather than assume it.
    expected = np.stack(
        np.unravel_index(np.arange(ind.shape[0]), sizes[::-1]), axis=1
    )[:, ::-1]
    if ind.shape[0] != int(np.prod(sizes)) or not np.array_equal(ind, expected):
        raise LoadError(
            f"{f.filename}: USID dataset {ds.name} has {ind_key} in an order other than "
            "'first dimension fastest'; reshape it yourself with pyUSID"
        )
    axes = []
    for k in range(n_dims):
        # values of dimension k where every other index is 0
        sel = np.all(np.delete(ind, k, axis=1) == 0, axis=1)
        axes.append(axis_from_values(labels[k], val[sel, k], units[k]))
    return sizes[::-1], axes[::-1]


def _read_usid(f: h5py.File, ds: h5py.Dataset) -> Dataset:
    pos_sizes, pos_axes = _usid_dims(f, ds, "Position_Indices", "Position_Values", False)
    spec_sizes, spec_axes = _usid_dims(
        f, ds, "Spectroscopic_Indices", "Spectroscopic_Values", True
    )
    for a in pos_axes:
        a.kind = "spatial"
    for a in spec_axes:
        a.kind = "spectral"
    raw = ds[()]
    if raw.shape != (int(np.prod(pos_sizes)), int(np.prod(spec_sizes))):
        raise LoadError(
            f"{f.filename}: USID dataset {ds.name} has shape {raw.shape}, which does not match "
            f"its position {pos_sizes} and spectroscopic {spec_sizes} dimensions"
        )
    # drop singleton spectroscopic dims so a plain image comes back 2-D
    shape = pos_sizes + spec_sizes
    axes = pos_axes + spec_axes
    keep = [i for i, n in enumerate(shape) if n > 1 or i < len(pos_sizes)]
    data = raw.reshape(shape)
    data = data.reshape([shape[i] for i in keep])
    meta = _group_metadata(ds)
    attrs = meta["attrs"]
    return Dataset(
        data=data,
        axes=[axes[i] for i in keep],
        metadata=meta,
        signal_type=str(attrs.get("data_type", "USID")),
        quantity=str(attrs.get("quantity", "")),
        units=str(attrs.get("units", "")),
        name=ds.name.rsplit("/", 1)[-1],
    )


def _plain_metadata(f: h5py.File, ds: h5py.Dataset) -> dict[str, Any]:
    meta: dict[str, Any] = {"attrs": _attrs(ds), "path": ds.name}
    raw: Any = None
    if "metadata" in ds.attrs:
        raw = clean_value(ds.attrs["metadata"])
    elif "metadata" in f and isinstance(f["metadata"], h5py.Dataset):
        raw = clean_value(f["metadata"][()])
    if isinstance(raw, str):
        try:
            meta["metadata"] = json.loads(raw)
        except json.JSONDecodeError:
            meta["metadata"] = raw
        meta["attrs"].pop("metadata", None)
    return meta


def _read_plain(f: h5py.File, ds: h5py.Dataset) -> Dataset:
    data = ds[()]
    meta = _plain_metadata(f, ds)
    return Dataset(
        data=data,
        axes=scan_size_axes(data.shape, meta["attrs"]),
        metadata=meta,
        quantity=str(meta["attrs"].get("quantity", "")),
        units=str(meta["attrs"].get("units", "")),
        name=ds.name.rsplit("/", 1)[-1],
    )


def _default_index(mains: list[h5py.Dataset], layout: str) -> int:
    """First image channel for NSID/USID; ``image_data`` or the largest dataset otherwise."""
    if layout != "HDF5":
        for i, ds in enumerate(mains):
            if str(clean_value(ds.attrs.get("data_type", ""))).upper() == "IMAGE":
                return i
        return 0
    for i, ds in enumerate(mains):
        if ds.name.rsplit("/", 1)[-1] in ("image_data", "data"):
            return i
    return int(np.argmax([ds.size for ds in mains]))


def read_hdf5(path: Path, pick: Picker) -> list[Dataset]:
    with h5py.File(path, "r") as f:
        mains, layout = _collect(f)
        idx = pick.choose([_aliases(d) for d in mains], _default_index(mains, layout))
        out = []
        for i in idx:
            ds = mains[i]
            if layout == "HDF5":
                d = _read_plain(f, ds)
            elif _is_usid(ds):
                d = _read_usid(f, ds)
            else:
                d = _read_nsid(ds)
            d.metadata["layout"] = layout
            out.append(d)
        return out


def scan_size_axes(shape: tuple[int, ...], attrs: dict[str, Any]) -> list[Axis]:
    """Axes of a plain dataset, calibrated from a ``scan size`` attribute when it has one.

    ``scan size`` (the AICrystallographer / LibraryNet convention) is the field of view in
    picometres of a square scan. It calibrates an image: a dataset with exactly two dimensions
    longer than one, e.g. ``(h, w)`` or the network-input layout ``(1, h, w, 1)``. Those become
    the spatial axes ``y`` and ``x`` with square pixels of ``scan size / w`` pm; the singleton
    axes stay uncalibrated. Anything else (no attribute, not a positive number, not one image)
    keeps the uncalibrated default axes.
    """
    axes = default_axes(shape)
    raw: Any = attrs.get("scan size")
    try:
        fov = float(raw)
    except (TypeError, ValueError):
        return axes
    image_dims = [i for i, n in enumerate(shape) if n > 1]
    if not (np.isfinite(fov) and fov > 0) or len(image_dims) != 2:
        return axes
    pixel = fov / shape[image_dims[1]]
    for name, i in zip(("y", "x"), image_dims, strict=True):
        axes[i] = Axis(name, scale=pixel, units="pm", kind="spatial")
    return axes
