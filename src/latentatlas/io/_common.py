"""Pieces every reader shares: the error type, channel selection, metadata clean-up."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
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


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def supported_text() -> str:
    exts = ", ".join(sorted(SUPPORTED_FORMATS))
    return (
        f"supported formats: {exts}; other formats rosettasciio reads are tried through it; "
        "or pass a NumPy array or a HyperSpy signal"
    )


class LoadError(ValueError):
    """A file could not be read: the message names the file, the problem and the fix."""


def _available_memory() -> int:
    """Bytes this process can still allocate: the machine's available memory, or less under
    an address-space limit (RLIMIT_AS)."""
    available = 0
    try:
        text = Path("/proc/meminfo").read_text()
        m = re.search(r"MemAvailable:\s+(\d+) kB", text)
        available = int(m.group(1)) * 1024 if m else 0
    except OSError:
        pass
    if not available:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30  # no way to ask (e.g. Windows): assume a small workstation
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            m = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())
            used = int(m.group(1)) * 1024 if m else 0
            available = min(available, max(soft - used, 0))
    except (ImportError, OSError, ValueError):
        pass
    return available


def default_max_bytes() -> int:
    """The default memory budget of one ``load``: half of the memory still available (the
    data usually gets copied at least once by what comes next)."""
    return _available_memory() // 2


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("kiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def require_regular_file(path: Path) -> int:
    """Size of ``path`` if it is a regular file (symlinks followed); a FIFO, device or socket
    is refused before anything opens it, since a read from one can block forever or never end."""
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        raise LoadError(f"{path} is a folder; pass one data file ({supported_text()})")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise LoadError(f"{path} is {kind}; latentatlas reads regular files only (reading from "
                        "it could block forever or never end); copy the data into a file")
    return int(st.st_size)


@dataclass
class Picker:
    """Chooses which channels of a multi-channel file to read, within a memory budget.

    ``key`` is an index or a name (matched case-insensitively against each channel's aliases:
    quantity, dataset name, title, signal type; an exact match wins over a substring match).
    ``mode`` is ``"one"`` (the keyed or default channel), ``"all"`` or ``"list"`` (names only).
    ``max_bytes``: what the arrays read from the file may take in all (``allow``);
    ``file_size``: the size of the file, against which readers check what it declares.
    """

    key: int | str | None = None
    mode: str = "one"
    names: list[str] = field(default_factory=list)
    source: str = ""
    max_bytes: int = 0
    file_size: int = 0
    spent: int = 0

    def allow(self, n_bytes: int, what: str) -> None:
        """Account for an array of ``n_bytes`` about to be allocated; LoadError, before any
        allocation, when the budget would be exceeded."""
        if self.spent + n_bytes > self.max_bytes:
            raise LoadError(
                f"{self.source}: {what} would take {format_bytes(n_bytes)}, more than the memory "
                f"budget of {format_bytes(self.max_bytes - self.spent)} left for this load "
                "(half the available memory by default); if the file is genuine, pass "
                "max_bytes= to load() with a larger budget, or load a smaller channel"
            )
        self.spent += n_bytes

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
