"""Ring analysis of 2-D atomic networks (graphene and friends): bonds, rings, per-atom labels.

Pipeline, from atom coordinates ``(n, 2)`` (row, col):

1. Bonds: every pair closer than a cut-off. Unless given, the cut-off is estimated from the
   nearest-neighbour distance histogram (see :func:`estimate_bond_cutoff`).
2. Clean-up, so the bond graph is a plane graph whose faces are the rings:
   - atoms closer than 0.35 bond lengths to another (duplicate detections): the second one
     is left unbonded (label 0) and a warning is logged;
   - crossing bonds: the longer one of every crossing pair is dropped;
   - triangles: graphene has no 3-rings, and a triangle is almost always two true bonds plus
     a second-neighbour pair pulled inside the cut-off by noise, so the longest edge of every
     triangle is dropped. This is what lets the cut-off be generous (robust to position
     noise) without inventing rings;
   - long bonds (over 1.4 median bond lengths) meeting other bonds at under 95 degrees at
     both ends: second neighbours whose shared neighbour is missing (border, vacancy);
   - dangling chains (atoms with one bond, repeatedly) cannot be on a ring and are pruned,
     so a face walk never doubles back on them.
3. Rings: the faces of the plane graph, walked with the "next edge clockwise" rule over
   neighbours sorted by angle. Interior faces come out with positive signed area, the outer
   face of each connected piece with negative area, so the outer face is dropped by sign,
   whatever its size. Faces larger than ``max_size`` (holes, missing atoms, the region
   beyond the image border) and non-simple faces are dropped too; optionally
   (``border_rings="drop"``) so are the rings on the outer face, the conservative choice for
   very noisy coordinates (see :func:`find_rings`). The walk is vectorised: all
   half-edges advance together for ``max_size`` steps.
4. Per-atom ring sizes and a per-atom label from a :class:`RingClassTable` (data, so a user can
   define their own classes).

Everything except the (rare) crossing-bond resolution is vectorised numpy / scipy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from latentatlas._checks import check_array
from latentatlas.descriptors.patches import Border, Normalize, Patches, extract_patches

logger = logging.getLogger(__name__)

__all__ = [
    "ACUTE_DEG",
    "DEFAULT_RING_CLASSES",
    "BorderRings",
    "RingAnalysis",
    "RingClassTable",
    "analyze_rings",
    "atom_ring_sizes",
    "estimate_bond_cutoff",
    "estimate_bond_length",
    "find_bonds",
    "find_rings",
    "label_atoms",
    "ring_labelled_patches",
]

BorderRings = Literal["keep", "drop"]

# Smallest cut-off, in bond lengths: a little above the middle of the empty gap between the
# first shell (1) and the second (sqrt 3), because strained bonds at defects reach 1.15 and
# the second neighbours that a generous cut-off lets in are removed by the triangle and
# long-and-acute rules anyway.
_MIN_CUTOFF = 1.4

# Threshold of the long-and-acute bond rule (see _not_acute_and_long); module-level so a
# benchmark can sweep it.
ACUTE_DEG = 95.0

# Ring sizes are packed into one integer per atom for vectorised table look-ups; sizes must
# fit in one "digit" of this base.
_SIZE_BASE = 64


# --------------------------------------------------------------------------------------------
# Class table
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RingClassTable:
    """Per-atom classes defined by the multiset of the sizes of the rings an atom belongs to.

    Label 0: the atom belongs to fewer than ``min_rings`` rings (edge of the field of view,
    next to a hole). Labels ``1 .. K``: ``classes[k - 1]`` (a sorted multiset of ring sizes,
    compared exactly). Label ``K + 1`` (``other_label``): any other combination.

    Build one from a mapping with :meth:`from_mapping`, e.g.
    ``RingClassTable.from_mapping({"hex": [6, 6, 6], "pentagon": [5, 6, 6]})``.
    """

    classes: tuple[tuple[int, ...], ...]
    names: tuple[str, ...] = ()
    min_rings: int = 2
    few_name: str = "few rings"
    other_name: str = "other"
    _codes: np.ndarray = field(init=False, repr=False, compare=False)
    _order: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        classes = tuple(tuple(sorted(int(s) for s in c)) for c in self.classes)
        if not classes:
            raise ValueError("RingClassTable needs at least one class (a list of ring sizes)")
        for c in classes:
            if len(c) < self.min_rings:
                raise ValueError(
                    f"class {list(c)} has fewer rings than min_rings={self.min_rings}; such "
                    "atoms always get label 0; lower min_rings or add ring sizes"
                )
            if any(s < 3 or s >= _SIZE_BASE for s in c):
                raise ValueError(f"ring sizes must be in [3, {_SIZE_BASE - 1}], got {list(c)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate ring multisets in the class table: {classes}")
        names = tuple(self.names) or tuple("[" + ", ".join(map(str, c)) + "]" for c in classes)
        if len(names) != len(classes):
            raise ValueError(f"got {len(names)} names for {len(classes)} classes; give one each")
        if self.min_rings < 1:
            raise ValueError(f"min_rings must be >= 1, got {self.min_rings}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "names", names)
        codes = np.array([_encode(c) for c in classes], dtype=np.int64)
        order = np.argsort(codes)
        object.__setattr__(self, "_codes", codes[order])
        object.__setattr__(self, "_order", order)

    @classmethod
    def from_mapping(
        cls, classes: Mapping[str, Sequence[int]], min_rings: int = 2
    ) -> RingClassTable:
        """Table from ``{name: ring sizes}``; labels follow the mapping's order, from 1."""
        return cls(
            classes=tuple(tuple(v) for v in classes.values()),
            names=tuple(classes.keys()),
            min_rings=min_rings,
        )

    @property
    def n_labels(self) -> int:
        """Number of labels including "few rings" (0) and "other" (last)."""
        return len(self.classes) + 2

    @property
    def other_label(self) -> int:
        return len(self.classes) + 1

    @property
    def label_names(self) -> tuple[str, ...]:
        """Name of every label, indexed by label."""
        return (self.few_name, *self.names, self.other_name)

    def label(self, ring_sizes: np.ndarray) -> np.ndarray:
        """Labels ``(n,)`` for a padded ``(n, k)`` array of ring sizes (0 = no ring)."""
        sizes = np.sort(np.asarray(ring_sizes, dtype=np.int64), axis=1)
        n_rings = (sizes > 0).sum(axis=1)
        codes = _encode_rows(sizes)
        pos = np.searchsorted(self._codes, codes)
        pos = np.clip(pos, 0, len(self._codes) - 1)
        hit = self._codes[pos] == codes
        labels = np.where(hit, self._order[pos] + 1, self.other_label)
        labels[n_rings < self.min_rings] = 0
        return labels.astype(np.int64)


