"""HDF5 reader: NSID (pyNSID/sidpy), USID (pycroscopy) main datasets, or plain datasets.

An HDF5 file is checked before its data is touched (``check_hdf5``, also run before the
rosettasciio readers of HDF5-based formats): no link or dataset may point outside the file
(external links, external storage, virtual datasets), and the global heap collections, where
variable-length strings live, must be well formed, since libhdf5 loops forever on some damaged
ones. Every dataset and attribute is checked against the memory budget before it is read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import mmap
import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentatlas.io._common import (
    HDF5_MAGIC,
    LoadError,
    Picker,
    clean_value,
    default_axes,
    is_length_unit,
    natural_key,
)
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

log = logging.getLogger(__name__)

_SKIP_ATTRS = {"DIMENSION_LIST", "DIMENSION_LABELS", "REFERENCE_LIST", "CLASS", "NAME"}
_USID_REFS = ("Position_Indices", "Position_Values", "Spectroscopic_Indices",
              "Spectroscopic_Values")


def _field_sizes(buf: mmap.mmap | bytes) -> tuple[int, int]:
    """Bytes of an 'offset' and of a 'length' field, from the superblock (at 0, 512, 1024, ...
    bytes into the file)."""
    base = 0
    while base + 16 <= len(buf):
        if buf[base:base + 8] == HDF5_MAGIC:
            version = buf[base + 8]
            at = base + 13 if version in (0, 1) else base + 9
            offsets, lengths = buf[at], buf[at + 1]
            return (offsets if offsets in (2, 4, 8) else 8, lengths if lengths in (2, 4, 8) else 8)
        base = 512 if base == 0 else 2 * base
    return 8, 8


def _check_global_heaps(path: Path) -> None:
    """Walk every global heap collection ('GCOL') as libhdf5 will, and refuse the file when an
    object's size would stop the walk (zero) or overrun its collection: libhdf5 then spins
    forever inside the read of a variable-length string, holding the GIL. A collection that
    runs past the end of the file is refused too: libhdf5 allocates its declared size first."""
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return
    with buf:
        _, size_len = _field_sizes(buf)
        fmt = {2: "<H", 4: "<I", 8: "<Q"}[size_len]
        head, obj_head = 8 + size_len, 8 + size_len
        at = buf.find(b"GCOL")
        while at >= 0:
            if buf[at + 4:at + 8] == b"\x01\x00\x00\x00" and at + head <= len(buf):
                (total,) = struct.unpack_from(fmt, buf, at + 8)
                if total > len(buf) - at:  # libhdf5 would allocate all of it, then fail
                    raise LoadError(
                        f"{path}: damaged HDF5 global heap at byte {at}: it declares {total} "
                        f"bytes, past the end of the file ({len(buf)} bytes)")
                end = at + total
                p = at + head
                while p + obj_head <= end:
                    (index,) = struct.unpack_from("<H", buf, p)
                    (n,) = struct.unpack_from(fmt, buf, p + 8)
                    need = obj_head + (n + 7) // 8 * 8 if index else n
                    if need == 0 or need > end - p:
                        raise LoadError(
                            f"{path}: damaged HDF5 global heap at byte {at} (object {index} "
                            f"declares {n} bytes); libhdf5 would never return from reading it")
                    p += need
            at = buf.find(b"GCOL", at + 4)


def check_hdf5(path: Path) -> None:
    """Refuse, before any data is read, an HDF5 file that reaches outside itself (external
    links, external storage, virtual datasets) or whose global heap would hang libhdf5."""
    _check_global_heaps(path)
    with h5py.File(path, "r") as f:
        # A visitor stops the walk by returning something (raising inside it breaks h5py).

        def link(name: str, value: h5py.HLObject) -> str | None:
            if isinstance(value, h5py.ExternalLink):
                return (f"/{name} is an external link to {value.filename}:{value.path}; "
                        "latentatlas reads only data inside the file (copy the target into it)")
            return None

        def dataset(name: str, obj: h5py.HLObject) -> str | None:
            if isinstance(obj, h5py.Dataset) and (
                    obj.id.get_create_plist().get_external_count() > 0 or obj.is_virtual):
                return (f"dataset /{name} keeps its data in other files (external storage or "
                        "a virtual dataset); latentatlas reads only data inside the file")
            return None

        problem = f.visititems_links(link) or f.visititems(dataset)
    if problem:
        raise LoadError(f"{path}: {problem}")


def _attr(obj: h5py.HLObject, key: str, default: Any = None, file_size: int = 0) -> Any:
    """Attribute ``key`` as plain Python, or ``default`` when absent; an attribute declaring
    more bytes than the file holds is refused before it is read."""
    try:
        aid = obj.attrs.get_id(key)
    except KeyError:
        return default
    n = math.prod(aid.shape or ()) * aid.dtype.itemsize
    size = file_size or obj.file.id.get_filesize()
    if n > size:
        raise LoadError(f"{obj.file.filename}: attribute {key!r} of {obj.name} declares {n} "
                        f"bytes, more than the whole file ({size}); the file is damaged")
    return clean_value(obj.attrs[key])


def _attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    size = obj.file.id.get_filesize()
    for k in obj.attrs:
        if k in _SKIP_ATTRS or k in _USID_REFS:
            continue
        try:
            out[k] = _attr(obj, k, file_size=size)
        except LoadError:
            raise
        except Exception:  # exotic attribute types (references, opaque) carry no analysis value
            continue
    return out


def _check_vlen(ds: h5py.Dataset) -> None:
    """Each variable-length item of a contiguous dataset is stored as (length, global heap
    address, index); libhdf5 allocates the length before it looks at the heap, so a damaged
    length is refused here, before the read, as is an address outside the file."""
    offset = ds.id.get_offset()
    if offset is None or ds.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
        return  # compact or chunked: the descriptors are not at one place in the file
    size = ds.file.id.get_filesize()
    n_bytes = ds.id.get_storage_size()
    with open(ds.file.filename, "rb") as f:
        head = f.read(64)
        offsets, _ = _field_sizes(head)
        f.seek(offset)
        raw = f.read(min(n_bytes, size))
    item = struct.Struct("<I" + {2: "H", 4: "I", 8: "Q"}[offsets] + "I")
    for length, address, _ in item.iter_unpack(raw[:len(raw) // item.size * item.size]):
        if length > size or (length and address >= size):
            raise LoadError(f"{ds.file.filename}: dataset {ds.name} holds a variable-length item "
                            f"of {length} bytes at byte {address}, outside the file "
                            f"({size} bytes); the file is damaged")


def _read(ds: h5py.Dataset, pick: Picker) -> Any:
    """``ds[()]`` (an array, or a scalar), after checking it against the memory budget (a
    dataset can declare any size: unwritten chunks read as the fill value, compressed ones
    expand)."""
    shape = tuple(int(n) for n in ds.shape or ())
    pick.allow(math.prod(shape) * ds.dtype.itemsize, f"dataset {ds.name} {shape} of {ds.dtype}")
    if ds.dtype.kind == "O":
        _check_vlen(ds)
    return ds[()]


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
        elif _numeric(obj) and _attr(obj, "CLASS", b"") not in (b"DIMENSION_SCALE",
                                                                  "DIMENSION_SCALE"):
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
            names.append(str(_attr(ds, key)))
    names += [ds.name.rsplit("/", 1)[-1], ds.name]
    return names


def _nsid_axes(ds: h5py.Dataset, pick: Picker) -> list[Axis]:
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
        values = np.asarray(_read(scale_ds, pick), dtype=np.float64)
        if values.size != ds.shape[i]:
            axes.append(Axis(name, units=str(a.get("units", "")), size=ds.shape[i], kind=kind))
        else:
            axes.append(axis_from_values(name, values, str(a.get("units", "")), kind))
    return axes


def _repair_spatial_units(
    d: Dataset, ds: h5py.Dataset, mains: list[h5py.Dataset], pick: Picker
) -> None:
    """Give a spatial axis labelled with a non-length unit the length unit of its siblings.

    Some NSID writers copy a channel's data unit onto its scan axes (the PFM phase channel's
    x and y say ``deg``), which would leave figures and spacings of that channel in pixels.
    The axis is repaired only when another channel of the same file has the same-named
    spatial axis with identical coordinates in a length unit, so the file itself proves it.
    """
    for i, axis in enumerate(d.axes):
        if axis.kind != "spatial" or is_length_unit(axis.units):
            continue
        for other in mains:
            if other == ds or other.ndim != ds.ndim or _is_usid(other):
                continue
            sibling = _nsid_axes(other, pick)[i]
            if (sibling.name == axis.name and is_length_unit(sibling.units)
                    and sibling.size == axis.size
                    and np.allclose(sibling.coords, axis.coords, rtol=1e-9, atol=0.0)):
                log.info("%s: axis %r is labelled %r in the file but equals the %r axis of %s;"
                         " using %r", ds.name, axis.name, axis.units, sibling.units,
                         other.name, sibling.units)
                d.axes[i] = dataclasses.replace(axis, units=sibling.units)
                break


def _group_metadata(ds: h5py.Dataset) -> dict[str, Any]:
    """Attributes of the dataset, its group, and the ``original_metadata``/``metadata`` groups."""
    meta: dict[str, Any] = {"attrs": _attrs(ds), "path": ds.name}
    parent = ds.parent
    for sub in ("original_metadata", "metadata"):
        if isinstance(parent.get(sub, getlink=True), h5py.HardLink) and isinstance(
                parent[sub], h5py.Group):
            meta[sub] = _attrs(parent[sub])
    return meta


def _read_nsid(ds: h5py.Dataset, pick: Picker) -> Dataset:
    meta = _group_metadata(ds)
    attrs = meta["attrs"]
    return Dataset(
        data=_read(ds, pick),
        axes=_nsid_axes(ds, pick),
        metadata=meta,
        signal_type=str(attrs.get("data_type", "")),
        quantity=str(attrs.get("quantity", "")),
        units=str(attrs.get("units", "")),
        name=ds.name.rsplit("/", 1)[-1],
    )


def _usid_dims(
    f: h5py.File, ds: h5py.Dataset, ind_key: str, val_key: str, transpose: bool, pick: Picker
) -> tuple[list[int], list[Axis]]:
    """Sizes (slowest first) and axes of the position or spectroscopic dimensions."""
    ind_ds, val_ds = f[ds.attrs[ind_key]], f[ds.attrs[val_key]]
    if not isinstance(ind_ds, h5py.Dataset) or not isinstance(val_ds, h5py.Dataset):
        raise LoadError(f"{f.filename}: the USID references of {ds.name} do not lead to datasets")
    ind = np.asarray(_read(ind_ds, pick))
    val = np.asarray(_read(val_ds, pick), dtype=np.float64)
    if ind.ndim != 2 or val.shape != ind.shape or ind.dtype.kind not in "iu":
        raise LoadError(f"{f.filename}: USID {ind_key} of {ds.name} is not a table of indices "
                        f"(shape {ind.shape}, values {val.shape})")
    if transpose:  # spectroscopic tables are stored (n_dims, n_steps)
        ind, val = ind.T, val.T
    if 0 in ind.shape or ind.min() < 0 or ind.max() >= ind.shape[0]:
        raise LoadError(f"{f.filename}: USID {ind_key} of {ds.name} holds indices outside "
                        f"[0, {ind.shape[0]}) or no dimension")
    labels = [str(x) for x in np.atleast_1d(_attr(ind_ds, "labels", []))][:ind.shape[1]]
    units = [str(x) for x in np.atleast_1d(_attr(ind_ds, "units", []))][:ind.shape[1]]
    n_dims = ind.shape[1]
    labels += [f"dim_{k}" for k in range(len(labels), n_dims)]
    units += [""] * (n_dims - len(units))
    sizes = [int(ind[:, k].max()) + 1 for k in range(n_dims)]
    # USID convention: the first dimension varies fastest; check it rather than assume it.
    if ind.shape[0] != math.prod(sizes) or not np.array_equal(ind, np.stack(
            np.unravel_index(np.arange(ind.shape[0]), sizes[::-1]), axis=1)[:, ::-1]):
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


def _read_usid(f: h5py.File, ds: h5py.Dataset, pick: Picker) -> Dataset:
    pos_sizes, pos_axes = _usid_dims(f, ds, "Position_Indices", "Position_Values", False, pick)
    spec_sizes, spec_axes = _usid_dims(
        f, ds, "Spectroscopic_Indices", "Spectroscopic_Values", True, pick
    )
    for a in pos_axes:
        a.kind = "spatial"
    for a in spec_axes:
        a.kind = "spectral"
    if ds.shape != (math.prod(pos_sizes), math.prod(spec_sizes)):
        raise LoadError(
            f"{f.filename}: USID dataset {ds.name} has shape {ds.shape}, which does not match "
            f"its position {pos_sizes} and spectroscopic {spec_sizes} dimensions"
        )
    raw = _read(ds, pick)
    if raw.shape != (math.prod(pos_sizes), math.prod(spec_sizes)):
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


def _plain_metadata(f: h5py.File, ds: h5py.Dataset, pick: Picker) -> dict[str, Any]:
    meta: dict[str, Any] = {"attrs": _attrs(ds), "path": ds.name}
    raw: Any = None
    if "metadata" in ds.attrs:
        raw = _attr(ds, "metadata")
    elif isinstance(f.get("metadata", getlink=True), h5py.HardLink) and isinstance(
            f["metadata"], h5py.Dataset):
        raw = clean_value(_read(f["metadata"], pick))
    if isinstance(raw, str):
        try:
            meta["metadata"] = json.loads(raw)
        except json.JSONDecodeError:
            meta["metadata"] = raw
        meta["attrs"].pop("metadata", None)
    return meta


def _read_plain(f: h5py.File, ds: h5py.Dataset, pick: Picker) -> Dataset:
    data = np.asarray(_read(ds, pick))
    meta = _plain_metadata(f, ds, pick)
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
            if str(_attr(ds, "data_type", "")).upper() == "IMAGE":
                return i
        return 0
    for i, ds in enumerate(mains):
        if ds.name.rsplit("/", 1)[-1] in ("image_data", "data"):
            return i
    return int(np.argmax([ds.size for ds in mains]))


def read_hdf5(path: Path, pick: Picker) -> list[Dataset]:
    check_hdf5(path)
    with h5py.File(path, "r") as f:
        mains, layout = _collect(f)
        idx = pick.choose([_aliases(d) for d in mains], _default_index(mains, layout))
        out = []
        for i in idx:
            ds = mains[i]
            if layout == "HDF5":
                d = _read_plain(f, ds, pick)
            elif _is_usid(ds):
                d = _read_usid(f, ds, pick)
            else:
                d = _read_nsid(ds, pick)
                _repair_spatial_units(d, ds, mains, pick)
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
