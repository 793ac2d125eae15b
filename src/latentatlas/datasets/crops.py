"""Folders of labelled crops (a defect library): one image per file, one class per crop.

Two layouts are read by :func:`load_labelled_crops`:

- ``FOLDER/<CLASS>/<file>``: the label is the sub-folder's name (the LibraryNet
  ``library_refined`` layout, e.g. ``Si1C3/10.hdf5``);
- ``FOLDER/<file>`` plus a CSV file with columns ``file,label`` (a header row naming them);
  ``file`` is relative to the CSV's folder. A CSV without a ``label`` column, or a flat folder
  without a CSV, gives unlabelled crops (label -1).

Every crop must be calibrated: ``latentatlas.load`` has to find spatial axes in a length unit
(LibraryNet crops carry their field of view as ``scan size``), or ``pixel_size`` must be given.
LibraryNet HDF5 crops also hold the defect's atoms as ``defect_coord_<k>`` datasets (rows of
bytes ``x, y, element``); the first one is read as (row, col) pixel positions and element
names. Only their positions are meant for centring: the element column spells the class.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentatlas._files import safe_text

log = logging.getLogger(__name__)

__all__ = ["LabelledCrops", "load_labelled_crops", "write_labelled_crops"]

# pm per unit of the length units a loader may report
_PM_PER_UNIT = {"pm": 1.0, "a": 100.0, "å": 100.0, "angstrom": 100.0, "nm": 1000.0,
                "um": 1e6, "µm": 1e6, "mm": 1e9, "m": 1e12}
_SKIP = {".csv", ".txt", ".md", ".json"}


def natural_key(name: str) -> list[int | str]:
    """Sort key that puts '9.hdf5' before '10.hdf5'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class LabelledCrops:
    """Crops of different sizes and pixel sizes with their classes.

    images: one (h_i, w_i) float32 array per crop. pixel_sizes: (n,) pm per pixel.
    labels: (n,) int64 index into class_names, -1 where unknown. files: where each came from
    (None for generated crops). defect_coords: per crop (k, 2) (row, col) pixel positions of
    the defect's atoms, or None. defect_elements: their element names, or None.
    """

    images: list[np.ndarray]
    pixel_sizes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    files: list[Path | None]
    defect_coords: list[np.ndarray | None]
    defect_elements: list[tuple[str, ...] | None]

    def __post_init__(self) -> None:
        n = len(self.images)
        self.pixel_sizes = np.asarray(self.pixel_sizes, np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        sizes = {len(self.pixel_sizes), len(self.labels), len(self.files),
                 len(self.defect_coords), len(self.defect_elements)}
        if sizes != {n}:
            raise ValueError(f"every field of LabelledCrops needs one entry per crop ({n}), got "
                             f"sizes {sorted(sizes)}")
        if n and (self.labels.min() < -1 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must be -1 or in [0, {len(self.class_names)}), got "
                             f"[{self.labels.min()}, {self.labels.max()}]")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> np.ndarray:
        """(n,) True where the class is known."""
        return self.labels >= 0

    def counts(self) -> dict[str, int]:
        """Crops per class, by name."""
        return {name: int((self.labels == k).sum()) for k, name in enumerate(self.class_names)}

    def names(self) -> list[str]:
        """A short name per crop: ``class/file`` (or the index for generated crops)."""
        out = []
        for i, f in enumerate(self.files):
            out.append(str(i) if f is None else f"{f.parent.name}/{f.name}")
        return out

    def subset(self, index: np.ndarray) -> LabelledCrops:
        """The crops at ``index`` (an integer array or a boolean mask), same class names."""
        idx = np.arange(len(self))[np.asarray(index)]
        return LabelledCrops([self.images[i] for i in idx], self.pixel_sizes[idx],
                             self.labels[idx], self.class_names, [self.files[i] for i in idx],
                             [self.defect_coords[i] for i in idx],
                             [self.defect_elements[i] for i in idx])


# --------------------------------------------------------------------------------- reading


def _pixel_size_pm(path: Path, axes: list, override: float | None) -> float | None:
    if override is not None:
        return override
    spatial = [a for a in axes if a.size > 1 and a.units.strip().lower() in _PM_PER_UNIT]
    if len(spatial) != 2:
        return None
    scales = [abs(a.scale) * _PM_PER_UNIT[a.units.strip().lower()] for a in spatial]
    if not all(np.isfinite(s) and s > 0 for s in scales):
        return None
    if not np.isclose(scales[0], scales[1], rtol=1e-3):
        log.warning("%s has non-square pixels (%.4g, %.4g pm); using their mean", path, *scales)
    return float(np.mean(scales))


def _defect_coords(path: Path) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """The first ``defect_coord_<k>`` of a LibraryNet HDF5 crop: (k, 2) (row, col), elements."""
    if path.suffix.lower() not in (".h5", ".hdf5", ".hf5"):
        return None, None
    import h5py

    with h5py.File(path, "r") as f:
        keys = sorted((k for k in f if k.startswith("defect_coord_")
                       and isinstance(f[k], h5py.Dataset)), key=natural_key)
        if not keys:
            return None, None
        rows = np.asarray(f[keys[0]][()])
    if rows.ndim != 2 or rows.shape[1] < 2 or len(rows) == 0:
        raise ValueError(f"{safe_text(path)}: {keys[0]} must be rows of (x, y[, element]), got "
                         f"shape {rows.shape}")

    def text(v: object) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    try:
        xy = np.array([[float(text(v)) for v in r[:2]] for r in rows], np.float64)
    except ValueError as exc:
        raise ValueError(f"{safe_text(path)}: {keys[0]} holds non-numeric positions ({exc})"
                         ) from exc
    elements = tuple(text(r[2]) for r in rows) if rows.shape[1] > 2 else None
    return xy[:, ::-1].copy(), elements  # (x, y) -> (row, col)


def _read_crop(path: Path, pixel_size: float | None) -> tuple[np.ndarray, float | None]:
    from latentatlas.io import load

    data = load(path)
    arr = np.asarray(data.data)
    keep = [i for i, n in enumerate(arr.shape) if n > 1]
    if len(keep) != 2:
        raise ValueError(f"{safe_text(path)} holds an array of shape {arr.shape}; a crop must be "
                         "one 2-D image (singleton axes are dropped)")
    image = arr.reshape([arr.shape[i] for i in keep]).astype(np.float32)
    if not np.isfinite(image).all():
        raise ValueError(f"{safe_text(path)} contains NaN or infinite pixels")
    return image, _pixel_size_pm(path, [data.axes[i] for i in keep], pixel_size)


def _is_crop_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in _SKIP


def _from_csv(folder: Path, table: Path) -> tuple[list[Path], list[str | None]]:
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{safe_text(table)} is empty; it needs a header row 'file,label'")
    header = [h.strip().lower() for h in rows[0]]
    if "file" not in header:
        raise ValueError(f"{safe_text(table)} has columns {rows[0]}; it needs a header row "
                         "naming the columns 'file' and 'label'")
    fi = header.index("file")
    li = header.index("label") if "label" in header else None
    files, labels = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(fi, li or 0):
            raise ValueError(f"{safe_text(table)} line {n} has {len(row)} columns, expected "
                             f"{len(header)}")
        path = (table.parent / row[fi].strip()).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{safe_text(table)} line {n} names {safe_text(row[fi])}, "
                                    f"which is not a file in {safe_text(table.parent)}")
        files.append(path)
        labels.append(row[li].strip() or None if li is not None else None)
    if not files:
        raise ValueError(f"{safe_text(table)} lists no crop")
    return files, labels


