"""Latent maps, GMM labels, figures/report, and the analyze pipeline end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from latentatlas.analysis.labels import gmm_labels, label_image
from latentatlas.analysis.latent_maps import latent_maps, paint_points, typical_spacing
from latentatlas.datasets.lattices import two_site_lattice
from latentatlas.descriptors.windows import sliding_windows
from latentatlas.models import load_model
from latentatlas.models.latents import is_content_latent
from latentatlas.pipelines.analyze import analyze, save_results
from latentatlas.report import write_report


def _fake_latents(values: np.ndarray, names: list[str]) -> SimpleNamespace:
    return SimpleNamespace(names=names, mean=values, std=np.zeros_like(values))


def test_dense_latent_maps_follow_the_window_grid() -> None:
    stack = np.random.default_rng(0).random((2, 30, 40)).astype(np.float32)
    p = sliding_windows(stack, window=10, stride=5)
    # a latent equal to the window's centre row must paint back as rows of the grid
    lat = _fake_latents(np.stack([p.centers[:, 0], p.centers[:, 1]], axis=1), ["z1", "z2"])
    maps = latent_maps(lat, p)
    g = maps.grid("z1")
    assert g.shape == (2, *p.grid_shape)
    np.testing.assert_allclose(g[1, :, 0], 4.5 + 5 * np.arange(p.grid_shape[0]))
    np.testing.assert_allclose(maps.grid("z2")[0, 0], 4.5 + 5 * np.arange(p.grid_shape[1]))
    with pytest.raises(KeyError, match="available"):
        maps["angle"]
    with pytest.raises(ValueError, match="one row per patch"):
        latent_maps(_fake_latents(np.zeros((3, 2)), ["z1", "z2"]), p)


def test_paint_points_nearest_disc() -> None:
    centers = np.array([[10.0, 10.0], [10.0, 30.0]])
    img = paint_points([1.0, 2.0], centers, (20, 40), radius=4)
    assert img[10, 10] == 1 and img[10, 30] == 2 and img[10, 13] == 1 and img[10, 27] == 2
    assert np.isnan(img[10, 20]) and np.isnan(img[0, 0])
    assert typical_spacing(centers) == pytest.approx(20.0)
    # default radius: half the spacing -> discs of radius 10 touching in the middle
    full = paint_points([1.0, 2.0], centers, (20, 40))
    assert full[10, 19] == 1 and full[10, 21] == 2


def test_gmm_labels_chooses_components_by_bic() -> None:
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], [120, 80, 40])
    means = np.array([[0, 0], [6, 0], [0, 6]])
    x = means[truth] + rng.normal(size=(240, 2))
    lab = gmm_labels(x, max_components=5)
    assert lab.n_components == 3 and set(lab.bic) == {1, 2, 3, 4, 5}
    assert min(lab.bic, key=lab.bic.get) == 3
    assert adjusted_rand_score(truth, lab.labels) > 0.95
    # labels ordered by population: the largest cluster is 0
    assert np.bincount(lab.labels).tolist() == sorted(np.bincount(lab.labels), reverse=True)
    np.testing.assert_allclose(lab.probabilities.sum(axis=1), 1, atol=1e-6)
    forced = gmm_labels(x, n_components=2)
    assert forced.n_components == 2 and forced.bic == {}
    with pytest.raises(ValueError, match="n_components must be in"):
        gmm_labels(x, n_components=0)
    with pytest.raises(ValueError, match="NaN"):
        gmm_labels(np.full((5, 2), np.nan))


def test_report_is_self_contained(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from latentatlas.plots.maps import plot_manifold, save_figure

    fig = Figure()
    plot_manifold(fig.subplots(), np.random.default_rng(0).random((3, 4, 5, 5)))
    png = save_figure(fig, tmp_path / "m.png")
    html = write_report(tmp_path / "r.html", "t <x>", [("cap", png)],
                        {"Parameters": {"a": 1, "nested": {"b": [1, 2]}}})
    text = html.read_text()
    assert "data:image/png;base64," in text and "t &lt;x&gt;" in text
    assert "nested.b" in text and "[1, 2]" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "r.html"]  # no temp files


def _labels_at_truth(result: object, positions: np.ndarray, classes: np.ndarray) -> float:
    """ARI of the labelled image, read at the true atom positions it covers."""
    img = result.label_image  # type: ignore[attr-defined]
    rc = np.rint(positions).astype(int)
    h, w = img.shape
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
    vals = img[rc[inside, 0], rc[inside, 1]]
    ok = np.isfinite(vals)
    assert ok.sum() >= 0.5 * len(positions)  # most atoms are labelled
    return float(adjusted_rand_score(classes[inside][ok], vals[ok].astype(int)))


def test_end_to_end_two_kinds_of_sites(tmp_path: Path) -> None:
    lat = two_site_lattice(shape=(128, 128))
    out = tmp_path / "run"
    res = analyze(lat.image, atoms=lat.positions, model="rvae", out=out, epochs=5,
                  progress=False)
    assert res.labels.n_components == 2  # chosen by BIC
    assert _labels_at_truth(res, lat.positions, lat.classes) >= 0.9
    # the run folder is complete and nothing temporary is left beside it
    names = {p.name for p in out.iterdir()}
    assert {"results.h5", "config.json", "index.html", "explorer.html", "labels.png", "latent_maps.png",
            "manifold.png", "model"} <= names
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # before the NPZ below
    with h5py.File(out / "results.h5") as f:
        np.testing.assert_allclose(f["centers"][()], res.patches.centers)
        np.testing.assert_array_equal(f["labels"][()], res.labels.labels)
        assert f["latents_mean"].shape == (len(res.patches), 5)
        assert json.loads(f.attrs["latent_names"]) == ["angle", "shift_x", "shift_y", "z1", "z2"]
        assert json.loads(f.attrs["config"])["analysis"]["model"] == "rvae"
    config = json.loads((out / "config.json").read_text())
    assert config["patches"]["border"] == "drop"
    # the trust block: latent activity, baselines and the verdict, in every output
    assert res.baselines is not None and res.activity is not None
    assert config["verdict"] == res.baselines.verdict and config["baselines"]["pca_kmeans"]
    assert set(config["activity"]["latents"]) == set(res.maps.names)
    assert config["training"]["epochs"] == 5
    with h5py.File(out / "results.h5") as f:
        assert json.loads(f.attrs["config"])["baselines"]["verdict"] == res.baselines.verdict
    html = (out / "index.html").read_text()
    assert "Verdict" in html and "Baselines" in html and "Latent activity" in html
    npz = save_results(tmp_path / "r.npz", res)  # the NPZ flavour holds the same arrays
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["labels"], res.labels.labels)
        assert json.loads(str(z["config"]))["latent_names"][0] == "angle"
    # labels painted back: one disc per labelled atom, in frame coordinates
    img = label_image(res.labels.labels, res.patches.centers, res.patches.image_shape)
    np.testing.assert_array_equal(np.isfinite(img), np.isfinite(res.label_image))


def test_end_to_end_with_atom_finder() -> None:
    lat = two_site_lattice(shape=(128, 128))
    res = analyze(lat.image, atoms="peaks", epochs=5, progress=False, n_components=2)
    assert _labels_at_truth(res, lat.positions, lat.classes) >= 0.9


def test_pipeline_input_errors(tmp_path: Path) -> None:
    cube = np.random.default_rng(0).random((8, 8, 16))
    from latentatlas.io import Axis, Dataset

    ds = Dataset(cube, [Axis("y"), Axis("x"), Axis("E", units="eV", kind="spectral")])
    with pytest.raises(ValueError, match="unmix"):
        analyze(ds, atoms="none", progress=False)
    with pytest.raises(ValueError, match="atoms must be one of"):
        analyze(np.zeros((32, 32)), atoms="magic", progress=False)
    with pytest.raises(ValueError, match="train_samples must be"):
        analyze(np.zeros((32, 32)), atoms="none", train_samples=2, progress=False)
    with pytest.raises(ValueError, match="unknown example"):
        analyze("example:nope", progress=False)
    with pytest.raises(ValueError, match="model_options cannot set"):
        analyze(np.zeros((32, 32)), atoms="none", model_options={"latent_dim": 3},
                progress=False)


def test_cli_analyze_example(tmp_path: Path) -> None:
    from markupsafe import escape
    from typer.testing import CliRunner

    import latentatlas.cli  # noqa: F401  (registers every command)
    from latentatlas.cli.app import app

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["analyze", "example:lattice-small", "--atoms", "none",
                              "--window", "24", "--epochs", "1", "--classes", "2",
                              "-M", "equivariant_angle=false", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    # the model option reached the model: the rVAE's plain encoder, saved with the run
    assert json.loads((out / "config.json").read_text())["analysis"]["model_options"] == {
        "equivariant_angle": False}
    assert not load_model(out / "model").config.equivariant_angle
    assert "2 classes" in res.output and (out / "index.html").exists()
    # the verdict beside the baselines, printed and in the report, word for word
    verdict = json.loads((out / "config.json").read_text())["verdict"]
    assert len(verdict) > 20 and f"verdict: {verdict}" in res.output
    shown = (out / "index.html").read_text().split('<div class="verdict">')[1].split("</div>")[0]
    assert str(escape(verdict)) in shown
    with h5py.File(out / "results.h5") as f:
        assert tuple(f.attrs["grid_shape"]) == (18, 18)
    bad = runner.invoke(app, ["analyze", str(tmp_path / "missing.npy"), "--quiet"])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_time_delay_and_multilayer_descriptors(tmp_path: Path) -> None:
    """Frames t, t+1 become the channels of one patch (time order); files are frames; several
    channels of one file become patch channels."""
    rng = np.random.default_rng(0)
    stack = rng.random((3, 48, 48)).astype(np.float32)
    res = analyze(stack, atoms="none", window=16, stride=8, time_delay=2, epochs=1,
                  normalize="none", progress=False, n_components=2)
    assert res.patches.data.shape[1] == 2  # two time channels
    assert set(res.patches.frames) == {0, 1}  # t = 0, 1 have a t + 1
    first = res.patches.data[(res.patches.frames == 1)][-1]
    origins = [(r, c) for r in range(33) for c in range(33)
               if np.array_equal(first[0], stack[1, r : r + 16, c : c + 16])]
    assert len(origins) == 1  # channel 0 is frame t = 1 ...
    r, c = origins[0]
    np.testing.assert_array_equal(first[1], stack[2, r : r + 16, c : c + 16])  # ... channel 1 is t + 1
    files = []
    for k in range(2):
        np.save(tmp_path / f"scan{k}.npy", stack[k])
        files.append(str(tmp_path / f"scan{k}.npy"))
    res = analyze(files, atoms="none", window=16, stride=16, epochs=1, progress=False,
                  n_components=2)
    assert set(res.patches.frames) == {0, 1}
    with pytest.raises(ValueError, match="time_delay and lag"):
        analyze(stack, atoms="none", time_delay=0, progress=False)


def test_baseline_block_in_results_and_report_equals_a_direct_computation(tmp_path: Path) -> None:
    """The baselines written by analyze (config.json, results.h5, index.html) are the numbers
    one gets by hand from the run's own arrays: window means by numpy slicing of the raw image,
    PCA and k-means with sklearn on the patches the model saw, Spearman rho with the latents."""
    from scipy import stats
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64]
    img = np.sin(xx / 3.0) * (1 + (yy > 32)) + 0.3 * rng.normal(size=(64, 64)) + xx / 40.0
    out = tmp_path / "run"
    res = analyze(img, atoms="none", window=16, stride=8, model="vae", epochs=3, out=out,
                  n_components=2, progress=False, seed=0)
    config = json.loads((out / "config.json").read_text())
    block = config["baselines"]
    with h5py.File(out / "results.h5") as f:
        z = f["latents_mean"][()]
        labels = f["labels"][()]
        names = json.loads(f.attrs["latent_names"])
        assert json.loads(f.attrs["config"])["baselines"] == block
    # window means of the raw image, in the grid's row-major order
    grid = np.lib.stride_tricks.sliding_window_view(img, (16, 16))[::8, ::8]
    means = grid.mean(axis=(2, 3)).ravel()
    assert len(means) == len(z)
    for j, name in enumerate(names):
        direct = stats.spearmanr(means, z[:, j]).statistic
        assert block["correlations_spearman"]["mean"][name] == pytest.approx(direct, abs=1e-4)
    x = res.patches.as_model_input().reshape(len(z), -1).astype(np.float64)
    n_pcs = len(block["pca_explained_variance"])
    assert n_pcs == max(2, sum(is_content_latent(n) for n in names))
    pca = PCA(n_pcs, random_state=0).fit(x)
    np.testing.assert_allclose(block["pca_explained_variance"], pca.explained_variance_ratio_,
                               rtol=1e-4)
    k = len(np.unique(labels))
    km = KMeans(k, n_init=4, random_state=0).fit(pca.transform(x)).predict(pca.transform(x))
    ari = adjusted_rand_score(labels, km)
    assert k == 2 and 0 < ari < 1  # a number worth comparing, not a tie at 0 or 1
    assert block["pca_kmeans"] == {"n_classes": k, "ari_vs_model": pytest.approx(ari, abs=1e-4)}
    # the report shows the same numbers
    html = (out / "index.html").read_text()
    shown = html.split("PCA k-means: classes, ARI vs model</th><td>")[1].split("</td>")[0]
    assert shown == f"[{k}, {round(ari, 4)}]"
    best = block["explained_by"][names[-1]]
    assert f"{best['by']} (rho {best['rho']})" in html
