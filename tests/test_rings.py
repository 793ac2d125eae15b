"""Ring analysis: bonds, plane-graph faces, per-atom labels, on generated and real graphene."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import shared_data
from latentatlas.datasets.graphene import honeycomb, make_graphene
from latentatlas.descriptors.rings import (
    DEFAULT_RING_CLASSES,
    RingClassTable,
    analyze_rings,
    estimate_bond_cutoff,
    estimate_bond_length,
    find_bonds,
    find_rings,
    ring_labelled_patches,
)

ANGLE = 0.37  # a fixed lattice rotation, so pristine and defected samples share their atoms
SHAPE = (240, 240)
OTHER = DEFAULT_RING_CLASSES.other_label
NAMES = DEFAULT_RING_CLASSES.label_names


def label_of(sizes: list[int]) -> int:
    return NAMES.index("[" + ", ".join(map(str, sizes)) + "]")


def sample(**kw: object):  # type: ignore[no-untyped-def]
    return make_graphene(shape=SHAPE, pixel_size=0.1, angle=ANGLE, rng=3, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pristine():  # type: ignore[no-untyped-def]
    return sample()


def _euler_faces(n: int, bonds: np.ndarray) -> int:
    """Inner faces of a plane graph by Euler's formula, after pruning dangling atoms."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    b = bonds.copy()
    while True:
        deg = np.bincount(b.ravel(), minlength=n)
        leaf = (deg[b[:, 0]] == 1) | (deg[b[:, 1]] == 1)
        if not leaf.any():
            break
        b = b[~leaf]
    used = np.unique(b)
    adj = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    return len(b) - len(used) + len(np.unique(comp[used]))


# -------------------------------------------------------------------------------- pristine
def test_pristine_rings_are_the_euler_faces_and_all_hexagons(pristine) -> None:  # type: ignore[no-untyped-def]
    res = analyze_rings(pristine.coords)
    assert set(res.size_counts()) == {6}
    # every inner face of a rectangular honeycomb patch is a hexagon: Euler counts them
    assert len(res.rings) == _euler_faces(len(res.coords), res.bonds)
    assert set(map(tuple, res.bonds)) == set(map(tuple, pristine.bonds))


def test_pristine_interior_atoms_are_666_and_border_atoms_have_fewer_rings(pristine) -> None:  # type: ignore[no-untyped-def]
    res = analyze_rings(pristine.coords)
    b = pristine.bond_length
    inner = (pristine.coords.min(axis=1) > 2.5 * b) & (
        (np.array(SHAPE) - pristine.coords).min(axis=1) > 2.5 * b
    )
    assert (res.labels[inner] == label_of([6, 6, 6])).all()
    border = (pristine.coords.min(axis=1) < 0.5 * b) | (
        (np.array(SHAPE) - pristine.coords).min(axis=1) < 0.5 * b
    )
    assert (res.n_rings[border] < 3).all()


def test_honeycomb_with_second_neighbours_in_reach_recovers_true_bonds() -> None:
    pos, true = honeycomb((12.0, 15.0), 0.2)
    # 1.8 bond lengths includes every second neighbour (sqrt 3): triangle pruning removes them
    # inside, the long-and-acute rule at the border (where the shared neighbour is cut off)
    bonds = find_bonds(pos, cutoff=1.8)
    assert set(map(tuple, bonds.tolist())) == set(map(tuple, true.tolist()))
    no_acute = set(map(tuple, find_bonds(pos, cutoff=1.8, remove_acute=False).tolist()))
    deg = np.bincount(true.ravel(), minlength=len(pos))
    extra = no_acute - set(map(tuple, true.tolist()))
    assert extra and all(deg[i] < 3 and deg[j] < 3 for i, j in extra)
    raw = find_bonds(pos, cutoff=1.8, remove_triangles=False, remove_acute=False)
    assert len(raw) > 1.3 * len(true)


