"""Atomic-lattice images with exact column positions and classes (ground truth for atom finding).

Lattice kinds (``LATTICE_KINDS``):

- ``"square"``: one site per square cell.
- ``"hexagonal"``: triangular lattice (close-packed columns).
- ``"honeycomb"``: graphene, two equivalent sites per hexagonal cell; ``spacing`` is the
  nearest-neighbour (bond) distance.
- ``"perovskite"``: ABO3 seen along [001]: a square lattice of bright A columns with dimmer B
  columns at the cell centres (two sublattices of different intensity).

Classes: 0 = host site (A sublattice), 1 = second sublattice (perovskite B), 2 = dopant
(a host site with a different intensity). Vacancies are removed from ``positions``.

Positions are (row, col) in pixels, in the same convention as image indexing: a column at
(r, c) is brightest at ``image[round(r), round(c)]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from latentatlas.datasets.render import add_microscope_noise, render_columns

logger = logging.getLogger(__name__)

LATTICE_KINDS = ("square", "hexagonal", "honeycomb", "perovskite")

HOST, SECOND_SUBLATTICE, DOPANT = 0, 1, 2


@dataclass
class LatticeImage:
    """A generated image with its ground truth.

    image: (h, w) float32. positions: (n, 2) float64 (row, col) of every column inside the
    image. classes: (n,) int64 (0 host, 1 second sublattice, 2 dopant). sigma: Gaussian width
    of the columns in pixels. params: the generator's parameters. Unpacks as
    ``image, positions, classes = lattice``.
    """

    image: np.ndarray
    positions: np.ndarray
    classes: np.ndarray
    sigma: float
    params: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.image, self.positions, self.classes))


def lattice_sites(
    kind: str,
    shape: tuple[int, int],
    spacing: float,
    angle: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ideal lattice sites covering ``shape`` (plus ``margin`` pixels on every side).

    angle in degrees (counter-clockwise in the displayed image). Returns positions (n, 2)
    float64 (row, col) and sublattice index (n,) int64 (1 for perovskite B sites, else 0).
    """
    if kind not in LATTICE_KINDS:
        raise ValueError(f"lattice kind must be one of {LATTICE_KINDS}, got {kind!r}")
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0 pixels, got {spacing!r}")
    # Primitive vectors (x, y) and basis, in units where the basis spacing is `spacing`.
    s3 = np.sqrt(3.0)
    if kind == "square":
        a1, a2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
        basis, sub = np.array([[0.0, 0.0]]), np.array([0])
    elif kind == "hexagonal":
        a1, a2 = np.array([1.0, 0.0]), np.array([0.5, s3 / 2])
        basis, sub = np.array([[0.0, 0.0]]), np.array([0])
    elif kind == "honeycomb":
        # Lattice constant sqrt(3) x bond length; two atoms per cell.
        a1, a2 = np.array([s3, 0.0]), np.array([s3 / 2, 1.5])
        basis, sub = np.array([[0.0, 0.0], [0.0, 1.0]]), np.array([0, 0])
    else:  # perovskite: A at corners, B at centre; spacing is the A-A distance
        a1, a2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
        basis, sub = np.array([[0.0, 0.0], [0.5, 0.5]]), np.array([0, 1])
    h, w = shape
    centre = np.array([w / 2.0, h / 2.0])
    radius = 0.5 * np.hypot(h, w) + margin + 2 * spacing
    # Row height of the cell grid: enough cells in each direction to cover the radius.
    height = (
        spacing * abs(a1[0] * a2[1] - a1[1] * a2[0]) / max(np.linalg.norm(a1), np.linalg.norm(a2))
    )
    n = int(np.ceil(radius / height)) + 2
    ij = np.stack(np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij"), -1)
    ij = ij.reshape(-1, 2).astype(np.float64)
    cells = ij[:, :1] * a1 + ij[:, 1:] * a2  # (m, 2) x, y
    pts = (cells[:, None, :] + basis[None]).reshape(-1, 2) * spacing
    subl = np.tile(sub, len(cells))
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    xy = pts @ rot.T + centre + np.asarray(offset, dtype=np.float64)[::-1]
    # Image rows grow downwards, so y -> row directly (the displayed rotation is clockwise
    # for positive angle in matrix coordinates; only the lattice orientation matters here).
    rc = xy[:, ::-1]
    keep = (
        (rc[:, 0] >= -margin)
        & (rc[:, 0] < h + margin)
        & (rc[:, 1] >= -margin)
        & (rc[:, 1] < w + margin)
    )
    return rc[keep], subl[keep].astype(np.int64)


def scan_distort(
    positions: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, strength: float
) -> np.ndarray:
    """Smooth scan distortion of (row, col) positions: shear, row-scale drift and a slow wobble.

    strength ~ displacement in pixels at the far edge (0 = none). Returns (n, 2).
    """
    if strength <= 0:
        return positions.copy()
    h, w = shape
    r = positions[:, 0] / h
    shear = rng.uniform(-1, 1) * strength
    stretch = rng.uniform(-1, 1) * strength
    wobble = rng.uniform(0, 0.5) * strength
    period = rng.uniform(0.3, 1.0)
    phase = rng.uniform(0, 2 * np.pi)
    out = positions.copy()
    out[:, 1] += shear * r + wobble * np.sin(2 * np.pi * r / period + phase)
    out[:, 0] += stretch * r
    return out


def contamination_mask(shape: tuple[int, int], rng: np.random.Generator, fraction: float) -> np.ndarray:
    """(h, w) float64 in [0, 1]: where the bright amorphous-carbon patches of real HAADF images
    lie (no lattice is visible under them). A smooth random field thresholded to cover about
    ``fraction`` of the image, its edges softened over 2 pixels."""
    h, w = shape
    field_ = ndimage.gaussian_filter(rng.normal(size=(h, w)), min(h, w) / 8, mode="wrap")
    level = np.quantile(field_, 1.0 - fraction)
    return ndimage.gaussian_filter((field_ > level).astype(np.float64), 2.0)


def generate_lattice(
    shape: tuple[int, int] = (128, 128),
    kind: str = "honeycomb",
    spacing: float = 12.0,
    angle: float | None = None,
    sigma: float | None = None,
    second_intensity: float = 0.5,
    dopant_fraction: float = 0.0,
    dopant_intensity: float = 2.0,
    dopant_width: float = 1.0,
    vacancy_fraction: float = 0.0,
    position_jitter: float = 0.0,
    distortion: float = 0.0,
    background: float = 0.0,
    blur: float = 0.0,
    counts: float | None = None,
    gaussian_noise: float = 0.0,
    contamination: float = 0.0,
    seed: int | np.random.Generator | None = 0,
) -> LatticeImage:
    """One lattice image with exact ground truth.

    shape: (h, w). spacing: nearest-neighbour distance in pixels (A-A for perovskite, bond
    length for honeycomb). angle: lattice rotation in degrees (None = uniform random).
    sigma: column width (None = 0.25 x the nearest-neighbour distance, like HAADF columns).
    second_intensity: peak of perovskite B columns relative to A (= 1). Dopants replace host
    sites with ``dopant_intensity`` (peak) and ``dopant_width`` x ``sigma`` (width); vacancies remove sites.
    position_jitter: standard deviation of
    random column displacements (pixels). distortion: scan distortion strength (pixels).
    background: smooth background amplitude. blur, counts, gaussian_noise: passed to
    :func:`latentatlas.datasets.render.add_microscope_noise`. contamination: fraction of the
    image covered by bright amorphous patches; columns underneath are removed from the ground
    truth (they are not visible).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h, w = (int(shape[0]), int(shape[1]))
    if h < 8 or w < 8:
        raise ValueError(f"shape must be at least (8, 8), got {shape}")
    for name, frac in (
        ("dopant_fraction", dopant_fraction),
        ("vacancy_fraction", vacancy_fraction),
        ("contamination", contamination),
    ):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    angle = float(rng.uniform(0, 360)) if angle is None else float(angle)
    if sigma is None:
        # A quarter of the nearest-neighbour distance (A-B for perovskite), like HAADF columns.
        sigma = 0.25 * spacing / (np.sqrt(2.0) if kind == "perovskite" else 1.0)
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}")
    if not dopant_width > 0:
        raise ValueError(f"dopant_width (relative to sigma) must be > 0, got {dopant_width!r}")
    offset = (float(rng.uniform(0, spacing)), float(rng.uniform(0, spacing)))
    # Render sites a few sigma beyond the border so edge columns are cut, as in real images.
    pad = 4 * sigma + abs(distortion) + 3 * position_jitter
    pos, sub = lattice_sites(kind, (h, w), spacing, angle, offset, margin=pad)
    classes = np.where(sub == 1, SECOND_SUBLATTICE, HOST).astype(np.int64)
    amp = np.where(sub == 1, second_intensity, 1.0)
    host = np.flatnonzero(classes == HOST)
    n_dop = rng.binomial(len(host), dopant_fraction) if dopant_fraction > 0 else 0
    dop = rng.choice(host, size=n_dop, replace=False)
    classes[dop] = DOPANT
    amp[dop] = dopant_intensity
    width = np.where(classes == DOPANT, dopant_width * sigma, sigma)
    keep = rng.random(len(pos)) >= vacancy_fraction
    pos, classes, amp, width = pos[keep], classes[keep], amp[keep], width[keep]
    if position_jitter > 0:
        pos = pos + rng.normal(0.0, position_jitter, size=pos.shape)
    pos = scan_distort(pos, (h, w), rng, distortion)
    image = render_columns((h, w), pos, amp, width).astype(np.float64)
    if background > 0:
        bg = ndimage.gaussian_filter(rng.normal(size=(h, w)), min(h, w) / 4, mode="wrap")
        image += background * (bg - bg.min()) / (np.ptp(bg) + 1e-12)
    if contamination > 0:
        patch = contamination_mask((h, w), rng, contamination)
        texture = ndimage.gaussian_filter(rng.random((h, w)), 1.5)
        image = image * (1 - patch) + patch * (3.0 + 2.0 * texture / (texture.max() + 1e-12))
        r = np.clip(np.round(pos).astype(np.int64), 0, [h - 1, w - 1])
        visible = patch[r[:, 0], r[:, 1]] < 0.5
        pos, classes = pos[visible], classes[visible]
    image = add_microscope_noise(image, rng, blur=blur, counts=counts, gaussian=gaussian_noise)
    inside = (pos[:, 0] >= 0) & (pos[:, 0] <= h - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= w - 1)
    params = {
        "kind": kind,
        "spacing": float(spacing),
        "angle": angle,
        "sigma": sigma,
        "dopant_fraction": dopant_fraction,
        "vacancy_fraction": vacancy_fraction,
        "distortion": distortion,
        "blur": blur,
        "counts": counts,
        "gaussian_noise": gaussian_noise,
        "contamination": contamination,
    }
    return LatticeImage(image, pos[inside], classes[inside], sigma, params)


def random_lattice(
    rng: np.random.Generator,
    shape: tuple[int, int] = (128, 128),
    spacing_range: tuple[float, float] = (6.0, 22.0),
) -> LatticeImage:
    """A lattice drawn from the broad distribution the DCNN atom finder is trained on.

    Every lattice kind, spacings in ``spacing_range`` pixels, any rotation, column widths
    0.15-0.32 x spacing, dopants, vacancies, scan distortion, smooth background, blur, shot and
    read noise from clean to contrast-to-noise below one, and occasional contamination.
    """
    kind = str(rng.choice(LATTICE_KINDS, p=[0.2, 0.15, 0.45, 0.2]))
    spacing = float(np.exp(rng.uniform(np.log(spacing_range[0]), np.log(spacing_range[1]))))
    nn = spacing / (np.sqrt(2.0) if kind == "perovskite" else 1.0)  # nearest-neighbour distance
    sigma = max(0.9, float(rng.uniform(0.15, 0.32)) * nn)
    # Contrast-to-noise: half the images in the hard regime of low-dose HAADF (0.5-1.5, where
    # the real 60 kV graphene frames sit), the rest log-uniform up to 20.
    if rng.random() < 0.5:
        cnr = float(rng.uniform(0.5, 1.5))
    else:
        cnr = float(np.exp(rng.uniform(np.log(1.5), np.log(20.0))))
    counts = float(np.exp(rng.uniform(np.log(5.0), np.log(500.0)))) if rng.random() < 0.3 else None
    return generate_lattice(
        shape,
        kind=kind,
        spacing=spacing,
        angle=None,
        sigma=sigma,
        second_intensity=float(rng.uniform(0.3, 0.8)),
        dopant_fraction=float(rng.uniform(0, 0.05)),
        dopant_intensity=float(rng.choice([rng.uniform(1.6, 3.0), rng.uniform(0.4, 0.7)])),
        vacancy_fraction=float(rng.uniform(0, 0.05)),
        position_jitter=float(rng.uniform(0, 0.04)) * spacing,
        distortion=float(rng.uniform(0, 0.3)) * spacing if rng.random() < 0.5 else 0.0,
        background=float(rng.uniform(0, 1.0)) if rng.random() < 0.5 else 0.0,
        blur=float(rng.uniform(0, 1.0)) if rng.random() < 0.3 else 0.0,
        counts=counts,
        gaussian_noise=1.0 / cnr,
        contamination=float(rng.uniform(0.05, 0.4)) if rng.random() < 0.15 else 0.0,
        seed=rng,
    )


def atom_mask(shape: tuple[int, int], positions: np.ndarray, width: float = 1.5) -> np.ndarray:
    """Training target for the DCNN: a Gaussian bump of peak 1 and ``width`` pixels per column.

    Returns (h, w) float32 in [0, 1]; overlapping bumps take the maximum, so neighbouring
    columns stay separate components after thresholding at 0.5.
    """
    h, w = shape
    mask = np.zeros((h, w), dtype=np.float32)
    if len(positions) == 0:
        return mask
    r = int(np.ceil(3 * width))
    offs = np.arange(-r, r + 1)
    base = np.round(positions).astype(np.int64)
    rows = base[:, 0, None] + offs  # (n, k)
    cols = base[:, 1, None] + offs
    gr = np.exp(-((rows - positions[:, 0, None]) ** 2) / (2 * width**2))
    gc = np.exp(-((cols - positions[:, 1, None]) ** 2) / (2 * width**2))
    val = gr[:, :, None] * gc[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], val.shape)
    cc = np.broadcast_to(cols[:, None, :], val.shape)
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    np.maximum.at(mask, (rr[ok], cc[ok]), val[ok].astype(np.float32))
    return mask


def two_site_lattice(
    shape: tuple[int, int] = (256, 256),
    spacing: float = 16.0,
    contrast: float = 0.45,
    angle: float | None = 10.0,
    noise: float = 0.05,
    seed: int | np.random.Generator | None = 0,
    gradient: float = 0.0,
    thickness: float = 0.0,
) -> LatticeImage:
    """A lattice with two kinds of sites that a rotation-invariant VAE + GMM separates.

    A perovskite-like square lattice: bright A columns (class 0, peak 1) and dim B columns
    (class 1, peak ``contrast``) at the cell centres. The two sites differ in their own
    intensity and in their surroundings (an A site is ringed by B sites at the diagonals and
    vice versa). Light Gaussian noise ``noise`` keeps both classes obvious to the eye.
    Used by the analyze pipeline's end-to-end test and the README demo.

    Slow changes across the field of view, as in real images of a wedge-shaped sample:
    ``gradient`` adds a linear background ramp rising from 0 at the left edge to
    ``gradient`` (in units of the A peak) at the right edge; ``thickness`` scales the column
    contrast from ``1 - thickness`` at the top to ``1 + thickness`` at the bottom. With
    ``gradient >= 1 - contrast`` a B column on the bright side is brighter than an A column on
    the dark side, so the two sites overlap in plain intensity.
    """
    if not 0 < contrast < 1:
        raise ValueError(f"contrast must be in (0, 1) (B relative to A), got {contrast!r}")
    if gradient < 0:
        raise ValueError(f"gradient must be >= 0 (background rise across the image), got "
                         f"{gradient!r}")
    if not 0 <= thickness < 1:
        raise ValueError(f"thickness must be in [0, 1) (relative contrast change), got "
                         f"{thickness!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lat = generate_lattice(
        shape,
        kind="perovskite",
        spacing=spacing,
        angle=angle,
        sigma=0.16 * spacing,
        second_intensity=contrast,
        gaussian_noise=noise if gradient == 0 and thickness == 0 else 0.0,
        seed=rng,
    )
    if gradient == 0 and thickness == 0:
        return lat
    h, w = lat.image.shape
    rows, cols = np.mgrid[0:h, 0:w]
    scale = 1.0 + thickness * (2.0 * rows / max(h - 1, 1) - 1.0)
    image = scale * lat.image + gradient * cols / max(w - 1, 1)
    image = image + rng.normal(0.0, noise, size=image.shape) if noise > 0 else image
    lat.image = image.astype(np.float32)
    lat.params.update(gradient=float(gradient), thickness=float(thickness))
    return lat


def lattice_stack(
    n_frames: int, shape: tuple[int, int] = (128, 128), seed: int = 0, **kwargs: Any
) -> tuple[np.ndarray, list[LatticeImage]]:
    """``n_frames`` independent lattice images with the same settings (a synthetic movie).

    Returns the stack (n_frames, h, w) float32 and the per-frame ground truth.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    frames = [generate_lattice(shape, seed=rng, **kwargs) for _ in range(n_frames)]
    return np.stack([f.image for f in frames]), frames
