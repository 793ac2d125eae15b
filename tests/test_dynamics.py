"""Domain dynamics: convexity, switch significance, wall displacement and pinning."""

from __future__ import annotations

import numpy as np
import pytest

from latentatlas.analysis.domains import (
    changed_fraction,
    domain_convexity,
    domain_descriptors,
    patch_descriptors,
    pinned_fraction,
    pinning_map,
    pinning_sites,
    switch_noise_level,
    switch_significance,
    wall_displacement,
    wall_table,
)
from latentatlas.analysis.matching import MatchCounts, match_counts, scores_from_counts
from latentatlas.datasets.domains import domain_walls, switching_movie
from latentatlas.descriptors.walls import Walls, boundary_walls

ROWS, COLS = np.mgrid[0:64, 0:64].astype(float)


def disc(r: float, center: tuple[float, float] = (31.3, 32.2)) -> np.ndarray:
    return (ROWS - center[0]) ** 2 + (COLS - center[1]) ** 2 < r**2


def l_shape() -> np.ndarray:
    """A 20 x 20 square with its 10 x 10 lower-right quadrant cut away (300 pixels)."""
    d = np.zeros((64, 64), bool)
    d[10:30, 10:30] = True
    d[20:30, 20:30] = False
    return d


# --- convexity --------------------------------------------------------------------------------


def test_convexity_is_one_for_a_disc_a_square_and_an_empty_window() -> None:
    assert domain_convexity(disc(12)) == 1.0
    assert domain_convexity(disc(3.5, (5.2, 40.7))) == 1.0
    square = np.zeros((64, 64), bool)
    square[5:25, 30:50] = True
    assert domain_convexity(square) == 1.0
    assert domain_convexity(np.zeros((16, 16), bool)) == 1.0
    assert domain_convexity(np.ones((16, 16), bool)) == 1.0


def test_convexity_of_an_l_shape_is_its_area_over_its_digital_hull() -> None:
    # Pixel centres of the L span rows/cols 10..29; the hull adds the triangle of centres with
    # row, col >= 20 and (row - 20) + (col - 20) <= 8 below the cut's diagonal:
    # 9 + 8 + ... + 1 = 45 centres, so 300 / 345 by hand.
    assert domain_convexity(l_shape()) == pytest.approx(300 / 345)


def test_convexity_of_a_crescent_follows_the_continuous_formula() -> None:
    # Disc of radius R minus the same disc shifted by d: crescent = pi R^2 - 2 s, its hull =
    # pi R^2 - s, with s the circular segment cut by the chord at d / 2 from the centre.
    r, d = 20.0, 12.0
    crescent = disc(r) & ~disc(r, (31.3, 32.2 + d))
    h = d / 2
    s = r**2 * np.arccos(h / r) - h * np.sqrt(r**2 - h**2)
    by_hand = (np.pi * r**2 - 2 * s) / (np.pi * r**2 - s)
    assert by_hand == pytest.approx(0.547, abs=0.001)
    assert domain_convexity(crescent) == pytest.approx(by_hand, abs=0.02)


def test_convexity_is_weighted_by_the_area_of_each_domain() -> None:
    both = l_shape()
    both[40:50, 40:60] = True  # a convex 10 x 20 rectangle, 200 pixels
    expected = (200 * 1.0 + 300 * (300 / 345)) / 500
    assert domain_convexity(both) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        domain_convexity(np.zeros((2, 8, 8), bool))


# --- switch significance ----------------------------------------------------------------------


