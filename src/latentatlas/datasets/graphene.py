"""Generated graphene with point defects and grain boundaries, exact atoms, bonds and ring labels.

Construction (all lengths in units of the C-C bond length ``a`` until the final conversion to
pixels):

1. A honeycomb lattice covering the field of view plus a margin, rotated by a random angle;
   optionally two grains rotated by +-tilt/2 about the boundary normal and joined along a
   horizontal line (see :func:`_join_grains`).
2. Defects are topological operations on the explicit bond graph, at random non-overlapping
   sites away from the borders:

   - ``stone_wales``: a bond rotated by 90 degrees, four hexagons become 5-7-7-5;
   - ``divacancy``: two bonded atoms removed, the two dangling pairs bond: 5-8-5;
   - ``vacancy``: one atom removed. With ``reconstruct_vacancy=True`` (default) two of the three
     dangling atoms bond, giving the 5-9 reconstruction seen in experiments (the third atom
     keeps a dangling bond and sits on the 9-ring); with False the three hexagons merge into
     one 12-atom hole, which the ring analysis reports as no ring (its size exceeds 9);
   - ``si``: a carbon replaced by silicon (three-fold, in-plane; its projected position is
     kept, which is what HAADF sees of the buckled Si to within the noise).

3. The atoms near every change are relaxed with a Keating valence force field (bond
   stretching plus bond-angle terms with a 120 degree rest angle) and a short-range repulsion
   between atoms that share no bond or neighbour, by L-BFGS; atoms further away stay fixed.
   The relaxed geometry is what makes the distance-based bond finder recover the topology.
4. Atoms inside the field of view are kept; rings and per-atom labels are computed from the
   true bonds among them with :mod:`latentatlas.descriptors.rings` (rings cut by the image
   border are therefore absent, as they are for any analysis of the image).
5. HAADF-like rendering with :func:`latentatlas.datasets.render.render_columns`: Gaussian
   columns with intensity ~ Z^1.7 (normalised so Si = 1, C = (6/14)^1.7), then blur, Poisson
   and Gaussian noise and scan-line jitter with
   :func:`latentatlas.datasets.render.add_microscope_noise`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import cKDTree

from latentatlas.datasets.lattices import DOPANT, contamination_mask, generate_lattice
from latentatlas.datasets.render import add_microscope_noise, render_columns
from latentatlas.descriptors.rings import (
    DEFAULT_RING_CLASSES,
    RingClassTable,
    analyze_rings,
    find_rings,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFECT_KINDS",
    "ELEMENT_NAMES",
    "SI_COMPLEXES",
    "GrapheneSample",
    "haadf_weights",
    "honeycomb",
    "make_graphene",
    "relax_keating",
]

#: Element classes used by the generator (and by the AtomNet coordinates: C = 0, Si = 1).
ELEMENT_NAMES: tuple[str, ...] = ("C", "Si")
_ATOMIC_NUMBER = np.array([6, 14])

#: Defect kinds; ``GrapheneSample.defect`` holds 1 + the index of the kind, 0 for lattice atoms.
DEFECT_KINDS: tuple[str, ...] = (
    "stone_wales", "divacancy", "vacancy", "si", "grain_boundary",
    "Si1C4", "Si2C4", "Si2C5", "Si2C6", "Si3C6",
)
#: Silicon complexes beyond the three-fold substitution ``si`` (Si1C3), named as in the
#: LibraryNet classes (Si atoms, C neighbours): Si1C4 a four-fold Si in a divacancy; Si2C4,
#: Si2C5, Si2C6 two substitutional Si that are first, second and third (across a hexagon)
#: neighbours; Si3C6 a vacancy whose three neighbours are Si.
SI_COMPLEXES: tuple[str, ...] = ("Si1C4", "Si2C4", "Si2C5", "Si2C6", "Si3C6")

_SQ3 = float(np.sqrt(3.0))
# longest bond (in bond lengths) kept after relaxation; the ring finder's noise-free cut-off
# is about 1.37
_MAX_BOND = 1.3


@dataclass(frozen=True)
class GrapheneSample:
    """One generated graphene image with its ground truth.

    image: ``(h, w)`` float32. coords: ``(n, 2)`` atom positions (row, col) in pixels.
    classes: ``(n,)`` element class (0 = C, 1 = Si). bonds: ``(m, 2)`` true bonds (atom indices).
    defect: ``(n,)`` 0 for lattice atoms, else 1 + index in :data:`DEFECT_KINDS` of the defect
    whose rings the atom belongs to. atom_ring_sizes: ``(n, k)`` sorted sizes of the rings of
    each atom (padded with leading zeros); labels: ``(n,)`` ring labels from ``table``.
    rings: atom-index arrays of every ring. bond_length: C-C bond length in pixels.
    defect_sites: (kind, (row, col) in pixels) of every defect placed.
    """

    image: np.ndarray
    coords: np.ndarray
    classes: np.ndarray
    bonds: np.ndarray
    defect: np.ndarray
    atom_ring_sizes: np.ndarray
    labels: np.ndarray
    rings: list[np.ndarray]
    bond_length: float
    table: RingClassTable = DEFAULT_RING_CLASSES
    defect_sites: list[tuple[str, tuple[float, float]]] = field(default_factory=list)

    @property
    def n_atoms(self) -> int:
        return len(self.coords)

    def ring_size_counts(self) -> dict[int, int]:
        """Number of rings of each size."""
        sizes, counts = np.unique([len(r) for r in self.rings], return_counts=True)
        return {int(s): int(c) for s, c in zip(sizes, counts, strict=True)}


def haadf_weights(classes: np.ndarray, z_exponent: float = 1.7) -> np.ndarray:
    """Column intensities ``(n,)`` ~ Z^z_exponent, normalised so the heaviest element (Si) is 1."""
    cls = np.asarray(classes, dtype=np.int64)
    if cls.size and (cls.min() < 0 or cls.max() >= len(_ATOMIC_NUMBER)):
        raise ValueError(f"element classes must be 0 (C) or 1 (Si), got range "
                         f"[{cls.min()}, {cls.max()}]")
    z = _ATOMIC_NUMBER[cls].astype(np.float64)
    return (z / _ATOMIC_NUMBER.max()) ** z_exponent


def honeycomb(
    extent: tuple[float, float], angle: float = 0.0, origin: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """A honeycomb with bond length 1 covering ``[0, extent[0]) x [0, extent[1])``.

    angle: rotation in radians about ``origin`` (row, col). Returns positions ``(n, 2)``
    (row, col) and bonds ``(m, 2)``.
    """
    h, w = extent
    reach = float(np.hypot(h, w)) + 4.0
    # |j| <= reach / 1.5 and |i| <= reach / sqrt(3) + |j| / 2 < reach cover the disc of radius
    # reach about the origin, which holds the whole extent
    n_cells = int(np.ceil(reach)) + 2
    ii, jj = np.meshgrid(np.arange(-n_cells, n_cells + 1), np.arange(-n_cells, n_cells + 1))
    i, j = ii.ravel(), jj.ravel()
    # lattice vectors in (x, y): a1 = (sqrt3, 0), a2 = (sqrt3/2, 3/2); basis (0, 0), (0, 1)
    x = i * _SQ3 + j * _SQ3 / 2
    y = j * 1.5
    xy = np.concatenate([np.stack([x, y], 1), np.stack([x, y + 1.0], 1)])
    c, s = np.cos(angle), np.sin(angle)
    rot = xy @ np.array([[c, s], [-s, c]])
    pos = np.stack([rot[:, 1] + origin[0], rot[:, 0] + origin[1]], axis=1)
    inside = (pos[:, 0] >= 0) & (pos[:, 0] < h) & (pos[:, 1] >= 0) & (pos[:, 1] < w)
    pos = pos[inside]
    bonds = cKDTree(pos).query_pairs(1.1, output_type="ndarray").astype(np.int64)
    return pos, np.sort(bonds, axis=1)


# --------------------------------------------------------------------------------------------
# Relaxation
# --------------------------------------------------------------------------------------------
def _triplets(n: int, bonds: np.ndarray) -> np.ndarray:
    """Bond-angle triplets (centre, j, k) ``(t, 3)`` over all pairs of neighbours of each atom."""
    if len(bonds) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    deg = np.bincount(src, minlength=n)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    d_max = int(deg.max())
    nbr = np.full((n, d_max), -1, dtype=np.int64)
    nbr[src, np.arange(len(src)) - start[src]] = dst
    out = []
    for p in range(d_max):
        for q in range(p + 1, d_max):
            ok = (nbr[:, p] >= 0) & (nbr[:, q] >= 0)
            centre = np.flatnonzero(ok)
            out.append(np.stack([centre, nbr[centre, p], nbr[centre, q]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def relax_keating(
    positions: np.ndarray,
    bonds: np.ndarray,
    movable: np.ndarray | None = None,
    k_bond: float = 1.0,
    k_angle: float = 0.25,
    k_repel: float = 2.0,
    repel_distance: float = 1.7,
    max_iter: int = 400,
    rest: np.ndarray | None = None,
    free_angles: np.ndarray | None = None,
) -> np.ndarray:
    """Relax positions (bond length 1) with a Keating force field plus a short-range repulsion.

    positions: ``(n, 2)``; bonds: ``(m, 2)``; movable: ``(n,)`` bool (None = all atoms).
    rest: ``(m,)`` rest length of each bond (None = 1, the C-C bond; Si-C bonds are longer).
    free_angles: ``(n,)`` bool, atoms whose bond angles are not held at 120 degrees (a
    four-fold Si has 90 degree angles); None = none.
    Energy: k_bond * sum (|r_ij| - rest_ij)^2 + k_angle * sum (u_ij . u_ik + 1/2)^2 over bond
    angles + k_repel * sum max(0, repel_distance - |r_ij|)^2 over pairs that share neither a
    bond nor a neighbour (so the far side of a 9- or 8-ring is not pulled into bonding
    distance); u are the bond vectors in units of their rest lengths.
    Returns the relaxed ``(n, 2)``.
    """
    pos = np.asarray(positions, dtype=np.float64).copy()
    n = len(pos)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    length0 = np.ones(len(bonds)) if rest is None else np.asarray(rest, dtype=np.float64)
    if length0.shape != (len(bonds),):
        raise ValueError(f"rest must have one length per bond ({len(bonds)}), got {length0.shape}")
    move = np.ones(n, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
    if not move.any() or len(bonds) == 0:
        return pos
    # only the movable atoms and their surroundings enter the energy
    near = move.copy()
    for _ in range(3):
        touch = near[bonds[:, 0]] | near[bonds[:, 1]]
        near[bonds[touch].ravel()] = True
    inside = near[bonds[:, 0]] & near[bonds[:, 1]]
    b, length0 = bonds[inside], length0[inside]
    tri = _triplets(n, b)
    if free_angles is not None:
        tri = tri[~np.asarray(free_angles, dtype=bool)[tri[:, 0]]]
    # rest length of the bond from each triplet's centre to its two ends, for the angle term
    rest_of = {(int(i), int(j)): float(r) for (i, j), r in zip(b.tolist(), length0, strict=True)}
    rest_of.update({(j, i): r for (i, j), r in list(rest_of.items())})
    tri_rest = np.array(
        [[rest_of[(c, j)], rest_of[(c, k)]] for c, j, k in tri.tolist()], dtype=np.float64
    ).reshape(-1, 2)
    tree = cKDTree(pos[near])
    idx_near = np.flatnonzero(near)
    cand = idx_near[tree.query_pairs(repel_distance + 0.5, output_type="ndarray")]
    cand = np.sort(cand, axis=1) if len(cand) else np.zeros((0, 2), dtype=np.int64)
    linked = set(map(tuple, np.sort(b, axis=1).tolist()))
    linked |= set(map(tuple, np.sort(tri[:, 1:], axis=1).tolist()))
    rep = np.array([p for p in cand.tolist() if tuple(p) not in linked], dtype=np.int64)
    rep = rep.reshape(-1, 2)
    free = np.flatnonzero(move)

    def energy(flat: np.ndarray) -> tuple[float, np.ndarray]:
        p = pos.copy()
        p[free] = flat.reshape(-1, 2)
        grad = np.zeros_like(p)
        d = p[b[:, 1]] - p[b[:, 0]]
        r = np.linalg.norm(d, axis=1)
        e = k_bond * np.sum((r - length0) ** 2)
        g = (2 * k_bond * (r - length0) / np.maximum(r, 1e-12))[:, None] * d
        np.add.at(grad, b[:, 1], g)
        np.add.at(grad, b[:, 0], -g)
        if len(tri):
            su, sv = tri_rest[:, :1], tri_rest[:, 1:]
            u = (p[tri[:, 1]] - p[tri[:, 0]]) / su
            v = (p[tri[:, 2]] - p[tri[:, 0]]) / sv
            c = (u * v).sum(axis=1) + 0.5
            e += k_angle * np.sum(c**2)
            f = (2 * k_angle * c)[:, None]
            np.add.at(grad, tri[:, 1], f * v / su)
            np.add.at(grad, tri[:, 2], f * u / sv)
            np.add.at(grad, tri[:, 0], -f * (u / sv + v / su))
        if len(rep):
            d = p[rep[:, 1]] - p[rep[:, 0]]
            r = np.linalg.norm(d, axis=1)
            over = np.maximum(repel_distance - r, 0.0)
            e += k_repel * np.sum(over**2)
            g = (-2 * k_repel * over / np.maximum(r, 1e-12))[:, None] * d
            np.add.at(grad, rep[:, 1], g)
            np.add.at(grad, rep[:, 0], -g)
        return float(e), grad[free].ravel()

    res = optimize.minimize(
        energy, pos[free].ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    pos[free] = res.x.reshape(-1, 2)
    return pos


# --------------------------------------------------------------------------------------------
# Defects as graph operations
# --------------------------------------------------------------------------------------------
class _Graph:
    """Mutable positions + bond set, with the bookkeeping of which atoms were touched."""

    def __init__(self, pos: np.ndarray, bonds: np.ndarray) -> None:
        self.pos = pos.copy()
        self.alive = np.ones(len(pos), dtype=bool)
        self.classes = np.zeros(len(pos), dtype=np.int64)
        self.defect = np.zeros(len(pos), dtype=np.int64)
        self.adj: list[set[int]] = [set() for _ in range(len(pos))]
        for i, j in bonds.tolist():
            self.adj[i].add(j)
            self.adj[j].add(i)

    def bond(self, i: int, j: int) -> None:
        self.adj[i].add(j)
        self.adj[j].add(i)

    def unbond(self, i: int, j: int) -> None:
        self.adj[i].discard(j)
        self.adj[j].discard(i)

    def remove(self, i: int) -> None:
        for j in list(self.adj[i]):
            self.unbond(i, j)
        self.alive[i] = False

    def bonds(self) -> np.ndarray:
        out = [(i, j) for i, nb in enumerate(self.adj) for j in nb if i < j]
        return np.array(sorted(out), dtype=np.int64).reshape(-1, 2)


def _stone_wales(g: _Graph, i: int, j: int) -> list[int]:
    """Rotate bond i-j by 90 degrees about its midpoint and rebond. Returns touched atoms."""
    mid = 0.5 * (g.pos[i] + g.pos[j])
    for k in (i, j):
        d = g.pos[k] - mid
        g.pos[k] = mid + np.array([-d[1], d[0]])
    outer = sorted((g.adj[i] | g.adj[j]) - {i, j})
    for k in outer:
        g.unbond(i, k)
        g.unbond(j, k)
    # each rotated atom takes the two outer neighbours now nearest to it
    di = np.linalg.norm(g.pos[outer] - g.pos[i], axis=1)
    order = np.argsort(di)
    for rank, k_idx in enumerate(order):
        g.bond(i if rank < 2 else j, outer[k_idx])
    return [i, j, *outer]


def _divacancy(g: _Graph, i: int, j: int) -> list[int]:
    """Remove bonded atoms i, j; each one's two other neighbours bond (5-8-5)."""
    ni, nj = sorted(g.adj[i] - {j}), sorted(g.adj[j] - {i})
    g.remove(i)
    g.remove(j)
    g.bond(ni[0], ni[1])
    g.bond(nj[0], nj[1])
    return [*ni, *nj]


