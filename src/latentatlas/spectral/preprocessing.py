"""Preprocessing of spectral cubes: channel cropping, Poisson normalisation, centring and
scaling, spatial binning."""

from __future__ import annotations

from typing import Literal

import numpy as np

from latentatlas._checks import check_array

__all__ = [
    "bin_spatial",
    "center_scale",
    "crop_channels",
    "poisson_normalize",
    "poisson_unnormalize",
]


def crop_channels(
    cube: np.ndarray, energy: np.ndarray, low: float | None = None, high: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the channels whose axis value lies in ``[low, high]`` (inclusive; None = open).

    ``cube`` is ``(..., channels)`` and ``energy`` ``(channels,)``; returns the cropped cube
    (a view) and axis. The range is in axis units (eV, V, ...), not channel indices.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if energy.ndim != 1 or energy.shape[0] != cube.shape[-1]:
        raise ValueError(
            f"the energy axis has shape {energy.shape} but the cube has {cube.shape[-1]} "
            "channels; pass one axis value per channel"
        )
    lo = -np.inf if low is None else float(low)
    hi = np.inf if high is None else float(high)
    if lo > hi:
        raise ValueError(f"crop range is empty: low={low} > high={high}")
    keep = (energy >= lo) & (energy <= hi)
    if not keep.any():
        raise ValueError(
            f"crop range [{low}, {high}] selects no channel; the axis runs from "
            f"{energy.min():g} to {energy.max():g}"
        )
    idx = np.flatnonzero(keep)
    sl = slice(int(idx[0]), int(idx[-1]) + 1)
    return cube[..., sl], energy[sl]


def poisson_normalize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weight counts so that Poisson noise becomes roughly homoscedastic (Keenan & Kotula 2004).

    ``X (n, channels)`` of non-negative counts becomes ``X / sqrt(g h^T)`` where ``g (n,)``
    is the mean of each spectrum and ``h (channels,)`` the mean of each channel. Returns the
    normalised data, ``sqrt(g)`` and ``sqrt(h)``; a factorisation ``W H`` of the normalised
    data maps back to counts as ``(sqrt(g) W)(H sqrt(h))`` (see :func:`poisson_unnormalize`).
    """
    X = check_array(X, "X", ndim=2, dtype=np.float64)
    n_neg = int((X < 0).sum())
    if n_neg:
        raise ValueError(
            f"Poisson normalisation needs non-negative counts, but the data has {n_neg} negative "
            f"values (minimum {X.min():g}); it applies to raw counts only: drop poisson=True or "
            "undo the background subtraction"
        )
    g = np.sqrt(X.mean(1))
    h = np.sqrt(X.mean(0))
    # empty spectra or channels carry no information: leave them unscaled (and zero)
    g[g == 0] = 1.0
    h[h == 0] = 1.0
    return X / g[:, None] / h[None, :], g, h


def poisson_unnormalize(
    loadings: np.ndarray | None, components: np.ndarray | None, g: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Map a factorisation of Poisson-normalised data back to counts: ``W g``, ``H h``."""
    w = None if loadings is None else loadings * g[:, None]
    c = None if components is None else components * h[None, :]
    return w, c


def center_scale(
    X: np.ndarray, center: bool = True, scale: Literal[False, "channel", "global"] = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subtract the mean spectrum and divide by a standard deviation.

    ``scale="channel"`` divides each channel by its own std (unit variance per channel),
    ``"global"`` by the std of the whole array (keeps spectral shape). Returns the result,
    the mean ``(channels,)`` and the scale ``(channels,)``.
    """
    X = check_array(X, "X", ndim=2, dtype=np.float64)
    mean = X.mean(0) if center else np.zeros(X.shape[1])
    Xc = X - mean
    if scale is False:
        sd = np.ones(X.shape[1])
    elif scale == "channel":
        sd = Xc.std(0)
        sd[sd == 0] = 1.0
    elif scale == "global":
        sd = np.full(X.shape[1], float(Xc.std()) or 1.0)
    else:
        raise ValueError(f"scale must be False, 'channel' or 'global', got {scale!r}")
    return Xc / sd, mean, sd


def bin_spatial(
    cube: np.ndarray, factor: int | tuple[int, int], reduce: Literal["sum", "mean"] = "sum"
) -> np.ndarray:
    """Bin a cube ``(ny, nx, channels)`` by ``factor`` pixels in y and x.

    Trailing rows/columns that do not fill a whole bin are dropped. ``"sum"`` keeps counts
    Poisson-distributed; ``"mean"`` keeps the intensity scale.
    """
    cube = check_array(cube, "cube", ndim=3, dtype=np.float64 if cube.dtype == np.float64
                       else np.float32)
    fy, fx = (factor, factor) if isinstance(factor, int) else factor
    if fy < 1 or fx < 1:
        raise ValueError(f"bin factor must be >= 1, got {factor}")
    ny, nx, c = cube.shape
    if fy > ny or fx > nx:
        raise ValueError(f"bin factor {factor} is larger than the map ({ny}, {nx})")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    by, bx = ny // fy, nx // fx
    blocks = cube[: by * fy, : bx * fx].reshape(by, fy, bx, fx, c)
    out = blocks.sum(axis=(1, 3)) if reduce == "sum" else blocks.mean(axis=(1, 3))
    return np.asarray(out)
