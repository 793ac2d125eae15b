"""Defect classes from folders of crops (issue 14): loading, centring, patches, the classify
pipeline and command, the learned-prior joint VAE, the semi-supervised VAE's explicit
validation, and the channel-last shape rule."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import shared_data
from latentatlas.analysis.classes import class_scores, neighbour_graph, spread_labels
from latentatlas.datasets.crops import LabelledCrops, load_labelled_crops, write_labelled_crops
from latentatlas.datasets.graphene import make_dopant_crops
from latentatlas.descriptors.defects import defect_centre, defect_patches
from latentatlas.models import get_model
from latentatlas.models.config import normalise_shape
from latentatlas.pipelines.classify import (
    MAX_HIDDEN_PER_CLASS,
    SPREAD_GRID,
    ClassifyResult,
    classify,
    spread_prediction,
)

FAST = dict(epochs=12, views=4, cnn_epochs=20, restarts=1)


def _app():  # type: ignore[no-untyped-def]
    from latentatlas.cli import app

    return app


@pytest.fixture(scope="module")
def crops() -> LabelledCrops:
    # imbalanced like the real library; crops larger than the patch (no mirrored border)
    return make_dopant_crops({"Si1C3": 18, "Si2C4": 8, "Si3C6": 10}, size=96, offset=0.1,
                             counts_per_si=60, rng=3)


# -- data -------------------------------------------------------------------------------------
def test_generated_crops_hold_their_planted_complexes(crops: LabelledCrops) -> None:
    expected = {"Si1C3": (1, 3), "Si2C4": (2, 4), "Si3C6": (3, 6)}
    for k, name in enumerate(crops.class_names):
        for i in np.flatnonzero(crops.labels == k):
            elements = crops.defect_elements[i]
            assert elements is not None
            assert (elements.count("Si"), elements.count("C")) == expected[name]
    assert np.all((crops.pixel_sizes >= 9) & (crops.pixel_sizes <= 16))


def test_folder_layouts_and_their_errors(crops: LabelledCrops, tmp_path: Path) -> None:
    small = crops.subset(np.arange(0, len(crops), 6))
    write_labelled_crops(tmp_path / "lib", small)
    back = load_labelled_crops(tmp_path / "lib")
    assert back.counts() == small.counts()
    # calibration from 'scan size', coordinates from defect_coord_0, in crop order
    order = np.argsort([int(f.stem) for f in back.files])  # type: ignore[union-attr]
    np.testing.assert_allclose(back.pixel_sizes[order], small.pixel_sizes, rtol=1e-6)
    np.testing.assert_allclose(back.defect_coords[order[0]], small.defect_coords[0], atol=1e-6)

    # a CSV of file,label over a flat folder
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["file,label"]
    for i, f in enumerate(sorted((tmp_path / "lib").rglob("*.hdf5"))):
        target = flat / f"c{i}.hdf5"
        target.write_bytes(f.read_bytes())
        rows.append(f"{target.name},{f.parent.name}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    assert load_labelled_crops(flat).counts() == small.counts()

    # unknown layouts: files beside class folders, folders in class folders, nothing at all
    mixed = tmp_path / "mixed"
    (mixed / "Si1C3").mkdir(parents=True)
    np.save(mixed / "Si1C3" / "a.npy", np.ones((16, 16)))
    np.save(mixed / "b.npy", np.ones((16, 16)))
    with pytest.raises(ValueError, match="mixes crop files .* and class sub-folders"):
        load_labelled_crops(mixed)
    nested = tmp_path / "nested"
    (nested / "Si1C3" / "deeper").mkdir(parents=True)
    with pytest.raises(ValueError, match="class folders must hold crop files only"):
        load_labelled_crops(nested)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no crop files"):
        load_labelled_crops(tmp_path / "empty")
    (flat / "labels.csv").write_text("file,label\nmissing.hdf5,Si1C3\n")
    with pytest.raises(FileNotFoundError, match="missing.hdf5"):
        load_labelled_crops(flat)


def test_crops_without_a_calibration_are_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    np.save(tmp_path / "A" / "x.npy", np.random.default_rng(0).random((32, 32)))
    with pytest.raises(ValueError, match=r"carry no pixel size .*x\.npy.*pixel_size"):
        load_labelled_crops(tmp_path)
    assert load_labelled_crops(tmp_path, pixel_size=12.5).pixel_sizes[0] == 12.5
    # an HDF5 crop whose scan size is not a number is uncalibrated too
    with h5py.File(tmp_path / "A" / "y.hdf5", "w") as f:
        f.create_dataset("nn_input", data=np.zeros((1, 32, 32, 1))).attrs["scan size"] = "n/a"
    with pytest.raises(ValueError, match="carry no pixel size"):
        load_labelled_crops(tmp_path)


# -- centring and patches ---------------------------------------------------------------------
def test_the_finder_centres_on_the_planted_dopants(crops: LabelledCrops) -> None:
    errors = []
    for i in range(len(crops)):
        coords, elements = crops.defect_coords[i], crops.defect_elements[i]
        assert coords is not None and elements is not None
        truth = coords[[e == "Si" for e in elements]].mean(0)
        found = defect_centre(crops.images[i], crops.pixel_sizes[i], finder="peaks")
        errors.append(np.hypot(*(found.centre - truth)) * crops.pixel_sizes[i])
        assert found.method == "peaks" and len(found.bright) == elements.count("Si")
    assert np.median(errors) < 15.0 and max(errors) < 40.0  # pm; a bond is 142 pm


def test_patches_are_at_one_physical_scale_and_rotate_about_the_centre() -> None:
    # one bright Gaussian column 200 pm right of the centre, imaged at two pixel sizes
    def crop(px: float) -> np.ndarray:
        n = int(round(2400 / px))
        rr, cc = np.indices((n, n)) * px
        mid = (n - 1) / 2 * px
        return np.exp(-((rr - mid) ** 2 + (cc - mid - 200) ** 2) / (2 * 40.0**2)) + 0.01 * rr / rr.max()

    a = defect_patches(crop(8.0), 8.0, [(2400 / 8 - 1) / 2] * 2, target_pixel=20, window=32,
                       angles=[0.0, np.pi / 2])
    b = defect_patches(crop(16.0), 16.0, [(2400 / 16 - 1) / 2] * 2, target_pixel=20, window=32)
    peak = [np.unravel_index(np.argmax(p), p.shape) for p in (a[0], a[1], b[0])]
    # at 20 pm per pixel the column sits 10 pixels right of the centre (15.5, 15.5) ...
    assert peak[0] == (15, 25) or peak[0] == (16, 25)
    assert peak[2] == peak[0]
    # ... and a quarter turn counter-clockwise puts it 10 pixels above
    assert peak[1] in ((5, 15), (5, 16))
    # intensities: the background near 0, the dopant at the same height at both pixel sizes
    # (1 is its height smoothed over a quarter bond, so the sharp peak itself reaches more)
    assert abs(np.median(a[0])) < 0.05 and a[0].max() == pytest.approx(b[0].max(), rel=0.1)
    assert 1.0 < a[0].max() < 2.0


# -- shapes -----------------------------------------------------------------------------------
def test_channel_last_shapes_are_refused_or_converted_never_misread() -> None:
    with pytest.raises(ValueError, match=r"looks channel-last .* \(1, 256, 256\)"):
        get_model("jrvae", (256, 256, 1))
    model = get_model("jvae", (24, 24, 1), channels="last", discrete=(2,), hidden=16)
    assert model.config.input_shape == (1, 24, 24)
    assert normalise_shape((3, 24, 24)) == (3, 24, 24)
    assert normalise_shape((64, 32, 3), channels="first") == (64, 32, 3)
    assert normalise_shape((128, 2), image=False, channels="last") == (2, 128)
    with pytest.raises(ValueError, match=r"channel-last \(n, h, w, c\).*moveaxis"):
        model.encode(np.zeros((5, 24, 24, 1), np.float32))


# -- models -----------------------------------------------------------------------------------
def test_ssvae_holds_nothing_out_silently_and_reports_an_explicit_validation() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = np.where(np.arange(40) < 8, np.arange(40) % 2, -1)
    model = get_model("ssvae", (8, 8), n_classes=2, hidden=16, class_balanced=True,
                      class_prior="labelled")
    with pytest.raises(ValueError, match="does not hold samples out at random"):
        model.fit(x, y, epochs=1, test_fraction=0.1, progress=False)
    model.fit(x, y, epochs=2, progress=False, validation=(x[:4], np.array([0, 1, 0, 1])))
    assert len(model.history["validation/accuracy"]) == 2
    assert not any(k.startswith("test/") for k in model.history)
    # the labelled prior is the labels' frequencies (add-one smoothed)
    np.testing.assert_allclose(np.exp(model.module.log_class_prior.numpy()), [0.5, 0.5])


def _levels(n_common: int, n_rare: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat 8 x 8 patches whose level tells the class, the two classes overlapping: common
    N(0.4, 0.1), rare N(0.6, 0.1); returns x (n, 1, 8, 8) and y (n,)."""
    rng = np.random.default_rng(seed)
    level = np.r_[rng.normal(0.4, 0.1, n_common), rng.normal(0.6, 0.1, n_rare)]
    x = level[:, None, None, None] + rng.normal(0, 0.02, (n_common + n_rare, 1, 8, 8))
    return x.astype(np.float32), np.r_[np.zeros(n_common, int), np.ones(n_rare, int)]