def _vacancy(g: _Graph, i: int, reconstruct: bool, rng: np.random.Generator) -> list[int]:
    """Remove atom i; optionally bond two of its three neighbours (5-9 reconstruction)."""
    nb = sorted(g.adj[i])
    g.remove(i)
    if reconstruct and len(nb) == 3:
        lone = int(rng.integers(3))
        a, b = (k for t, k in enumerate(nb) if t != lone)
        g.bond(a, b)
    return nb


def _si_complex(g: _Graph, kind: str, i: int, rng: np.random.Generator) -> list[int] | None:
    """Build the Si complex ``kind`` (see :data:`SI_COMPLEXES`) at carbon atom i.

    Returns the touched atoms, or None when the neighbourhood does not allow it (a partner
    atom that is not plain three-fold carbon).
    """

    def plain(k: int) -> bool:
        return bool(g.alive[k] and len(g.adj[k]) == 3 and g.classes[k] == 0 and g.defect[k] == 0)

    nb = sorted(g.adj[i])
    if kind == "Si3C6":
        if not all(plain(k) for k in nb):
            return None
        g.remove(i)
        g.classes[nb] = 1
        return [*nb, *(k for a in nb for k in g.adj[a])]
    if kind == "Si1C4":
        j = int(rng.choice(nb))
        outer = sorted((g.adj[i] | g.adj[j]) - {i, j})
        if not plain(j) or len(outer) != 4:
            return None
        g.remove(j)
        g.pos[i] = 0.5 * (g.pos[i] + g.pos[j])
        for k in outer:
            g.bond(i, k)
        g.classes[i] = 1
        return [i, *outer]
    # two substitutional Si at 1, 2 or 3 bonds (the last across a hexagon, 2 bond lengths)
    hops = {"Si2C4": 1, "Si2C5": 2, "Si2C6": 3}[kind]
    frontier, seen = {i}, {i}
    for _ in range(hops):
        frontier = {n for k in frontier for n in g.adj[k]} - seen
        seen |= frontier
    cand = [k for k in sorted(frontier) if plain(k)]
    if hops == 3:
        cand = [k for k in cand if np.linalg.norm(g.pos[k] - g.pos[i]) < 2.2]
    if not cand:
        return None
    j = int(rng.choice(cand))
    g.classes[[i, j]] = 1
    return [i, j, *g.adj[i], *g.adj[j]]


