"""Ferroelectric domain patterns and switching movies with exact wall positions.

Three pieces, each with ground truth:

* :func:`domain_pattern` draws a binary map of the switched polarisation state (smooth random
  walls, stripes, bubbles, one straight wall, one disc); :func:`domain_walls` turns any such
  map into the exact wall mask used as ground truth everywhere in the package.
* :func:`switching_movie` runs a time-dependent Ginzburg-Landau (TDGL) lattice,
  ``dP/dt = P - P^3 + kappa lap(P) + E(t) + h(x) + g(x)``, driven by field pulses ``E(t)``
  with a quenched random field ``h(x)`` that roughens the walls and, optionally, planted
  pinning defects ``g(x)`` that hold them; every frame records ``sign(P)``.
* :func:`render_pfm` turns a domain map into PFM-like phase (degrees, the two states about
  180 degrees apart, with noise) and amplitude (dipping to zero at the walls) images.

:func:`make_domain_images` batches the three for training and benchmarks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

PATTERN_KINDS = ("random", "stripes", "bubbles", "straight", "disc")

# 4-neighbour cross: a pixel is on the wall if one of its edge neighbours is in the other state.
_CROSS = ndimage.generate_binary_structure(2, 1)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_shape(shape: tuple[int, int], minimum: int = 8) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < minimum:
        raise ValueError(f"shape must be (h, w) with both >= {minimum} pixels, got {shape}")
    return int(shape[0]), int(shape[1])


def domain_walls(domains: np.ndarray) -> np.ndarray:
    """Exact wall mask of a binary domain map: switched pixels with an unswitched edge neighbour.

    domains: (h, w) or (t, h, w) bool, True = switched state. The wall is the one-pixel inner
    boundary of the switched domain (8-connected curves, so a closed wall is one segment); the
    image border is not a wall. Returns a bool array of the same shape.
    """
    d = np.asarray(domains)
    if d.ndim == 3:
        return np.stack([domain_walls(frame) for frame in d])
    if d.ndim != 2:
        raise ValueError(f"domains must be (h, w) or (t, h, w), got shape {d.shape}")
    d = d.astype(bool)
    # border_value=1 keeps the image edge from counting as a wall
    eroded = ndimage.binary_erosion(d, structure=_CROSS, border_value=1)
    return d & ~eroded


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def domain_pattern(
    shape: tuple[int, int] = (64, 64),
    kind: str = "random",
    seed: int | np.random.Generator | None = None,
    fraction: float | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """One binary domain map (True = switched polarisation state).

    kind: "random" (smooth random walls: a smoothed noise field thresholded at the quantile
    that gives ``fraction`` switched), "stripes" (gently wavy stripes of period ``scale``),
    "bubbles" (a few discs of radius about ``scale``), "straight" (one straight wall at a
    random angle and offset), "disc" (one disc of radius ``scale`` near the centre).
    fraction: switched fraction for "random" (default drawn in [0.3, 0.7]).
    scale: correlation length / period / radius in pixels (default from the image size).
    Returns (h, w) bool.
    """
    h, w = _check_shape(shape)
    rng = _rng(seed)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    size = min(h, w)
    if kind == "random":
        s = scale if scale is not None else rng.uniform(0.08, 0.16) * size
        f = fraction if fraction is not None else rng.uniform(0.3, 0.7)
        if not 0.0 < f < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {f}")
        field = _smooth_field((h, w), rng, s)
        return field > np.quantile(field, 1.0 - f)
    if kind == "stripes":
        period = scale if scale is not None else rng.uniform(0.25, 0.5) * size
        theta = rng.uniform(0, np.pi)
        u = rows * np.cos(theta) + cols * np.sin(theta)
        v = -rows * np.sin(theta) + cols * np.cos(theta)
        wobble = 0.08 * period * np.sin(2 * np.pi * v / (rng.uniform(1.0, 2.0) * size))
        return np.sin(2 * np.pi * (u + wobble) / period + rng.uniform(0, 2 * np.pi)) > 0
    if kind == "bubbles":
        radius = scale if scale is not None else rng.uniform(0.08, 0.15) * size
        out = np.zeros((h, w), dtype=bool)
        for _ in range(int(rng.integers(2, 6))):
            r = radius * rng.uniform(0.6, 1.4)
            c = rng.uniform([0, 0], [h, w])
            out |= (rows - c[0]) ** 2 + (cols - c[1]) ** 2 < r**2
        return out
    if kind == "straight":
        theta = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(-0.25, 0.25) * size
        u = (rows - (h - 1) / 2) * np.cos(theta) + (cols - (w - 1) / 2) * np.sin(theta)
        return u > offset
    if kind == "disc":
        r = scale if scale is not None else rng.uniform(0.15, 0.35) * size
        c = np.array([(h - 1) / 2, (w - 1) / 2]) + rng.uniform(-0.1, 0.1, 2) * size
        return (rows - c[0]) ** 2 + (cols - c[1]) ** 2 < r**2
    raise ValueError(f"kind must be one of {PATTERN_KINDS}, got {kind!r}")


def signed_wall_distance(domains: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to the wall: positive inside the switched domain.

    domains: (h, w) bool. The wall lies half-way between a switched pixel and its unswitched
    neighbour, hence the half-pixel shifts. Returns (h, w) float64.
    """
    d = np.asarray(domains, dtype=bool)
    if d.all() or not d.any():
        return np.full(d.shape, np.inf if d.all() else -np.inf)
    inside = ndimage.distance_transform_edt(d)
    outside = ndimage.distance_transform_edt(~d)
    return np.where(d, inside - 0.5, -(outside - 0.5))


