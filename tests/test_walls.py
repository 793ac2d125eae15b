"""Wall finders (canny, gaussian, dcnn), time-delay / multilayer descriptors, the walls CLI,
the moving-wall latent and the real PFM files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from conftest import shared_data
from latentatlas.analysis.domains import (
    analyze_walls,
    patch_descriptors,
    wall_agreement,
    wall_f1,
)
from latentatlas.datasets.domains import (
    domain_pattern,
    domain_walls,
    make_domain_images,
    render_pfm,
    switching_movie,
)
from latentatlas.descriptors.timedelay import (
    multilayer_patches,
    time_delay_patches,
    time_delay_stack,
    wall_family_layers,
)
from latentatlas.descriptors.walls import (
    DEFAULT_WEIGHTS,
    METHODS,
    find_walls,
    segment_domains,
    to_polarization,
    wall_patches,
)


@pytest.fixture(scope="module")
def generated() -> object:
    # a seed not used to train the shipped DCNN (training draws from seed 0's stream)
    return make_domain_images(16, (64, 64), seed=2024)


# --- detectors on generated domains -----------------------------------------------------------


@pytest.mark.parametrize(("method", "target"), [("canny", 0.9), ("gaussian", 0.9), ("dcnn", 0.9)])
def test_detectors_meet_their_f1_target_on_generated_domains(
    generated: object, method: str, target: float
) -> None:
    pred = np.stack([find_walls(p, method, phase=True).mask for p in generated.phase])
    score = wall_f1(pred, generated.walls, tolerance=2.0)
    assert score.f1 >= target, score


def test_shipped_wall_finder_has_weights_and_a_training_record() -> None:
    assert DEFAULT_WEIGHTS.exists()
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())["metadata"]
    assert "train_wall_finder.py" in meta["command"]
    assert DEFAULT_WEIGHTS.stat().st_size < 5_000_000


def test_detector_fails_when_there_is_no_wall_to_find() -> None:
    """Sanity of the score itself: a detector output shifted far away scores low."""
    dom = domain_pattern((64, 64), "disc", seed=0, scale=10)
    phase, _ = render_pfm(dom, seed=0, phase_noise=5)
    found = find_walls(phase, "gaussian", phase=True).mask
    assert wall_f1(found, domain_walls(dom)).f1 > 0.95
    assert wall_f1(np.roll(found, 8, axis=1), domain_walls(dom)).f1 < 0.5


def test_phase_projection_removes_the_instrument_wrap() -> None:
    dom = domain_pattern((48, 48), "stripes", seed=5)
    # states at 250 and 70 degrees: the 250-degree state wraps to -110 on a [-90, 270) scale
    phase, _ = render_pfm(dom, seed=1, phase_noise=3.0, phase_offset=250.0 - 180.0)
    pol = to_polarization(phase)
    minority_is_dom = dom.mean() < 0.5
    high = pol > 0
    agree = (high == dom).mean() if minority_is_dom else (high == ~dom).mean()
    assert agree > 0.95
    assert wall_f1(find_walls(phase, "canny", phase=True).mask, domain_walls(dom)).f1 > 0.9


def test_gaussian_method_returns_domains_and_explicit_thresholds_are_used() -> None:
    data = make_domain_images(1, (48, 48), kinds=("random",), seed=3)
    auto = find_walls(data.phase[0], "gaussian", phase=True)
    assert auto.domains is not None and auto.domains.shape == (48, 48)
    np.testing.assert_array_equal(auto.mask, domain_walls(auto.domains))
    fixed = find_walls(data.phase[0], "gaussian", phase=True, threshold=0.9)
    assert fixed.params["threshold"] == 0.9
    assert fixed.domains is not None and fixed.domains.mean() < auto.domains.mean()
    canny = find_walls(data.phase[0], "canny", phase=True, low_threshold=0.1, high_threshold=0.3)
    assert (canny.params["low_threshold"], canny.params["high_threshold"]) == (0.1, 0.3)
    assert canny.domains is None


@pytest.mark.parametrize("method", METHODS)
def test_stack_is_processed_frame_by_frame(method: str) -> None:
    movie = switching_movie((40, 40), n_frames=3, seed=1)
    phase, _ = render_pfm(movie.domains, seed=0, phase_offset=0.0)
    stack = find_walls(phase, method)
    assert stack.mask.shape == (3, 40, 40) and stack.coords.shape[1] == 3
    np.testing.assert_array_equal(stack.coords, np.argwhere(stack.mask))
    for i in range(3):
        single = find_walls(phase[i], method)
        np.testing.assert_array_equal(stack.frame(i).mask, single.mask)
        np.testing.assert_array_equal(stack.frame(i).coords, single.coords)


@pytest.mark.parametrize("method", METHODS)
def test_a_single_domain_has_no_walls(method: str) -> None:
    flat = np.full((32, 32), 42.0)
    walls = find_walls(flat, method)
    assert not walls.mask.any() and walls.coords.shape == (0, 2)


def test_find_walls_rejects_bad_input() -> None:
    img = np.zeros((32, 32))
    with pytest.raises(ValueError, match="method must be one of"):
        find_walls(img, "sobel")
    bad = img.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_walls(bad)
    with pytest.raises(ValueError, match="dimensions"):
        find_walls(np.zeros(10))
    with pytest.raises(ValueError, match="at least 8x8"):
        find_walls(np.zeros((4, 30)))
    with pytest.raises(FileNotFoundError, match="train_wall_finder"):
        find_walls(img, "dcnn", weights="/nonexistent/wall_finder")


@pytest.mark.parametrize("sigma", [1e9, float("nan"), float("inf"), -1.0, 33.0, "wide"])
@pytest.mark.parametrize("method", ["gaussian", "canny"])
def test_sigma_is_bounded_before_any_kernel_is_built(method: str, sigma: object) -> None:
    """sigma=1e9 once built a 60 GiB Gaussian kernel; beyond the image's side it is refused."""
    img = np.zeros((32, 32))
    with pytest.raises(ValueError, match=r"sigma must be .*larger side \(32 pixels\)"):
        find_walls(img, method, sigma=sigma)
    assert find_walls(img + np.eye(32), method, sigma=32.0).mask.shape == (32, 32)


