"""Reading a saved model folder without trusting it.

A folder holds ``config.json`` (family, config, seed), ``model.safetensors`` and
``history.json``. Everything is checked before anything is built: the JSON's types and ranges
(by the config classes), the safetensors header against the file's size, and the tensor names
and shapes against those of the network the config describes, built on the ``meta`` device
(no memory). Only then is the real network built, whose size the weights file on disk has
already bounded; weights that are not finite are refused.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from latentatlas.io import LoadError

MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB
MAX_HISTORY_BYTES = 1 << 28  # one number per epoch and term
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit
MAX_SEED = 2**63 - 1

# safetensors dtype names -> bytes per element
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def read_json(file: Path, max_bytes: int) -> Any:
    """Parsed JSON of ``file`` (a regular file of at most ``max_bytes``), or LoadError."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; the model folder is incomplete")
    size = file.stat().st_size
    if size > max_bytes:
        raise LoadError(f"{file} is {size} bytes, more than the {max_bytes} a saved model writes; "
                        "the model folder is damaged")
    try:
        return json.loads(file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise LoadError(f"{file} is not valid JSON ({exc}); the model folder is damaged") from exc


def seed_of(meta: dict[str, Any]) -> int:
    seed = meta.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"'seed' must be an integer in [0, 2**63), got {str(seed)[:40]!r}")
    return seed


def config_dict(meta: dict[str, Any]) -> dict[str, Any]:
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"'config' must be a mapping of config fields, got "
                         f"{type(config).__name__}")
    return config


def read_header(file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors header, after checking that the header
    is well formed and that the tensors it declares tile the rest of the file exactly."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; the model folder is incomplete")
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise LoadError(f"{file} is {size} bytes, too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise LoadError(f"{file}: the safetensors header declares {n} bytes but the file has "
                            f"{size}; the file is truncated or damaged")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise LoadError(f"{file}: the safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise LoadError(f"{file}: the safetensors header is not a mapping of tensors")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin, end = _entry(file, name, entry)
        if not 0 <= begin <= end or end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise LoadError(f"{file}: tensor {name[:80]!r} declares shape {list(shape)} of "
                            f"{dtype} but {end - begin} bytes; the file is damaged")
        spans.append((begin, end))
        out[name] = (dtype, shape)
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise LoadError(f"{file}: the tensors' byte ranges overlap or leave gaps; the file is "
                            "damaged")
        position = end
    if 8 + n + position != size:
        raise LoadError(f"{file}: the header accounts for {8 + n + position} bytes but the file "
                        f"has {size}; it is truncated or damaged")
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _entry(file: Path, name: str, entry: object) -> tuple[str, tuple[int, ...], int, int]:
    """dtype, shape and byte range of one safetensors header entry, or LoadError."""
    if isinstance(entry, dict):
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if (isinstance(dtype, str) and dtype in _DTYPE_BYTES and isinstance(shape, list)
                and len(shape) <= 16 and all(_is_int(n) and n >= 0 for n in shape)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(_is_int(o) for o in offsets)):
            return dtype, tuple(shape), offsets[0], offsets[1]
    raise LoadError(f"{file}: the safetensors entry {name[:80]!r} is malformed")


def expected_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, is floating point) of the state of the module ``build`` makes, built on
    the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        module = build()
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in module.state_dict().items()}


#: tensors of a module that models saved before them lack; the module's load hook sets them
#: to their neutral value (the rVAE's ``canonical_origin``: zero)
DEFAULTED_TENSORS = frozenset({"canonical_origin"})


def check_shapes(file: Path, header: dict[str, tuple[str, tuple[int, ...]]],
                 expected: dict[str, tuple[tuple[int, ...], bool]]) -> None:
    """The weights file holds exactly the tensors the config describes, shape for shape
    (tensors added since a model was saved, ``DEFAULTED_TENSORS``, may be missing: the module
    fills them with the value that reproduces the saved model)."""
    missing = [k for k in expected
               if k not in header and k.rsplit(".", 1)[-1] not in DEFAULTED_TENSORS]
    extra = [k for k in header if k not in expected]
    if missing or extra:
        raise LoadError(
            f"{file} does not hold the tensors its config.json describes (missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{[k[:80] for k in extra[:5]]}{'...' if len(extra) > 5 else ''}); config and "
            "weights do not belong together")
    for name, (shape, floating) in expected.items():
        if name not in header:
            continue
        dtype, got = header[name]
        if got != shape:
            raise LoadError(f"{file}: tensor {name!r} has shape {list(got)} but the config "
                            f"describes {list(shape)}; config and weights do not belong together")
        if floating != (dtype in _FLOAT_DTYPES):
            raise LoadError(f"{file}: tensor {name!r} is stored as {dtype}, which does not fit "
                            "the network the config describes")


def load_finite(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checked weights file; NaN or infinite weights are refused."""
    state = load_file(str(file))
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise LoadError(f"{file}: tensor {name!r} holds {bad} NaN or infinite values of "
                            f"{tensor.numel()}; the model diverged before it was saved or the "
                            "file is damaged")
    return state


def read_history(path: Path) -> dict[str, list[float]]:
    """history.json (term -> one number per epoch), {} when absent."""
    file = path / "history.json"
    if not file.exists():
        return {}
    history = read_json(file, MAX_HISTORY_BYTES)
    ok = isinstance(history, dict) and all(
        isinstance(v, list)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in history.values()
    )
    if not ok:
        raise LoadError(f"{file} must map each training term to a list of numbers; it is "
                        "damaged (delete it to load the model without its history)")
    return {str(k): [float(x) for x in v] for k, v in history.items()}
