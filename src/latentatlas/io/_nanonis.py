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

from latentatlas.io._common import LoadError, Picker
from latentatlas.io.dataset import Axis, Dataset, axis_from_values

_END = b":HEADER_END:\r\n"


def _split_names(value: str) -> list[str]:
    return [s.strip() for s in value.split(";") if s.strip()]


def _name_units(label: str) -> tuple[str, str]:
    """'Current (A)' -> ('Current', 'A')."""
    m = re.match(r"^(.*?)\s*\(([^)]*)\)\s*$", label)
    return (m.group(1), m.group(2)) if m else (label, "")


def parse_header(raw: bytes, source: str) -> tuple[dict[str, str], int]:
    end = raw.find(_END)
    if end < 0:
        raise LoadError(
            f"{source}: no ':HEADER_END:' marker; the file is not a Nanonis .3ds grid or "
            "its header is truncated"
        )
    header: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            header[k.strip()] = v.strip().strip('"')
    return header, end + len(_END)


def read_3ds(path: Path, pick: Picker) -> list[Dataset]:
    raw = path.read_bytes()
    src = str(path)
    header, start = parse_header(raw, src)
    try:
        nx, ny = (int(v) for v in header["Grid dim"].lower().split("x"))
        n_params = int(header["# Parameters (4 byte)"])
        points = int(header["Points"])
        channels = _split_names(header["Channels"])
    except (KeyError, ValueError) as exc:
        raise LoadError(f"{src}: Nanonis header lacks or garbles a required field ({exc})") from exc
    param_names = _split_names(header.get("Fixed parameters", "")) + _split_names(
        header.get("Experiment parameters", "")
    )
    param_names += [f"param_{k}" for k in range(len(param_names), n_params)]
    rec = n_params + len(channels) * points
    n_bytes = nx * ny * rec * 4
    if len(raw) - start < n_bytes:
        raise LoadError(
            f"{src}: truncated Nanonis grid: {nx}x{ny} points x {rec} float32 need {n_bytes} "
            f"bytes after the header, the file has {len(raw) - start}"
        )
    records = np.frombuffer(raw, dtype=">f4", count=nx * ny * rec, offset=start)
    records = records.reshape(ny, nx, rec).astype(np.float32)
    params = records[..., :n_params]
    spectra = records[..., n_params:].reshape(ny, nx, len(channels), points)

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
    aliases = [[c, _name_units(c)[0]] for c in channels]
    out = []
    for i in pick.choose(aliases, 0):
        q, u = _name_units(channels[i])
        axes = [
            Axis("y", scale=height / ny, offset=y0, units="m", kind="spatial"),
            Axis("x", scale=width / nx, offset=x0, units="m", kind="spatial"),
            Axis(sweep.name, sweep.scale, sweep.offset, sweep.units, kind="spectral",
                 values=sweep.values),
        ]
        out.append(
            Dataset(
                data=np.ascontiguousarray(spectra[:, :, i, :]),
                axes=axes,
                metadata=metadata,
                signal_type="SPECTRAL_IMAGE",
                quantity=q,
                units=u,
                name=channels[i],
            )
        )
    return out