def test_crossing_bonds_keep_the_shorter_one() -> None:
    # a rhombus: both diagonals within the cut-off, the long one must go
    pts = np.array([[0.0, 0.0], [0.55, 0.8], [0.0, 1.6], [-0.55, 0.8]])
    bonds = find_bonds(pts, cutoff=1.7, remove_triangles=False)
    pairs = set(map(tuple, bonds))
    assert (1, 3) in pairs and (0, 2) not in pairs
    assert len(pairs) == 5


# -------------------------------------------------------------------------------- defects
def test_stone_wales_rings_and_every_atom_class(pristine) -> None:  # type: ignore[no-untyped-def]
    sw = sample(stone_wales=1)
    res = analyze_rings(sw.coords, sw.classes)
    n6 = pristine.ring_size_counts()[6]
    assert res.size_counts() == {5: 2, 6: n6 - 4, 7: 2}
    on_defect = np.flatnonzero([(s == 5).any() or (s == 7).any() for s in res.atom_ring_sizes])
    got = Counter(tuple(res.ring_sizes_of(i)) for i in on_defect)
    # the rotated bond's two atoms sit on both heptagons and one pentagon each
    assert got == {(5, 7, 7): 2, (5, 6, 7): 4, (5, 6, 6): 4, (6, 6, 7): 6}
    lab = Counter(res.labels[on_defect].tolist())
    assert lab == {OTHER: 2, label_of([5, 6, 7]): 4, label_of([5, 6, 6]): 4,
                   label_of([6, 6, 7]): 6}
    # the two [5, 7, 7] atoms are the rotated bond: bonded to each other
    centre = [i for i in on_defect if res.ring_sizes_of(i) == [5, 7, 7]]
    assert tuple(sorted(centre)) in set(map(tuple, res.bonds))
    np.testing.assert_array_equal(res.labels, sw.labels)


def test_divacancy_585(pristine) -> None:  # type: ignore[no-untyped-def]
    dv = sample(divacancies=1)
    res = analyze_rings(dv.coords)
    assert dv.n_atoms == pristine.n_atoms - 2
    assert res.size_counts() == {5: 2, 6: pristine.ring_size_counts()[6] - 4, 8: 1}
    octagon = res.rings[int(np.flatnonzero(res.ring_size == 8)[0])]
    pentagons = [r for r in res.rings if len(r) == 5]
    # each pentagon shares exactly one bond (two atoms) with the octagon
    assert [len(np.intersect1d(p, octagon)) for p in pentagons] == [2, 2]
    np.testing.assert_array_equal(res.labels, dv.labels)


@pytest.mark.parametrize("reconstruct", [True, False])
def test_single_vacancy(pristine, reconstruct: bool) -> None:  # type: ignore[no-untyped-def]
    sv = sample(vacancies=1, reconstruct_vacancy=reconstruct)
    res = analyze_rings(sv.coords)
    n6 = pristine.ring_size_counts()[6] - 3
    if reconstruct:
        assert res.size_counts() == {5: 1, 6: n6, 9: 1}
        # the lone atom with the dangling bond: on the 9-ring and one hexagon only
        assert sum(res.ring_sizes_of(i) == [6, 9] for i in range(len(res.coords))) == 1
    else:
        # the 12-atom hole is no ring; its three former neighbours keep one hexagon each
        assert res.size_counts() == {6: n6}
        assert (res.atom_ring_sizes[sv.defect > 0].max(axis=1) == 6).all()
        assert (res.n_rings[sv.defect > 0] == 1).all()
    np.testing.assert_array_equal(res.labels, sv.labels)


def test_silicon_changes_no_ring_but_is_brighter(pristine) -> None:  # type: ignore[no-untyped-def]
    si = sample(silicon=2, counts=None, gaussian=0.0, scan_jitter=0.0)
    res = analyze_rings(si.coords, si.classes)
    assert res.size_counts() == pristine.ring_size_counts()
    assert (si.classes == 1).sum() == 2
    px = np.rint(si.coords).astype(int)
    inside = (px >= 0).all(axis=1) & (px < np.array(SHAPE)).all(axis=1)
    val = si.image[px[inside, 0], px[inside, 1]]
    assert val[si.classes[inside] == 1].min() > 2 * val[si.classes[inside] == 0].max()