def test_segment_domains_bounds_sigma() -> None:
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        segment_domains(np.zeros((16, 16)), sigma=1e9)


# --- patches, time delay, multilayer ----------------------------------------------------------


def test_wall_patches_are_centred_on_walls_and_descriptors_match() -> None:
    dom = domain_pattern((64, 64), "disc", seed=0, scale=12)
    phase, _ = render_pfm(dom, seed=0, phase_noise=5)
    walls = find_walls(phase, "gaussian", phase=True)
    p = wall_patches(to_polarization(phase), walls, 16, max_patches=30)
    assert len(p) == 30 and p.data.shape == (30, 1, 16, 16)
    centres = np.rint(p.centers).astype(int)
    assert walls.mask[centres[:, 0], centres[:, 1]].all()
    desc = patch_descriptors(walls.domains, p.centers, 16)
    # every patch on a disc wall holds one wall and part of the disc
    assert np.all(desc["wall_count"] == 1)
    assert np.all((desc["switching_degree"] > 0) & (desc["switching_degree"] < 1))


def test_time_delay_channel_order_is_time_order() -> None:
    t, h, w = 6, 20, 20
    stack = np.broadcast_to(np.arange(t, dtype=float)[:, None, None], (t, h, w))
    td = time_delay_stack(stack, delay=3, lag=2)
    assert td.shape == (2, 3, h, w)
    np.testing.assert_array_equal(td[:, :, 0, 0], [[0, 2, 4], [1, 3, 5]])
    two = np.stack([stack, -stack], axis=1)  # (t, 2, h, w): channels grouped by time
    np.testing.assert_array_equal(time_delay_stack(two, 2)[0, :, 0, 0], [0, -0, 1, -1])
    p = time_delay_patches(stack, np.array([[10, 10]]), 8, delay=2, normalize="none")
    assert np.all(np.diff(p.data[:, :, 4, 4], axis=1) == 1)  # later channel = later frame
    np.testing.assert_array_equal(p.frames, np.arange(5))
    with pytest.raises(ValueError, match="needs 9 frames"):
        time_delay_stack(stack, delay=5, lag=2)


def test_multilayer_patches_keep_the_channel_order_given() -> None:
    dom = domain_pattern((48, 48), "stripes", seed=2)
    phase, amp = render_pfm(dom, seed=0)
    p = multilayer_patches({"amplitude": amp, "phase": phase}, np.array([[24, 24]]), 12)
    assert p.data.shape == (1, 2, 12, 12)
    assert p.extra["channels"] == "amplitude,phase"
    a01 = (amp - amp.min()) / (amp.max() - amp.min())
    np.testing.assert_allclose(p.data[0, 0], a01[18:30, 18:30], atol=1e-6)
    fam = wall_family_layers(domain_walls(dom), domain_walls(dom), blur=0)
    assert fam["other"].sum() == 0 and fam["family"].sum() == domain_walls(dom).sum()