def _join_grains(
    extent: tuple[float, float],
    base: float,
    tilt: float,
    row: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two grains rotated by base +- tilt/2, above and below the line at ``row``, joined there.

    Atoms of the lower grain closer than ``_JOIN_CLASH`` to an atom of the upper grain are
    removed. Then, in rounds: atoms with fewer than two bonds at the seam are removed, and
    under-coordinated atoms of the two grains are bonded, shortest pair first (up to 1.9 bond
    lengths apart), when neither has three bonds yet, the new bond crosses no bond, and the two
    atoms are more than three bonds apart (so no 3- or 4-ring is made). The Keating
    relaxation that follows turns the seam into mostly 5-7 pairs, with the odd 8- or 9-ring
    at awkward misfits; the ring finder reports what was built. ``shift`` offsets the lower
    grain's lattice (row, col) so that different seams are sampled.
    Returns positions ``(n, 2)``, bonds ``(m, 2)`` and a ``(n,)`` mask of seam atoms.
    """
    centre = (row, extent[1] / 2)
    pa, ba = honeycomb(extent, base + tilt / 2, origin=centre)
    pb, bb = honeycomb(extent, base - tilt / 2, origin=(row + shift[0], centre[1] + shift[1]))
    keep_a = pa[:, 0] < row
    keep_b = pb[:, 0] >= row
    if keep_a.any() and keep_b.any():
        d, _ = cKDTree(pa[keep_a]).query(pb)
        keep_b &= d >= _JOIN_CLASH
    ia, ib = np.flatnonzero(keep_a), np.flatnonzero(keep_b)
    map_a = -np.ones(len(pa), dtype=np.int64)
    map_a[ia] = np.arange(len(ia))
    map_b = -np.ones(len(pb), dtype=np.int64)
    map_b[ib] = np.arange(len(ib)) + len(ia)
    pos = np.concatenate([pa[ia], pb[ib]])
    bonds = [map_a[ba[keep_a[ba].all(axis=1)]], map_b[bb[keep_b[bb].all(axis=1)]]]
    g = _Graph(pos, np.concatenate(bonds))
    grain = np.concatenate([np.zeros(len(ia)), np.ones(len(ib))]).astype(np.int64)
    near = np.abs(pos[:, 0] - row) < 3.0
    seam = np.zeros(len(pos), dtype=bool)
    for _ in range(4):
        changed = False
        # atoms that hang by one bond cannot close a ring; drop them (repeatedly)
        while True:
            deg = np.array([len(a) for a in g.adj])
            lonely = np.flatnonzero(g.alive & (deg < 2) & near)
            if len(lonely) == 0:
                break
            for k in lonely.tolist():
                g.remove(k)
        deg = np.array([len(a) for a in g.adj])
        under = np.flatnonzero(near & g.alive & (deg < 3))
        if len(under) < 2:
            break
        cand = cKDTree(pos[under]).query_pairs(1.9, output_type="ndarray")
        if len(cand) == 0:
            break
        cand = under[cand]
        cand = cand[grain[cand[:, 0]] != grain[cand[:, 1]]]
        dist = np.linalg.norm(pos[cand[:, 0]] - pos[cand[:, 1]], axis=1)
        for a, b in cand[np.argsort(dist)].tolist():
            if len(g.adj[a]) >= 3 or len(g.adj[b]) >= 3:
                continue
            if _within_hops(g, a, b, 3) or _crosses_any(g, a, b):
                continue
            g.bond(a, b)
            seam[[a, b]] = True
            changed = True
        if not changed:
            break
    _close_holes(g, near, seam)
    alive = np.flatnonzero(g.alive)
    remap = -np.ones(len(pos), dtype=np.int64)
    remap[alive] = np.arange(len(alive))
    return pos[alive], remap[g.bonds()], (seam | near)[alive]


_JOIN_CLASH = 0.9


def _close_holes(g: _Graph, near: np.ndarray, seam: np.ndarray, max_rounds: int = 50) -> None:
    """Split seam faces larger than 9 atoms by bonding two of their under-coordinated atoms.

    Each round bonds the closest pair that cuts a face into two parts of at least 5 atoms,
    preferring cuts that leave both parts at 8 atoms or fewer (a larger part is cut again in a
    later round), so holes left by the greedy joining become (mostly) 5-7 pairs after
    relaxation.
    """
    for _ in range(max_rounds):
        bonds = g.bonds()
        faces = find_rings(g.pos, bonds, min_size=10, max_size=40)
        best: tuple[float, int, int] | None = None
        for face in faces:
            if not near[face].all():
                continue
            size = len(face)
            deg = np.array([len(g.adj[k]) for k in face])
            open_slots = np.flatnonzero(deg < 3)
            for ia, p in enumerate(open_slots):
                for q in open_slots[ia + 1:]:
                    s1 = int(q - p) + 1
                    s2 = size - int(q - p) + 1
                    if min(s1, s2) < 5 or max(s1, s2) > 12:
                        continue
                    a, b = int(face[p]), int(face[q])
                    dist = float(np.linalg.norm(g.pos[a] - g.pos[b]))
                    # a part still larger than 8 needs another split later: prefer final cuts
                    score = dist + 1.0 * ((s1 > 8) + (s2 > 8))
                    if dist < 2.8 and (best is None or score < best[0]):
                        if not _crosses_any(g, a, b):
                            best = (score, a, b)
        if best is None:
            return
        g.bond(best[1], best[2])
        seam[[best[1], best[2]]] = True


def _within_hops(g: _Graph, a: int, b: int, hops: int) -> bool:
    """Whether b is at most ``hops`` bonds away from a."""
    frontier, seen = {a}, {a}
    for _ in range(hops):
        frontier = {n for k in frontier for n in g.adj[k]} - seen
        if b in frontier:
            return True
        seen |= frontier
    return False


def _crosses_any(g: _Graph, a: int, b: int) -> bool:
    """Whether segment a-b crosses any bond of the atoms within reach of it."""
    p1, p2 = g.pos[a], g.pos[b]
    around = set()
    for k in (a, b):
        for n1 in g.adj[k]:
            around.add(n1)
            around |= g.adj[n1]
    seen = set()
    for i in around:
        for j in g.adj[i]:
            if (j, i) in seen or a in (i, j) or b in (i, j):
                continue
            seen.add((i, j))
            if _segments_cross(p1, p2, g.pos[i], g.pos[j]):
                return True
    return False


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return (orient(q1, q2, p1) * orient(q1, q2, p2) < 0) and (
        orient(p1, p2, q1) * orient(p1, p2, q2) < 0
    )


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------
def make_graphene(
    shape: tuple[int, int] = (256, 256),
    pixel_size: float = 0.1,
    stone_wales: int = 0,
    divacancies: int = 0,
    vacancies: int = 0,
    silicon: int = 0,
    si_complexes: tuple[str, ...] | list[str] = (),
    grain_boundary: float | None = None,
    reconstruct_vacancy: bool = True,
    angle: float | None = None,
    min_separation: float = 6.0,
    border: float = 3.0,
    column_sigma: float = 0.3,
    z_exponent: float = 1.7,
    si_width: float = 1.0,
    si_bond: float = 1.0,
    blur: float = 0.5,
    counts: float | None = 400.0,
    gaussian: float = 0.01,
    scan_jitter: float = 0.2,
    table: RingClassTable = DEFAULT_RING_CLASSES,
    rng: np.random.Generator | int | None = None,
) -> GrapheneSample:
    """Generate a HAADF-like graphene image with exact atoms, bonds and ring labels.

    shape: image size (h, w) in pixels. pixel_size: pixel size in C-C bond lengths (0.1 =
    10 pixels per bond). stone_wales, divacancies, vacancies, silicon: number of defects of
    each kind (silicon: three-fold substitutional Si, Si1C3). si_complexes: names from
    :data:`SI_COMPLEXES`, one complex placed per entry.
    grain_boundary: tilt angle in degrees between two grains joined along the
    horizontal middle line (None = single crystal). angle: lattice rotation in radians (None =
    random). min_separation: smallest distance between defect sites (and from the grain
    boundary), in bond lengths. border: smallest distance from a defect site to the image
    border, in bond lengths. column_sigma: Gaussian width of an atomic column, in bond lengths.
    z_exponent: HAADF contrast ~ Z^z_exponent (integrated over the column). si_width: width
    of a Si column over a carbon one (its integrated intensity stays ~ Z^z_exponent, so a wider
    column has a lower peak). si_bond: projected Si-C and Si-Si bond length in C-C bond
    lengths, the rest length in the relaxation (a buckled three-fold Si projects to about
    1.1, a planar four-fold one to about 1.3). blur, counts, gaussian, scan_jitter: see
    :func:`latentatlas.datasets.render.add_microscope_noise` (blur and scan_jitter in pixels;
    counts=None and the others 0 give a noise-free image).
    Returns a :class:`GrapheneSample` (coordinates in pixels).
    """
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be (h, w) with both >= 8 pixels, got {shape}")
    if not 0 < pixel_size <= 1:
        raise ValueError(
            f"pixel_size (bond lengths per pixel) must be in (0, 1], got {pixel_size}; "
            "0.1 gives 10 pixels per C-C bond"
        )
    for name, value in (("stone_wales", stone_wales), ("divacancies", divacancies),
                        ("vacancies", vacancies), ("silicon", silicon)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    unknown = sorted(set(si_complexes) - set(SI_COMPLEXES))
    if unknown:
        raise ValueError(f"si_complexes must be names from {SI_COMPLEXES}, got {unknown}")
    if not 0 < si_width <= 3:
        raise ValueError(f"si_width (Si over C column width) must be in (0, 3], got {si_width}")
    if not 0.8 <= si_bond <= 2:
        raise ValueError(f"si_bond (bond lengths) must be in [0.8, 2], got {si_bond}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    h, w = int(shape[0]), int(shape[1])
    extent = (h * pixel_size, w * pixel_size)
    margin = 3.0
    big = (extent[0] + 2 * margin, extent[1] + 2 * margin)
    base = float(gen.uniform(0, np.pi / 3)) if angle is None else float(angle)

    gb_normal = np.zeros(2)
    if grain_boundary is None:
        pos, bonds = honeycomb(big, base, origin=(big[0] / 2, big[1] / 2))
        seam = np.zeros(len(pos), dtype=bool)
    else:
        if not 0 < grain_boundary < 60:
            raise ValueError(f"grain_boundary (tilt angle, degrees) must be in (0, 60), got "
                             f"{grain_boundary}")
        # built in a frame where the seam is horizontal and the mean lattice has a zigzag
        # direction along it, then turned by `base` as a whole
        side = float(np.hypot(*big)) + 4.0
        shift = (float(gen.uniform(0, 2)), float(gen.uniform(0, 2)))
        pos, bonds, seam = _join_grains(
            (side, side), 0.0, np.deg2rad(grain_boundary), side / 2, shift
        )
        c, s_ = np.cos(base), np.sin(base)
        rel = pos - side / 2
        pos = np.stack([c * rel[:, 0] - s_ * rel[:, 1], s_ * rel[:, 0] + c * rel[:, 1]], 1)
        pos = pos + np.array([big[0] / 2, big[1] / 2])
        gb_normal = np.array([c, s_])
        inside = (pos >= -1).all(axis=1) & (pos[:, 0] < big[0] + 1) & (pos[:, 1] < big[1] + 1)
        remap = -np.ones(len(pos), dtype=np.int64)
        remap[inside] = np.arange(int(inside.sum()))
        pos, seam = pos[inside], seam[inside]
        bonds = remap[bonds]
        bonds = bonds[(bonds >= 0).all(axis=1)]
    g = _Graph(pos, bonds)
    g.defect[seam] = 1 + DEFECT_KINDS.index("grain_boundary")
    touched: list[int] = list(np.flatnonzero(seam))
    sites: list[tuple[str, tuple[float, float]]] = []

    in_view = (
        (pos[:, 0] >= margin + border) & (pos[:, 0] < margin + extent[0] - border)
        & (pos[:, 1] >= margin + border) & (pos[:, 1] < margin + extent[1] - border)
    )
    if grain_boundary is not None:
        gb_dist = np.abs((pos - np.array([big[0] / 2, big[1] / 2])) @ gb_normal)
        in_view &= gb_dist >= min_separation
    taken: list[np.ndarray] = []
    plan = (["stone_wales"] * stone_wales + ["divacancy"] * divacancies
            + ["vacancy"] * vacancies + ["si"] * silicon + list(si_complexes))
    for kind in plan:
        for _attempt in range(20):
            site = _pick_site(g, in_view, taken, min_separation, gen)
            if site is None:
                raise ValueError(
                    f"no room for another {kind} defect at least {min_separation} bond lengths "
                    "from the others and the border; use a larger image, fewer defects or a "
                    "smaller min_separation"
                )
            centre = g.pos[site].copy()
            changed_si = _si_complex(g, kind, site, gen) if kind in SI_COMPLEXES else []
            if changed_si is not None:
                break
        else:
            raise ValueError(f"found no site where a {kind} complex fits; use a larger image")
        taken.append(centre)
        code = 1 + DEFECT_KINDS.index(kind)
        if changed_si:
            changed = changed_si
        elif kind in ("stone_wales", "divacancy"):
            partner = int(gen.choice(sorted(g.adj[site])))
            centre = 0.5 * (g.pos[site] + g.pos[partner])
            if kind == "stone_wales":
                changed = _stone_wales(g, site, partner)
            else:
                changed = _divacancy(g, site, partner)
        elif kind == "vacancy":
            changed = _vacancy(g, site, reconstruct_vacancy, gen)
        else:
            g.classes[site] = 1
            changed = [site]
        g.defect[changed] = code
        touched.extend(changed)
        sites.append((kind, ((float(centre[0]) - margin) / pixel_size,
                             (float(centre[1]) - margin) / pixel_size)))

    bonds = g.bonds()
    if touched:
        tree = cKDTree(g.pos[touched])
        d, _ = tree.query(g.pos)
        movable = (d < 4.0) & g.alive

        def rest_lengths(b: np.ndarray) -> np.ndarray:
            return np.where((g.classes[b] == 1).any(axis=1), si_bond, 1.0)

        four_fold = np.array([len(a) >= 4 for a in g.adj])
        # a constructed bond the relaxation cannot bring near the bond length (at awkward seam
        # misfits) is no bond, and under-coordinated atoms it brings within 1.2 bond lengths
        # are bonded; relaxing again after either change opens a clear gap between bonded and
        # non-bonded distances, so the ground truth is what a reader of the image would see
        for _ in range(3):
            rest = rest_lengths(bonds)
            g.pos = relax_keating(
                g.pos, bonds, movable=movable, rest=rest, free_angles=four_fold
            )
            length = np.linalg.norm(g.pos[bonds[:, 0]] - g.pos[bonds[:, 1]], axis=1)
            new_bonds = _bond_close_dangling(g.pos, bonds[length <= _MAX_BOND * rest], g.alive)
            if len(new_bonds) == len(bonds) and (new_bonds == bonds).all():
                break
            logger.debug("bond set changed on relaxation: %d -> %d", len(bonds), len(new_bonds))
            bonds = new_bonds

    # keep what the microscope sees
    p = g.pos - margin
    keep = g.alive & (p[:, 0] >= 0) & (p[:, 0] < extent[0]) & (p[:, 1] >= 0) & (p[:, 1] < extent[1])
    idx = np.flatnonzero(keep)
    remap = -np.ones(len(p), dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    bonds = remap[bonds]
    bonds = bonds[(bonds >= 0).all(axis=1)]
    coords = p[idx] / pixel_size
    classes = g.classes[idx]
    defect = g.defect[idx]
    rings = analyze_rings(coords, classes=classes, bonds=bonds, table=table)
    # a defect's atoms are those on its rings (not only the atoms moved by the operation)
    ring_defect = np.zeros(len(idx), dtype=np.int64)
    for ring in rings.rings:
        codes = defect[ring]
        if (codes > 0).any() and len(ring) != 6:
            ring_defect[ring] = np.maximum(ring_defect[ring], codes.max())
    defect = np.where(defect > 0, defect, ring_defect)

    width = np.where(classes == 1, si_width, 1.0)
    image = render_columns(
        (h, w), coords, haadf_weights(classes, z_exponent) / width**2,
        sigma=width * column_sigma / pixel_size,
    )
    image = add_microscope_noise(
        image, gen, blur=blur, counts=counts, gaussian=gaussian, scan_jitter=scan_jitter
    )
    logger.debug("generated graphene: %d atoms, %d rings", len(idx), len(rings.rings))
    return GrapheneSample(
        image=image,
        coords=coords,
        classes=classes,
        bonds=bonds,
        defect=defect,
        atom_ring_sizes=rings.atom_ring_sizes,
        labels=rings.labels,
        rings=rings.rings,
        bond_length=1.0 / pixel_size,
        table=table,
        defect_sites=sites,
    )


def _bond_close_dangling(pos: np.ndarray, bonds: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Add bonds between under-coordinated atoms the relaxation left within 1.2 bond lengths.

    They sit at a bonding distance, so any reader of the image would bond them; the pair
    must not already share a neighbour (that would make a triangle).
    """
    n = len(pos)
    deg = np.bincount(bonds.ravel(), minlength=n)
    under = np.flatnonzero(alive & (deg < 3))
    if len(under) < 2:
        return bonds
    cand = cKDTree(pos[under]).query_pairs(1.2, output_type="ndarray")
    if len(cand) == 0:
        return bonds
    cand = np.sort(under[cand], axis=1)
    adj: list[set[int]] = [set() for _ in range(n)]
    for i, j in bonds.tolist():
        adj[i].add(j)
        adj[j].add(i)
    extra = [(i, j) for i, j in cand.tolist() if j not in adj[i] and not (adj[i] & adj[j])]
    if not extra:
        return bonds
    logger.debug("bonding %d close under-coordinated pairs", len(extra))
    out = np.concatenate([bonds, np.array(extra, dtype=np.int64)])
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _pick_site(
    g: _Graph,
    allowed: np.ndarray,
    taken: list[np.ndarray],
    min_separation: float,
    gen: np.random.Generator,
) -> int | None:
    """A random three-coordinated carbon atom far enough from the defects already placed."""
    deg = np.array([len(a) for a in g.adj])
    ok = allowed & g.alive & (deg == 3) & (g.classes == 0) & (g.defect == 0)
    if taken:
        d, _ = cKDTree(np.stack(taken)).query(g.pos)
        ok &= d >= min_separation
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return None
    return int(gen.choice(cand))


# --------------------------------------------------------------------------- DCNN training data

#: Ranges the finder's training data draws Si columns from, per sheet (see
#: :func:`graphene_sheets`): HAADF exponent of the integrated intensity (Si over C is
#: (14/6)^z, 3.9 at z = 1.6, 10.7 at z = 2.8), Si column width over the carbon's, and projected
#: Si-C bond length in C-C bonds. Wide on purpose, set from the physics and not fitted to any
#: real frame: annular-dark-field contrast goes as Z^1.6-2 depending on the detector angles,
#: a buckled Si, probe tails and a non-linear detector gain can make it look brighter still,
#: and a finder that only knows one contrast would drop a column brighter than it.
SI_Z_EXPONENT_RANGE = (1.6, 2.8)
SI_WIDTH_RANGE = (1.0, 1.4)
SI_BOND_RANGE = (1.0, 1.3)


@dataclass(frozen=True)
class GrapheneSheet:
    """A noise-free rendered graphene sheet (image with carbon columns at about 1 above the
    background), its exact atom positions (n, 2) and element classes (n,) (0 = C, 1 = Si), for
    cropping training images from."""

    image: np.ndarray
    positions: np.ndarray
    classes: np.ndarray


def _draw_si(rng: np.random.Generator) -> tuple[int, list[str]]:
    """Si dopants of one sheet: (number of Si1C3, other complexes); none in a quarter."""
    n = int(rng.choice(4, p=[0.25, 0.35, 0.25, 0.15]))
    kinds = [str(rng.choice(SI_COMPLEXES)) if rng.random() < 0.65 else "si" for _ in range(n)]
    return kinds.count("si"), [k for k in kinds if k != "si"]


def graphene_sheets(
    n: int,
    rng: np.random.Generator,
    size: int = 144,
    bond_range: tuple[float, float] = (8.5, 13.5),
) -> list[GrapheneSheet]:
    """Up to ``n`` noise-free sheets for :func:`random_graphene`: bond lengths drawn from
    ``bond_range`` pixels, column widths 0.24-0.36 bond lengths (the 60 kV HAADF frames sit
    near 0.3), a tilt grain boundary (8-30 degrees) in 70 % of them, up to one vacancy, and in
    three quarters of them one to three Si dopants (Si1C3 or a complex of
    :data:`SI_COMPLEXES`), rendered with contrast, width and bond length drawn from
    :data:`SI_Z_EXPONENT_RANGE`, :data:`SI_WIDTH_RANGE` and :data:`SI_BOND_RANGE`. Draws whose
    defects do not fit are skipped, so fewer than ``n`` may return. Slow (about 0.2-0.7 s per
    sheet), hence built once and cropped many times.
    """
    sheets = []
    for _ in range(n):
        bond = rng.uniform(*bond_range)
        tilt = float(rng.uniform(8, 30)) if rng.random() < 0.7 else None
        silicon, complexes = _draw_si(rng)
        try:
            s = make_graphene(
                (size, size),
                pixel_size=1 / bond,
                grain_boundary=tilt,
                silicon=silicon,
                si_complexes=complexes,
                vacancies=int(rng.integers(0, 2)),
                column_sigma=float(rng.uniform(0.24, 0.36)),
                z_exponent=float(rng.uniform(*SI_Z_EXPONENT_RANGE)),
                si_width=float(rng.uniform(*SI_WIDTH_RANGE)),
                si_bond=float(rng.uniform(*SI_BOND_RANGE)),
                counts=None,
                gaussian=0.0,
                blur=0,
                scan_jitter=0,
                min_separation=3.0,
                border=2.0,
                rng=rng,
            )
        except ValueError:
            continue
        rc = np.clip(np.round(s.coords).astype(np.int64), 0, size - 1)
        carbon = s.classes == 0
        carbon_peak = np.median(s.image[rc[carbon, 0], rc[carbon, 1]])
        sheets.append(GrapheneSheet((s.image - s.image.min()) / carbon_peak, s.coords, s.classes))
    return sheets


def random_graphene(
    rng: np.random.Generator,
    sheets: list[GrapheneSheet],
    size: int = 96,
    bond_range: tuple[float, float] = (8.5, 13.5),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One low-dose graphene training image (size, size) float64, its exact positions (n, 2)
    and element classes (n,) (0 = C, 1 = Si).

    40 % are ideal honeycombs from :func:`~latentatlas.datasets.lattices.generate_lattice`
    (Si-like dopants: brighter and wider columns with the contrast of :func:`graphene_sheets`;
    vacancies, jitter, scan distortion, contamination), 60 % crops of ``sheets`` (grain
    boundaries with 5-7 rings, Si complexes; bright amorphous contamination over 5-35 % of
    the crop in 30 % of them, the atoms under it dropped). Then a slow background (half of
    them), blur (30 %), scan-line jitter (40 %: each row shifted by a normal draw of standard
    deviation up to 0.08 bond lengths, the flyback streaks of a STEM frame; the targets stay at
    the true positions) and white noise at a per-pixel contrast-to-noise of 0.45-1.6, the range
    of 60 kV HAADF graphene once resampled to about 11 pixels per bond.
    """
    if rng.random() < 0.4:
        sp = rng.uniform(*bond_range)
        si_width = rng.uniform(*SI_WIDTH_RANGE)
        si_peak = (14 / 6) ** rng.uniform(*SI_Z_EXPONENT_RANGE) / si_width**2
        lat = generate_lattice(
            (size, size),
            "honeycomb",
            spacing=sp,
            sigma=rng.uniform(0.24, 0.36) * sp,
            dopant_fraction=rng.uniform(0, 0.03),
            dopant_intensity=si_peak,
            dopant_width=si_width,
            vacancy_fraction=rng.uniform(0, 0.03),
            position_jitter=rng.uniform(0, 0.03) * sp,
            distortion=rng.uniform(0, 0.15) * sp if rng.random() < 0.5 else 0.0,
            contamination=rng.uniform(0.05, 0.3) if rng.random() < 0.15 else 0.0,
            seed=rng,
        )
        img, pos = lat.image.astype(np.float64), lat.positions
        classes = (lat.classes == DOPANT).astype(np.int64)
    else:
        sheet = sheets[rng.integers(len(sheets))]
        side = sheet.image.shape[0]
        r0, c0 = rng.integers(0, side - size, 2)
        img = sheet.image[r0 : r0 + size, c0 : c0 + size].astype(np.float64)
        pos = sheet.positions - [r0, c0]
        # Columns just outside still light the border pixels: keep them in the target.
        inside = (pos > -3).all(axis=1) & (pos < size + 3).all(axis=1)
        pos, classes = pos[inside], sheet.classes[inside]
        if rng.random() < 0.3:
            # A bright amorphous patch (2-5 x the carbon peak) hides the lattice under it; it
            # also sets the frame's top percentile, so the carbon is compressed after
            # normalisation, as in real frames with contamination.
            patch = contamination_mask((size, size), rng, rng.uniform(0.05, 0.35))
            texture = ndimage.gaussian_filter(rng.random((size, size)), 1.5)
            level = rng.uniform(2.0, 5.0) * (0.7 + 0.6 * texture / texture.max())
            img = img * (1 - patch) + patch * level
            rc = np.clip(np.round(pos).astype(np.int64), 0, size - 1)
            visible = patch[rc[:, 0], rc[:, 1]] < 0.5
            pos, classes = pos[visible], classes[visible]
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:size, 0:size] / size
        img = img + rng.uniform(0, 0.6) * np.sin(rng.uniform(0, 3) * yy * 6 + rng.uniform(0, 6)) * np.cos(
            rng.uniform(0, 3) * xx * 6
        )
    if rng.random() < 0.3:
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 1.0))
    if rng.random() < 0.4:
        jitter = rng.uniform(0.0, 0.08) * float(np.mean(bond_range))
        img = add_microscope_noise(img, rng, scan_jitter=jitter).astype(np.float64)
    cnr = rng.uniform(0.45, 1.6)
    return img + rng.normal(0, 1 / cnr, img.shape), pos, classes


# --------------------------------------------------------------------- dopant-complex crops

#: Dopant complexes :func:`make_dopant_crops` can plant, named Si_m C_n after their Si atoms
#: and the carbon atoms bonded to them: a substitutional Si (Si1C3), a Si in a divacancy bonded
#: to its four carbons (Si1C4), two bonded substitutional Si (Si2C4), and the three neighbours
#: of a vacancy replaced by Si (Si3C6).
DOPANT_COMPLEXES: tuple[str, ...] = ("Si1C3", "Si1C4", "Si2C4", "Si3C6")


def _plant_complex(kind: str, pos: np.ndarray, bonds: np.ndarray, site: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (n', 2), elements (n',) and defect-atom indices of ``kind`` planted at atom
    ``site`` of a honeycomb (bond length 1)."""
    adj: list[list[int]] = [[] for _ in range(len(pos))]
    for i, j in bonds.tolist():
        adj[i].append(j)
        adj[j].append(i)
    elements = np.zeros(len(pos), np.int64)
    keep = np.ones(len(pos), bool)
    new_pos = pos.copy()
    if kind == "Si1C3":
        elements[site] = 1
        atoms = [site, *adj[site]]
    elif kind == "Si1C4":
        partner = adj[site][int(rng.integers(len(adj[site])))]
        keep[[site, partner]] = False
        carbons = [k for k in adj[site] + adj[partner] if k not in (site, partner)]
        si_pos = 0.5 * (pos[site] + pos[partner])
        # the four carbons move a little towards the Si (its bonds are longer than C-C but the
        # divacancy leaves them 1.7 bonds away)
        new_pos[carbons] += 0.15 * (si_pos - pos[carbons])
        new_pos = np.concatenate([new_pos, si_pos[None]])
        elements = np.append(elements, 1)
        keep = np.append(keep, True)
        atoms = [len(pos), *carbons]
    elif kind == "Si2C4":
        partner = adj[site][int(rng.integers(len(adj[site])))]
        elements[[site, partner]] = 1
        atoms = [site, partner, *[k for k in adj[site] + adj[partner] if k not in (site, partner)]]
    elif kind == "Si3C6":
        keep[site] = False
        elements[adj[site]] = 1
        atoms = list(adj[site]) + [k for n in adj[site] for k in adj[n] if k != site]
    else:
        raise ValueError(f"unknown dopant complex {kind!r}; known: {DOPANT_COMPLEXES}")
    remap = np.cumsum(keep) - 1
    return new_pos[keep], elements[keep], remap[np.asarray(atoms)]


def make_dopant_crops(
    counts: dict[str, int],
    size: int = 72,
    pixel_range: tuple[float, float] = (9.0, 16.0),
    offset: float = 0.15,
    column_sigma: float = 0.3,
    counts_per_si: float | None = 200.0,
    blur: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> Any:
    """Labelled HAADF-like crops of graphene around one Si dopant complex each.

    counts: crops per complex, e.g. ``{"Si1C3": 30, "Si3C6": 12}`` (names from
    :data:`DOPANT_COMPLEXES`). Each crop: a honeycomb at a random rotation, the complex planted
    at a random offset of up to ``offset`` x size from the centre, a pixel size drawn from
    ``pixel_range`` picometres (C-C bond 142 pm), columns of ``column_sigma`` bonds with
    intensity ~ Z^1.7, blur (pixels) and Poisson noise at ``counts_per_si`` expected counts on
    a Si column (None: noise-free). Returns :class:`latentatlas.datasets.crops.LabelledCrops`
    (classes in the order of ``counts``; defect coordinates are the complex's atoms).
    """
    from latentatlas.datasets.crops import LabelledCrops

    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    names = tuple(counts)
    unknown = [n for n in names if n not in DOPANT_COMPLEXES]
    if unknown:
        raise ValueError(f"unknown dopant complexes {unknown}; known: {DOPANT_COMPLEXES}")
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels, got {size}")
    bond_pm = 142.0
    images, pixels, labels, coords = [], [], [], []
    elements: list[tuple[str, ...] | None] = []
    for k, name in enumerate(names):
        for _ in range(int(counts[name])):
            px = float(gen.uniform(*pixel_range))
            bond_px = bond_pm / px
            extent = size / bond_px
            centre = extent / 2 + gen.uniform(-offset, offset, 2) * extent
            pos, bonds = honeycomb((extent, extent), float(gen.uniform(0, np.pi / 3)),
                                   origin=(float(centre[0]), float(centre[1])))
            site = int(np.argmin(np.hypot(*(pos - centre).T)))
            pos, el, atoms = _plant_complex(name, pos, bonds, site, gen)
            image = render_columns((size, size), pos * bond_px, haadf_weights(el),
                                   sigma=column_sigma * bond_px)
            image = add_microscope_noise(image, gen, blur=blur, counts=counts_per_si)
            images.append(image)
            pixels.append(px)
            labels.append(k)
            coords.append(pos[atoms] * bond_px)
            elements.append(tuple(ELEMENT_NAMES[e] for e in el[atoms]))
    return LabelledCrops(images, np.asarray(pixels), np.asarray(labels), names,
                         [None] * len(images), coords, elements)
