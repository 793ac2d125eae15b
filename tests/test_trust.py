"""Can a result be trusted? Posterior collapse, background-robust patches, the number of
classes, the baselines beside the model, sublattices from geometry and windows from the
domains (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from latentatlas.analysis.baselines import (
    Baselines,
    background_share,
    compute_baselines,
    pfm_descriptors,
    plain_descriptors,
    window_means,
)
from latentatlas.analysis.labels import bic_knee, gmm_labels, valley_ratio
from latentatlas.analysis.sublattices import cell_sites
from latentatlas.datasets.lattices import two_site_lattice
from latentatlas.descriptors.patches import extract_patches, remove_background
from latentatlas.descriptors.windows import (
    MAX_WINDOW,
    MIN_WINDOW,
    WINDOW_PER_DOMAIN,
    choose_window,
    domain_size,
    sliding_windows,
)
from latentatlas.io import load
from latentatlas.models import Latents, get_model
from latentatlas.models.latents import latent_activity
from latentatlas.pipelines.analyze import AnalysisConfig, analyze


def _blobs(n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 12) Gaussian blobs whose brightness u in [0.2, 1] is the one factor."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.2, 1.0, n)
    yy, xx = np.mgrid[0:12, 0:12] - 5.5
    blob = np.exp(-(yy**2 + xx**2) / 8.0)
    x = u[:, None, None] * blob + 0.02 * rng.normal(size=(n, 12, 12))
    return x.astype(np.float32), u


# ------------------------------------------------------------------ posterior collapse


def test_activity_numbers_are_the_stated_rule() -> None:
    rng = np.random.default_rng(0)
    mean = np.c_[rng.normal(size=500), 0.01 * rng.normal(size=500), rng.normal(0.5, 0.2, 500)]
    std = np.c_[np.full(500, 0.3), np.full(500, 0.99), np.full(500, 0.1)]
    act = latent_activity(mean, std, ["z1", "z2", "z3"], prior_std=[1.0, 1.0, 2.0])
    np.testing.assert_allclose(act.mean_variance, mean.var(0))
    np.testing.assert_allclose(act.ratio, mean.std(0) / std.mean(0))
    p = np.array([1.0, 1.0, 2.0])
    kl = (np.log(p / std) + (std**2 + mean**2) / (2 * p**2) - 0.5).mean(0)
    np.testing.assert_allclose(act.kl, kl)
    assert act.active.tolist() == [True, False, True] and not act.collapsed
    assert act.to_dict()["latents"]["z2"]["active"] is False
    # Latents.active is the same rule; a model whose content latents all sit at the prior
    # is collapsed and says so
    lat = Latents(["angle", "z1", "z2"], mean, std)
    assert lat.active().tolist() == [True, False, True]
    dead = latent_activity(mean[:, [0, 1]], std[:, [0, 1]], ["angle", "z1"])
    assert dead.collapsed and "posterior collapse" in (dead.warning() or "")


def test_a_collapsed_model_is_reported_and_a_healthy_one_is_not() -> None:
    x, u = _blobs()
    healthy = get_model("vae", (12, 12), latent_dim=2, seed=0)
    healthy.fit(x, epochs=20, batch_size=32, progress=False)
    act = healthy.encode(x).activity()
    assert not act.collapsed and act.active_content
    z = healthy.encode(x).content[:, act.active[-2:]]
    assert max(abs(stats.spearmanr(u, col).statistic) for col in z.T) > 0.9
    # the KL term, 1000 times too heavy, pins every latent to the prior
    crushed = get_model("vae", (12, 12), latent_dim=2, seed=0, beta=1000.0)
    crushed.fit(x, epochs=20, batch_size=32, progress=False)
    act = crushed.encode(x).activity()
    assert act.collapsed and act.active_content == []


# ------------------------------------------------------------------ normalisation


def _gradient_lattice(seed: int = 1):  # type: ignore[no-untyped-def]
    """Two sublattices under a background ramp and a thickness change: a B column on the
    bright side is brighter than an A column on the dark side."""
    return two_site_lattice(shape=(192, 192), gradient=1.0, thickness=0.5, seed=seed)


def test_default_normalisation_follows_sublattices_under_a_gradient() -> None:
    """The model's classes, from analyze with the default normalisation, follow the two
    sublattices under a ramp and a thickness change; with ``normalize="image"`` the same model
    and training give classes unrelated to them (ARI ~0). A plain VAE with a short training
    keeps the test fast; at the full default training (3000 steps) the rVAE's classes with
    "image" survive this ramp but not a stronger one (benchmarks/RESULTS.md, issue 13)."""
    lat = _gradient_lattice()
    assert AnalysisConfig().normalization(windows=False) == "background"
    model, baseline = {}, {}
    for mode in ("auto", "image"):
        r = analyze(lat.image, atoms=lat.positions, model="vae", steps=150, normalize=mode,
                    progress=False, seed=0)
        assert r.baselines is not None
        truth = lat.classes[r.patches.index]
        model[mode] = adjusted_rand_score(truth, r.labels.labels)
        baseline[mode] = adjusted_rand_score(truth, r.baselines.kmeans_labels)
    assert model["auto"] >= 0.9 and baseline["auto"] >= 0.9
    assert model["image"] < 0.5 and baseline["image"] < 0.5  # the gradient splits them


def _bump_lattice(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two sublattices under a Gaussian bump (40 px wide) of background (2 A peaks high) and
    of thickness (contrast x0.2 at the edges, x1.8 at the centre): no plane fits it, and a B
    column at the centre is far brighter than an A column at the edge. Image, positions,
    classes."""
    lat = two_site_lattice(shape=(192, 192), seed=seed)
    rows, cols = np.mgrid[0:192, 0:192]
    bump = np.exp(-((rows - 96.0) ** 2 + (cols - 96.0) ** 2) / (2 * 40.0**2))
    return (0.2 + 1.6 * bump) * lat.image + 2.0 * bump, lat.positions, lat.classes