def render_pfm(
    domains: np.ndarray,
    seed: int | np.random.Generator | None = None,
    wall_width: float = 1.0,
    tip_blur: float = 0.8,
    phase_noise: float = 12.0,
    amplitude_noise: float = 0.08,
    phase_offset: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PFM-like phase and amplitude images of a domain map.

    domains: (h, w) or (t, h, w) bool, True = switched (phase about 180 degrees + offset,
    unswitched about 0 + offset). The polarisation across a wall follows
    ``tanh(distance / wall_width)``; the tip blurs it with a Gaussian of ``tip_blur`` pixels.
    Phase (degrees, wrapped to [-90, 270) like Asylum files) carries Gaussian noise of
    ``phase_noise`` degrees; amplitude is ``|P|`` (so it dips at walls) plus
    ``amplitude_noise`` relative noise, clipped at zero. phase_offset: degrees added to both
    states (default drawn in [-30, 30]). Returns (phase, amplitude), each float32 of the
    input shape.
    """
    d = np.asarray(domains)
    rng = _rng(seed)
    if d.ndim == 3:
        pairs = [
            render_pfm(f, rng, wall_width, tip_blur, phase_noise, amplitude_noise, phase_offset)
            for f in d
        ]
        return np.stack([p for p, _ in pairs]), np.stack([a for _, a in pairs])
    if d.ndim != 2:
        raise ValueError(f"domains must be (h, w) or (t, h, w), got shape {d.shape}")
    if wall_width <= 0:
        raise ValueError(f"wall_width must be > 0 pixels, got {wall_width}")
    offset = rng.uniform(-30, 30) if phase_offset is None else float(phase_offset)
    dist = signed_wall_distance(d.astype(bool))
    pol = -np.tanh(np.clip(dist, -50, 50) / wall_width)  # +1 unswitched, -1 switched
    if tip_blur > 0:
        pol = ndimage.gaussian_filter(pol, tip_blur, mode="nearest")
    # phase from the in-plane/out-of-plane projection: 0 deg for P=+1, 180 deg for P=-1
    phase = np.degrees(np.arccos(np.clip(pol, -1, 1))) + offset
    phase = phase + rng.normal(0.0, phase_noise, d.shape)
    phase = (phase + 90.0) % 360.0 - 90.0
    amplitude = np.abs(pol) * (1.0 + rng.normal(0.0, amplitude_noise, d.shape))
    return phase.astype(np.float32), np.clip(amplitude, 0, None).astype(np.float32)


@dataclass(frozen=True)
class DomainImages:
    """A batch of generated PFM images with ground truth.

    phase: (n, h, w) float32 degrees; amplitude: (n, h, w) float32; domains: (n, h, w) bool
    (True = switched); walls: (n, h, w) bool (exact wall mask); kinds: pattern kind per image.
    """

    phase: np.ndarray
    amplitude: np.ndarray
    domains: np.ndarray
    walls: np.ndarray
    kinds: tuple[str, ...]


def make_domain_images(
    n: int,
    shape: tuple[int, int] = (64, 64),
    kinds: tuple[str, ...] = ("random", "stripes", "bubbles", "straight"),
    seed: int | np.random.Generator | None = None,
    phase_noise: tuple[float, float] = (5.0, 25.0),
    wall_width: tuple[float, float] = (0.6, 1.6),
) -> DomainImages:
    """``n`` PFM images of random domain patterns, kinds cycled in order.

    phase_noise, wall_width: (low, high) ranges drawn uniformly per image so a detector sees
    clean and noisy, sharp and broad walls.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for k in kinds:
        if k not in PATTERN_KINDS:
            raise ValueError(f"kinds must be drawn from {PATTERN_KINDS}, got {k!r}")
    rng = _rng(seed)
    phases, amps, doms, kind_list = [], [], [], []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        dom = domain_pattern(shape, kind, rng)
        # a pattern with no wall teaches nothing; flip to a straight wall instead
        if dom.all() or not dom.any():
            kind, dom = "straight", domain_pattern(shape, "straight", rng)
        ph, am = render_pfm(
            dom,
            rng,
            wall_width=rng.uniform(*wall_width),
            phase_noise=rng.uniform(*phase_noise),
        )
        phases.append(ph)
        amps.append(am)
        doms.append(dom)
        kind_list.append(kind)
    domains = np.stack(doms)
    return DomainImages(
        phase=np.stack(phases),
        amplitude=np.stack(amps),
        domains=domains,
        walls=domain_walls(domains),
        kinds=tuple(kind_list),
    )


@dataclass(frozen=True)
class DomainMovie:
    """A switching movie with the exact domain state of every frame.

    polarization: (t, h, w) float32 TDGL order parameter; domains: (t, h, w) bool
    (True = switched, P < 0); walls: (t, h, w) bool; field: (t,) float, the pulse applied
    just before each frame (0 for the first frame); disorder: (h, w) float32 quenched field;
    pinning: (h, w) float32 field of the planted defects (0 without); sites: (k, 2) float
    (row, col) centres of the planted defects.
    """

    polarization: np.ndarray
    domains: np.ndarray
    walls: np.ndarray
    field: np.ndarray
    disorder: np.ndarray
    pinning: np.ndarray
    sites: np.ndarray

    @property
    def switched_fraction(self) -> np.ndarray:
        """(t,) fraction of the image in the switched state."""
        return self.domains.reshape(len(self.domains), -1).mean(axis=1)


def _laplacian(p: np.ndarray) -> np.ndarray:
    # Neumann boundaries: mirror the edge so the border neither pins nor drives the walls
    q = np.pad(p, 1, mode="edge")
    return q[:-2, 1:-1] + q[2:, 1:-1] + q[1:-1, :-2] + q[1:-1, 2:] - 4 * p


def _place_sites(free: np.ndarray, n: int, spacing: float, rng: np.random.Generator
                 ) -> np.ndarray:
    """``n`` points drawn among the True pixels of ``free``, at least ``spacing`` apart."""
    candidates = np.argwhere(free).astype(np.float64)
    chosen: list[np.ndarray] = []
    for i in rng.permutation(len(candidates)):
        c = candidates[i]
        if all(np.hypot(*(c - x)) >= spacing for x in chosen):
            chosen.append(c)
            if len(chosen) == n:
                return np.stack(chosen)
    raise ValueError(
        f"only {len(chosen)} of pinning_sites={n} fit {spacing:.1f} px apart outside the "
        "initial domain; use fewer sites, a smaller pinning_radius or a larger shape"
    )


def switching_movie(
    shape: tuple[int, int] = (64, 64),
    n_frames: int = 12,
    seed: int | np.random.Generator | None = None,
    initial: str = "nucleus",
    pulse: float = 0.2,
    pulse_steps: int = 30,
    disorder: float = 0.15,
    disorder_length: float = 2.0,
    kappa: float = 1.0,
    dt: float = 0.1,
    angle: float = 0.0,
    pinning_sites: int = 0,
    pinning_strength: float = 1.5,
    pinning_radius: float = 2.0,
) -> DomainMovie:
    """Field-driven domain growth in a TDGL lattice with quenched disorder.

    Each frame after the first follows one pulse of ``pulse_steps`` Euler steps at field
    ``-pulse`` (growing the switched, P < 0, state) and a short relaxation at zero field.
    ``pulse`` below the homogeneous coercive field (about 0.385) moves existing walls without
    nucleating new domains in a clean lattice; ``disorder`` is the standard deviation of a
    quenched random field correlated over ``disorder_length`` pixels: it roughens the walls,
    holds them at favourable sites between pulses and, when strong (about 0.3 and up), also
    nucleates new domains ahead of the wall.

    pinning_sites: number of planted defects, each a Gaussian bump (width
    ``pinning_radius`` pixels, height ``pinning_strength``) of built-in field favouring the
    unswitched state, which raises the field needed to switch there: with a strength above
    the pulse the defect never switches, so a passing wall wraps round it and stays. They are
    drawn in the initially unswitched area, at least ``3 * pinning_radius`` from its walls
    and from the border and ``6 * pinning_radius`` apart (``DomainMovie.sites``).

    initial: "nucleus" (a switched disc of radius h/8 at the centre), "planar" (one straight
    wall through ``h/4`` from the edge, normal at ``angle`` radians from the column axis;
    with disorder=0 it moves at constant speed) or "random" (a random pattern).
    Returns a :class:`DomainMovie`; wall positions are exact for every frame.
    """
    h, w = _check_shape(shape)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not 0 < dt <= 0.2:
        raise ValueError(f"dt must be in (0, 0.2] for a stable Euler step, got {dt}")
    if pinning_sites < 0 or pinning_radius <= 0:
        raise ValueError(f"pinning_sites must be >= 0 and pinning_radius > 0 pixels, got "
                         f"{pinning_sites} and {pinning_radius}")
    rng = _rng(seed)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    if initial == "nucleus":
        r0 = max(h, w) / 8
        p = np.where((rows - (h - 1) / 2) ** 2 + (cols - (w - 1) / 2) ** 2 < r0**2, -1.0, 1.0)
    elif initial == "planar":
        u = rows * np.sin(angle) + cols * np.cos(angle)
        u0 = (h * abs(np.sin(angle)) + w * abs(np.cos(angle))) / 4 + min(u.min(), 0)
        p = np.where(u < u0, -1.0, 1.0)
    elif initial == "random":
        p = np.where(domain_pattern((h, w), "random", rng, fraction=0.3), -1.0, 1.0)
    else:
        raise ValueError(f"initial must be 'nucleus', 'planar' or 'random', got {initial!r}")
    quenched = np.zeros((h, w))
    if disorder > 0:
        quenched = disorder * _smooth_field((h, w), rng, disorder_length)
    pinning = np.zeros((h, w))
    sites = np.zeros((0, 2))
    if pinning_sites > 0:
        margin = 3 * pinning_radius
        free = ndimage.distance_transform_edt(p > 0) > margin
        free &= (rows >= margin) & (rows <= h - 1 - margin)
        free &= (cols >= margin) & (cols <= w - 1 - margin)
        sites = _place_sites(free, pinning_sites, 6 * pinning_radius, rng)
        for r, c in sites:
            pinning += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * pinning_radius**2))
        pinning *= pinning_strength
    bias = quenched + pinning

    def step(p: np.ndarray, field: float, n: int) -> np.ndarray:
        for _ in range(n):
            p = p + dt * (p - p**3 + kappa * _laplacian(p) + field + bias)
        return p

    p = step(p, 0.0, 20)  # relax the sharp initial wall into its TDGL profile
    frames, fields = [p.copy()], [0.0]
    for _ in range(n_frames - 1):
        p = step(p, -pulse, pulse_steps)
        p = step(p, 0.0, 5)
        frames.append(p.copy())
        fields.append(-pulse)
    pol = np.stack(frames).astype(np.float32)
    domains = pol < 0
    return DomainMovie(
        polarization=pol,
        domains=domains,
        walls=domain_walls(domains),
        field=np.asarray(fields),
        disorder=quenched.astype(np.float32),
        pinning=pinning.astype(np.float32),
        sites=sites,
    )


__all__ = [
    "PATTERN_KINDS",
    "DomainImages",
    "DomainMovie",
    "domain_pattern",
    "domain_walls",
    "make_domain_images",
    "render_pfm",
    "signed_wall_distance",
    "switching_movie",
]
