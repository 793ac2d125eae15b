"""Atom finding: generated lattices, the three finders, matching, stacks, real graphene."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data
from latentatlas.analysis.matching import match_counts, match_points, scores_from_counts
from latentatlas.datasets.graphene import GrapheneSample, make_graphene
from latentatlas.datasets.lattices import (
    DOPANT,
    LATTICE_KINDS,
    atom_mask,
    generate_lattice,
    lattice_stack,
    two_site_lattice,
)
from latentatlas.descriptors.atoms import (
    DEFAULT_WEIGHTS,
    SHIPPED_ATOM_FINDERS,
    Atoms,
    estimate_spacing,
    find_atoms,
    find_graphene_atoms,
    probability_to_points,
    refine_on_lattice,
    take_elements,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from atoms_data import (  # noqa: E402
    IMAGES,
    LIBRARYNET_DEV,
    REFERENCE_BORDER,
    SI_BY_EYE,
    load_graphene,
    load_librarynet,
    si_by_intensity,
    si_scores,
)

needs_weights = pytest.mark.skipif(
    not DEFAULT_WEIGHTS.exists(), reason="shipped atom-finder weights not present"
)
needs_graphene_weights = pytest.mark.skipif(
    not (SHIPPED_ATOM_FINDERS["graphene"].exists() and SHIPPED_ATOM_FINDERS["graphene-si"].exists()),
    reason="shipped graphene atom finders not present"
)


# ------------------------------------------------------------------ generator


@pytest.mark.parametrize("kind", LATTICE_KINDS)
def test_generator_ground_truth_sits_on_bright_columns(kind: str) -> None:
    lat = generate_lattice((96, 96), kind=kind, spacing=10, seed=1)
    img, pos, cls = lat
    assert img.shape == (96, 96) and pos.shape == (len(cls), 2)
    assert (pos >= 0).all() and (pos <= 95).all()
    r, c = np.round(pos).T.astype(int)
    # Every listed column is brighter than the image median (no noise here).
    assert (img[r, c] > np.median(img)).all()
    if kind == "perovskite":
        a, b = img[r, c][cls == 0].mean(), img[r, c][cls == 1].mean()
        assert a > b * 1.3
    else:
        assert set(np.unique(cls)) == {0}


def test_generator_dopants_vacancies_and_seed() -> None:
    kw = dict(kind="hexagonal", spacing=8, dopant_fraction=0.2, vacancy_fraction=0.2, seed=5)
    full = generate_lattice((128, 128), kind="hexagonal", spacing=8, seed=5)
    lat = generate_lattice((128, 128), **kw)  # type: ignore[arg-type]
    again = generate_lattice((128, 128), **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(lat.image, again.image)
    frac_vac = 1 - len(lat.positions) / len(full.positions)
    assert 0.1 < frac_vac < 0.3
    dop = lat.classes == DOPANT
    assert 0.1 < dop.mean() < 0.3
    r, c = np.round(lat.positions).T.astype(int)
    assert lat.image[r, c][dop].mean() > 1.5 * lat.image[r, c][~dop].mean()


def test_two_site_lattice_has_two_distinct_site_kinds() -> None:
    lat = two_site_lattice(seed=3)
    assert set(np.unique(lat.classes)) == {0, 1}
    r, c = np.round(lat.positions).T.astype(int)
    v0, v1 = lat.image[r, c][lat.classes == 0], lat.image[r, c][lat.classes == 1]
    assert v0.min() > v1.max()  # separable by intensity alone
    assert 0.4 < (lat.classes == 0).mean() < 0.6


def test_atom_mask_peaks_at_positions() -> None:
    pos = np.array([[10.3, 12.7], [20.0, 5.5]])
    m = atom_mask((32, 32), pos, width=1.5)
    assert m.max() <= 1 and m.min() >= 0
    found = probability_to_points(m, 0.5)
    assert match_points(found, pos, 0.2).f1 == 1.0


def test_bad_generator_input() -> None:
    with pytest.raises(ValueError, match="kind"):
        generate_lattice(kind="cubic")
    with pytest.raises(ValueError, match="vacancy_fraction"):
        generate_lattice(vacancy_fraction=1.5)
    with pytest.raises(ValueError, match="contrast"):
        two_site_lattice(contrast=2.0)


# ------------------------------------------------------------------ matching


def test_match_points_properties() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, (50, 2))
    true = true[np.argsort(true[:, 0])]
    p = match_points(true, true, 1.5)
    assert p.f1 == 1.0 and p.rmse == 0.0
    shifted = match_points(true + [0.3, 0.4], true, 1.5)
    # every point moved by 0.5 px (< radius 1.5, and true points are >= 1.5 px apart): all
    # still matched one-to-one, and the RMSE is exactly the shift
    assert shifted.f1 == 1.0 and shifted.rmse == pytest.approx(0.5, abs=1e-9)
    far = match_points(true + 2.0, true, 1.5)
    assert far.recall < 0.2
    # One-to-one: two predictions on one reference count once.
    dup = match_points(np.vstack([true, true[:1] + 0.1]), true, 1.5)
    assert dup.recall == 1.0 and dup.precision == pytest.approx(50 / 51)
    # Unmatched points near the edge are ignored with a border.
    extra = np.vstack([true, [[0.5, 50.0]]])
    assert match_points(extra, true, 1.5, shape=(101, 101), border=2).precision == 1.0
    assert match_points(extra, true, 1.5).precision < 1.0
    pooled = np.add(match_counts(true, true, 1.5), match_counts(true[:10] + 5, true[:10], 1.5))
    assert scores_from_counts(tuple(pooled)).recall == pytest.approx(50 / 60)  # type: ignore[arg-type]


def test_match_points_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        match_points(np.zeros((3, 3)), np.zeros((3, 2)), 1.5)
    with pytest.raises(ValueError, match="radius"):
        match_points(np.zeros((3, 2)), np.zeros((3, 2)), 0)


# ------------------------------------------------------------------ finders


@pytest.mark.parametrize("kind", ["square", "hexagonal", "honeycomb"])
def test_estimate_spacing(kind: str) -> None:
    lat = generate_lattice((128, 128), kind=kind, spacing=11, gaussian_noise=0.1, seed=2)
    assert estimate_spacing(lat.image) == pytest.approx(11, rel=0.1)


@pytest.mark.parametrize("method", ["peaks", "log"])
@pytest.mark.parametrize("kind", ["square", "honeycomb", "perovskite"])
def test_classical_finders_recover_positions(method: str, kind: str) -> None:
    lat = generate_lattice(
        (96, 96), kind=kind, spacing=12, gaussian_noise=0.08, vacancy_fraction=0.05, seed=4
    )
    atoms = find_atoms(lat.image, method)
    s = match_points(atoms.positions, lat.positions, 1.5, shape=(96, 96), border=3)
    assert s.f1 >= 0.97
    # Sub-pixel: integer peak positions alone give ~0.41 px RMS.
    assert s.rmse < 0.3


@pytest.mark.parametrize("method", ["peaks", "log"])
def test_intensity_classes(method: str) -> None:
    lat = two_site_lattice((128, 128), seed=1)
    atoms = find_atoms(lat.image, method, n_classes=2)
    from latentatlas.analysis.matching import match_indices

    ip, it = match_indices(atoms.positions, lat.positions, 1.5)
    inner = ((lat.positions > 3) & (lat.positions < 124)).all(1)
    assert inner[it].sum() > 0.97 * inner.sum()
    # Class 0 = dimmest = the B sites (truth class 1).
    agree = np.mean(atoms.classes[ip] == 1 - lat.classes[it])
    assert agree > 0.98


@pytest.mark.parametrize("method", ["peaks", "dcnn"])
def test_stack_keeps_frame_indices(method: str) -> None:
    if method == "dcnn" and not DEFAULT_WEIGHTS.exists():
        pytest.skip("shipped atom-finder weights not present")
    stack, truth = lattice_stack(3, (64, 64), seed=7, kind="hexagonal", spacing=9, gaussian_noise=0.1)
    atoms = find_atoms(stack, method)
    assert atoms.n_frames == 3 and set(np.unique(atoms.frame)) == {0, 1, 2}
    arr = atoms.as_array()
    assert arr.shape == (len(atoms), 3)
    for k, lat in enumerate(truth):
        own = atoms.in_frame(k)
        assert match_points(own.positions, lat.positions, 1.5, shape=(64, 64), border=3).f1 > 0.95
        other = truth[(k + 1) % 3]
        assert match_points(own.positions, other.positions, 1.5).f1 < 0.5


def test_bad_input_errors() -> None:
    img = generate_lattice((32, 32), seed=0).image
    with pytest.raises(ValueError, match="method"):
        find_atoms(img, "magic")
    with pytest.raises(ValueError, match="dimensions"):
        find_atoms(img[None, None], "peaks")
    bad = img.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_atoms(bad, "peaks")
    with pytest.raises(ValueError, match="at least 8"):
        find_atoms(img[:4, :4], "peaks")
    with pytest.raises(ValueError, match="spacing"):
        find_atoms(img, "peaks", spacing=-1)
    for name in ("spacing", "smooth", "min_sigma", "max_sigma"):  # kernels would grow unbounded
        with pytest.raises(ValueError, match=rf"{name} must be .* larger side \(32 pixels\)"):
            find_atoms(img, "log", **{name: 1e9})
    with pytest.raises(ValueError, match="n_classes"):
        find_atoms(img, "peaks", n_classes=0)
    with pytest.raises(FileNotFoundError, match="weights"):
        find_atoms(img, "dcnn", model=Path("/nonexistent/atom_finder.safetensors"))


def test_atoms_container() -> None:
    a = Atoms(np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([0, 1]), np.array([0, 1]), (8, 8), 2)
    np.testing.assert_array_equal(a.as_array(), [[1, 3, 0], [2, 4, 1]])
    assert len(a.in_frame(1)) == 1
    with pytest.raises(ValueError, match="frame"):
        a.in_frame(2)
    with pytest.raises(ValueError, match="same length"):
        Atoms(np.zeros(2), np.zeros(3), np.zeros(2, int), np.zeros(2, int), (8, 8))


@pytest.mark.parametrize("kind", ["honeycomb", "square"])
def test_lattice_prior_reduces_noise_and_keeps_perfect_lattice(kind: str) -> None:
    lat = generate_lattice((160, 160), kind=kind, spacing=12, seed=0)
    inner = ((lat.positions > 14) & (lat.positions < 145)).all(1)
    kept = refine_on_lattice(lat.positions, 12, (160, 160), iterations=2)
    np.testing.assert_allclose(kept[inner], lat.positions[inner], atol=1e-9)
    noisy = lat.positions + np.random.default_rng(0).normal(0, 0.4, lat.positions.shape)
    out = refine_on_lattice(noisy, 12, (160, 160), iterations=2)

    def err(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean((x[inner] - lat.positions[inner]) ** 2)))

    assert err(out) < 0.5 * err(noisy)


def test_refine_option_and_bad_value() -> None:
    lat = generate_lattice((96, 96), kind="honeycomb", spacing=11, gaussian_noise=0.6, seed=2)
    plain = find_atoms(lat.image, "peaks", spacing=11)
    prior = find_atoms(lat.image, "peaks", spacing=11, refine="lattice")
    assert len(prior) == len(plain) and prior.params["refine"] == "lattice"
    e_plain = match_points(plain.positions, lat.positions, 3, shape=(96, 96), border=3).rmse
    e_prior = match_points(prior.positions, lat.positions, 3, shape=(96, 96), border=3).rmse
    assert e_prior < e_plain
    with pytest.raises(ValueError, match="refine"):
        find_atoms(lat.image, "peaks", refine="snap")


# ------------------------------------------------------------------ DCNN


@needs_weights
@pytest.mark.parametrize("kind", ["square", "hexagonal", "honeycomb"])
def test_dcnn_recovers_generated_positions(kind: str) -> None:
    # Perovskite is left out on purpose: the shipped network misses dim B sublattices
    # (see benchmarks/RESULTS.md); peaks and blob-LoG find them.
    kw = dict(kind=kind, spacing=11, vacancy_fraction=0.03, dopant_fraction=0.03, seed=8)
    clean = generate_lattice((96, 96), gaussian_noise=0.1, **kw)  # type: ignore[arg-type]
    noisy = generate_lattice((96, 96), gaussian_noise=0.3, **kw)  # type: ignore[arg-type]
    s_clean = match_points(
        find_atoms(clean.image, "dcnn").positions, clean.positions, 1.5, shape=(96, 96), border=3
    )
    s_noisy = match_points(
        find_atoms(noisy.image, "dcnn").positions, noisy.positions, 1.5, shape=(96, 96), border=3
    )
    assert s_clean.f1 >= 0.97 and s_noisy.f1 >= 0.95
    # Sub-pixel: integer positions alone would give ~0.41 px RMS on the clean image.
    assert s_clean.rmse < 0.35 and s_noisy.rmse < 0.6


@needs_weights
def test_dcnn_scale_maps_back_to_full_resolution() -> None:
    lat = generate_lattice((128, 128), kind="hexagonal", spacing=20, gaussian_noise=0.1, seed=1)
    shrunk = find_atoms(lat.image, "dcnn", scale=0.5)
    s = match_points(shrunk.positions, lat.positions, 1.5, shape=(128, 128), border=3)
    assert shrunk.params["scale"] == 0.5
    assert s.f1 >= 0.97 and s.rmse < 0.5
    with pytest.raises(ValueError, match="scale"):
        find_atoms(lat.image, "dcnn", scale=0)


def _real_scores(name: str, radius: float, model: str, tta: bool = False) -> float:
    path = shared_data("stem_graphene_aicrystallographer", "AtomNet", "exp_data", f"{name}.npy")
    image, ref = load_graphene(path.parents[3], name)
    atoms = find_atoms(image, "dcnn", model=model, tta=tta)
    return match_points(atoms.positions, ref, radius, shape=image.shape, border=REFERENCE_BORDER).f1


@needs_weights
def test_general_dcnn_finds_real_graphene_columns() -> None:
    # Detection on the real 60 kV frames (contrast-to-noise below one per pixel): at a 3-pixel
    # radius the general network agrees with the reference on most columns; a finder that
    # fires on noise scores below 0.2 here.
    assert _real_scores("G-Si-2nm", 3.0, "general") >= 0.55


@needs_weights
@pytest.mark.parametrize("name", IMAGES)
def test_graphene_dcnn_meets_target_on_real_graphene(name: str) -> None:
    # The target: F1 >= 0.95 at 1.5 px against the AtomNet coordinates, on every frame,
    # with a network that never saw these frames (trained on generated graphene only). Without
    # test-time augmentation the scores are 0.952-0.969; with it the margin is wider.
    assert _real_scores(name, 1.5, "graphene", tta=True) >= 0.95


# ------------------------------------------------------------------ Si dopants (graphene finder)


def _planted_si(seed: int, z_exponent: float) -> GrapheneSample:
    # 11 px per bond (the finder's own scale), carbon contrast-to-noise 1.2 per pixel, seven Si
    # in four complexes; z_exponent=0 renders every Si exactly like a carbon column
    return make_graphene(
        (176, 176), pixel_size=1 / 11, silicon=1, si_complexes=("Si1C4", "Si2C5", "Si3C6"),
        z_exponent=z_exponent, si_width=1.2, si_bond=1.1, counts=None,
        gaussian=(6 / 14) ** z_exponent / 1.2, blur=0.5, scan_jitter=0.2, min_separation=3.5,
        rng=seed,
    )


@needs_graphene_weights
def test_graphene_dcnn_finds_and_labels_planted_si() -> None:
    found, planted, false_si = 0, 0, 0
    for seed in (0, 1):
        s = _planted_si(seed, z_exponent=1.7)
        at = find_graphene_atoms(s.image, spacing=11.0)
        assert at.params["class_names"] == ["C", "Si"]
        assert match_points(at.positions, s.coords, 1.5, shape=s.image.shape, border=3).f1 >= 0.95
        counts = si_scores(at.positions, at.classes, s.coords[s.classes == 1])
        found, planted = found + counts["labelled"], planted + counts["n_si"]
        false_si += counts["si_found"] - counts["labelled"]
    assert found >= 0.9 * planted and false_si <= 1
    # The labels come from the Z contrast, not the geometry: the same sheet with its Si rendered
    # like carbon gets its atoms found and (at most one of its seven) Si labelled.
    flat = _planted_si(0, z_exponent=0.0)
    at = find_graphene_atoms(flat.image, spacing=11.0)
    assert match_points(at.positions, flat.coords, 1.5, shape=flat.image.shape, border=3).f1 >= 0.95
    assert (at.classes == 1).sum() <= 1
    # asking for intensity classes replaces the network's element classes
    two = find_atoms(s.image, "dcnn", model="graphene-si", spacing=11.0, n_classes=2)
    assert two.params["class_names"] is None and set(np.unique(two.classes)) == {0, 1}


@needs_graphene_weights
def test_graphene_dcnn_finds_the_si_of_real_frames() -> None:
    # The AtomNet lists mark every atom class 0; by intensity G-Si-2nm holds one Si column and
    # the grain-boundary frames none (atoms_data.si_by_intensity). The finder labels exactly
    # that column Si (tta, as in the carbon test), keeping carbon F1 >= 0.95. G-dimSi and
    # G-trimSi (~35 px per bond): their two and three Si columns, marked by eye, labelled Si
    # within 1.5 px at the network's 11 px per bond; at most one false Si in all.
    path = shared_data("stem_graphene_aicrystallographer", "AtomNet", "exp_data", "G-Si-2nm.npy")
    false_si = 0
    for name in IMAGES:
        image, ref = load_graphene(path.parents[3], name)
        si_ref = ref[si_by_intensity(image, ref)]
        at = find_graphene_atoms(image, tta=True)
        assert match_points(at.positions, ref, 1.5, shape=image.shape, border=REFERENCE_BORDER).f1 >= 0.95
        counts = si_scores(at.positions, at.classes, si_ref)
        assert counts["labelled"] == counts["n_si"] == (1 if name == "G-Si-2nm" else 0)
        false_si += counts["si_found"] - counts["labelled"]
    import h5py

    for name, si_eye in SI_BY_EYE.items():
        with h5py.File(path.parent / "G-dimtrimSi" / f"{name}.hdf5", "r") as h:
            image = np.asarray(h["image_data"], dtype=np.float32)
        at = find_graphene_atoms(image)
        radius = 1.5 * at.params["spacing"] / 11.0
        counts = si_scores(at.positions, at.classes, np.array(si_eye), radius=radius)
        assert counts["labelled"] == counts["n_si"] == len(si_eye)
        false_si += counts["si_found"] - counts["labelled"]
    assert false_si <= 1


@needs_graphene_weights
def test_graphene_dcnn_si_recall_on_librarynet_crops() -> None:
    # 94 real crops of Si complexes (164 Si), pixel sizes 7.8-15.6 pm: the finder resamples
    # each to its own scale from the spacing that the crop's scan size gives (bond 142 pm).
    root = shared_data(*LIBRARYNET_DEV).parents[2]
    total = {"n_si": 0, "labelled": 0}
    for crop in load_librarynet(root):
        at = find_graphene_atoms(crop.image, spacing=crop.bond)
        counts = si_scores(at.positions, at.classes, crop.si)
        total = {k: total[k] + counts[k] for k in total}
    assert total["n_si"] == 164
    assert total["labelled"] >= 0.95 * total["n_si"]


def test_take_elements_relabels_near_atoms_and_adds_missed_ones() -> None:
    def atoms(rc: list[tuple[float, float]], cls: list[int]) -> Atoms:
        a = np.array(rc, dtype=float)
        return Atoms(a[:, 0], a[:, 1], np.array(cls), np.zeros(len(a), dtype=np.int64), (64, 64),
                     params={"class_names": ["C", "Si"]})

    base = atoms([(10, 10), (10, 20), (30, 30)], [0, 0, 0])
    # Si 1.4 px from the second base atom (replaces it), Si far from all (added), C ignored
    labeller = atoms([(11, 21), (50, 50), (30, 31)], [1, 1, 0])
    out = take_elements(base, labeller, radius=3.0)
    assert out.classes.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(out.positions, [(10, 10), (11, 21), (30, 30), (50, 50)])
    assert out.params["elements_added"] == 1 and out.params["class_names"] == ["C", "Si"]
    with pytest.raises(ValueError, match="radius"):
        take_elements(base, labeller, radius=0.0)