def test_logit_adjustment_recovers_the_rare_class_that_its_prior_outvotes() -> None:
    # 90 / 10 labels: the posterior under the prior puts the boundary at ~0.61 (rare recall
    # ~0.46 for a perfect model), the prior-free logits at 0.5 (recall ~0.84 for both classes)
    x, y = _levels(90, 10, seed=0)
    rare, _ = _levels(0, 400, seed=99)
    common, _ = _levels(400, 0, seed=98)
    recall = {}
    for tau in (0.0, 1.0):
        model = get_model("ssvae", (8, 8), n_classes=2, hidden=16, class_prior="labelled",
                          logit_adjustment=tau, seed=0)
        model.fit(x, y, epochs=40, batch_size=20, lr=1e-2, progress=False,
                  labelled_fraction=None)
        recall[tau] = (float((model.predict(rare) == 1).mean()),
                       float((model.predict(common) == 0).mean()))
    assert recall[1.0][0] > recall[0.0][0] + 0.3, recall
    assert sum(recall[1.0]) > sum(recall[0.0]) + 0.2, recall  # balanced accuracy, not a swap
    with pytest.raises(ValueError, match="class_prior"):
        get_model("ssvae", (8, 8), n_classes=2, logit_adjustment=1.0)


def test_class_balanced_spreading_keeps_a_rare_class_its_neighbours_outnumber() -> None:
    # a run of 30 common samples (10 seeded) touching 5 rare ones (1 seeded): on a wide graph
    # the common class's ten seeds flood the rare end unless every class has the same mass
    labels = np.full(35, -1)
    labels[:30:3], labels[34] = 0, 1
    for start, neighbours, alpha in ((1.15, 10, 0.99), (1.25, 20, 0.99)):
        x = np.r_[np.linspace(0, 1, 30), np.linspace(start, start + 0.2, 5)][:, None]
        graph = neighbour_graph(x, neighbours)
        balanced = spread_labels(graph, labels, alpha).argmax(1)
        plain = spread_labels(graph, labels, alpha, balanced=False).argmax(1)
        assert (balanced[30:] == 1).all() and (balanced[:30] == 0).mean() >= 0.9
        assert (plain[30:34] == 0).all()  # what the balance is for
    with pytest.raises(ValueError, match="labelled sample"):
        spread_labels(neighbour_graph(np.zeros((35, 1))), np.full(35, -1))