def test_default_normalisation_removes_a_background_no_plane_fits() -> None:
    """As above with a curved background and thickness: the plane removed first does
    nothing here, the Gaussian background and local contrast steps of
    ``remove_background`` do the work (with the plane alone the ARI is 0.0, checked)."""
    image, positions, classes = _bump_lattice()
    ari = {}
    for mode in ("auto", "image"):
        r = analyze(image, atoms=positions, model="vae", steps=400, normalize=mode,
                    progress=False, seed=0)
        ari[mode] = adjusted_rand_score(classes[r.patches.index], r.labels.labels)
    assert ari["auto"] >= 0.9 and ari["image"] < 0.5, ari


def test_remove_background_ignores_a_ramp_and_a_contrast_change() -> None:
    lat = two_site_lattice(shape=(128, 128), noise=0.0)
    rows, cols = np.mgrid[0:128, 0:128]
    clean = remove_background(lat.image[None, None], 24)[0, 0]
    ramp = remove_background((lat.image + 3.0 * cols / 128 - 2.0)[None, None], 24)[0, 0]
    # exact up to the border: the plane removed first leaves no folded ramp at the edges
    # (without it the error reached 2.6 at the border)
    np.testing.assert_allclose(ramp, clean, atol=1e-5)
    thick = remove_background(((1.5 + rows / 128) * lat.image)[None, None], 24)[0, 0]
    err = np.abs(thick - clean)
    assert err.mean() < 0.03 * clean.std() and err[24:-24, 24:-24].max() < 0.15 * clean.std()
    assert np.percentile(clean, 1) == pytest.approx(0, abs=1e-6)
    assert np.percentile(clean, 99) == pytest.approx(1, abs=1e-6)
    with pytest.raises(ValueError, match="background_sigma"):
        extract_patches(lat.image, lat.positions, 16, normalize="background")


# ------------------------------------------------------------------ number of classes


