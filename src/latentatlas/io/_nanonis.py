"""Nanonis grid spectroscopy (.3ds) reader.

Layout: an ASCII header of ``key=value`` lines ending with ``:HEADER_END:\\r\\n``, then one
record per grid point (x fastest, then y), each ``n_params`` big-endian float32 parameters
(the fixed ones, e.g. Sweep Start/End, then the experiment ones, e.g. X (m), Y (m), Z (m))
followed by ``n_channels x points`` float32 values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas.io._common import LoadError, Picker, format_bytes
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

_END = b":HEADER_END:\r\n"


def _split_names(value: str) -> list[str]:
    return [s.strip() for s in value.split(";") if s.strip()]


def _name_units(label: str) -> tuple[str, str]:
    """'Current (A)' -> ('Current', 'A')."""
    m = re.match(r"^(.*?)\s*\(([^)]*)\)\s*$", label)
    return (m.group(1), m.group(2)) if m else (label, "")


_MAX_HEADER = 1 << 20  # Nanonis writes a few kB
_MAX_NAMES = 10_000  # parameters or channels; a grid file has tens


def parse_header(raw: bytes, source: str) -> tuple[dict[str, str], int]:
    end = raw.find(_END)
    if end < 0:
        raise LoadError(
            f"{source}: no ':HEADER_END:' marker in the first {format_bytes(_MAX_HEADER)}; the "
            "file is not a Nanonis .3ds grid or its header is truncated"
        )
    header: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            header[k.strip()] = v.strip().strip('"')
    return header, end + len(_END)


def _layout(header: dict[str, str], src: str) -> tuple[int, int, int, int, list[str]]:
    """nx, ny, parameters per record, points per channel, channel names; LoadError when a
    field is missing, garbled or out of range."""
    try:
        nx, ny = (int(v) for v in header["Grid dim"].lower().split("x"))
        n_params = int(header["# Parameters (4 byte)"])
        points = int(header["Points"])
        channels = _split_names(header["Channels"])
    except (KeyError, ValueError) as exc:
        raise LoadError(f"{src}: Nanonis header lacks or garbles a required field ({exc})") from exc
    if min(nx, ny, points) < 1 or not 0 <= n_params <= _MAX_NAMES or not channels \
            or len(channels) > _MAX_NAMES:
        raise LoadError(f"{src}: Nanonis header declares an impossible grid: {nx} x {ny} points, "
                        f"{n_params} parameters, {points} points per sweep, {len(channels)} "
                        "channels")
    return nx, ny, n_params, points, channels


def read_3ds(path: Path, pick: Picker) -> list[Dataset]:
    src = str(path)
    with open(path, "rb") as f:
        header, start = parse_header(f.read(_MAX_HEADER), src)
    nx, ny, n_params, points, channels = _layout(header, src)
    rec = n_params + len(channels) * points
    n_bytes = nx * ny * rec * 4
    if pick.file_size - start < n_bytes:
        raise LoadError(
            f"{src}: truncated Nanonis grid: {nx}x{ny} points x {rec} float32 need {n_bytes} "
            f"bytes after the header, the file has {pick.file_size - start}"
        )
    param_names = _split_names(header.get("Fixed parameters", "")) + _split_names(
        header.get("Experiment parameters", "")
    )
    param_names = param_names[:n_params] + [f"param_{k}" for k in range(len(param_names),
                                                                        n_params)]
    aliases = [[c, _name_units(c)[0]] for c in channels]
    chosen = pick.choose(aliases, 0)
    if pick.mode == "list":
        return []
    # Only the parameters and the chosen channels are read, through a memory map.
    pick.allow(nx * ny * (n_params + len(chosen) * points) * 4,
               f"{len(chosen)} channel(s) of {nx}x{ny}x{points} float32")
    records = np.memmap(path, dtype=">f4", mode="r", offset=start, shape=(ny, nx, rec))
    params = np.array(records[..., :n_params], dtype=np.float32)

    settings = [float(v) for v in header.get("Grid settings", "").split(";") if v.strip()]
    width = settings[2] if len(settings) > 2 else float(nx)
    height = settings[3] if len(settings) > 3 else float(ny)
    names_lower = [p.lower() for p in param_names]
    x0 = float(params[0, 0, names_lower.index("x (m)")]) if "x (m)" in names_lower else 0.0
    y0 = float(params[0, 0, names_lower.index("y (m)")]) if "y (m)" in names_lower else 0.0
    sweep_name, sweep_units = _name_units(header.get("Sweep Signal", "Sweep"))
    if "sweep start" in names_lower and "sweep end" in names_lower:
        s0 = float(params[0, 0, names_lower.index("sweep start")])
        s1 = float(params[0, 0, names_lower.index("sweep end")])
        sweep = axis_from_values(sweep_name, np.linspace(s0, s1, points), sweep_units, "spectral")
    else:
        sweep = Axis(sweep_name, units=sweep_units, size=points, kind="spectral")

    metadata: dict[str, Any] = {
        "header": header,
        "parameters": {name: params[..., k] for k, name in enumerate(param_names)},
        "grid_settings": settings,
        "channels": channels,
    }
    out = []
    for i in chosen:
        q, u = _name_units(channels[i])
        axes = [
            Axis("y", scale=height / ny, offset=y0, units="m", kind="spatial"),
            Axis("x", scale=width / nx, offset=x0, units="m", kind="spatial"),
            Axis(sweep.name, sweep.scale, sweep.offset, sweep.units, kind="spectral",
                 values=sweep.values),
        ]
        out.append(
            Dataset(
                data=np.array(records[..., n_params + i * points: n_params + (i + 1) * points],
                              dtype=np.float32),
                axes=axes,
                metadata=metadata,
                signal_type="SPECTRAL_IMAGE",
                quantity=q,
                units=u,
                name=channels[i],
            )
        )
    return out