def test_spread_prediction_recovers_a_rare_class_its_classifier_outvotes() -> None:
    # generated features: 80 common around 0 (16 seen), 8 rare at (2.5, 0) (1 seen); the
    # classifier ranks the crops right but its prior out-votes the rare class everywhere
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (80, 2)), rng.normal((2.5, 0), 0.4, (8, 2))])
    y = np.r_[np.zeros(80, int), np.ones(8, int)]
    seen = np.zeros(88, bool)
    seen[:16], seen[80] = True, True
    proba = np.where(y[:, None] == 1, [0.6, 0.4], [0.7, 0.3])
    # the leave-one-labelled-out choice finds the space where the classes lie, listed last
    spaces = {"noise": rng.normal(0, 1, (88, 2)), "x": x}
    scores, rule = spread_prediction(spaces, y, seen, proba)
    pred, unseen = scores.argmax(1), ~seen
    assert (proba.argmax(1) == 0).all()
    assert (pred[unseen & (y == 1)] == 1).all()
    assert (pred[unseen & (y == 0)] == 0).mean() >= 0.9
    np.testing.assert_allclose(scores.sum(1), 1.0)
    assert rule["space"] == "x" and rule["held_out_crops"] == 16
    assert (rule["neighbours"], rule["alpha"]) in SPREAD_GRID
    # no label of an unseen crop is used: scrambling them changes nothing
    scrambled = np.where(seen, y, rng.integers(0, 2, 88))
    again, rule_again = spread_prediction(spaces, scrambled, seen, proba)
    np.testing.assert_array_equal(again, scores)
    assert rule_again == rule
    # many seen crops: the leave-one-out hides at most MAX_HIDDEN_PER_CLASS of each class
    seen_all = np.ones(88, bool)
    _, rule_many = spread_prediction({"x": x}, y, seen_all, proba)
    assert rule_many["held_out_crops"] == MAX_HIDDEN_PER_CLASS + 8


