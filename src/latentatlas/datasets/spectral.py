"""Synthetic spectral cubes with ground truth: endmembers, abundance maps and an energy axis.

A cube is ``(ny, nx, channels)``; every pixel is a linear mixture of ``k`` endmember spectra
with abundances on the simplex (non-negative, summing to one), arranged as smooth spatial
regions so that clustering methods have planted labels to recover.

Three spectral families mimic the data the toolbox meets:

* ``"eels"``: core-loss edges (a step with a sawtooth decay and a white-line peak) on a
  power-law background ``A E^-r``, energy in eV;
* ``"cits"``: tunnelling spectra with a gap (zero conductance inside ``|V| < Δ``, a
  square-root rise and coherence peaks at the gap edges, in-gap states), bias in V;
* ``"loops"``: piezoresponse hysteresis loops over a triangular voltage sweep, with
  different coercive biases and imprint per endmember (values in ``[-1, 1]``).

Noise is Poisson (the clean cube is scaled to ``counts`` expected counts per channel at its
maximum; the returned cube and endmembers are then in counts) or Gaussian with standard
deviation ``noise_level`` times the cube's maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = ["SpectralCube", "make_spectral_cube", "smooth_abundances"]

Kind = Literal["eels", "cits", "loops"]
Noise = Literal["poisson", "gaussian", "none"]


@dataclass(frozen=True)
class SpectralCube:
    """A generated cube with its ground truth.

    Attributes
    ----------
    cube : (ny, nx, channels) float32, noisy data ``abundances @ endmembers`` (+ noise)
    clean : (ny, nx, channels) float32, the same without noise
    endmembers : (k, channels) float32, in the cube's units (counts for Poisson noise)
    abundances : (ny, nx, k) float32, non-negative, summing to one per pixel
    labels : (ny, nx) int, the dominant endmember per pixel (planted regions)
    energy : (channels,) float64, the spectral axis
    energy_name, energy_units : str, the axis name and units ("Energy loss", "eV", ...)
    """

    cube: np.ndarray
    clean: np.ndarray
    endmembers: np.ndarray
    abundances: np.ndarray
    labels: np.ndarray
    energy: np.ndarray
    energy_name: str
    energy_units: str


def smooth_abundances(
    shape: tuple[int, int],
    n_components: int,
    smoothness: float = 6.0,
    sharpness: float = 12.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Abundance maps ``(ny, nx, k)`` on the simplex made of smooth spatial regions.

    ``k`` Gaussian-filtered white-noise fields (filter width ``smoothness`` pixels) are
    standardised and passed through a softmax of inverse temperature ``sharpness``: large
    values give nearly pure regions with thin mixed boundaries, small values give broad
    mixtures. Every endmember is guaranteed to dominate some pixels, because a field whose
    region vanished would make the ground truth unidentifiable.
    """
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    ny, nx = shape
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    rng = np.random.default_rng() if rng is None else rng
    for _attempt in range(50):
        fields = rng.standard_normal((n_components, ny, nx))
        fields = np.stack(
            [ndimage.gaussian_filter(f, smoothness, mode="wrap") for f in fields], axis=-1
        )
        fields = (fields - fields.mean()) / (fields.std() + 1e-12)
        logits = sharpness * fields
        logits -= logits.max(axis=-1, keepdims=True)
        ab = np.exp(logits)
        ab /= ab.sum(axis=-1, keepdims=True)
        counts = np.bincount(ab.argmax(-1).ravel(), minlength=n_components)
        # each endmember owns at least 2 % of the pixels (or one pixel on tiny maps)
        if counts.min() >= max(1, int(0.02 * ny * nx)):
            return ab
    # fall back: planted quadrant-like stripes, still smooth and on the simplex
    stripe = (np.arange(nx)[None, :] * n_components // nx).repeat(ny, 0)
    ab = np.eye(n_components)[stripe]
    ab = np.stack([ndimage.gaussian_filter(a, 1.0) for a in np.moveaxis(ab, -1, 0)], -1)
    return ab / ab.sum(-1, keepdims=True)


def _eels_endmembers(n: int, channels: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    energy = np.linspace(280.0, 880.0, channels)
    onsets = np.linspace(energy[0] + 0.1 * np.ptp(energy), energy[0] + 0.75 * np.ptp(energy), n)
    rng.shuffle(onsets)
    ems = []
    for r in range(n):
        exponent = rng.uniform(2.5, 3.5)
        background = (energy / energy[0]) ** (-exponent)
        e0 = onsets[r]
        rel = np.clip(energy - e0, 0.0, None)
        step = 0.5 * (1.0 + np.tanh((energy - e0) / 2.0))
        edge = 0.6 * step * np.exp(-rel / rng.uniform(80.0, 200.0))
        white_line = 0.8 * np.exp(-0.5 * ((energy - e0 - 4.0) / 3.0) ** 2)
        ems.append(background + edge + white_line)
    return np.asarray(ems), energy


def _cits_endmembers(n: int, channels: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    bias = np.linspace(-0.1, 0.1, channels)
    gaps = np.linspace(0.005, 0.05, n)
    rng.shuffle(gaps)
    broadening = 0.002
    ems = []
    for r in range(n):
        delta = gaps[r]
        # Dynes density of states: |Re (E - iΓ) / sqrt((E - iΓ)^2 - Δ^2)|
        z = bias - 1j * broadening
        dos = np.abs(np.real(z / np.sqrt(z**2 - delta**2)))
        in_gap = rng.uniform(0.1, 0.5) * np.exp(-0.5 * ((bias - rng.uniform(-0.5, 0.5) * delta)
                                                         / 0.003) ** 2)
        ems.append(dos + in_gap + 0.05)
    return np.asarray(ems), bias


def _loop_endmembers(n: int, channels: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    half = channels // 2
    v_up = np.linspace(-10.0, 10.0, half)
    voltage = np.concatenate([v_up, v_up[::-1], np.full(channels - 2 * half, -10.0)])
    ems = []
    coercive = np.linspace(1.5, 6.0, n)
    rng.shuffle(coercive)
    for r in range(n):
        vc = coercive[r]
        imprint = rng.uniform(-1.5, 1.5)
        width = rng.uniform(0.6, 1.5)
        amp = rng.uniform(0.6, 1.0)
        up = amp * np.tanh((v_up - imprint - vc) / width)
        down = amp * np.tanh((v_up[::-1] - imprint + vc) / width)
        tail = np.full(channels - 2 * half, down[-1])
        ems.append(np.concatenate([up, down, tail]))
    return np.asarray(ems), voltage


_FAMILIES = {
    "eels": (_eels_endmembers, "Energy loss", "eV"),
    "cits": (_cits_endmembers, "Bias", "V"),
    "loops": (_loop_endmembers, "Voltage", "V"),
}


def make_spectral_cube(
    kind: Kind = "eels",
    shape: tuple[int, int] = (64, 64),
    n_channels: int = 256,
    n_components: int = 3,
    noise: Noise = "poisson",
    counts: float = 200.0,
    noise_level: float = 0.02,
    smoothness: float = 6.0,
    sharpness: float = 12.0,
    seed: int | None = 0,
) -> SpectralCube:
    """Generate a cube ``(ny, nx, n_channels)`` of linear mixtures with known ground truth.

    Parameters
    ----------
    kind : "eels", "cits" or "loops", the spectral family (see module docstring).
    shape : (ny, nx), the spatial size.
    n_channels : number of spectral channels.
    n_components : number of endmembers ``k``.
    noise : "poisson" (counts), "gaussian" or "none".
    counts : for Poisson noise, expected counts per channel at the clean cube's maximum.
    noise_level : for Gaussian noise, the standard deviation relative to the clean maximum.
    smoothness, sharpness : see :func:`smooth_abundances`.
    seed : random seed; the same seed gives the same cube.
    """
    if kind not in _FAMILIES:
        raise ValueError(f"kind must be one of {sorted(_FAMILIES)}, got {kind!r}")
    if noise not in ("poisson", "gaussian", "none"):
        raise ValueError(f"noise must be 'poisson', 'gaussian' or 'none', got {noise!r}")
    if n_channels < 8:
        raise ValueError(f"n_channels must be >= 8 to hold a spectrum, got {n_channels}")
    if n_components < 1 or n_components > n_channels:
        raise ValueError(
            f"n_components must be between 1 and n_channels={n_channels}, got {n_components}"
        )
    if kind == "loops" and noise == "poisson":
        raise ValueError(
            "hysteresis loops take negative values, so Poisson noise does not apply; "
            "use noise='gaussian' or 'none'"
        )
    if counts <= 0 or noise_level < 0:
        raise ValueError(f"counts must be > 0 and noise_level >= 0, got {counts}, {noise_level}")
    rng = np.random.default_rng(seed)
    maker, name, units = _FAMILIES[kind]
    endmembers, energy = maker(n_components, n_channels, rng)
    abundances = smooth_abundances(shape, n_components, smoothness, sharpness, rng)
    peak = float(np.abs(endmembers).max())
    if noise == "poisson":
        endmembers = endmembers * (counts / peak)
    else:
        endmembers = endmembers / peak
    clean = abundances @ endmembers
    cube: np.ndarray
    if noise == "poisson":
        cube = rng.poisson(clean).astype(np.float32)
    elif noise == "gaussian":
        cube = clean + noise_level * float(np.abs(clean).max()) * rng.standard_normal(clean.shape)
    else:
        cube = clean.copy()
    return SpectralCube(
        cube=cube.astype(np.float32),
        clean=clean.astype(np.float32),
        endmembers=endmembers.astype(np.float32),
        abundances=abundances.astype(np.float32),
        labels=abundances.argmax(-1),
        energy=energy.astype(np.float64),
        energy_name=name,
        energy_units=units,
    )
