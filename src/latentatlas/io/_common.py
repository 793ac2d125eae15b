"""Pieces every reader shares: the error type, channel selection, metadata clean-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentatlas.io.dataset import Axis

SUPPORTED_FORMATS: dict[str, str] = {
    ".npy": "NumPy array",
    ".npz": "NumPy archive (array named 'data', else the largest; channel= picks another)",
    ".tif": "TIFF image or stack (tifffile)",
    ".tiff": "TIFF image or stack (tifffile)",
    ".h5": "HDF5: NSID/USID (pyNSID, pycroscopy) or plain datasets",
    ".hdf5": "HDF5: NSID/USID (pyNSID, pycroscopy) or plain datasets",
    ".hf5": "HDF5: NSID/USID (pyNSID, pycroscopy) or plain datasets",
    ".3ds": "Nanonis grid spectroscopy",
    ".dm3": "DigitalMicrograph (needs the 'io' extra: rosettasciio)",
    ".dm4": "DigitalMicrograph (needs the 'io' extra: rosettasciio)",
    ".emd": "EMD / Velox (needs the 'io' extra: rosettasciio, sparse)",
    ".hspy": "HyperSpy HDF5 (needs the 'io' extra: rosettasciio)",
    ".zip": "a zip archive holding one file of a supported format",
}


def supported_text() -> str:
    exts = ", ".join(sorted(SUPPORTED_FORMATS))
    return (
        f"supported formats: {exts}; other formats rosettasciio reads are tried through it; "
        "or pass a NumPy array or a HyperSpy signal"
    )


class LoadError(ValueError):
    """A file could not be read: the message names the file, the problem and the fix."""


@dataclass
class Picker:
    """Chooses which channels of a multi-channel file to read.

    ``key`` is an index or a name (matched case-insensitively against each channel's aliases:
    quantity, dataset name, title, signal type; an exact match wins over a substring match).
    ``mode`` is ``"one"`` (the keyed or default channel), ``"all"`` or ``"list"`` (names only).
    """

    key: int | str | None = None
    mode: str = "one"
    names: list[str] = field(default_factory=list)
    source: str = ""

    def choose(
        self, aliases: list[list[str]], default: int = 0, rank: list[int] | None = None
    ) -> list[int]:
        """Indices to read. Among several exact name matches the highest ``rank`` wins
        (e.g. the EDS spectrum image over the EDS sum spectra of the same title)."""
        self.names = [a[0] if a else f"#{i}" for i, a in enumerate(aliases)]
        n = len(aliases)
        if n == 0:
            raise LoadError(f"{self.source}: no data found in the file")
        if self.mode == "list":
            return []
        if self.mode == "all":
            return list(range(n))
        if self.key is None:
            return [default]
        listing = ", ".join(f"{i}: {name}" for i, name in enumerate(self.names))
        if isinstance(self.key, (int, np.integer)) and not isinstance(self.key, bool):
            k = int(self.key)
            if not -n <= k < n:
                raise LoadError(
                    f"{self.source}: channel index {k} out of range; the file has {n} "
                    f"channels ({listing})"
                )
            return [k % n]
        key = str(self.key).lower()
        exact = [i for i, a in enumerate(aliases) if any(s.lower() == key for s in a)]
        if exact:
            if rank is not None:
                return [max(exact, key=lambda i: (rank[i], -i))]
            return [exact[0]]
        partial = [i for i, a in enumerate(aliases) if any(key in s.lower() for s in a)]
        if len(partial) == 1:
            return partial
        what = "matches several" if partial else "matches none"
        raise LoadError(
            f"{self.source}: channel {self.key!r} {what} of the channels ({listing}); "
            "pass an index or an exact name"
        )


def clean_value(v: Any) -> Any:
    """HDF5/numpy attribute value -> plain Python (str, int, float, list) where possible."""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "OSU":
            return [clean_value(x) for x in v.tolist()]
        return v.tolist() if v.size <= 64 else v
    return v


def natural_key(s: str) -> list[Any]:
    """Sort 'Channel_10' after 'Channel_9'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


_LENGTH_UNITS = {"m", "mm", "um", "µm", "nm", "pm", "å", "a", "angstrom"}


def default_axes(shape: tuple[int, ...], kinds: str = "auto") -> list[Axis]:
    """Uncalibrated axes: ``(y, x)`` for images, ``(frame, y, x)`` for stacks, else ``axis_k``."""
    if kinds == "image" and len(shape) == 2 or kinds == "auto" and len(shape) == 2:
        return [Axis("y", kind="spatial"), Axis("x", kind="spatial")]
    if kinds == "image" and len(shape) == 3:
        return [Axis("frame", kind="frame"), Axis("y", kind="spatial"), Axis("x", kind="spatial")]
    return [Axis(f"axis_{i}") for i in range(len(shape))]


def is_length_unit(units: str) -> bool:
    return units.strip().lower() in _LENGTH_UNITS
