"""Generated domains and switching movies, and the physical wall descriptors measured on them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from latentatlas.analysis.domains import (
    descriptor_correlations,
    domain_descriptors,
    switching_degree,
    switching_time_map,
    wall_count,
    wall_curvature,
    wall_evolution_map,
    wall_f1,
)
from latentatlas.datasets.domains import (
    PATTERN_KINDS,
    domain_pattern,
    domain_walls,
    make_domain_images,
    render_pfm,
    switching_movie,
)

ROWS, COLS = np.mgrid[0:64, 0:64].astype(float)


def disc(r: float, center: tuple[float, float] = (31.3, 32.2)) -> np.ndarray:
    return (ROWS - center[0]) ** 2 + (COLS - center[1]) ** 2 < r**2


def half_plane(angle: float, offset: float = 3.3) -> np.ndarray:
    return (ROWS - 31.5) * np.cos(angle) + (COLS - 31.5) * np.sin(angle) > offset


# --- generator ground truth -------------------------------------------------------------------


@pytest.mark.parametrize("kind", PATTERN_KINDS)
def test_wall_mask_is_exactly_the_switched_side_of_every_domain_edge(kind: str) -> None:
    dom = domain_pattern((48, 56), kind, seed=3)
    walls = domain_walls(dom)
    assert walls.any()
    assert not (walls & ~dom).any()  # walls lie on the switched side
    # every switched pixel with an unswitched edge neighbour is a wall, and nothing else is
    pad = np.pad(dom, 1, mode="edge")
    touches = (
        ~pad[:-2, 1:-1] | ~pad[2:, 1:-1] | ~pad[1:-1, :-2] | ~pad[1:-1, 2:]
    )
    np.testing.assert_array_equal(walls, dom & touches)


def test_straight_vertical_wall_has_one_pixel_per_row_and_no_border_wall() -> None:
    dom = np.zeros((40, 50), dtype=bool)
    dom[:, 20:] = True
    walls = domain_walls(dom)
    assert walls.sum() == 40
    assert walls[:, 20].all()


def test_render_pfm_phase_states_are_180_degrees_apart_and_amplitude_dips_at_walls() -> None:
    dom = domain_pattern((64, 64), "stripes", seed=1)
    phase, amp = render_pfm(dom, seed=2, phase_noise=10.0, phase_offset=100.0)
    assert phase.min() >= -90 and phase.max() < 270
    # circular means of the bulk of each state
    bulk = ndimage.distance_transform_edt(dom) > 3, ndimage.distance_transform_edt(~dom) > 3
    means = [np.degrees(np.angle(np.exp(1j * np.radians(phase[b])).mean())) % 360 for b in bulk]
    assert abs(means[0] - 280.0) < 5 and abs(means[1] - 100.0) < 5
    walls = domain_walls(dom) | domain_walls(~dom)
    assert amp[walls].mean() < 0.6 * amp[bulk[0] | bulk[1]].mean()


def test_make_domain_images_cycles_kinds_and_walls_match_domains() -> None:
    data = make_domain_images(6, (32, 40), kinds=("stripes", "disc"), seed=0)
    assert data.phase.shape == data.amplitude.shape == data.walls.shape == (6, 32, 40)
    assert data.kinds == ("stripes", "disc") * 3
    np.testing.assert_array_equal(data.walls, domain_walls(data.domains))
    again = make_domain_images(6, (32, 40), kinds=("stripes", "disc"), seed=0)
    np.testing.assert_array_equal(again.phase, data.phase)


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        domain_pattern((32, 32), "hexagons")
    with pytest.raises(ValueError, match="shape must be"):
        domain_pattern((4, 32))
    with pytest.raises(ValueError, match="dt must be"):
        switching_movie(dt=0.5)


def test_switching_movie_grows_the_switched_domain_and_walls_follow_every_frame() -> None:
    movie = switching_movie((48, 48), n_frames=8, seed=0, pulse=0.25)
    frac = movie.switched_fraction
    assert np.all(np.diff(frac) >= 0) and frac[-1] > frac[0] + 0.05
    np.testing.assert_array_equal(movie.walls, domain_walls(movie.domains))
    np.testing.assert_array_equal(movie.domains, movie.polarization < 0)


def test_quenched_disorder_roughens_a_planar_wall() -> None:
    kw = {"shape": (48, 48), "n_frames": 6, "initial": "planar", "pulse": 0.12}
    free = switching_movie(seed=0, disorder=0.0, **kw)
    rough = switching_movie(seed=0, disorder=0.2, **kw)
    # wall position per row = switched pixels in the row; flat without disorder
    assert free.domains[-1].sum(axis=1).std() == 0
    assert rough.domains[-1].sum(axis=1).std() > 0.5
    assert rough.walls[-1].sum() > free.walls[-1].sum()


def test_planar_wall_without_disorder_moves_steadily() -> None:
    movie = switching_movie((32, 48), n_frames=8, seed=0, initial="planar", disorder=0.0,
                            pulse=0.3)
    # wall column per row per frame: the number of switched pixels in the row
    pos = movie.domains.sum(axis=2)  # (t, rows)
    assert np.all(pos.std(axis=1) == 0)  # flat wall
    steps = np.diff(pos[:, 0])
    assert np.all(steps >= 1)


# --- descriptors ------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [5.0, 8.0, 12.0, 20.0])
def test_curvature_of_a_circle_is_one_over_r(r: float) -> None:
    k = wall_curvature(disc(r))
    assert k == pytest.approx(1.0 / r, rel=0.03)
    # unsigned: which side is switched does not matter
    assert wall_curvature(~disc(r)) == pytest.approx(k, rel=1e-6)


@pytest.mark.parametrize("angle", [0.0, 0.3, np.pi / 4, 1.1, np.pi / 2, 2.5])
def test_curvature_of_a_straight_wall_is_zero(angle: float) -> None:
    assert wall_curvature(half_plane(angle)) < 0.012  # vs 0.05 for a circle of radius 20


def test_curvature_without_walls_is_zero_and_window_is_checked() -> None:
    assert wall_curvature(np.zeros((16, 16), bool)) == 0.0
    with pytest.raises(ValueError, match="window"):
        wall_curvature(disc(8), window=0)


def test_wall_count_is_exact_on_generated_shapes() -> None:
    assert wall_count(domain_walls(half_plane(0.7))) == 1
    assert wall_count(domain_walls(disc(9))) == 1
    two = disc(6, (15, 15)) | disc(7, (45, 44))
    assert wall_count(domain_walls(two)) == 2
    stripes = np.sin(2 * np.pi * (COLS + 0.5) / 16) > 0  # 4 periods: 7 interior walls
    assert wall_count(domain_walls(stripes)) == 7
    assert wall_count(np.zeros((8, 8), bool)) == 0


def test_switching_degree_matches_the_generated_fraction() -> None:
    for f in (0.2, 0.5, 0.65):
        dom = domain_pattern((64, 64), "random", seed=4, fraction=f)
        assert switching_degree(dom) == pytest.approx(f, abs=1.0 / dom.size + 1e-9)
    assert switching_degree(disc(10)) == pytest.approx(disc(10).mean())


def test_domain_descriptors_on_a_batch() -> None:
    batch = np.stack([half_plane(0.2), disc(8), disc(6, (15, 15)) | disc(7, (45, 44))])
    desc = domain_descriptors(batch)
    np.testing.assert_array_equal(desc["wall_count"], [1, 1, 2])
    np.testing.assert_allclose(desc["switching_degree"], batch.mean(axis=(1, 2)))
    assert desc["curvature"][0] < 0.012
    assert desc["curvature"][1] == pytest.approx(1 / 8, rel=0.03)
    with pytest.raises(ValueError, match="must match"):
        domain_descriptors(batch, walls=np.zeros((2, 64, 64), bool))


# --- scores and correlations ------------------------------------------------------------------


def test_wall_f1_tolerance_and_edge_cases() -> None:
    truth = domain_walls(disc(10))
    assert wall_f1(truth, truth).f1 == 1.0
    shifted = np.roll(truth, 1, axis=1)
    assert wall_f1(shifted, truth, tolerance=2).f1 == 1.0
    assert wall_f1(shifted, truth, tolerance=0).f1 < 0.8
    empty = np.zeros_like(truth)
    s = wall_f1(empty, truth)
    assert s.recall == 0.0 and s.f1 == 0.0
    noise = np.zeros_like(truth)
    noise[0, 0] = True
    half = wall_f1(truth | noise, truth)
    assert half.recall == 1.0 and half.precision == pytest.approx(truth.sum() / (truth.sum() + 1))
    with pytest.raises(ValueError, match="same shape"):
        wall_f1(truth, truth[:10])


def test_descriptor_correlations_find_the_latent_that_tracks_a_descriptor() -> None:
    rng = np.random.default_rng(0)
    degree = rng.uniform(0, 1, 50)
    latents = np.column_stack([rng.normal(size=50), np.exp(3 * degree), np.ones(50)])
    table = descriptor_correlations({"switching_degree": degree}, latents, ["a", "b", "c"])
    assert table.strongest("switching_degree") == ("b", pytest.approx(1.0))
    assert abs(table.values[0, 0]) < 0.5
    assert np.isnan(table.values[0, 2])
    assert "| switching_degree |" in table.to_markdown()
    with pytest.raises(ValueError, match="values for"):
        descriptor_correlations({"x": degree[:10]}, latents)


def test_switching_time_and_wall_evolution_maps_follow_a_moving_wall() -> None:
    movie = switching_movie((24, 40), n_frames=6, seed=0, initial="planar", disorder=0.0,
                            pulse=0.3)
    first = switching_time_map(movie.domains)
    # switched later the farther from the starting side
    row = first[12]
    valid = ~np.isnan(row)
    assert np.all(np.diff(row[valid]) >= 0) and row[valid][-1] > row[valid][0]
    last = wall_evolution_map(movie.walls)
    assert np.nanmax(last) == 5 and np.isnan(last).any()


def test_latent_trajectories_and_forward_pairs() -> None:
    from latentatlas.analysis.domains import forward_pairs, latent_trajectories

    centers = np.array([[5, 5], [5, 9], [5, 5], [5, 9], [5, 5]])
    frames = np.array([0, 0, 1, 1, 2])
    values = np.array([1.0, 10.0, 2.0, 20.0, 3.0])
    places, traj = latent_trajectories(values, centers, frames)
    np.testing.assert_array_equal(places, [[5, 5], [5, 9]])
    np.testing.assert_array_equal(traj[0], [1, 2, 3])
    assert traj[1, 1] == 20 and np.isnan(traj[1, 2])
    before, after = forward_pairs(traj)
    np.testing.assert_array_equal(before, [1, 2, 10])
    np.testing.assert_array_equal(after, [2, 3, 20])


def test_domain_plots_draw_what_they_are_given() -> None:
    from matplotlib.figure import Figure

    from latentatlas.analysis.domains import CorrelationTable
    from latentatlas.plots.domains import (
        plot_correlation_table,
        plot_latent_trajectories,
        plot_latent_transition,
        plot_wall_evolution,
        plot_walls,
        walls_figure,
    )

    dom = disc(10)
    walls = domain_walls(dom)
    fig = Figure()
    axes = fig.subplots(2, 3).ravel()
    plot_walls(axes[0], dom.astype(float), [walls, np.roll(walls, 2, 0)], labels=["a", "b"])
    assert len(axes[0].images) == 3 and axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="shape"):
        plot_walls(axes[0], dom.astype(float), walls[:10])
    table = CorrelationTable(np.array([[0.5, np.nan]]), ("d",), ("z1", "z2"), "spearman")
    plot_correlation_table(axes[1], table)
    assert [t.get_text() for t in axes[1].texts] == ["0.50", "n/a"]
    plot_latent_transition(axes[2], np.arange(5.0), np.arange(5.0) + 1, "z1", reverse=True)
    assert axes[2].get_xlabel() == "z1 (t+1)"
    with pytest.raises(ValueError, match="one value per place"):
        plot_latent_transition(axes[2], np.arange(5.0), np.arange(4.0))
    movie = switching_movie((24, 24), n_frames=3, seed=0)
    plot_wall_evolution(axes[3], wall_evolution_map(movie.walls))
    assert len(axes[3].images) == 1
    plot_latent_trajectories(axes[4], np.random.default_rng(0).normal(size=(7, 4)))
    assert len(axes[4].lines) == 7
    assert len(walls_figure(dom.astype(float), walls, "t").axes) == 1