def _layout(folder: Path, labels_csv: Path | None) -> tuple[list[Path], list[str | None], str]:
    """The crop files, their label names (None = unknown) and the layout found."""
    if labels_csv is not None:
        return (*_from_csv(folder, labels_csv), "csv")
    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    subdirs = sorted((e for e in entries if e.is_dir()), key=lambda p: natural_key(p.name))
    tables = [e for e in entries if e.is_file() and e.suffix.lower() == ".csv"]
    crops = sorted((e for e in entries if _is_crop_file(e)), key=lambda p: natural_key(p.name))
    hint = ("expected FOLDER/<class>/<crop files> (the label is the sub-folder's name) or crop "
            "files with a CSV of 'file,label'")
    if len(tables) > 1:
        raise ValueError(f"{safe_text(folder)} holds several CSV files "
                         f"({', '.join(t.name for t in tables)}); pass the labels file "
                         "explicitly (labels=...)")
    if tables:
        if subdirs and not crops:
            log.info("%s: reading the labels of %s", folder, tables[0].name)
        return (*_from_csv(folder, tables[0]), "csv")
    if subdirs and crops:
        raise ValueError(f"{safe_text(folder)} mixes crop files ({crops[0].name}, ...) and "
                         f"class sub-folders ({subdirs[0].name}, ...); {hint}")
    if subdirs:
        files: list[Path] = []
        labels: list[str | None] = []
        for sub in subdirs:
            inner = [e for e in sub.iterdir() if not e.name.startswith(".")]
            nested = [e for e in inner if e.is_dir()]
            if nested:
                raise ValueError(f"{safe_text(sub)} holds a folder ({nested[0].name}); class "
                                 f"folders must hold crop files only; {hint}")
            found = sorted((e for e in inner if _is_crop_file(e)),
                           key=lambda p: natural_key(p.name))
            if not found:
                raise ValueError(f"class folder {safe_text(sub)} holds no crop file; {hint}")
            files += found
            labels += [sub.name] * len(found)
        return files, labels, "folders"
    if crops:
        return crops, [None] * len(crops), "unlabelled"
    raise ValueError(f"{safe_text(folder)} holds no crop files; {hint}")