def _encode(sizes: Sequence[int]) -> int:
    """Sorted ring sizes as one integer (base-64 digits); zero padding does not change it."""
    code = 0
    for s in sorted(sizes):
        code = code * _SIZE_BASE + int(s)
    return code


def _encode_rows(sizes: np.ndarray) -> np.ndarray:
    """Vectorised :func:`_encode` for sorted rows padded with leading zeros. ``(n, k) -> (n,)``."""
    code = np.zeros(len(sizes), dtype=np.int64)
    for col in sizes.T:  # k <= a handful; zeros first, so they leave the code unchanged
        code = np.where(col > 0, code * _SIZE_BASE + col, code)
    return code


#: The default graphene table. Class 2 is the multiset [5, 5, 6]: the source lists "[5, 6]"
#: for three-ring atoms, which as a multiset of three rings is either [5, 5, 6] or [5, 6, 6];
#: [5, 6, 6] is already class 6, so class 2 is the only remaining three-ring combination made of
#: fives and sixes (an atom where two pentagons share a bond, as in 5-5 pairs of grain
#: boundaries). Every other combination (e.g. [5, 7, 7] at the centre of a Stone-Wales
#: defect, or anything with 4-, 8- or 9-rings) is "other" (label 7).
DEFAULT_RING_CLASSES = RingClassTable(
    classes=((6, 6), (5, 5, 6), (6, 6, 7), (6, 6, 6), (5, 6, 7), (5, 6, 6)),
    names=("[6, 6]", "[5, 5, 6]", "[6, 6, 7]", "[6, 6, 6]", "[5, 6, 7]", "[5, 6, 6]"),
)


