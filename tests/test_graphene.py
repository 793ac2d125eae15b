"""Graphene generator: geometry, defects, HAADF rendering, reproducibility, input checks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import pyplot as plt
from scipy.spatial import cKDTree

from latentatlas.datasets.graphene import (
    DEFECT_KINDS,
    SI_COMPLEXES,
    graphene_sheets,
    haadf_weights,
    honeycomb,
    make_graphene,
    random_graphene,
    relax_keating,
)
from latentatlas.datasets.render import render_columns
from latentatlas.descriptors.rings import analyze_rings
from latentatlas.plots.rings import plot_rings, ring_size_colors

CLEAN = {"counts": None, "gaussian": 0.0, "scan_jitter": 0.0, "blur": 0.0}


def test_honeycomb_geometry() -> None:
    pos, bonds = honeycomb((20.0, 25.0), angle=0.4)
    d = np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=1)
    np.testing.assert_allclose(d, 1.0, atol=1e-9)
    dist, _ = cKDTree(pos).query(pos, k=2)
    assert dist[:, 1].min() == pytest.approx(1.0)  # no atom closer than a bond
    # areal density of graphene: 2 atoms per cell of area 3 sqrt(3) / 2
    assert len(pos) / (20 * 25) == pytest.approx(4 / (3 * np.sqrt(3)), rel=0.05)
    deg = np.bincount(bonds.ravel(), minlength=len(pos))
    assert deg.max() == 3 and (deg == 3).mean() > 0.85


@pytest.mark.parametrize("pixel_size", [0.08, 0.125])
def test_pixel_size_sets_the_bond_length_in_pixels(pixel_size: float) -> None:
    s = make_graphene(shape=(120, 160), pixel_size=pixel_size, rng=0, **CLEAN)
    assert s.image.shape == (120, 160) and s.image.dtype == np.float32
    d = np.linalg.norm(s.coords[s.bonds[:, 0]] - s.coords[s.bonds[:, 1]], axis=1)
    np.testing.assert_allclose(d, 1.0 / pixel_size, rtol=1e-6)
    assert s.bond_length == pytest.approx(1.0 / pixel_size)
    assert (s.coords >= 0).all() and (s.coords < np.array([120, 160])).all()


def test_columns_sit_at_the_atoms_and_silicon_is_z_contrast_brighter() -> None:
    s = make_graphene(shape=(200, 200), pixel_size=0.1, silicon=2, rng=1, **CLEAN)
    px = np.rint(s.coords).astype(int)
    inside = ((px >= 2) & (px < 198)).all(axis=1)
    val = s.image[px[inside, 0], px[inside, 1]]
    ratio = val[s.classes[inside] == 1].mean() / val[s.classes[inside] == 0].mean()
    assert ratio == pytest.approx((14 / 6) ** 1.7, rel=0.1)
    # hexagon centres are dark: far below any column
    centres = analyze_rings(s.coords, bonds=s.bonds).ring_centres()
    cpx = np.rint(centres).astype(int)
    assert s.image[cpx[:, 0], cpx[:, 1]].max() < 0.5 * val[s.classes[inside] == 0].min()


def test_noise_is_poisson_like_and_seeded() -> None:
    a = make_graphene(shape=(96, 96), rng=7, counts=50.0, gaussian=0.0, scan_jitter=0.0)
    b = make_graphene(shape=(96, 96), rng=7, counts=50.0, gaussian=0.0, scan_jitter=0.0)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.coords, b.coords)
    clean = make_graphene(shape=(96, 96), rng=7, counts=None, gaussian=0.0, scan_jitter=0.0)
    np.testing.assert_array_equal(a.coords, clean.coords)
    # shot noise: values are counts / 50 and the residual variance tracks the mean
    np.testing.assert_allclose(a.image * 50, np.round(a.image * 50), atol=1e-3)
    resid = a.image - clean.image
    bright = clean.image > np.percentile(clean.image, 90)
    dark = clean.image < np.percentile(clean.image, 30)
    assert resid[bright].var() > 3 * resid[dark].var()
    other = make_graphene(shape=(96, 96), rng=8, counts=50.0)
    assert not np.array_equal(other.coords, a.coords)


def test_defect_bookkeeping() -> None:
    s = make_graphene(shape=(300, 300), pixel_size=0.1, stone_wales=1, divacancies=1,
                      vacancies=1, silicon=1, rng=2)
    kinds = [k for k, _ in s.defect_sites]
    assert sorted(kinds) == sorted(["stone_wales", "divacancy", "vacancy", "si"])
    for kind, (r, c) in s.defect_sites:
        code = 1 + DEFECT_KINDS.index(kind)
        members = s.coords[s.defect == code]
        assert len(members) > 0
        # every atom of a defect is near its site, sites are apart
        assert np.linalg.norm(members - [r, c], axis=1).max() < 4 * s.bond_length
    sites = np.array([rc for _, rc in s.defect_sites])
    d = np.linalg.norm(sites[:, None] - sites[None], axis=-1) + 1e9 * np.eye(len(sites))
    assert d.min() >= 6 * s.bond_length - 1e-6
    # the Si atom is the only heavy one, and three-coordinated
    si = np.flatnonzero(s.classes == 1)
    assert len(si) == 1 and np.bincount(s.bonds.ravel(), minlength=s.n_atoms)[si[0]] == 3


def test_relaxed_defects_keep_near_bond_lengths() -> None:
    s = make_graphene(shape=(240, 240), pixel_size=0.1, stone_wales=1, divacancies=1, rng=4,
                      **CLEAN)
    d = np.linalg.norm(s.coords[s.bonds[:, 0]] - s.coords[s.bonds[:, 1]], axis=1) / s.bond_length
    assert 0.85 < d.min() and d.max() < 1.25
    # no two atoms closer than a (compressed) bond
    dist, _ = cKDTree(s.coords).query(s.coords, k=2)
    assert dist[:, 1].min() > 0.85 * s.bond_length


def test_relax_keating_restores_a_perturbed_lattice_and_keeps_fixed_atoms() -> None:
    pos, bonds = honeycomb((10.0, 10.0))
    rng = np.random.default_rng(0)
    movable = np.linalg.norm(pos - 5.0, axis=1) < 3
    shaken = pos + movable[:, None] * rng.normal(0, 0.1, pos.shape)
    out = relax_keating(shaken, bonds, movable=movable)
    np.testing.assert_array_equal(out[~movable], pos[~movable])
    assert np.abs(out - pos).max() < 0.2 * np.abs(shaken - pos).max()


def test_grain_boundary_is_two_rotated_grains() -> None:
    s = make_graphene(shape=(200, 200), pixel_size=0.1, grain_boundary=21.8, angle=0.0, rng=0,
                      **CLEAN)
    res = analyze_rings(s.coords, bonds=s.bonds)
    hexes = [r for r in res.rings if len(r) == 6]
    centre = np.stack([s.coords[r].mean(axis=0) for r in hexes])
    angle = np.array([np.angle(np.exp(6j * np.arctan2(*(s.coords[r] - c).T)).mean()) / 6
                      for r, c in zip(hexes, centre, strict=True)])
    top = angle[centre[:, 0] < 70]
    bottom = angle[centre[:, 0] > 130]
    diff = np.rad2deg(np.angle(np.exp(6j * (np.median(top) - np.median(bottom))))) / 6
    assert abs(diff) == pytest.approx(21.8, abs=1.5)
    assert (s.defect == 1 + DEFECT_KINDS.index("grain_boundary")).sum() > 20


# (Si atoms, C neighbours of the Si, Si-Si distances in bond lengths) of each complex
_COMPLEX_GEOMETRY = {
    "Si1C4": (1, 4, ()),
    "Si2C4": (2, 4, (1.0,)),
    "Si2C5": (2, 5, (np.sqrt(3),)),
    "Si2C6": (2, 6, (2.0,)),
    "Si3C6": (3, 6, (np.sqrt(3),) * 3),
}


@pytest.mark.parametrize("kind", SI_COMPLEXES)
def test_si_complexes_have_their_atoms_and_neighbours(kind: str) -> None:
    s = make_graphene(shape=(160, 160), pixel_size=0.1, si_complexes=[kind], si_bond=1.15,
                      rng=0, **CLEAN)
    n_si, n_c, si_si = _COMPLEX_GEOMETRY[kind]
    si = np.flatnonzero(s.classes == 1)
    assert len(si) == n_si
    bonded = {int(j) for i, j in np.vstack([s.bonds, s.bonds[:, ::-1]]) if i in si}
    assert len(bonded - set(si.tolist())) == n_c
    d = sorted(np.linalg.norm(s.coords[a] - s.coords[b]) / s.bond_length
               for k, a in enumerate(si) for b in si[k + 1:])
    # relaxation moves the Si by up to ~15 % of a bond (longer Si-C bonds, a vacancy closing)
    np.testing.assert_allclose(d, sorted(si_si), rtol=0.15)
    assert all(s.defect[a] == 1 + DEFECT_KINDS.index(kind) for a in si)
    # the Si-C bonds relax towards si_bond, longer than C-C
    si_c = [np.linalg.norm(s.coords[i] - s.coords[j]) / s.bond_length for i, j in s.bonds
            if (s.classes[[i, j]] == 1).sum() == 1]
    assert 1.03 < np.median(si_c) < 1.3


def test_wider_si_keeps_its_integrated_intensity() -> None:
    kw = dict(shape=(160, 160), pixel_size=0.1, silicon=1, rng=3, **CLEAN)
    narrow = make_graphene(si_width=1.0, **kw)  # type: ignore[arg-type]
    wide = make_graphene(si_width=1.4, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(narrow.coords, wide.coords)
    r, c = np.rint(narrow.coords[narrow.classes == 1][0]).astype(int)
    assert wide.image[r, c] < 0.7 * narrow.image[r, c]
    # the extra intensity of the Si column is the same: summed over its neighbourhood
    box = (slice(r - 12, r + 13), slice(c - 12, c + 13))
    no_si = make_graphene(z_exponent=0.0, **kw)  # type: ignore[arg-type]  # Si rendered as C
    extra = [(x.image[box] - no_si.image[box] * (6 / 14) ** 1.7).sum() for x in (narrow, wide)]
    assert extra[1] == pytest.approx(extra[0], rel=0.05)


def test_render_columns_takes_one_width_per_column() -> None:
    pos = np.array([[10.0, 10.0], [10.0, 30.0]])
    img = render_columns((21, 41), pos, 1.0, sigma=np.array([1.0, 2.0]))
    assert img[10, 10] == pytest.approx(1.0, abs=1e-3) and img[10, 30] == pytest.approx(1.0, abs=1e-3)
    # at 2 px from the centre the wide column keeps exp(-1/2), the narrow one exp(-2)
    assert img[10, 32] == pytest.approx(np.exp(-0.5), rel=1e-3)
    assert img[10, 12] == pytest.approx(np.exp(-2.0), rel=1e-3)
    with pytest.raises(ValueError, match="sigma"):
        render_columns((8, 8), pos[:1], 1.0, sigma=0.0)


def test_relax_keating_rest_lengths() -> None:
    pos, bonds = honeycomb((10.0, 10.0))
    centre = int(np.argmin(np.linalg.norm(pos - 5.0, axis=1)))
    longer = (bonds == centre).any(axis=1)
    movable = np.linalg.norm(pos - pos[centre], axis=1) < 2.5
    out = relax_keating(pos, bonds, movable=movable, rest=np.where(longer, 1.2, 1.0))
    d = np.linalg.norm(out[bonds[:, 0]] - out[bonds[:, 1]], axis=1)
    # the stretched bonds grow towards 1.2 (half-way: the lattice around them pushes back),
    # the others stay near 1
    assert 1.07 < d[longer].min() and d[longer].max() < 1.2
    assert np.abs(d[~longer] - 1).max() < 0.08
    with pytest.raises(ValueError, match="rest"):
        relax_keating(pos, bonds, rest=np.ones(3))


def test_training_crops_carry_si_classes() -> None:
    rng = np.random.default_rng(0)
    sheets = graphene_sheets(6, rng, size=128)
    assert any(sh.classes.any() for sh in sheets)
    for sh in sheets:
        assert sh.classes.shape == (len(sh.positions),)
        if sh.classes.any():
            # Si columns are the bright ones of the (noise-free, carbon = 1) sheet
            r, c = np.rint(sh.positions).astype(int).clip(0, 127).T
            assert sh.image[r, c][sh.classes == 1].min() > 1.5
    n_si = 0
    for _ in range(20):
        img, pos, cls = random_graphene(rng, sheets, 64)
        assert img.shape == (64, 64) and pos.shape == (len(cls), 2)
        n_si += int(cls.sum())
    assert n_si > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (4, 4)}, "shape"),
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"stone_wales": -1}, "stone_wales"),
        ({"shape": (64, 64), "vacancies": 20}, "no room"),
        ({"grain_boundary": 75.0}, "grain_boundary"),
        ({"si_complexes": ["Si9C9"]}, "si_complexes"),
        ({"si_width": 0.0}, "si_width"),
        ({"si_bond": 3.0}, "si_bond"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_graphene(rng=0, **kwargs)


def test_haadf_weights() -> None:
    w = haadf_weights(np.array([0, 1, 0]), z_exponent=2.0)
    np.testing.assert_allclose(w, [(6 / 14) ** 2, 1.0, (6 / 14) ** 2])
    with pytest.raises(ValueError, match="element classes"):
        haadf_weights(np.array([2]))


def test_plot_rings_draws_one_polygon_per_ring() -> None:
    s = make_graphene(shape=(120, 120), pixel_size=0.1, stone_wales=1, border=4.0, rng=0)
    res = analyze_rings(s.coords, s.classes)
    fig, ax = plt.subplots()
    out = plot_rings(ax, res.coords, res.rings, res.labels, res.table.label_names, res.bonds,
                     image=s.image)
    assert out is ax
    polys = ax.collections[0]
    assert len(polys.get_paths()) == len(res.rings)
    colors = ring_size_colors()
    face = polys.get_facecolors()
    seven = int(np.flatnonzero(res.ring_size == 7)[0])
    np.testing.assert_allclose(face[seven][:3], matplotlib.colors.to_rgb(colors[7]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "7-ring" in labels and any("[5, 6, 7]" in t for t in labels)
    plt.close(fig)