def test_grain_boundary_rings_are_5_7_along_the_seam() -> None:
    gb = make_graphene(shape=(200, 200), pixel_size=0.1, grain_boundary=21.8, angle=0.0, rng=0)
    res = analyze_rings(gb.coords, gb.classes)
    counts = res.size_counts()
    assert counts.get(5, 0) >= 3 and counts.get(7, 0) >= 3
    np.testing.assert_array_equal(res.labels, gb.labels)
    # with angle 0 the seam is the horizontal middle line: every non-hexagon sits on it
    centres = res.ring_centres()
    off = np.abs(centres[res.ring_size != 6, 0] - SHAPE[0] / 2) / gb.bond_length
    assert off.max() < 3.0


# -------------------------------------------------------------------------------- robustness
@pytest.fixture(scope="module")
def defected():  # type: ignore[no-untyped-def]
    return sample(stone_wales=1, divacancies=1, vacancies=1, silicon=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_survive_a_tenth_of_a_bond_of_position_noise(defected, seed: int) -> None:  # type: ignore[no-untyped-def]
    s = defected
    rng = np.random.default_rng(seed)
    # RMS displacement of 0.1 bond lengths (0.1 / sqrt 2 per coordinate)
    noisy = s.coords + rng.normal(0.0, 0.1 / np.sqrt(2) * s.bond_length, s.coords.shape)
    res = analyze_rings(noisy, s.classes)
    np.testing.assert_array_equal(res.labels, s.labels)
    assert res.size_counts() == s.ring_size_counts()


def test_pristine_survives_a_tenth_of_a_bond_per_coordinate(pristine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    noisy = pristine.coords + rng.normal(0.0, 0.1 * pristine.bond_length, pristine.coords.shape)
    res = analyze_rings(noisy)
    np.testing.assert_array_equal(res.labels, pristine.labels)


def test_missing_atom_changes_only_its_ring_neighbours(pristine) -> None:  # type: ignore[no-untyped-def]
    s = sample(stone_wales=1)
    full = analyze_rings(s.coords)
    centre = np.array(SHAPE) / 2
    # an interior [6, 6, 6] atom away from the Stone-Wales defect
    far = np.linalg.norm(s.coords - s.coords[s.defect > 0].mean(axis=0), axis=1)
    cand = np.flatnonzero((full.labels == label_of([6, 6, 6])) & (far > 4 * s.bond_length)
                          & (np.linalg.norm(s.coords - centre, axis=1) < 6 * s.bond_length))
    gone = int(cand[0])
    keep = np.delete(np.arange(len(s.coords)), gone)
    res = analyze_rings(s.coords[keep])
    changed = set(keep[res.labels != full.labels[keep]].tolist())
    ring_mates = set(np.concatenate([r for r in full.rings if gone in r]).tolist()) - {gone}
    assert changed == ring_mates
    nbrs = {int(j) for b in full.bonds for j in b if gone in b} - {gone}
    # direct neighbours keep one hexagon (label 0), the others two: [6, 6]
    for i in ring_mates:
        j = int(np.searchsorted(keep, i))
        assert res.labels[j] == (0 if i in nbrs else label_of([6, 6]))


def test_cropped_noisy_lattice_gives_no_spurious_rings(pristine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    xy = pristine.coords + rng.normal(0, 0.08 * pristine.bond_length, pristine.coords.shape)
    box = (xy[:, 0] > 37.3) & (xy[:, 0] < 141.9) & (xy[:, 1] > 22.1) & (xy[:, 1] < 160.4)
    kept = analyze_rings(xy[box])
    # a crop of a honeycomb has hexagons only, and all of its inner faces are found
    assert set(kept.size_counts()) == {6}
    assert len(kept.rings) == _euler_faces(int(box.sum()), kept.bonds)
    # "drop" removes exactly the rings sharing a bond with the outer face
    res = analyze_rings(xy[box], border_rings="drop")
    outer = set()
    for r in kept.rings:
        for a, b in zip(r, np.roll(r, -1), strict=True):
            outer ^= {(min(a, b), max(a, b))}  # bonds on one ring only: the outer boundary
    border = [
        r for r in kept.rings
        if any((min(a, b), max(a, b)) in outer for a, b in zip(r, np.roll(r, -1), strict=True))
    ]
    assert len(res.rings) == len(kept.rings) - len(border) > 0.3 * len(kept.rings)
    with pytest.raises(ValueError, match="border_rings"):
        analyze_rings(xy[box], border_rings="sometimes")  # type: ignore[arg-type]


def test_duplicate_detection_is_left_out_and_changes_nothing_else(pristine, caplog) -> None:  # type: ignore[no-untyped-def]
    ref = analyze_rings(pristine.coords)
    twin = pristine.coords[[100]] + 0.05 * pristine.bond_length
    with caplog.at_level("WARNING", logger="latentatlas.descriptors.rings"):
        res = analyze_rings(np.concatenate([pristine.coords, twin]))
    assert "duplicate" in caplog.text
    np.testing.assert_array_equal(res.labels[:-1], ref.labels)
    assert res.labels[-1] == 0 and res.n_rings[-1] == 0


# -------------------------------------------------------------------------------- cut-off, table
def test_cutoff_estimate_scales_and_sits_between_shells(pristine) -> None:  # type: ignore[no-untyped-def]
    xy = pristine.coords
    b = estimate_bond_length(xy)
    assert b == pytest.approx(pristine.bond_length, rel=0.01)
    c = estimate_bond_cutoff(xy)
    assert 1.2 * b < c < 1.6 * b
    assert estimate_bond_cutoff(7.0 * xy) == pytest.approx(7.0 * c, rel=1e-6)
    noisy = xy + np.random.default_rng(0).normal(0, 0.1 * b, xy.shape)
    assert estimate_bond_cutoff(noisy) > c  # a wider first shell needs a larger cut-off


def test_class_table_matches_a_plain_lookup() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.choice([0, 4, 5, 6, 7, 8], size=(400, 4), p=[0.3, 0.05, 0.15, 0.35, 0.1, 0.05])
    table = RingClassTable.from_mapping({"hex": [6, 6, 6], "pent": [5, 6, 6], "edge": [6, 6]})
    expected = []
    for row in sizes:
        ms = tuple(sorted(int(s) for s in row if s > 0))
        if len(ms) < 2:
            expected.append(0)
        elif ms in table.classes:
            expected.append(table.classes.index(ms) + 1)
        else:
            expected.append(table.other_label)
    np.testing.assert_array_equal(table.label(sizes), expected)
    assert table.label_names == ("few rings", "hex", "pent", "edge", "other")


def test_default_table_is_the_documented_one() -> None:
    assert DEFAULT_RING_CLASSES.classes == ((6, 6), (5, 5, 6), (6, 6, 7), (6, 6, 6), (5, 6, 7),
                                            (5, 6, 6))
    assert DEFAULT_RING_CLASSES.other_label == 7


def test_custom_table_changes_labels_not_rings(pristine) -> None:  # type: ignore[no-untyped-def]
    table = RingClassTable(classes=((6, 6, 6),), min_rings=3)
    res = analyze_rings(pristine.coords, table=table)
    ref = analyze_rings(pristine.coords)
    assert len(res.rings) == len(ref.rings)
    np.testing.assert_array_equal(res.labels == 1, ref.labels == label_of([6, 6, 6]))
    assert set(np.unique(res.labels)) <= {0, 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": ((6, 6), (6, 6))}, "duplicate"),
        ({"classes": ((6,),)}, "min_rings"),
        ({"classes": ((2, 6),)}, "ring sizes"),
        ({"classes": ((6, 6),), "names": ("a", "b")}, "names"),
    ],
)
def test_bad_tables_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RingClassTable(**kwargs)


def test_bad_coordinates_are_refused() -> None:
    with pytest.raises(ValueError, match=r"classes separately"):
        analyze_rings(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        analyze_rings(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        analyze_rings(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="one each"):
        analyze_rings(np.zeros((4, 2)) + np.arange(4)[:, None], classes=np.zeros(3))
    with pytest.raises(ValueError, match="bond indices"):
        find_rings(np.zeros((3, 2)), np.array([[0, 5]]))


# -------------------------------------------------------------------------------- patches
def test_ring_labelled_patches_are_centred_on_their_atoms() -> None:
    s = make_graphene(shape=(96, 96), pixel_size=0.1, angle=ANGLE, rng=1, stone_wales=1,
                      border=3.0, counts=None, gaussian=0.0, scan_jitter=0.0, blur=0.0)
    p = ring_labelled_patches(s.image, s.coords, s.labels, window=21, normalize="none")
    idx = p.index
    assert p.data.shape == (len(idx), 1, 21, 21)
    np.testing.assert_array_equal(p.classes, s.labels[idx])
    assert set(p.classes.tolist()) >= {label_of([5, 6, 7]), OTHER}
    # exactly the atoms whose window fits are kept, and each patch is the image around it
    c = np.rint(s.coords).astype(int)
    fits = ((c >= 10) & (c <= 96 - 11)).all(axis=1)
    np.testing.assert_array_equal(idx, np.flatnonzero(fits))
    for k in (0, len(idx) // 2, len(idx) - 1):
        r, q = c[idx[k]]
        np.testing.assert_array_equal(p.data[k, 0], s.image[r - 10:r + 11, q - 10:q + 11])
    # the atom's own column is the brightest spot in the middle of its patch (to within the
    # half-pixel rounding of the centre, where the neighbours' tails can tip the balance)
    mid = p.data[:, 0, 8:13, 8:13].reshape(len(idx), -1).max(axis=1)
    assert (p.data[:, 0, 10, 10] >= 0.95 * mid).all()
    with pytest.raises(ValueError, match="window"):
        ring_labelled_patches(s.image, s.coords, s.labels, window=200)
    with pytest.raises(ValueError, match="one each"):
        ring_labelled_patches(s.image, s.coords, s.labels[:-1], window=21)


# -------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name", ["G-GrainBoundary-4nm-coord.npy", "G-GrainBoundary-6nm-coord.npy"])
def test_real_grain_boundary_gives_5_and_7_rings_between_the_grains(name: str) -> None:
    path = shared_data("stem_graphene_aicrystallographer", "AtomNet", "exp_data", name)
    # trusted shared test file written as a pickled dict {0: (n, 3) row, col, class}
    coords = np.load(path, allow_pickle=True)[()][0]
    res = analyze_rings(coords[:, :2], coords[:, 2].astype(int))
    b = estimate_bond_length(coords[:, :2])
    counts = res.size_counts()
    assert counts.get(5, 0) >= 5 and counts.get(7, 0) >= 5
    assert counts[6] > 10 * (counts[5] + counts[7])
    # grains from the hexagons' own orientation (6-fold angle), two clusters on the circle
    hexes = [r for r in res.rings if len(r) == 6]
    hc = np.stack([res.coords[r].mean(axis=0) for r in hexes])
    z = np.array([np.exp(6j * np.arctan2(*(res.coords[r] - c).T)).mean()
                  for r, c in zip(hexes, hc, strict=True)])
    z /= np.abs(z)
    c0, c1 = z[0], -z[0]
    for _ in range(20):
        grain = np.abs(z - c0) > np.abs(z - c1)
        c0, c1 = z[~grain].mean(), z[grain].mean()
        c0, c1 = c0 / abs(c0), c1 / abs(c1)
    assert min(grain.mean(), 1 - grain.mean()) > 0.2  # really two grains
    tree = cKDTree(hc)
    defect_centres = res.ring_centres()[np.isin(res.ring_size, [5, 7])]
    between = [len(set(grain[tree.query_ball_point(c, 2.5 * b)].tolist())) == 2
               for c in defect_centres]
    assert np.mean(between) >= 0.7
    # and hexagons far from any 5/7 ring see one grain only
    d, _ = cKDTree(defect_centres).query(hc)
    mixed = [len(set(grain[tree.query_ball_point(c, 1.9 * b)].tolist())) == 2
             for c in hc[d > 4 * b]]
    assert np.mean(mixed) < 0.05
