"""One self-contained HTML page for every command: figures first, a short summary (verdict
and headline numbers), parameters and calibration folded below, and where the result came
from (version, date, command, input files with their SHA-256).

The page is rendered from a jinja2 template (``templates/report.html.j2``, autoescaped); the
figures are embedded PNGs, so the file can be mailed or moved alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from latentatlas import __version__
from latentatlas._files import safe_text, write_text_atomic

__all__ = ["file_sha256", "flatten", "format_value", "write_report"]

_DIGITS = 4
_MAX_TEXT = 300


def format_value(value: Any) -> str:
    """A value as a short string: floats to 4 significant digits (BIC 12345.678901 ->
    ``12346``, 0.000123456 -> ``0.0001235``), lists element by element."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and abs(v) >= 10 ** _DIGITS:
            return f"{v:.0f}"
        return f"{v:.{_DIGITS}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and small arrays
        return format_value(value.tolist())
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` with values as short strings (floats rounded)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            text = format_value(v)
            out[key] = text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _input_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_file():
        return {"name": safe_text(p), "size": p.stat().st_size, "sha256": file_sha256(p)}
    return {"name": safe_text(p), "size": None, "sha256": None}


@cache
def _template() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    return env.get_template("report.html.j2")


def write_report(
    path: str | Path,
    title: str,
    figures: Sequence[tuple[str, str | Path]] = (),
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    text: str = "",
    *,
    summary: Mapping[str, Any] | None = None,
    verdict: str = "",
    calibration: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
    command: str = "",
) -> Path:
    """Write one HTML file with every figure embedded (it can be mailed or moved alone).

    Parameters
    ----------
    figures : ``(caption, png_path)`` pairs, shown first, in order.
    tables : section title -> mapping, each folded (``<details>``) below the summary (nested
        mappings flattened as ``a.b``, floats rounded to 4 significant digits).
    text : a paragraph under the title.
    summary : the few lines a reader needs (name -> value), shown after the figures.
    verdict : one sentence on what the result is worth (e.g. against its baselines), shown
        above the summary.
    calibration : the input's calibration (pixel size, units, axes), folded like a table.
    inputs : the files the run read; each is listed with its size and SHA-256.
    command : the command line or call that produced the result.

    The file is written to a temporary name and renamed, so it is complete or absent.
    """
    path = Path(path)
    figs = [{"caption": safe_text(c),
             "data": base64.b64encode(Path(p).read_bytes()).decode("ascii")}
            for c, p in figures]
    sections = dict(tables or {})
    if calibration:
        sections["Calibration"] = calibration
    html = _template().render(
        title=safe_text(title),
        version=__version__,
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=safe_text(command),
        text=safe_text(text),
        figures=figs,
        verdict=safe_text(verdict),
        summary=list(flatten(summary or {}).items()),
        tables=[(safe_text(s), list(flatten(rows).items())) for s, rows in sections.items()],
        inputs=[_input_record(p) for p in inputs],
    )
    write_text_atomic(path, html)
    return path