def _arms(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Two curved, elongated clusters with a sparse tail each (like the latents of two
    sublattices whose contrast drifts with a background): points and their arm."""
    arm = rng.integers(0, 2, n)
    t = rng.beta(1.0, 3.0, n)  # dense at one end, a long sparse tail
    x = np.c_[np.where(arm == 0, -1.0, 1.0) * (1.5 - 0.8 * t), 3.0 * t - 1.0 + 0.8 * t**2]
    return x + 0.05 * rng.normal(size=(n, 2)), arm


def test_classes_are_modes_not_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 2))
    assert valley_ratio(a, a + [6.0, 0.0]) < 0.1  # two separate blobs: a deep dip
    assert valley_ratio(a[:150], a[150:] + [1.0, 0.0]) > 0.8  # one blob in two: no dip
    # a curved, continuous cloud: the BIC keeps falling to the largest size tried, and all
    # of its Gaussians are one class
    t = rng.uniform(0, 3 * np.pi, 3000)
    cloud = np.c_[t, np.sin(t)] + 0.05 * rng.normal(size=(3000, 2))
    lab = gmm_labels(cloud, max_components=8)
    assert lab.bic_minimum == 8 and lab.n_components == 1
    assert gmm_labels(cloud, max_components=8, merge_ratio=0).n_components == 8
    truth = np.repeat([0, 1, 2], [120, 80, 40])
    blobs = np.array([[0, 0], [6, 0], [0, 6]])[truth] + rng.normal(size=(240, 2))
    lab = gmm_labels(blobs, max_components=5)
    assert lab.n_components == 3 and adjusted_rand_score(truth, lab.labels) > 0.95
    np.testing.assert_allclose(lab.probabilities.sum(axis=1), 1.0)
    assert np.array_equal(lab.probabilities.argmax(axis=1), lab.labels)
    # two curved arms with sparse tails: more Gaussians than arms, two classes
    x, arm = _arms(rng)
    lab = gmm_labels(x, max_components=6)
    assert lab.bic_minimum is not None and lab.bic_minimum > 2
    assert lab.n_components == 2 and adjusted_rand_score(arm, lab.labels) == 1.0
    # three classes, each of two tight sub-modes (6 modes, as in the STEM ABF latents): the
    # BIC knee caps the count at the 3 classes
    cls, sub = rng.integers(0, 3, 600), rng.integers(0, 2, 600)
    x = (np.array([[0, 0], [20, 0], [0, 20]])[cls] + np.c_[1.5 * sub, np.zeros(600)]
         + 0.2 * rng.normal(size=(600, 2)))
    lab = gmm_labels(x, max_components=6)
    assert lab.model is not None and lab.bic_minimum == 6
    assert lab.n_components == 3 and adjusted_rand_score(cls, lab.labels) == 1.0


def test_bic_knee_is_the_count_farthest_below_the_chord() -> None:
    # the BIC of the STEM ABF image's PCA scores: the lowest BIC is the knee
    assert bic_knee({1: 3295, 2: -46, 3: -1740, 4: -1715, 5: -1679, 6: -1643}) == 3
    # its model latents (seed 1): still falling at 6; the fourth Gaussian gains 11 % of the
    # whole improvement (a ">= 10 %" elbow kept it), the knee stops at 3
    assert bic_knee({1: 3295, 2: 1866, 3: 736, 4: 411, 5: 320, 6: 274}) == 3
    # slow, then steep (the bump test's latents): nothing below the chord, the lowest BIC
    assert bic_knee({1: 1241, 2: 1166, 3: 170}) == 3
    assert bic_knee({1: 5.0}) == 1


def _split_sites(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Latents like the STEM ABF image's under the rVAE's angle head (seed 1, standardised
    z1, z2, rounded): three sites, each in two sub-modes (the two orientations the angle head
    picks for a nearly symmetric site), those of two sites as far apart as the sites are.
    Points and their site."""
    means = np.array([[-1.15, -0.2], [-1.55, 0.4], [0.75, 1.35], [0.85, 0.9], [0.7, -1.0],
                      [0.4, -1.5]])
    covs = [np.array([[0.06, 0.03], [0.03, 0.02]]), np.array([[0.08, 0.03], [0.03, 0.015]]),
            np.diag([0.01, 0.01]), np.diag([0.005, 0.02]), np.diag([0.01, 0.01]),
            np.diag([0.01, 0.01])]
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, 6, 600)
    x = np.array([rng.multivariate_normal(means[s], covs[s]) for s in sub])
    return x, sub // 2


@pytest.mark.parametrize("seed", [0, 1])
def test_sub_modes_of_a_class_are_merged_down_to_the_bic_knee(seed: int) -> None:
    """Five or six modes, three sites: the knee caps the count at 3 and the merges that lose
    the least likelihood join each site's sub-modes (the ">= 10 % gain" elbow gave 4 classes,
    ARI 0.86-0.89; merging the least separated pairs by the density dip gave 3 classes,
    ARI 0.44: both checked)."""
    x, site = _split_sites(seed)
    lab = gmm_labels(x, max_components=6)
    assert lab.bic_minimum is not None and lab.bic_minimum >= 5
    assert lab.n_components == 3 and adjusted_rand_score(site, lab.labels) == 1.0


# ------------------------------------------------------------------ baselines


