"""Input validation shared by every layer: one clear message naming the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_array(
    x: object,
    name: str = "data",
    ndim: int | Sequence[int] | None = None,
    allow_empty: bool = False,
    dtype: type = np.float32,
) -> np.ndarray:
    """Return ``x`` as a finite array of ``dtype``, or raise ``ValueError`` saying what is wrong.

    ``ndim`` may be one int or a sequence of allowed dimensionalities.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be turned into an array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric, got dtype {arr.dtype}; load the file with latentatlas.load "
            "or convert it with np.asarray(..., dtype=float)"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                f"got shape {arr.shape}"
            )
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample")
    arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values; remove or fill them "
            "(e.g. np.nan_to_num) before analysis"
        )
    return arr
