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


def check_pixels(value: object, name: str, shape: Sequence[int], positive: bool = False) -> float:
    """A length in pixels (a Gaussian sigma, a spacing) as a float: finite, >= 0 (> 0 when
    ``positive``) and no larger than the image's larger side, beyond which it would only wash
    the frame out while its filter kernels grew without bound (sigma 1e9 -> a 60 GiB kernel)."""
    limit = max(int(n) for n in shape)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    low_ok = number > 0 if positive else number >= 0
    if not (np.isfinite(number) and low_ok and number <= limit):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} and at most the image's larger side ({limit} "
                         f"pixels), got {value!r}")
    return number
