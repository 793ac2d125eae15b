"""A simple self-contained HTML page: figures (embedded PNGs) and tables of parameters."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latentatlas._files import write_text_atomic

__all__ = ["flatten", "write_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}figure{margin:1em 0}
figcaption{font-size:.9em;color:#555}img{max-width:100%;border:1px solid #eee}
"""


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` with values as short strings."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            try:
                text = v if isinstance(v, str) else json.dumps(v, default=str)
            except (TypeError, ValueError):
                text = str(v)
            out[key] = text if len(text) <= 300 else text[:297] + "..."
    return out


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in flatten(rows).items()
    )
    return f"<table>{body}</table>"


def _figure(caption: str, png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(
    path: str | Path,
    title: str,
    figures: Sequence[tuple[str, str | Path]] = (),
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    text: str = "",
) -> Path:
    """Write one HTML file with every figure embedded (it can be mailed or moved alone).

    figures: ``(caption, png_path)`` pairs, shown in order. tables: section title ->
    mapping shown as a two-column table (nested mappings flattened as ``a.b``). The file is
    written to a temporary name and renamed, so it is complete or absent.
    """
    path = Path(path)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if text:
        parts.append(f"<p>{html.escape(text)}</p>")
    for section, rows in (tables or {}).items():
        parts.append(f"<h2>{html.escape(section)}</h2>{_table(rows)}")
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(c, Path(p)) for c, p in figures]
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts))
    return path