@pytest.mark.parametrize("kind", ["ssvae", "ssrvae"])
def test_semi_supervised_fit_trains_on_every_labelled_sample_by_default(kind: str) -> None:
    # the training plan's default holds 10 % out at random; here no sample may be dropped
    rng = np.random.default_rng(1)
    x = rng.random((30, 1, 8, 8)).astype(np.float32)
    y = np.where(np.arange(30) < 10, np.arange(30) % 2, -1)
    model = get_model(kind, (8, 8), n_classes=2, hidden=16)
    model.fit(x, y, epochs=1, progress=False)
    assert not any(k.startswith("test/") for k in model.history)


@pytest.mark.parametrize("tied", [False, True])
def test_tied_mixture_keeps_a_rare_cluster_that_learned_weights_empty(
        tied: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # content latents fixed (no training): 90 objects N(0, 1) and 4 rare ones N(2.5, 0.5)
    rng = np.random.default_rng(0)
    mu = np.r_[rng.normal(0.0, 1.0, 90), rng.normal(2.5, 0.5, 4)][:, None].astype(np.float32)
    model = get_model("jvae", (8, 8), latent_dim=1, hidden=8, discrete=(2,),
                      class_prior="learned", prior_concentration=0.5, tied_mixture=tied)
    monkeypatch.setattr(model, "_content_posterior", lambda x: (mu, np.full_like(mu, 1e-3)))
    model.module.set_mixture(torch.tensor([0.96, 0.04]), torch.tensor([[0.0], [2.5]]),
                             torch.tensor([[1.0], [0.25]]))
    for _ in range(30):  # EM M-steps, as between the training epochs
        model.mixture_m_step(torch.zeros(len(mu), 1, 8, 8), np.arange(len(mu)))
    log_weight = model.module.mixture()[0]
    classes = (log_weight + model.module.component_log_density(torch.from_numpy(mu))).argmax(1)
    if tied:  # one weight and one spread: the rare objects keep a class of their own
        np.testing.assert_allclose(log_weight.exp().numpy(), [0.5, 0.5])
        assert (classes[-4:] == 1).all()
    else:  # the big class's weight and spread absorb them and the rare class empties
        assert float(log_weight.exp()[1]) < 1e-6 and (classes[-4:] == 0).all()


@pytest.fixture(scope="module")
def joint(crops: LabelledCrops) -> ClassifyResult:
    return classify(crops, model="jvae", **{**FAST, "restarts": 2})


def test_learned_prior_keeps_imbalanced_classes_at_their_sizes(crops: LabelledCrops,
                                                               joint: ClassifyResult) -> None:
    weights = np.sort(np.exp(joint.model.module.mixture()[0].numpy()))[::-1]
    true = np.sort(np.bincount(crops.labels))[::-1] / len(crops)
    # 18 / 10 / 8 of 36 crops: the uniform prior's capacity term or the balance term would
    # pull towards 1/3 each
    np.testing.assert_allclose(weights, true, atol=0.05)
    n, v, w, _ = joint.data.views.shape
    assert np.isfinite(joint.model.elbo(joint.data.views.reshape(n * v, 1, w, w)))


def test_classify_recovers_planted_classes_and_beats_logistic_regression(
        crops: LabelledCrops, tmp_path: Path) -> None:
    result = classify(crops, model="ssvae", labelled_fraction=0.3, out=tmp_path / "run", **FAST)
    s = result.scores
    assert s["scored_crops"] == int(result.scored.sum()) > 20
    assert not (result.labelled & result.scored).any()
    best_lr = max(s["baselines"][b]["balanced_accuracy"] for b in ("logreg_pixels", "logreg_pca"))
    # the random lattice rotations of these crops leave little class in the patches' PCA
    # scores, so the spreading adds nothing here and may cost a crop (0.89 against the
    # classifier's 0.94 at this seed); on the real library it adds the rare classes
    assert s["model"]["balanced_accuracy"] >= 0.85
    assert s["classifier"]["balanced_accuracy"] >= 0.9
    assert s["model"]["balanced_accuracy"] > best_lr
    # the default prediction (classifier x label spreading) and the classifier alone, both
    np.testing.assert_array_equal(result.predictions, result.prediction_scores.argmax(1))
    np.testing.assert_array_equal(result.classifier_predictions,
                                  result.probabilities.argmax(1))
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["config"]["semi_prediction"] == "spread"
    rule = doc["prediction_rule"]
    assert (rule["neighbours"], rule["alpha"]) in SPREAD_GRID
    assert [c["classifier_prediction"] for c in doc["crops"]] == [
        crops.class_names[k] for k in result.classifier_predictions]
    assert "classifier_prediction" in (tmp_path / "run" / "predictions.csv").read_text()
    assert set(doc["scores"]["baselines"]) == {"kmeans_pca", "gmm_pca", "logreg_pixels",
                                               "logreg_pca", "cnn"}
    assert len(doc["crops"]) == len(crops) and doc["split"]["validation"] == 0
    assert np.asarray(doc["scores"]["model"]["confusion"]).sum() == s["scored_crops"]
    for name in ("index.html", "explorer.html", "predictions.csv", "confusion.png",
                 "scores.png", "gallery.png", "abundance.png"):
        assert (tmp_path / "run" / name).is_file()
    html = (tmp_path / "run" / "index.html").read_text()
    assert "Latent abundance by class" in html and "patch pixel size" in html
    # the content latents tell the planted classes apart: one goes with the class
    assert set(doc["crops"][0]["latents"]) == set(result.latent_names)
    assert np.nanmax(result.abundance().eta) > 0.6
    # the explorer's points sit on the tiles of their own crops' patches
    from latentatlas.report.explorer_adapters import from_classify

    view = from_classify(result, reconstructions=False)
    w = result.data.canonical.shape[-1]
    for i in (0, len(crops) - 1):
        r, c = (view.positions[i] - (w - 1) / 2).astype(int)
        np.testing.assert_array_equal(view.frames[0, r:r + w, c:c + w], result.data.canonical[i])
    assert view.values["label"].tolist() == crops.labels.tolist()


def test_joint_vae_finds_the_planted_classes_without_labels(crops: LabelledCrops,
                                                            joint: ClassifyResult) -> None:
    s = joint.scores
    assert s["scored_crops"] == len(crops) and joint.labelled.sum() == 0
    assert s["model"]["ari"] >= 0.9 > s["baselines"]["kmeans_pca"]["ari"]
    assert len(joint.restarts) == 2 and all(classes > 1 for _, classes in joint.restarts)


def test_class_scores_handle_unmatched_classes() -> None:
    s = class_scores(np.array([0, 0, 1, 1]), np.array([0, -1, 1, 1]), ("a", "b"))
    assert s["accuracy"] == 0.75 and s["recall"] == {"a": 0.5, "b": 1.0}
    assert s["confusion"] == [[1, 0, 1], [0, 2, 0]]


# -- command ----------------------------------------------------------------------------------
def test_cli_classify_writes_results_and_refuses_bad_input(crops: LabelledCrops,
                                                           tmp_path: Path) -> None:
    write_labelled_crops(tmp_path / "lib", crops.subset(np.arange(0, len(crops), 2)))
    res = CliRunner().invoke(_app(), ["classify", str(tmp_path / "lib"), "--out",
                                      str(tmp_path / "out"), "--model", "jvae", "--epochs", "4",
                                      "--quiet"])
    assert res.exit_code == 0, res.output
    assert "jvae: accuracy" in res.output and (tmp_path / "out" / "results.json").is_file()
    res = CliRunner().invoke(_app(), ["classify", str(tmp_path / "lib"), "--out",
                                      str(tmp_path / "o2"), "--model", "kmeans"])
    assert res.exit_code == 2 and "--model must be one of" in res.output
    res = CliRunner().invoke(_app(), ["classify", str(tmp_path / "lib"), "--out",
                                      str(tmp_path / "o4"), "--semi-prediction", "nearest"])
    assert res.exit_code == 2 and "semi_prediction must be one of" in res.output
    (tmp_path / "bad" / "A" / "deeper").mkdir(parents=True)
    res = CliRunner().invoke(_app(), ["classify", str(tmp_path / "bad"), "--out",
                                      str(tmp_path / "o3")])
    assert res.exit_code == 2 and "class folders must hold crop files only" in res.output
    assert not (tmp_path / "o3").exists()


# -- real data --------------------------------------------------------------------------------
def test_real_library_crops_load_calibrated_and_classify() -> None:
    folder = shared_data("stem_graphene_aicrystallographer", "LibraryNet", "library_refined_dev")
    lib = load_labelled_crops(folder)
    assert lib.counts() == {"Si1C3": 50, "Si1C4": 8, "Si2C4": 2, "Si2C5": 5, "Si2C6": 4,
                            "Si3C4": 1, "Si3C6": 23, "Si4C6": 1}
    assert set(np.round(lib.pixel_sizes, 3)) == {7.812, 12.109, 15.625}
    assert sum(c is None for c in lib.defect_coords) == 0  # Si1C4/195 has only defect_coord_1
    three = lib.subset(np.isin(lib.labels, [0, 6]))
    result = classify(three, model="jvae", n_classes=2, epochs=6, views=2, restarts=1)
    assert result.scores["scored_crops"] == 73 and "kmeans_pca" in result.scores["baselines"]
    assert result.scores["model"]["accuracy"] > 0.6


def _twin(crops: LabelledCrops, i: int, cut: tuple[int, int]) -> LabelledCrops:
    """Crop ``i`` imaged again at half the pixel size (2x upsampled) and cut off-centre by
    ``cut`` (rows, cols of the upsampled image), without its defect coordinates: the folder
    must bring it to the same physical scale and find its centre in the image."""
    from scipy.ndimage import zoom

    big = zoom(crops.images[i], 2, order=3, grid_mode=True, mode="reflect")[cut[0]:, cut[1]:]
    return LabelledCrops([big], crops.pixel_sizes[[i]] / 2, crops.labels[[i]], crops.class_names,
                         [None], [None], [None])


def test_cli_classify_folder_end_to_end_at_one_scale_centred_into_a_safe_folder(
        crops: LabelledCrops, tmp_path: Path) -> None:
    from latentatlas.pipelines.classify import ClassifyConfig, prepare_defects

    small = crops.subset(np.arange(0, len(crops), 2))
    lib = tmp_path / "lib"
    write_labelled_crops(lib, small)
    twin_dir = lib / small.class_names[int(small.labels[0])]
    write_labelled_crops(tmp_path / "twin", _twin(small, 0, (10, 30)))
    (tmp_path / "twin").rglob("*.hdf5").__next__().rename(twin_dir / "twin.hdf5")

    # one physical scale, centred: the twin's patch is the original's, although it has twice
    # the pixels, its defect 5 and 15 of the original's pixels off-centre and no coordinates
    data = prepare_defects(load_labelled_crops(lib), ClassifyConfig(views=1))
    names = data.crops.names()
    a, b = (data.canonical[names.index(f"{twin_dir.name}/{f}")] for f in ("0.hdf5", "twin.hdf5"))
    assert data.centring[names.index(f"{twin_dir.name}/twin.hdf5")] == "peaks"
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9

    # a foreign folder is refused before any work, and left alone
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["classify", str(lib), "--out", str(out), "--labelled-fraction", "0.5", "--epochs",
            "3", "--quiet"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 2 and "not a latentatlas results folder" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    res = CliRunner().invoke(_app(), [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "notes.txt").read_text() == "mine"
    for name in ("results.json", "predictions.csv", "confusion.png", "index.html",
                 "latentatlas-run.json"):
        assert (out / name).is_file()

    # per-crop predictions: every crop once, labels from the sub-folders, the centring used
    import csv

    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert sorted(r["crop"] for r in rows) == sorted(names)
    for r in rows:
        assert r["label"] == r["crop"].split("/")[0]
        assert r["centring"] == ("peaks" if r["crop"].endswith("twin.hdf5") else "given")
        assert r["prediction"] in small.class_names
    # the found centre of the twin is the original's given one, in the twin's pixels
    doc = json.loads((out / "results.json").read_text())
    by_name = {c["crop"]: c for c in doc["crops"]}
    orig, twin = by_name[f"{twin_dir.name}/0.hdf5"], by_name[f"{twin_dir.name}/twin.hdf5"]
    expected = 2 * np.asarray(orig["centre_row_col"]) + 0.5 - np.array([10, 30])
    assert np.hypot(*(np.asarray(twin["centre_row_col"]) - expected)) * twin[
        "pixel_size_pm"] < 30.0  # pm
    assert twin["pixel_size_pm"] == pytest.approx(orig["pixel_size_pm"] / 2, rel=1e-3)
    # scores of the model and of every baseline on the same scored crops, confusion matrices
    scores = doc["scores"]
    n_scored = sum(r["scored"] == "True" for r in rows)
    assert scores["scored_crops"] == n_scored > 0
    assert set(scores["baselines"]) == {"kmeans_pca", "gmm_pca", "logreg_pixels", "logreg_pca",
                                        "cnn"}
    for s in (scores["model"], *scores["baselines"].values()):
        confusion = np.asarray(s["confusion"])
        assert confusion.shape[0] == len(small.class_names) and confusion.sum() == n_scored
        assert 0.0 <= s["balanced_accuracy"] <= 1.0
    # the scored crops are exactly those whose label the model did not see
    assert all((r["scored"] == "True") != (r["label_seen"] == "True") for r in rows)