def test_baseline_block_equals_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(300, 1, 8, 8)) + rng.normal(size=(300, 1, 1, 1))
    x = raw[:, 0] * 2.0
    z = np.c_[raw.mean(axis=(1, 2, 3)) + 0.01 * rng.normal(size=300), rng.normal(size=300)]
    act = latent_activity(z, np.full_like(z, 0.1), ["z1", "z2"])
    model_labels = (z[:, 0] > 0).astype(int)
    desc = plain_descriptors(raw, np.median(raw, axis=(0, 2, 3)))
    np.testing.assert_allclose(desc["mean"], raw.reshape(300, -1).mean(1))
    np.testing.assert_allclose(desc["std"], raw.reshape(300, -1).std(1))
    np.testing.assert_allclose(desc["above_median"],
                               (raw.reshape(300, -1) > np.median(raw)).mean(1))
    b = compute_baselines(x, z, ["z1", "z2"], act, model_labels, desc, seed=0)
    pca = PCA(2, random_state=0).fit(x.reshape(300, -1))
    np.testing.assert_allclose(b.pca_explained, pca.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(b.pca_scores), np.abs(pca.transform(x.reshape(300, -1))),
                               rtol=1e-5, atol=1e-8)
    for row in ("mean", "std", "PC1"):
        vals = desc[row] if row in desc else b.pca_scores[:, 0]
        for j, name in enumerate(["z1", "z2"]):
            assert b.rho(row, name) == pytest.approx(stats.spearmanr(vals, z[:, j]).statistic)
    km = KMeans(2, n_init=4, random_state=0).fit(b.pca_scores).predict(b.pca_scores)
    assert b.ari_kmeans == pytest.approx(adjusted_rand_score(model_labels, km))
    assert b.explained["z1"][0] == "mean" and abs(b.explained["z1"][1]) > 0.99
    d = b.to_dict()
    assert d["correlations_spearman"]["mean"]["z1"] == pytest.approx(b.rho("mean", "z1"), abs=1e-4)
    design = np.column_stack([np.ones(300)] + [stats.rankdata(v) for v in
                                               [*desc.values(), *b.pca_scores.T]])
    y = stats.rankdata(z[:, 1])
    resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    assert b.joint_r2["z2"] == pytest.approx(1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum())
    assert "z1 follows mean" in b.verdict and "z2 is not explained" in b.verdict


def test_verdict_says_collapse() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4, 4))
    z = 0.001 * rng.normal(size=(100, 2))
    act = latent_activity(z, np.ones_like(z), ["z1", "z2"])
    b = compute_baselines(x, z, ["z1", "z2"], act, np.zeros(100, int), seed=0)
    assert b.verdict.startswith("COLLAPSED") and b.to_dict()["activity"]["collapsed"]


def test_verdict_does_not_call_background_classes_a_finding() -> None:
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 1, 200)
    x = rng.normal(size=(200, 4, 4)) + ramp[:, None, None]
    z = np.c_[ramp + 0.01 * rng.normal(size=200), rng.normal(size=200)]
    act = latent_activity(z, np.full_like(z, 0.05), ["z1", "z2"])
    halves = (ramp > 0.5).astype(int)
    b = compute_baselines(x, z, ["z1", "z2"], act, halves, {"background": ramp}, n_pca=1,
                          seed=0)
    assert b.background_share_model == pytest.approx(background_share(halves, ramp))
    assert "slow background" in b.verdict and "classes" not in b.verdict.split(".")[0]


def _physics_case(latent_noise: float, plain_noise: float) -> tuple[Baselines, np.ndarray,
                                                                    dict[str, np.ndarray]]:
    """Windows whose switched fraction ``sf`` shows in a latent and in the window mean, each
    with its own noise; the second latent and the classes are unrelated to it."""
    rng = np.random.default_rng(3)
    sf = rng.uniform(0, 1, 300)
    raw = (sf + plain_noise * rng.normal(size=300))[:, None, None, None] + 0.1 * rng.normal(
        size=(300, 1, 6, 6))
    z = np.c_[sf + latent_noise * rng.normal(size=300), rng.normal(size=300)]
    act = latent_activity(z, np.full_like(z, 0.05), ["z1", "z2"])
    desc = {**plain_descriptors(raw, np.median(raw)), "switched_fraction": sf}
    labels = (z[:, 1] > 0).astype(int)
    return compute_baselines(raw[:, 0], z, ["z1", "z2"], act, labels, desc, seed=0), z, desc