def test_moving_wall_gives_a_latent_that_moves_monotonically_with_the_wall() -> None:
    import torch

    from latentatlas import models

    torch.manual_seed(0)
    movie = switching_movie((24, 72), n_frames=24, seed=0, initial="planar", disorder=0.0,
                            pulse=0.35)
    wall_col = movie.domains.sum(axis=2)[:, 12].astype(float)  # (t,), flat wall
    assert np.all(np.diff(wall_col) >= 0)
    cols = np.arange(10, 62, 2)
    centres = np.column_stack([np.full(len(cols), 12), cols])
    p = time_delay_patches(movie.domains.astype(float), centres, 12, delay=2)
    offset = wall_col[p.frames] - p.centers[:, 1]
    near = np.abs(offset) < 6  # the wall is inside the window
    x = p.data[near]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny network: extra threads only contend
    try:
        model = models.get_model("vae", input_shape=x.shape[1:], latent_dim=1, seed=0)
        model.fit(x, epochs=20, batch_size=32, seed=0, progress=False)
        z = model.encode(x).mean[:, 0]
    finally:
        torch.set_num_threads(threads)
    assert abs(stats.spearmanr(z, offset[near]).statistic) > 0.95
    # at one place, the latent moves one way only as the wall sweeps through
    frames, centres_near = p.frames[near], p.centers[near, 1]
    sign = np.sign(stats.spearmanr(z, offset[near]).statistic)
    for c in np.unique(centres_near):
        traj = z[centres_near == c][np.argsort(frames[centres_near == c])]
        if len(traj) >= 3:
            assert np.all(sign * np.diff(traj) >= -0.05 * np.ptp(z))


# --- CLI --------------------------------------------------------------------------------------


def test_walls_cli_writes_mask_overlay_and_table(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    import latentatlas.cli  # noqa: F401  (registers every command)
    from latentatlas.cli.app import app

    movie = switching_movie((40, 40), n_frames=2, seed=0)
    phase, _ = render_pfm(movie.domains, seed=0)
    src = tmp_path / "movie.npy"
    np.save(src, phase)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["walls", str(src), "--method", "canny", "--phase", "yes",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    mask = np.load(out / "walls.npy")
    assert mask.shape == (2, 40, 40) and mask.dtype == bool
    assert wall_f1(mask, movie.walls).f1 > 0.8
    assert (out / "walls_000.png").stat().st_size > 0 and (out / "walls_001.png").exists()
    lines = (out / "walls.csv").read_text().splitlines()
    assert lines[0].startswith("frame,source,wall_pixels,wall_count") and len(lines) == 3
    # counts are written as integers, and every frame names its source file
    assert lines[1].split(",")[0] == "0" and lines[1].split(",")[2].isdigit()
    assert "movie.npy" in lines[2]
    assert (out / "index.html").exists() and (out / "explorer.html").exists()
    bad = CliRunner().invoke(app, ["walls", str(src), "--method", "sobel", "--out", str(out)])
    assert bad.exit_code == 2 and "canny, gaussian, dcnn" in bad.output


# --- real PFM data ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PTO_Funakubo0001.h5", "PZT_final0001.h5"])
def test_real_pfm_runs_through_every_detector_and_methods_agree(name: str) -> None:
    from latentatlas.io import load

    path = shared_data("pfm_dtmicroscope", name)
    phase = load(path, channel="PhaseRetrace").data
    masks = {}
    for method in METHODS:
        walls, table = analyze_walls(phase, method, phase=True)
        assert walls.mask.shape == phase.shape and walls.mask.any()
        assert 0.0 < table[0]["switching_degree"] < 0.5  # the minority state is switched
        masks[method] = walls.mask
    # the three methods see the same walls (agreement reported in benchmarks/RESULTS.md)
    assert wall_agreement(masks["canny"], masks["gaussian"]) > 0.5
    assert wall_agreement(masks["dcnn"], masks["gaussian"]) > 0.5


def test_walls_cli_stacks_real_pfm_files_and_picks_the_phase_channel(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    import latentatlas.cli  # noqa: F401
    from latentatlas.cli.app import app

    files = [str(shared_data("pfm_dtmicroscope", f"PZT_final000{i}.h5")) for i in (1, 2)]
    out = tmp_path / "pzt"
    res = CliRunner().invoke(app, ["walls", *files, "--method", "gaussian", "--out", str(out)])
    assert res.exit_code == 0, res.output
    mask = np.load(out / "walls.npy")
    assert mask.shape == (2, 256, 256) and mask[0].any() and mask[1].any()
    summary = json.loads((out / "walls.json").read_text())
    assert summary["method"] == "gaussian" and summary["params"]["phase"] is True
    assert len(summary["frames"]) == 2
    first, last = summary["frames"]
    assert 0 < first["convexity"] <= 1 and 0 < first["switch_significance"] < 0.5
    assert first["switch_significance"] == first["changed_fraction"]  # no noise floor given
    assert np.isnan(last["changed_fraction"])  # no later frame
    assert "convexity,changed_fraction,switch_significance" in (out / "walls.csv").read_text()