def flip(d: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    return d ^ (rng.random(d.shape) < rate)


def windows(a: np.ndarray, size: int) -> list[tuple[slice, slice]]:
    return [(slice(r, r + size), slice(c, c + size))
            for r in range(0, a.shape[0] - size + 1, size)
            for c in range(0, a.shape[1] - size + 1, size)]


def test_switch_significance_is_zero_for_identical_frames_and_equals_a_clean_switch() -> None:
    before, after = disc(6), disc(10)
    assert changed_fraction(before, before) == 0.0
    assert switch_significance(before, before) == 0.0
    grown = (disc(10).sum() - disc(6).sum()) / disc(6).size
    assert switch_significance(before, after) == pytest.approx(grown)
    assert switch_significance(before, after, noise=0.01) == pytest.approx(grown - 0.01)
    # switching back counts as a change too
    assert switch_significance(after, before) == pytest.approx(grown)
    with pytest.raises(ValueError, match="noise"):
        switch_significance(before, after, noise=1.5)
    with pytest.raises(ValueError, match="one shape"):
        changed_fraction(before, after[:10])


def test_switch_significance_is_zero_for_pure_noise_at_the_stated_level() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((128, 128), bool)
    truth[:, 70:] = True
    # four repeated unswitched scans with 3 % of the pixels misread in each
    references = np.stack([flip(truth, 0.03, rng) for _ in range(4)])
    noise = switch_noise_level(references, window=16, quantile=0.99)
    assert 0.04 < noise < 0.12  # two scans' flips: about 2 * 3 % changed, plus the tail
    # two fresh scans of the same (unswitched) area: 99 % of the windows are pure noise
    a, b = flip(truth, 0.03, rng), flip(truth, 0.03, rng)
    values = np.array([switch_significance(a[w], b[w], noise) for w in windows(a, 16)])
    assert (values == 0).mean() >= 0.97
    assert values.max() < 0.02
    # a real switch on top of the same noise stands out where it happened
    switched = truth.copy()
    switched[:, 40:70] = True
    c = flip(switched, 0.03, rng)
    grown = np.array([switch_significance(a[w], c[w], noise) for w in windows(a, 16)])
    cols = np.array([w[1].start for w in windows(a, 16)])
    inside = (cols >= 48) & (cols + 16 <= 70)
    assert np.all(grown[inside] > 0.8) and grown[cols + 16 <= 40].max() < 0.02


def test_switch_noise_level_checks_its_input() -> None:
    with pytest.raises(ValueError, match="k >= 2"):
        switch_noise_level(np.zeros((1, 8, 8), bool))
    with pytest.raises(ValueError, match="window"):
        switch_noise_level(np.zeros((2, 8, 8), bool), window=9)
    same = np.zeros((3, 8, 8), bool)
    assert switch_noise_level(same) == 0.0


def test_patch_descriptors_describe_the_change_to_a_later_frame() -> None:
    stack = np.stack([disc(6), disc(10), disc(14)])
    centers = np.array([[31, 32], [31, 40], [10, 10]])
    desc = patch_descriptors(stack, centers, 16, frames=np.array([0, 0, 1]), delay=1)
    assert set(desc) >= {"convexity", "changed_fraction", "switch_significance"}
    np.testing.assert_array_equal(desc["convexity"], [1.0, 1.0, 1.0])
    # the window at the centre sees the disc grow from r 6 to 10; the corner one sees nothing
    expected = (disc(10) != disc(6))[23:39, 24:40].mean()
    assert desc["changed_fraction"][0] == pytest.approx(expected)
    np.testing.assert_allclose(desc["switch_significance"], desc["changed_fraction"])
    assert desc["changed_fraction"][2] == 0.0
    with pytest.raises(ValueError, match="delay"):
        patch_descriptors(stack, centers, 16, frames=np.array([0, 2, 1]), delay=1)
    plain = domain_descriptors(stack)
    assert "changed_fraction" not in plain and plain["convexity"].shape == (3,)


def test_wall_table_adds_convexity_and_the_change_to_the_next_frame() -> None:
    doms = np.stack([disc(6), disc(10), l_shape()])
    walls = Walls(mask=np.stack([boundary_walls(d) for d in doms]), coords=np.zeros((0, 3)),
                  method="gaussian", domains=doms)
    rows = wall_table(walls, noise=0.001)
    assert [r["convexity"] for r in rows] == pytest.approx([1.0, 1.0, 300 / 345])
    assert rows[0]["changed_fraction"] == pytest.approx((disc(10) != disc(6)).mean())
    assert rows[0]["switch_significance"] == pytest.approx(rows[0]["changed_fraction"] - 0.001)
    assert np.isnan(rows[2]["changed_fraction"]) and np.isnan(rows[2]["switch_significance"])


# --- wall displacement and pinning ------------------------------------------------------------


def test_wall_displacement_measures_how_far_a_straight_wall_travelled() -> None:
    doms = np.zeros((3, 32, 40), bool)
    doms[0, :, :10] = True
    doms[1, :, :13] = True  # moved 3 px
    doms[2, :, :13] = True  # stayed
    disp = wall_displacement(domain_walls(doms))
    assert disp.shape == (2, 32, 40)
    np.testing.assert_array_equal(disp[0][~np.isnan(disp[0])], 3.0)
    np.testing.assert_array_equal(disp[1][~np.isnan(disp[1])], 0.0)
    assert np.isnan(disp[0][:, :12]).all()  # off the walls of frame 1
    with pytest.raises(ValueError, match="stack"):
        wall_displacement(doms[0])


def test_pinning_map_counts_still_walls_only_while_the_switched_area_grows() -> None:
    doms = np.zeros((4, 32, 40), bool)
    doms[0, :, :10] = True
    doms[1, :, :13] = True  # the whole wall moves 3 px
    doms[2] = doms[1]
    doms[2, 20:, 13:16] = True  # the lower part moves on while rows 0-19 stay at column 12
    doms[3] = doms[2]  # no growth: a still wall then says nothing about pinning
    counts = pinning_map(domain_walls(doms), doms)
    assert counts.max() == 1 and counts[:20, 12].all() and counts[:, 14:].sum() == 0
    assert pinning_sites(counts).shape == (0, 2)  # held for one step only
    with pytest.raises(ValueError, match="must match"):
        pinning_map(domain_walls(doms), doms[:3])


def test_planted_pinning_sites_are_recovered_and_a_clean_movie_gives_an_empty_map() -> None:
    settings = dict(shape=(96, 96), n_frames=12, pulse=0.3, pulse_steps=60, disorder=0.1)
    tallies = []
    for seed in range(3):
        movie = switching_movie(seed=seed, pinning_sites=8, **settings)
        assert len(movie.sites) == 8 and movie.pinning.max() > 1.0
        found = pinning_sites(pinning_map(movie.walls, movie.domains))
        tallies.append(match_counts(found, movie.sites, radius=4.0))
        clean = switching_movie(seed=seed, **settings)
        assert clean.switched_fraction[-1] > 0.9 and clean.sites.shape == (0, 2)
        counts = pinning_map(clean.walls, clean.domains)
        assert pinning_sites(counts).shape == (0, 2)
        assert (counts >= 2).sum() <= 5  # a stray pixel or two where disorder held a wall
    pooled = scores_from_counts(MatchCounts(*np.sum(tallies, axis=0)))
    assert pooled.f1 >= 0.8 and pooled.precision >= 0.8


def test_pinned_fraction_per_patch_and_site_placement_errors() -> None:
    counts = np.zeros((32, 32), np.int64)
    counts[10:14, 10:14] = 3
    frac = pinned_fraction(counts, np.array([[12, 12], [24, 24]]), 8)
    np.testing.assert_allclose(frac, [16 / 64, 0.0])
    with pytest.raises(ValueError, match="border"):
        pinned_fraction(counts, np.array([[2, 2]]), 8)
    with pytest.raises(ValueError, match="pinning_sites"):
        switching_movie((32, 32), n_frames=2, seed=0, pinning_sites=40)
