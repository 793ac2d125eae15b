"""Short text and HTML summaries of results and models, for the console and notebooks.

A result holds arrays of thousands of values; its ``repr`` shows what it is in one line and
its ``_repr_html_`` a small table, never the arrays themselves.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["html_summary", "short", "text_summary"]


def short(value: Any) -> str:
    """A value in a few characters: arrays by shape, floats to 4 significant digits."""
    if isinstance(value, np.ndarray):
        return f"array{tuple(value.shape)}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"[{', '.join(short(v) for v in value[:5])}, ... ({len(value)} items)]"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(short(v) for v in value)}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {short(v)}" for k, v in list(value.items())[:6]) + (
            ", ..." if len(value) > 6 else "") + "}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def text_summary(kind: str, fields: Mapping[str, Any]) -> str:
    """``Kind(a=1, b=array(3, 4))``, skipping fields that are None."""
    body = ", ".join(f"{k}={short(v)}" for k, v in fields.items() if v is not None)
    return f"{kind}({body})"


def html_summary(kind: str, fields: Mapping[str, Any]) -> str:
    """A two-column HTML table headed by ``kind``, skipping fields that are None."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(short(v))}</td></tr>"
        for k, v in fields.items() if v is not None)
    return (f"<div><strong>{html.escape(kind)}</strong>"
            f"<table style='font-size:90%'>{rows}</table></div>")