def test_verdict_says_when_the_baselines_follow_the_physics_as_well() -> None:
    # the window mean follows the switched fraction better than any latent: nothing new,
    # even though z2 is explained by nothing (it is noise)
    b, z, desc = _physics_case(latent_noise=0.5, plain_noise=0.05)
    m = b.physics["switched_fraction"]
    sf = desc["switched_fraction"]
    assert m.latent == "z1" and m.latent_rho == pytest.approx(stats.spearmanr(sf, z[:, 0])[0])
    direct = {k: stats.spearmanr(sf, v)[0] for k, v in
              [*((k, v) for k, v in desc.items() if k != "switched_fraction"),
               *((f"PC{i + 1}", b.pca_scores[:, i]) for i in range(b.pca_scores.shape[1]))]}
    best = max(direct, key=lambda k: abs(direct[k]))
    assert m.baseline == best and m.baseline_rho == pytest.approx(direct[best])
    assert abs(m.baseline_rho) > abs(m.latent_rho) + 0.1 and not m.model_adds
    assert m.classes_model == pytest.approx(background_share((z[:, 1] > 0).astype(int), sf))
    assert b.verdict.startswith("The baselines explain as much")
    assert "Beyond" not in b.verdict and "z2 is not explained" in b.verdict
    assert b.to_dict()["physics"]["switched_fraction"]["model_adds"] is False
    # a latent that follows it clearly better than every baseline is a finding
    b, _, _ = _physics_case(latent_noise=0.01, plain_noise=0.5)
    assert b.physics["switched_fraction"].model_adds
    assert b.verdict.startswith("Beyond the baselines on switched_fraction")


def test_background_share_and_window_means() -> None:
    labels = np.repeat([0, 1], 50)
    assert background_share(labels, labels * 3.0) == pytest.approx(1.0)
    assert background_share(labels, np.tile([0.0, 1.0], 50)) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    img = rng.random((2, 20, 30))
    means = window_means(img, [0, 5, 12], [3, 10, 22], 8, frames=[0, 1, 1])
    direct = [img[0, 0:8, 3:11].mean(), img[1, 5:13, 10:18].mean(), img[1, 12:20, 22:30].mean()]
    np.testing.assert_allclose(means, direct)


def test_pfm_descriptors_match_the_domains_inside_each_window() -> None:
    phase = np.full((64, 64), -40.0)
    phase[:, 40:] = 140.0  # a switched stripe (the minority) on the right
    win = sliding_windows(phase, 16, 8, normalize="none")
    d = pfm_descriptors(phase, win)
    left = win.centers[:, 1] < 24  # windows wholly left of the wall
    right = win.centers[:, 1] > 48
    assert np.all(d["switched_fraction"][left] == 0) and np.all(d["switched_fraction"][right] == 1)
    assert np.all(d["wall_density"][left] == 0) and np.all(d["wall_density"][right] == 0)
    across = np.abs(win.centers[:, 1] - 40) < 6
    assert np.all(d["wall_density"][across] > 0)


# ------------------------------------------------------------------ sublattices


def test_cell_sites_recover_the_sublattices_from_geometry() -> None:
    for seed in (0, 1):
        lat = two_site_lattice(gradient=1.0, thickness=0.5, angle=None, seed=seed)
        sites = cell_sites(lat.positions, lat.positions[lat.classes == 0], 2)
        assert adjusted_rand_score(lat.classes, sites) == 1.0


# ------------------------------------------------------------------ window from the data


def _stripes(width: int, shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A PFM phase image: vertical domains ``width`` px wide, alternating -40 / 140 degrees."""
    cols = np.arange(shape[1])
    phase = np.where((cols // width) % 2 == 0, -40.0, 140.0)[None, :].repeat(shape[0], 0)
    return phase + 5.0 * np.random.default_rng(seed).normal(size=shape)


def test_window_follows_the_domain_width() -> None:
    for width in (20, 30, 44):
        walls = (256 - 1) // width  # full-height walls inside the image
        size = domain_size(_stripes(width))
        assert size == pytest.approx(256 / walls, rel=0.05)  # image area / wall length
        choice = choose_window((256, 256), _stripes(width))
        assert abs(choice.window - WINDOW_PER_DOMAIN * size) <= 1
        assert choice.stride == choice.window // 4 and "domain width" in choice.why
    assert choose_window((256, 256), _stripes(4)).window == MIN_WINDOW  # clamped below
    single = np.full((256, 256), -40.0)
    assert choose_window((256, 256), single).window == MAX_WINDOW  # one domain: no wall
    assert choose_window((96, 96), single).window == 24  # a quarter of the image at most
    assert choose_window((256, 256)).window == 32  # no phase: the fixed default


def test_analyze_sizes_its_windows_from_the_phase() -> None:
    data = load(_stripes(20))
    data.quantity = "PhaseRetrace"
    r = analyze(data, atoms="none", model="vae", epochs=1, progress=False, seed=0)
    assert r.patches.extra["domain_size_px"] == pytest.approx(256 / 12, rel=0.05)
    assert abs(r.patches.window - WINDOW_PER_DOMAIN * 256 / 12) <= 1
    assert r.patches.extra["stride"] == r.patches.window // 4
    given = analyze(data, atoms="none", model="vae", epochs=1, window=20, progress=False)
    assert given.patches.window == 20 and given.patches.extra["window_rule"] == "given"