def load_labelled_crops(folder: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None,
                        pixel_size: float | None = None) -> LabelledCrops:
    """Every crop of a folder with its class (see the module docstring for the layouts).

    labels: a CSV of ``file,label`` (default: the one CSV in ``folder``, else the sub-folder
    names). pixel_size: pm per pixel for every crop, overriding the files' calibration (needed
    only for crops without one). Classes are numbered in natural order of their names.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {safe_text(root)}")
    if not root.is_dir():
        raise ValueError(f"{safe_text(root)} is a file; pass the folder that holds the crops")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of pm per pixel, got {pixel_size}")
    table = None if labels is None else Path(labels)
    if table is not None and not table.is_file():
        raise FileNotFoundError(f"labels file {safe_text(table)} does not exist")
    files, names, layout = _layout(root, table)
    images, pixels, coords, elements = [], [], [], []
    uncalibrated = []
    for f in files:
        image, px = _read_crop(f, pixel_size)
        if px is None:
            uncalibrated.append(f)
        c, e = _defect_coords(f)
        images.append(image)
        pixels.append(np.nan if px is None else px)
        coords.append(c)
        elements.append(e)
    if uncalibrated:
        shown = ", ".join(safe_text(p.relative_to(root) if p.is_relative_to(root) else p)
                          for p in uncalibrated[:3])
        more = f" and {len(uncalibrated) - 3} more" if len(uncalibrated) > 3 else ""
        raise ValueError(
            f"{len(uncalibrated)} crop(s) carry no pixel size ({shown}{more}): their loader found "
            "no spatial axes in a length unit. Crops are resampled to one physical scale, so "
            "give the pixel size in pm (pixel_size=..., --pixel-size) or save them calibrated")
    class_names = tuple(sorted({n for n in names if n is not None}, key=natural_key))
    index = {n: k for k, n in enumerate(class_names)}
    y = np.array([-1 if n is None else index[n] for n in names], np.int64)
    log.info("%s (%s layout): %d crops, classes %s", root, layout, len(files),
             json.dumps({n: int((y == k).sum()) for n, k in index.items()}))
    return LabelledCrops(images, np.asarray(pixels), y, class_names, list(files), coords,
                         elements)


# --------------------------------------------------------------------------------- writing


def write_labelled_crops(folder: str | os.PathLike[str], crops: LabelledCrops) -> list[Path]:
    """Write crops in the LibraryNet layout: ``folder/<class>/<i>.hdf5`` holding ``nn_input``
    (1, h, w, 1) float32 scaled to [0, 1] with the attribute ``scan size`` (field of view in
    pm, from the width) and, where known, ``defect_coord_0`` (rows of bytes x, y, element).
    Unlabelled crops go to ``folder/unlabelled``. Returns the paths written."""
    import h5py

    root = Path(folder)
    out = []
    for i, image in enumerate(crops.images):
        k = int(crops.labels[i])
        sub = root / (crops.class_names[k] if k >= 0 else "unlabelled")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{i}.hdf5"
        img = np.asarray(image, np.float64)
        span = img.max() - img.min()
        scaled = (img - img.min()) / (span if span > 0 else 1.0)
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("nn_input", data=scaled[None, :, :, None].astype(np.float32))
            ds.attrs["scan size"] = str(float(crops.pixel_sizes[i]) * img.shape[1])
            ds.attrs["metadata"] = json.dumps({"type of data": "HAADF (generated)"})
            rc = crops.defect_coords[i]
            if rc is not None:
                el = crops.defect_elements[i] or ("?",) * len(rc)
                rows = [[str(c).encode(), str(r).encode(), e.encode()]
                        for (r, c), e in zip(rc, el, strict=True)]
                f.create_dataset("defect_coord_0", data=np.array(rows, dtype="S32"))
        out.append(path)
    return out