# --------------------------------------------------------------------------------------------
# Bonds
# --------------------------------------------------------------------------------------------
def estimate_bond_length(coords: np.ndarray) -> float:
    """Typical bond length: the median of the first-shell distances. coords: ``(n, 2)``.

    The median nearest-neighbour distance is biased low under position noise (it is the
    smallest of three bonds), so it only seeds the first shell: the distances from each atom
    to its 3 nearest neighbours that are shorter than 1.3 times that seed.
    """
    xy = _check_coords(coords)
    if len(xy) < 2:
        raise ValueError("need at least 2 atoms to estimate a bond length")
    k = min(4, len(xy))
    d, _ = cKDTree(xy).query(xy, k=k)
    seed = float(np.median(d[:, 1]))
    shell = d[:, 1:][d[:, 1:] < 1.3 * seed]
    return float(np.median(shell)) if len(shell) else seed


def estimate_bond_cutoff(coords: np.ndarray, bond_length: float | None = None) -> float:
    """Bond cut-off from the histogram of near-neighbour distances.

    1. The valley of the smoothed histogram of distances to the 6 nearest neighbours (in
       bond-length units), searched in [1.15, 1.55] bond lengths between the first shell
       (1) and the second shell (sqrt(3) in a honeycomb); its centre where it is flat. It
       splits off the first shell.
    2. The spread of the first shell (robust, from the MAD of the distances below the
       valley): with noisy positions the longest true bonds reach 1 + 4 spreads, so the
       cut-off is raised to that. Second neighbours that then fall inside the cut-off are
       removed by :func:`find_bonds` (longest edge of a triangle; long-and-acute rule).
    3. Kept within [1.4, 1.6] bond lengths (or the valley, if higher): at least 1.4 because
       bonds at defects are strained by up to ~15 %; at most 1.6, below the second shell
       (sqrt(3)), because second neighbours across a vacancy form no triangle.

    coords: ``(n, 2)``. Returns a distance in the units of ``coords``.
    """
    xy = _check_coords(coords)
    b = estimate_bond_length(xy) if bond_length is None else float(bond_length)
    if not b > 0:
        raise ValueError(f"bond_length must be > 0, got {b}")
    k = min(7, len(xy))
    d, _ = cKDTree(xy).query(xy, k=k)
    r = d[:, 1:].ravel() / b
    bins = np.arange(0.5, 2.2, 0.02)
    hist, _ = np.histogram(r, bins=bins)
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), 2.0)
    centres = 0.5 * (bins[1:] + bins[:-1])
    window = (centres >= 1.15) & (centres <= 1.55)
    vals = smooth[window]
    lowest = np.flatnonzero(vals <= vals.min() + 1e-9 * max(1.0, vals.max()))
    # a flat valley (no distances at all there) has many minima: take the middle one
    valley = float(centres[window][lowest[len(lowest) // 2]])
    first = r[r < valley]
    spread = 1.4826 * float(np.median(np.abs(first - np.median(first)))) if len(first) else 0.0
    cutoff = min(max(valley, _MIN_CUTOFF, 1.0 + 4.0 * spread), 1.6)
    logger.debug(
        "bond length %.4g, valley %.3f, first-shell spread %.3f, cut-off %.3f bond lengths",
        b, valley, spread, cutoff,
    )
    return cutoff * b


def find_bonds(
    coords: np.ndarray,
    cutoff: float | None = None,
    remove_crossing: bool = True,
    remove_triangles: bool = True,
    remove_acute: bool = True,
) -> np.ndarray:
    """Bonds of a 2-D atomic network as index pairs ``(m, 2)`` with ``i < j``.

    coords: ``(n, 2)``. cutoff: bond cut-off in the units of coords (None = estimated by
    :func:`estimate_bond_cutoff`). See the module docstring for the clean-up steps.
    """
    xy = _check_coords(coords).astype(np.float64)
    if len(xy) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if cutoff is None:
        cutoff = estimate_bond_cutoff(xy)
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    pairs = cKDTree(xy).query_pairs(float(cutoff), output_type="ndarray").astype(np.int64)
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(pairs, axis=1)
    length = np.linalg.norm(xy[pairs[:, 0]] - xy[pairs[:, 1]], axis=1)
    too_close = length < 0.35 * np.median(length)
    if too_close.any():
        # duplicate detections: the second atom of each pair takes no part in the network
        # (it keeps label 0), so per-atom outputs stay aligned with the input
        dup = np.unique(pairs[too_close, 1])
        logger.warning(
            "%d atoms lie within 0.35 bond lengths of another (duplicate detections, e.g. "
            "atom %d); they are left unbonded - merge them upstream to silence this",
            len(dup), int(dup[0]),
        )
        clear = ~np.isin(pairs, dup).any(axis=1)
        pairs, length = pairs[clear], length[clear]
    if remove_crossing:
        keep = _uncrossed(xy, pairs, length, float(cutoff))
        pairs, length = pairs[keep], length[keep]
    if remove_triangles:
        keep = _triangle_free(len(xy), pairs, length)
        pairs, length = pairs[keep], length[keep]
    if remove_acute:
        keep = _not_acute_and_long(xy, pairs, length)
        pairs = pairs[keep]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order]


def _uncrossed(xy: np.ndarray, pairs: np.ndarray, length: np.ndarray, cutoff: float) -> np.ndarray:
    """Mask of bonds kept after dropping the longer bond of every crossing pair."""
    mid = 0.5 * (xy[pairs[:, 0]] + xy[pairs[:, 1]])
    # two segments no longer than the cut-off can only cross when their midpoints are closer
    # than the cut-off
    cand = cKDTree(mid).query_pairs(cutoff, output_type="ndarray")
    keep = np.ones(len(pairs), dtype=bool)
    if len(cand) == 0:
        return keep
    a, b = pairs[cand[:, 0]], pairs[cand[:, 1]]
    shared = (a[:, :1] == b).any(axis=1) | (a[:, 1:] == b).any(axis=1)
    cand, a, b = cand[~shared], a[~shared], b[~shared]
    p1, p2, q1, q2 = xy[a[:, 0]], xy[a[:, 1]], xy[b[:, 0]], xy[b[:, 1]]
    d1 = _cross(q2 - q1, p1 - q1)
    d2 = _cross(q2 - q1, p2 - q1)
    d3 = _cross(p2 - p1, q1 - p1)
    d4 = _cross(p2 - p1, q2 - p1)
    crossing = (d1 * d2 < 0) & (d3 * d4 < 0)
    cand = cand[crossing]
    if len(cand) == 0:
        return keep
    # resolve the worst crossings first; a bond already dropped frees its partner
    worst = np.maximum(length[cand[:, 0]], length[cand[:, 1]])
    for i, j in cand[np.argsort(-worst, kind="stable")]:
        if keep[i] and keep[j]:
            keep[i if length[i] >= length[j] else j] = False
    logger.debug("dropped %d crossing bonds", int((~keep).sum()))
    return keep


def _not_acute_and_long(xy: np.ndarray, pairs: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Mask of bonds kept after dropping long bonds that are acute (under 95 deg) at both ends.

    Two second neighbours whose shared neighbour is missing (at the image border, around a
    vacancy) form no triangle, but their "bond" is long (sqrt(3) less the noise) and meets
    their real bonds at about 90 degrees, where sp2 bonds meet at 108 to 130 degrees (90 in
    the rare 4-ring, whose bonds are short). A bond is dropped only when it is long and meets
    a bond at under ``ACUTE_DEG`` (95) degrees at both of its ends: noise rarely bends a real
    bond that much at both ends at once. Long means longer than 1.4 median
    bond lengths.
    """
    keep = np.ones(len(pairs), dtype=bool)
    if len(pairs) < 2:
        return keep
    long = np.flatnonzero(length > 1.4 * np.median(length))
    if len(long) == 0:
        return keep
    nbr, _ = _neighbour_table(len(xy), pairs)
    acute_at = []
    for end, other in ((0, 1), (1, 0)):
        a, b = pairs[long, end], pairs[long, other]
        u = xy[b] - xy[a]  # (l, 2)
        nb = nbr[a]  # (l, d)
        v = xy[np.where(nb >= 0, nb, 0)] - xy[a][:, None, :]  # (l, d, 2)
        cos = (v * u[:, None, :]).sum(-1) / (
            np.linalg.norm(v, axis=-1) * np.linalg.norm(u, axis=-1)[:, None] + 1e-12
        )
        valid = (nb >= 0) & (nb != b[:, None])
        acute_at.append((valid & (cos > np.cos(np.deg2rad(ACUTE_DEG)))).any(axis=1))
    # a false bond is bent at both ends (about 90 degrees each); noise rarely bends a real
    # bond that much at both ends at once
    keep[long[acute_at[0] & acute_at[1]]] = False
    logger.debug("dropped %d long bonds at acute angles", int((~keep).sum()))
    return keep


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def _neighbour_table(n: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour table ``(n, d_max)`` (-1 = none) and the bond index of each entry."""
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    bond = np.concatenate([np.arange(len(pairs)), np.arange(len(pairs))])
    order = np.argsort(src, kind="stable")
    src, dst, bond = src[order], dst[order], bond[order]
    deg = np.bincount(src, minlength=n)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(len(src)) - start[src]
    d_max = int(deg.max()) if len(deg) else 0
    nbr = np.full((n, max(d_max, 1)), -1, dtype=np.int64)
    nbond = np.full((n, max(d_max, 1)), -1, dtype=np.int64)
    nbr[src, slot] = dst
    nbond[src, slot] = bond
    return nbr, nbond


def _triangle_free(n: int, pairs: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Mask of bonds kept after dropping the longest edge of every triangle."""
    keep = np.ones(len(pairs), dtype=bool)
    if len(pairs) < 3:
        return keep
    nbr, nbond = _neighbour_table(n, pairs)
    i, j = pairs[:, 0], pairs[:, 1]
    # common neighbours k of the two ends of each bond: (m, d, d) comparison of the tables
    ni, nj = nbr[i], nbr[j]
    match = (ni[:, :, None] == nj[:, None, :]) & (ni[:, :, None] >= 0)
    e, si, sj = np.nonzero(match)
    if len(e) == 0:
        return keep
    tri_bonds = np.stack([e, nbond[i[e], si], nbond[j[e], sj]], axis=1)  # (t, 3)
    worst = tri_bonds[np.arange(len(tri_bonds)), np.argmax(length[tri_bonds], axis=1)]
    keep[worst] = False
    logger.debug("dropped %d triangle edges", int((~keep).sum()))
    return keep


# --------------------------------------------------------------------------------------------
# Rings
# --------------------------------------------------------------------------------------------
def _prune_leaves(n: int, pairs: np.ndarray) -> np.ndarray:
    """Mask of bonds kept after repeatedly removing atoms with a single bond."""
    keep = np.ones(len(pairs), dtype=bool)
    while True:
        deg = np.bincount(pairs[keep].ravel(), minlength=n)
        leaf = keep & ((deg[pairs[:, 0]] == 1) | (deg[pairs[:, 1]] == 1))
        if not leaf.any():
            return keep
        keep &= ~leaf


def find_rings(
    coords: np.ndarray,
    bonds: np.ndarray,
    min_size: int = 4,
    max_size: int = 9,
    border_rings: BorderRings = "keep",
) -> list[np.ndarray]:
    """Rings (faces of the plane bond graph) with ``min_size`` to ``max_size`` atoms.

    coords: ``(n, 2)`` (row, col); bonds: ``(m, 2)`` index pairs, assumed non-crossing (use
    :func:`find_bonds`). border_rings: what to do with rings that share a bond with the
    outer face (the edge of the imaged region). At the border an atom's partner may lie
    outside the image, and two second neighbours pulled within the cut-off by noise could
    then close a false ring that only the missing atom would have prevented. The
    long-and-acute rule of :func:`find_bonds` removes such bonds, so ``"keep"`` (default)
    keeps border rings; ``"drop"`` drops every ring on the outer face, the conservative
    choice for very noisy coordinates (it loses one row of rings along the border). Holes
    inside the image are not outer faces and keep their rings either way.
    Returns a list of atom-index arrays, each in walking order around its ring, sorted by
    their first atom for reproducibility.
    """
    xy = _check_coords(coords).astype(np.float64)
    n = len(xy)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if min_size < 3 or max_size < min_size:
        raise ValueError(f"need 3 <= min_size <= max_size, got {min_size}, {max_size}")
    if len(bonds) and (bonds.min() < 0 or bonds.max() >= n):
        raise ValueError(f"bond indices must be in [0, {n}), got range "
                         f"[{bonds.min()}, {bonds.max()}]")
    bonds = bonds[bonds[:, 0] != bonds[:, 1]]
    bonds = np.unique(np.sort(bonds, axis=1), axis=0)
    bonds = bonds[_prune_leaves(n, bonds)]
    m = len(bonds)
    if m < 3:
        return []
    # half-edges h and h + m are twins
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    twin = np.concatenate([np.arange(m, 2 * m), np.arange(m)])
    # angles in the (x = col, y = row) frame; the face sign below uses the same frame
    vec = xy[dst] - xy[src]
    angle = np.arctan2(vec[:, 0], vec[:, 1])
    order = np.lexsort((angle, src))  # around each atom, counter-clockwise in (x, y)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    deg = np.bincount(src, minlength=n)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    # next edge clockwise from the twin, around the atom we arrive at: interior faces are
    # then walked counter-clockwise (positive signed area), outer faces clockwise
    t = twin
    s = start[src[t]]
    prev_rank = s + (rank[t] - s - 1) % deg[src[t]]
    nxt = order[prev_rank]

    h_all = np.arange(2 * m)
    if border_rings not in ("keep", "drop"):
        raise ValueError(f"border_rings must be 'keep' or 'drop', got {border_rings!r}")
    if border_rings == "drop":
        outer = _outer_half_edges(xy, src, dst, nxt)
    walk = np.empty((2 * m, max_size + 1), dtype=np.int64)
    walk[:, 0] = h_all
    for step in range(1, max_size + 1):
        walk[:, step] = nxt[walk[:, step - 1]]
    closed = walk[:, 1:] == h_all[:, None]  # (2m, max_size)
    has_cycle = closed.any(axis=1)
    size = np.where(has_cycle, np.argmax(closed, axis=1) + 1, 0)
    valid = has_cycle & (size >= min_size)
    steps = np.arange(max_size + 1)
    inside = steps[None, :] < size[:, None]
    # one representative per face: its smallest half-edge index
    masked = np.where(inside, walk, np.iinfo(np.int64).max)
    valid &= masked.min(axis=1) == h_all
    faces_h = walk[valid]
    sizes = size[valid]
    blocks: list[np.ndarray] = []
    for sz in np.unique(sizes):
        atoms = src[faces_h[sizes == sz, :sz]]  # (f, sz)
        p = xy[atoms]  # (f, sz, 2) as (row, col)
        x, y = p[..., 1], p[..., 0]
        area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
        srt = np.sort(atoms, axis=1)
        ok = (area > 0) & (np.diff(srt, axis=1) != 0).all(axis=1)  # interior and simple
        if border_rings == "drop":
            ok &= ~outer[twin[faces_h[sizes == sz, :sz]]].any(axis=1)
        blocks.append(atoms[ok])
    if not blocks:
        return []
    first = np.concatenate([b.min(axis=1) for b in blocks])
    length = np.concatenate([np.full(len(b), b.shape[1]) for b in blocks])
    rings = [row for b in blocks for row in b]
    return [rings[k] for k in np.lexsort((length, first))]


def _outer_half_edges(
    xy: np.ndarray, src: np.ndarray, dst: np.ndarray, nxt: np.ndarray
) -> np.ndarray:
    """Mask of half-edges on an outer face (a face of negative signed area, any length).

    Faces are the cycles of the permutation ``nxt``; each is labelled by its smallest
    half-edge by pointer doubling (log2 of the longest face steps), then its signed area is a
    sum over its half-edges.
    """
    label = np.arange(len(nxt))
    jump = nxt.copy()
    for _ in range(int(np.ceil(np.log2(max(len(nxt), 2)))) + 1):
        label = np.minimum(label, label[jump])
        jump = jump[jump]
    x0, y0 = xy[src, 1], xy[src, 0]
    x1, y1 = xy[dst, 1], xy[dst, 0]
    area = np.bincount(label, weights=0.5 * (x0 * y1 - x1 * y0), minlength=len(nxt))
    return area[label] < 0


# --------------------------------------------------------------------------------------------
# Per-atom results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RingAnalysis:
    """Result of :func:`analyze_rings`.

    coords: ``(n, 2)``; classes: ``(n,)`` element classes (e.g. C = 0, Si = 1) or None;
    bonds: ``(m, 2)``; rings: list of atom-index arrays; ring_size: ``(r,)``;
    atom_ring_sizes: ``(n, k)`` sorted ring sizes of each atom, padded with 0 at the front;
    n_rings: ``(n,)``; labels: ``(n,)`` from ``table``; cutoff: the bond cut-off used.
    """

    coords: np.ndarray
    classes: np.ndarray | None
    bonds: np.ndarray
    rings: list[np.ndarray]
    ring_size: np.ndarray
    atom_ring_sizes: np.ndarray
    n_rings: np.ndarray
    labels: np.ndarray
    table: RingClassTable
    cutoff: float

    def ring_sizes_of(self, atom: int) -> list[int]:
        """Sorted sizes of the rings ``atom`` belongs to."""
        row = self.atom_ring_sizes[atom]
        return [int(s) for s in row[row > 0]]

    def ring_centres(self) -> np.ndarray:
        """Centroid of every ring ``(r, 2)``."""
        if not self.rings:
            return np.zeros((0, 2))
        return np.stack([self.coords[r].mean(axis=0) for r in self.rings])

    def size_counts(self) -> dict[int, int]:
        """Number of rings of each size."""
        sizes, counts = np.unique(self.ring_size, return_counts=True)
        return {int(s): int(c) for s, c in zip(sizes, counts, strict=True)}

    def label_counts(self) -> dict[str, int]:
        """Number of atoms with each label, by label name."""
        counts = np.bincount(self.labels, minlength=self.table.n_labels)
        return {name: int(c) for name, c in zip(self.table.label_names, counts, strict=True)}


def atom_ring_sizes(n_atoms: int, rings: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted ring sizes per atom, ``(n_atoms, k)`` padded with leading zeros (k >= 1)."""
    if not rings:
        return np.zeros((n_atoms, 1), dtype=np.int64)
    lengths = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
    atom = np.concatenate(rings).astype(np.int64)
    size = np.repeat(lengths, lengths)
    order = np.lexsort((size, atom))
    atom, size = atom[order], size[order]
    count = np.bincount(atom, minlength=n_atoms)
    k = max(int(count.max()), 1)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    slot = np.arange(len(atom)) - start[atom] + (k - count[atom])  # right-aligned
    out = np.zeros((n_atoms, k), dtype=np.int64)
    out[atom, slot] = size
    return out


def label_atoms(
    n_atoms: int, rings: Sequence[np.ndarray], table: RingClassTable = DEFAULT_RING_CLASSES
) -> np.ndarray:
    """Per-atom labels ``(n_atoms,)`` from the rings each atom belongs to."""
    return table.label(atom_ring_sizes(n_atoms, rings))


def analyze_rings(
    coords: np.ndarray,
    classes: np.ndarray | None = None,
    cutoff: float | None = None,
    bonds: np.ndarray | None = None,
    table: RingClassTable = DEFAULT_RING_CLASSES,
    min_size: int = 4,
    max_size: int = 9,
    border_rings: BorderRings = "keep",
) -> RingAnalysis:
    """Bonds, rings, per-atom ring sizes and labels of a 2-D atomic network.

    coords: ``(n, 2)`` atom positions (row, col) in any unit. classes: ``(n,)`` element
    classes (carried along, e.g. for colouring; the topology does not depend on them).
    cutoff: bond cut-off in coords units (None = estimated). bonds: ``(m, 2)`` known bonds
    (skips bond finding). table: the per-atom class table. min_size, max_size,
    border_rings: see :func:`find_rings`.
    """
    xy = _check_coords(coords).astype(np.float64)
    cls = None
    if classes is not None:
        cls = check_array(classes, "classes", ndim=1, dtype=np.int64)
        if len(cls) != len(xy):
            raise ValueError(f"classes has {len(cls)} entries for {len(xy)} atoms; give one each")
    if bonds is None:
        used_cutoff = estimate_bond_cutoff(xy) if cutoff is None else float(cutoff)
        bonds = find_bonds(xy, cutoff=used_cutoff)
    else:
        bonds = check_array(bonds, "bonds", ndim=2, dtype=np.int64, allow_empty=True)
        bonds = bonds.reshape(-1, 2)
        used_cutoff = float("nan") if cutoff is None else float(cutoff)
    rings = find_rings(
        xy, bonds, min_size=min_size, max_size=max_size, border_rings=border_rings
    )
    sizes = atom_ring_sizes(len(xy), rings)
    return RingAnalysis(
        coords=xy,
        classes=cls,
        bonds=bonds,
        rings=rings,
        ring_size=np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings)),
        atom_ring_sizes=sizes,
        n_rings=(sizes > 0).sum(axis=1),
        labels=table.label(sizes),
        table=table,
        cutoff=used_cutoff,
    )


def _check_coords(coords: np.ndarray) -> np.ndarray:
    xy = check_array(coords, "coords", ndim=2, dtype=np.float64)
    if xy.shape[1] < 2:
        raise ValueError(f"coords must be (n, 2) (row, col), got shape {xy.shape}")
    if xy.shape[1] > 2:
        raise ValueError(
            f"coords must be (n, 2) (row, col), got shape {xy.shape}; pass the element classes "
            "separately, e.g. coords[:, :2] and classes=coords[:, 2]"
        )
    return xy


# --------------------------------------------------------------------------------------------
# Sub-images for the class-aware VAEs
# --------------------------------------------------------------------------------------------
def ring_labelled_patches(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    window: int,
    border: Border = "drop",
    normalize: Normalize = "image",
) -> Patches:
    """Square sub-images centred on atoms, carrying their ring labels as classes.

    image: ``(h, w)``; coords: ``(n, 2)`` (row, col) in pixels; labels: ``(n,)`` ring labels
    (e.g. ``RingAnalysis.labels``); window: patch side in pixels. border, normalize: see
    :func:`latentatlas.descriptors.patches.extract_patches`, which cuts the patches.
    Returns :class:`~latentatlas.descriptors.patches.Patches` with ``data`` ``(k, 1, window,
    window)``, ``classes`` the ring labels and ``index`` the atoms kept, ready for the
    class-aware VAEs (labels as the known class or as the partial labels of a semi-supervised
    model).
    """
    xy = _check_coords(coords)
    lab = check_array(labels, "labels", ndim=1, dtype=np.int64)
    if len(lab) != len(xy):
        raise ValueError(f"labels has {len(lab)} entries for {len(xy)} atoms; give one each")
    img = check_array(image, "image", ndim=2)
    return extract_patches(img, xy, window, classes=lab, border=border, normalize=normalize)
