"""Class-aware VAEs (issue 4): conditional, joint, semi-supervised, ensembles, class analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from latentatlas.analysis.classes import (
    cluster_accuracy,
    confusion_matrix,
    latents_by_class,
    match_labels,
    traversal_grid,
    uncertainty_map,
)
from latentatlas.datasets.cards import blend, cards, rotated_classes, suit_glyphs
from latentatlas.datasets.shapes import shifted_peaks
from latentatlas.io import LoadError
from latentatlas.models import get_model, load_model
from latentatlas.models.ensemble import Ensemble, EnsembleModule, align_to_reference, summarise
from latentatlas.nn.pose import inverse_pose_matrix, warp

FAST = dict(batch_size=64, lr=3e-3, progress=False, test_fraction=0.0)


# -- properties of trained models -------------------------------------------------------------
def test_joint_rvae_separates_rotated_classes_and_tracks_angle() -> None:
    data = rotated_classes(600, size=16, seed=0)
    model = get_model("jrvae", (16, 16), discrete=(3,), latent_dim=1, hidden=64,
                      decoder="transform", enumerate_classes=True, balance=100.0)
    model.fit(data.images, epochs=30, **FAST)
    assert cluster_accuracy(data.labels, model.predict(data.images)) >= 0.9
    assert traversal_grid(model, n=4).shape == (3, 4, 1, 16, 16)
    angle = model.encode(data.images)["angle"]
    for k in range(3):  # the canonical orientation may differ per class: correlate within one
        sel = data.labels == k
        assert abs(np.corrcoef(angle[sel], data.angle[sel])[0, 1]) > 0.8


def test_ssvae_with_5_percent_labels_beats_labelled_only_classifiers() -> None:
    kwargs = dict(size=16, max_angle=np.pi / 3, max_shift=0.2, noise=0.25)
    train, test = rotated_classes(600, seed=1, **kwargs), rotated_classes(300, seed=2, **kwargs)
    labelled = np.random.default_rng(0).random(len(train.labels)) < 0.05
    flat, flat_test = train.images.reshape(600, -1), test.images.reshape(300, -1)
    baselines = [
        LogisticRegression(max_iter=2000).fit(flat[labelled], train.labels[labelled]),
        MLPClassifier((64, 64), max_iter=2000, random_state=0).fit(flat[labelled],
                                                                   train.labels[labelled]),
    ]
    best_baseline = max(b.score(flat_test, test.labels) for b in baselines)
    model = get_model("ssrvae", (16, 16), n_classes=3, latent_dim=2, hidden=64,
                      decoder="transform", shift_prior=0.2, enumerate_classes=False)
    model.fit(train.images, np.where(labelled, train.labels, -1), epochs=25, **FAST)
    assert model.score(test.images, test.labels) > best_baseline + 0.05
    proba = model.predict_proba(test.images)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


def test_canonical_view_undoes_the_pose_the_encoder_reports(monkeypatch) -> None:
    # The cards generator poses glyphs with its own numpy code; fed the true pose as the
    # encoder's mean, the classifier's input must be the upright glyph again, and the opposite
    # pose (a sign slip in the convention) must not give it.
    data = cards(n_labelled=0, n_unlabelled=6, size=32, max_angle=1.0, blur=0, noise=0, seed=3)
    upright = suit_glyphs(32)[data.labels]
    model = get_model("ssrvae", (32, 32), n_classes=4, hidden=8, decoder="transform",
                      canonical_classifier=True)
    x = torch.from_numpy(data.images)
    errors = []
    for sign in (1, -1):
        mu = torch.tensor(np.c_[sign * data.angle, sign * data.shift, np.zeros((6, 2))],
                          dtype=torch.float32)
        monkeypatch.setattr(model.module, "encode", lambda _, m=mu: (m, torch.zeros_like(m)))
        view = model.module.canonical_view(x).numpy()[:, 0]
        errors.append(np.abs(view - upright).mean((1, 2)))
    assert errors[0].max() < 0.03  # bilinear resampling blurs the edges a little
    assert errors[1].min() > 0.06
    with pytest.raises(ValueError, match="canonical_classifier"):
        get_model("ssvae", (32, 32), n_classes=4, canonical_classifier=True)


def test_class_encoder_loss_of_an_unlabelled_sample_is_the_q_weighted_labelled_losses(
        monkeypatch, tmp_path) -> None:
    # M2's q(z | x, y): an unlabelled sample's loss must be sum_y q(y|x) L(x, y) + KL(q || U),
    # with L(x, y) the loss of the same sample labelled y. Noise-free z makes both exact, so a
    # class paired with the wrong sample's rows or weights shows up as a mismatch.
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    model = get_model("ssvae", (6,), signal_dims=1, n_classes=3, hidden=8, latent_dim=2,
                      encoder_sees_class=True, seed=1)
    module = model.module.eval()
    x = torch.rand(4, 1, 6)
    knobs = {"alpha": 0.0}
    with torch.no_grad():
        q = torch.softmax(module.discrete_logits(x)[0], -1)
        labelled = torch.tensor([[float(module({"x": x[i : i + 1], "y": torch.tensor([k])},
                                                knobs).total) for k in range(3)] for i in range(4)])
        unlabelled = float(module({"x": x, "y": torch.full((4,), -1)}, knobs).total)
        kl_y = (q * torch.log(3 * q)).sum(1)
    expected = float(((q * labelled).sum(1) + kl_y).mean())
    assert unlabelled == pytest.approx(expected, rel=1e-5)
    # the encoder really sees the class: the same x gives different latents for different y
    mus = [module.encode(x, torch.eye(3)[[k] * 4])[0] for k in range(3)]
    assert not torch.allclose(mus[0], mus[1])
    # without a class, encode conditions on q(y | x); the saved model gives the same latents
    loaded = load_model(model.save(tmp_path / "m2"))
    np.testing.assert_array_equal(model.encode(x.numpy()).mean, loaded.encode(x.numpy()).mean)
    with pytest.raises(ValueError, match="encoder_sees_class"):
        get_model("ssvae", (6,), signal_dims=1, n_classes=3, encoder_sees_class=True,
                  enumerate_classes=False)


def test_consistency_term_is_zero_for_unmoved_views_and_invariant_classifiers() -> None:
    model = get_model("jvae", (12, 12), discrete=(3,), hidden=16, consistency=5.0)
    module = model.module
    x = torch.from_numpy(rotated_classes(32, size=12, seed=0).images)
    logits = module.discrete_logits(x)
    torch.manual_seed(0)
    with torch.no_grad():
        assert float(module.consistency_term(x, logits, 0.4, 0.15, 0.1)) > 1e-4
        unmoved = module.consistency_term(x, logits, 0.0, 0.0, 0.0)
    assert float(unmoved) == pytest.approx(0, abs=1e-6)
    # only the moved view learns: the original prediction gets no gradient from the term
    logits[0].retain_grad()
    moved = module.consistency_term(x, logits, 0.4, 0.15, 0.1)
    moved.backward()
    assert logits[0].grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.classifier.parameters())
    with torch.no_grad():
        assert float(module({"x": x}, {}).extras["consistency"]) > 0
        assert "consistency" not in module({"x": x}, {"consistency": 0.0}).extras
        module.classifier.net[-1].weight.zero_()  # a classifier that ignores its input
        invariant = module.consistency_term(x, module.discrete_logits(x), 0.4, 0.15, 0.1)
    assert float(invariant) == pytest.approx(0, abs=1e-6)


@pytest.mark.slow  # 8 models x 20 epochs: ~2 min on 2 cores
def test_consistency_makes_the_classes_keep_still_when_the_shapes_turn() -> None:
    data = rotated_classes(600, size=16, seed=0, max_angle=np.pi / 4)
    x = torch.from_numpy(data.images)
    turned = warp(x, inverse_pose_matrix(len(x), 2, torch.full((len(x),), 0.4), None, None, x))
    changed, accuracy = {}, {}
    for weight in (0.0, 20.0):
        # a plain joint VAE (no pose latents) may split a class by angle; the consistency term
        # forbids that. Averaged over seeds: single runs of either kind can land either way.
        runs = []
        for seed in range(4):
            model = get_model("jvae", (16, 16), seed=seed, discrete=(3,), latent_dim=2, hidden=64,
                              balance=100.0, enumerate_classes=True, consistency=weight,
                              augment_angle=0.8, augment_scale=0.0)
            model.fit(data.images, epochs=20, seed=seed, **FAST)
            pred = model.predict(data.images)
            runs.append(((pred != model.predict(turned.numpy())).mean(),
                         cluster_accuracy(data.labels, pred)))
        changed[weight], accuracy[weight] = np.mean(runs, axis=0)
    assert changed[20.0] < 0.6 * changed[0.0]
    assert accuracy[20.0] > accuracy[0.0] + 0.05


def test_default_joint_schedules_fill_both_capacities_at_one_rate() -> None:
    from latentatlas.models.joint import JointConfig, default_joint_schedules

    s = default_joint_schedules(JointConfig(input_shape=(1, 8, 8), capacity_z=5.0), 1000)
    rate = 5.0 / 800  # nats per step: C_z over 80% of the run
    for step in (0, 100, 300):
        assert s["capacity_z"](step) == pytest.approx(rate * step)
        assert s["capacity_d"](step) == pytest.approx(rate * step, abs=rate)
    assert s["capacity_d"](500) == pytest.approx(np.log(10))  # full (log K) before C_z
    assert s["capacity_z"](500) < 5.0 == s["capacity_z"](800)


def test_pose_kl_leaves_the_capacity_term_when_the_capacity_covers_content_only() -> None:
    x = {"x": torch.from_numpy(rotated_classes(16, size=12, seed=0).images)}
    records = []
    for covers in (True, False):
        model = get_model("jrvae", (12, 12), seed=0, discrete=(3,), hidden=16, capacity_z=5.0,
                          capacity_covers_pose=covers)
        torch.manual_seed(1)  # the same posterior samples for both
        with torch.no_grad():
            records.append(model.module(x, {}))
    pose_kl = float(records[0].kl["rotation"] + records[0].kl["translation"])
    assert pose_kl > 0
    # every sample's KL is far below C = 5: |KL_c + KL_p - C| = C - KL_c - KL_p, so moving the
    # pose KL out of the capacity term (weight gamma_z = 30) to the plain KL (beta = 1) changes
    # the loss by -(30 + 1) KL_p
    change = float(records[0].total - records[1].total)
    assert change == pytest.approx(-31 * pose_kl, rel=1e-4)


def test_cvae_decodes_one_content_latent_as_each_class() -> None:
    data = rotated_classes(600, size=16, max_angle=0.05, max_shift=0.02, seed=3)
    model = get_model("cvae", (16, 16), n_classes=3, latent_dim=2, hidden=64)
    model.fit(data.images, data.labels, epochs=25, **FAST)
    means = np.stack([data.images[data.labels == k].mean(0) for k in range(3)])
    z = np.zeros((1, 2), np.float32)
    for a, b in [(0, 1), (1, 2), (2, 0)]:
        img_a = model.decode(z, condition=[a])[0]
        img_b = model.decode(z, condition=[b])[0]
        # each decoding is nearer the mean image of its own class than of the other class
        assert np.abs(img_a - means[a]).sum() < np.abs(img_a - means[b]).sum()
        assert np.abs(img_b - means[b]).sum() < np.abs(img_b - means[a]).sum()
    grid = traversal_grid(model, n=5)
    assert grid.shape == (3, 5, 1, 16, 16)
    assert not np.allclose(grid[:, 0], grid[:, -1])  # the latent changes the image


def test_ensemble_dispersion_is_higher_on_blends_than_on_clean_samples() -> None:
    data = rotated_classes(600, size=16, max_angle=0.3, seed=4)
    ens = get_model("ensemble", (16, 16), member="ssvae", n_members=4, n_classes=3,
                    latent_dim=2, hidden=32)
    ens.fit(data.images, data.labels, epochs=10, **FAST)
    # members start from different seeds and stay different models
    w0, w1 = (m.module.classifier.net[0].weight for m in ens.members[:2])
    assert not torch.allclose(w0, w1)
    clean = ens.uncertainty(data.images)
    assert (clean.labels == data.labels).mean() > 0.95
    a, b = data.images[data.labels == 0][:100], data.images[data.labels == 1][:100]
    mixed = ens.uncertainty(blend(a, b))
    assert mixed.uncertainty.mean() > 3 * clean.uncertainty.mean()
    assert clean.per_class.shape == (3,)


# -- alignment, analysis --------------------------------------------------------------------
def test_alignment_recovers_members_permuted_classes() -> None:
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.full(4, 0.3), size=200)
    perms = [np.arange(4), np.array([2, 0, 3, 1]), np.array([3, 2, 1, 0])]
    members = np.stack([np.clip(reference[:, p] + rng.normal(0, 0.02, reference.shape), 0, 1)
                        for p in perms])
    aligned, found = align_to_reference(members, reference=0)
    for j, p in enumerate(perms):
        np.testing.assert_array_equal(found[j], np.argsort(p))
        np.testing.assert_allclose(aligned[j], reference, atol=0.1)
    summary = summarise(aligned)
    assert (summary.labels == reference.argmax(1)).mean() > 0.95
    # Without alignment the same members would disagree; with it they agree.
    assert summarise(members).disagreement.mean() > 0.3
    assert summary.disagreement.mean() < 0.05


def test_consensus_alignment_outvotes_a_reference_that_merged_two_classes() -> None:
    truth = np.repeat(np.arange(4), 50)

    def member(labels: np.ndarray, confidence: np.ndarray, perm: list[int]) -> np.ndarray:
        p = np.eye(4)[labels] * confidence[:, None] + (1 - confidence[:, None]) / 4
        return p[:, perm]

    # member 0 put the 0s and 1s together and split the 2s by some other factor
    merged = np.array([0, 0, 1, 3])[truth]
    merged[(truth == 2) & (np.arange(len(truth)) % 2 == 0)] = 2
    # two right members, one surer of its 1s, the other of its 0s: aligned to member 0, each
    # maps a different one of its classes onto member 0's merged class
    sure_of = [np.where(truth == 1, 0.95, 0.6), np.where(truth == 0, 0.95, 0.6)]
    probas = np.stack([member(merged, np.full(len(truth), 0.9), [0, 1, 2, 3]),
                       member(truth, sure_of[0], [2, 0, 3, 1]),
                       member(truth, sure_of[1], [1, 3, 0, 2])])
    by_reference = summarise(align_to_reference(probas, reference=0)[0])
    by_consensus = summarise(align_to_reference(probas, reference=None)[0])
    assert cluster_accuracy(truth, by_reference.labels) <= 0.8
    assert cluster_accuracy(truth, by_consensus.labels) == 1.0
    # one member in three disagrees on the digits member 0 confused, none on the 3s
    assert np.allclose(by_consensus.disagreement[truth == 3], 0)
    assert np.allclose(by_consensus.disagreement[(truth == 2) & (merged == 2)], 1 / 3) or \
        np.allclose(by_consensus.disagreement[(truth == 2) & (merged == 1)], 1 / 3)
    # the merging member is the one that agrees least with the consensus: 3s, half the 2s and
    # one of the two classes it merged
    np.testing.assert_allclose(by_consensus.member_agreement, [0.625, 1.0, 1.0])


def test_an_ensemble_of_separately_trained_models_predicts_as_its_members_agree(tmp_path) -> None:
    data = rotated_classes(60, size=10, seed=0)
    models = [get_model("jvae", (10, 10), seed=s, discrete=(3,), hidden=8) for s in (0, 1)]
    for m in models:
        m.fit(data.images, epochs=1, progress=False, test_fraction=0.0)
    ens = Ensemble.from_members(models)
    aligned, _ = align_to_reference(np.stack([m.predict_proba(data.images) for m in models]), None)
    np.testing.assert_allclose(ens.predict_proba(data.images), aligned.mean(0), atol=1e-6)
    loaded = load_model(ens.save(tmp_path / "ens"))
    np.testing.assert_array_equal(loaded.predict_proba(data.images), ens.predict_proba(data.images))
    other = get_model("jvae", (10, 10), discrete=(4,), hidden=8)
    with pytest.raises(ValueError, match="share family and config"):
        Ensemble.from_members([models[0], other])


def test_an_aligned_ensemble_keeps_class_numbers_from_call_to_call(tmp_path) -> None:
    """Members that number three classes differently: once aligned, predicting one sample at
    a time gives the labels of the whole set, also after saving and loading (a consensus
    taken afresh on each call numbers a lone sample's classes arbitrarily)."""
    images = np.random.default_rng(0).normal(size=(60, 10, 10)).astype(np.float32)
    models = [get_model("jvae", (10, 10), seed=s, discrete=(3,), hidden=8) for s in (0, 1, 2)]
    for m, perm in zip(models, ([0, 1, 2], [2, 0, 1], [1, 2, 0]), strict=True):
        def proba(X: object, perm: list[int] = perm) -> np.ndarray:
            x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)  # type: ignore[arg-type]
            z = np.exp(4 * x[:, :3])
            return (z / z.sum(1, keepdims=True))[:, perm]
        m.predict_proba = proba  # type: ignore[method-assign]
    ens = Ensemble.from_members(models).align(images)
    whole = ens.predict(images)
    assert cluster_accuracy(images.reshape(60, -1)[:, :3].argmax(1), whole) == 1.0
    one_by_one = np.concatenate([ens.predict(images[i : i + 1]) for i in range(30)])
    np.testing.assert_array_equal(one_by_one, whole[:30])
    saved = ens.save(tmp_path / "ens")
    loaded = load_model(saved)
    np.testing.assert_array_equal(loaded.alignment, ens.alignment)
    meta = json.loads((saved / "config.json").read_text())
    meta["alignment"] = [[0, 0, 1]] * 3
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(LoadError, match="alignment"):
        load_model(saved)


def test_confusion_and_hungarian_accuracy_ignore_class_names() -> None:
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([2, 2, 0, 0, 1, 1, 0])
    counts = confusion_matrix(true, pred)
    assert counts.sum() == 7 and counts[0, 2] == 2
    assert match_labels(true, pred) == {2: 0, 0: 1, 1: 2}
    assert cluster_accuracy(true, pred) == pytest.approx(6 / 7)
    groups = latents_by_class(np.arange(14.0).reshape(7, 2), true)
    assert set(groups) == {0, 1, 2} and groups[2].shape == (3, 2)


def test_uncertainty_map_paints_patch_values_at_their_centres() -> None:
    coords = np.array([[2.0, 2.0], [2.0, 12.0], [12.0, 7.0]])
    painted = uncertainty_map([0.1, 0.5, 0.9], coords, (15, 15), radius=3)
    assert painted[2, 2] == pytest.approx(0.1) and painted[2, 12] == pytest.approx(0.5)
    assert painted[12, 7] == pytest.approx(0.9) and np.isnan(painted[7, 0])
    with pytest.raises(ValueError, match="coords"):
        uncertainty_map([0.1, 0.5], coords, (15, 15))


# -- every family: pose, decoders, channels, 1-D, save/load ---------------------------------
FAMILIES = {
    "cvae": dict(n_classes=3),
    "jvae": dict(discrete=(3, 2)),
    "jrvae": dict(discrete=(3,)),
    "ssvae": dict(n_classes=3),
    "ssrvae": dict(n_classes=3, enumerate_classes=False),
}


def _fit_args(name: str, n: int) -> dict:
    labels = np.arange(n) % 3
    if name == "cvae":
        return {"y": labels}
    if name.startswith("ss"):
        return {"y": np.where(np.arange(n) % 4 == 0, labels, -1)}
    return {}


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("kind", ["image2ch_transform", "image_spatial", "spectrum"])
def test_family_trains_on_images_and_spectra_with_pose(name: str, kind: str) -> None:
    n = 48
    cfg: dict = dict(FAMILIES[name], hidden=16, latent_dim=2)
    if kind == "spectrum":
        x = shifted_peaks(n, length=32).images
        shape: tuple[int, ...] = (32,)
        cfg.update(rotation=False, translation=True, decoder="spatial")
    else:
        channels = 2 if kind.startswith("image2ch") else 1
        x = rotated_classes(n, size=12, channels=channels).images
        shape = (channels, 12, 12)
        cfg.update(rotation=True, translation=True,
                   decoder="transform" if "transform" in kind else "spatial")
    model = get_model(name, shape, **cfg)
    before = [p.detach().clone() for p in model.module.parameters()]
    model.fit(x, epochs=1, batch_size=16, **_fit_args(name, n), progress=False, test_fraction=0.0)
    assert np.isfinite(model.history["train/total"]).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.module.parameters(),
                                                     strict=True))
    condition = [0, 1, 2, 0] if name == "cvae" else None
    assert model.reconstruct(x[:4], condition).shape == (4, *model.config.input_shape)


def test_ensemble_module_total_is_sum_of_member_losses() -> None:
    members = [get_model("jvae", (8, 8), seed=s, discrete=(2,), hidden=8).module for s in (0, 1)]
    for m in members:
        # posterior variances at the clamp floor: the sampled z is (almost) the mean, so the
        # members' losses are (almost) deterministic and comparable one by one
        last = m.encoder.net[-1]
        half = last.out_features // 2
        with torch.no_grad():
            last.weight[half:] = 0
            last.bias[half:] = -30
        m.eval()
    module = EnsembleModule(members).eval()
    batch = {"x": torch.rand(6, 1, 8, 8)}
    knobs = {"capacity_z": 1.0, "capacity_d": 0.3}
    with torch.no_grad():
        record = module(batch, knobs)
        singles = [m(batch, knobs) for m in members]
    expected = sum(float(r.total) for r in singles)
    assert float(record.total) == pytest.approx(expected, rel=1e-3)
    assert float(record.reconstruction) == pytest.approx(
        np.mean([float(r.reconstruction) for r in singles]), rel=1e-3)
    assert set(record.kl) == {"content", "discrete"}


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        get_model("cvae", (8, 8))
    with pytest.raises(ValueError, match="discrete"):
        get_model("jvae", (8, 8), discrete=(1,))
    with pytest.raises(ValueError, match="consistency"):
        get_model("jvae", (8, 8), consistency=-1.0)
    with pytest.raises(ValueError, match="augment_angle"):
        get_model("jvae", (8, 8), augment_shift=-0.1)
    model = get_model("ssvae", (8, 8), n_classes=3, hidden=8)
    x = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(x, [0, 1, 5, -1], epochs=1, progress=False)
    with pytest.raises(ValueError, match="no labelled"):
        model.fit(x, [-1, -1, -1, -1], epochs=1, progress=False)
    cvae = get_model("cvae", (8, 8), n_classes=2, hidden=8)
    with pytest.raises(ValueError, match="integer"):
        cvae.decode(np.zeros((1, 2), np.float32), condition=[0.5])


def test_generated_class_sets_have_their_stated_structure() -> None:
    glyphs = suit_glyphs(24)
    assert glyphs.shape == (4, 24, 24) and glyphs.max() > 0.9
    # four different symbols
    assert min(np.abs(glyphs[i] - glyphs[j]).sum() for i in range(4) for j in range(i)) > 5
    deck = cards(n_labelled=10, n_unlabelled=30, size=24, seed=0)
    assert deck.images.shape == (40, 1, 24, 24) and deck.labelled.sum() == 10
    assert np.abs(deck.angle[:10]).max() <= 0.1 < np.abs(deck.angle[10:]).max()


def test_mnist_idx_reader_reads_shared_test_digits_and_rejects_truncated_files(tmp_path) -> None:
    from conftest import shared_data
    from latentatlas.datasets.mnist import load_mnist_idx, read_idx

    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(100))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)
    images, labels = load_mnist_idx(shared_data("mnist", "t10k-images-idx3-ubyte.gz").parent)
    assert images.shape == (10000, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert np.bincount(labels).min() > 800 and labels[:4].tolist() == [7, 2, 1, 0]


def test_class_plots_draw_and_return_their_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentatlas.plots.classes import (
        montage,
        plot_confusion,
        plot_latent_classes,
        plot_traversal,
        plot_uncertainty_map,
    )

    grid = np.random.default_rng(0).random((3, 4, 1, 6, 6))
    assert montage(grid).shape == (3 * 7 - 1, 4 * 7 - 1)
    fig, axes = plt.subplots(1, 4)
    assert plot_traversal(axes[0], grid) is axes[0]
    labels = np.arange(30) % 3
    assert plot_latent_classes(axes[1], np.random.default_rng(1).normal(size=(30, 2)), labels)
    assert plot_confusion(axes[2], confusion_matrix(labels, labels)) is axes[2]
    assert plot_uncertainty_map(axes[3], np.zeros((8, 8)), np.ones((8, 8))) is axes[3]
    plt.close(fig)


@pytest.mark.parametrize("decoder", ["spatial", "transform"])
@pytest.mark.parametrize("signal", ["image", "spectrum"])
def test_vectorised_ensemble_trains_with_pose_decoders(decoder: str, signal: str) -> None:
    if signal == "image":
        x, shape, pose = rotated_classes(32, size=10).images, (10, 10), dict(rotation=True)
    else:
        x, shape, pose = shifted_peaks(32, length=24).images, (24,), dict(rotation=False)
    ens = get_model("ensemble", shape, member="jvae", n_members=2, discrete=(2,), hidden=8,
                    translation=True, decoder=decoder, consistency=1.0, **pose)
    before = [{k: v.clone() for k, v in m.module.decoder.state_dict().items()} for m in ens.members]
    ens.fit(x, epochs=1, batch_size=16, progress=False, test_fraction=0.0)
    assert np.isfinite(ens.history["train/total"]).all()
    assert ens.history["train/consistency"][0] > 0  # the random moves run under vmap too
    for m, old in zip(ens.members, before, strict=True):  # every member's weights moved
        new = m.module.decoder.state_dict()
        assert any(not torch.equal(old[k], new[k]) for k in old)
    assert ens.uncertainty(x).members.shape == (2, 32, 2)


def test_ensemble_of_conditional_members_takes_labels_as_conditions() -> None:
    data = rotated_classes(60, size=10)
    ens = get_model("ensemble", (10, 10), member="cvae", n_members=2, n_classes=3, hidden=8)
    ens.fit(data.images, data.labels, epochs=1, progress=False, test_fraction=0.0)
    z = np.zeros((2, 2), np.float32)
    first, second = (m.decode(z, condition=[0, 1]) for m in ens.members)
    assert first.shape == (2, 1, 10, 10) and not np.allclose(first, second)
    with pytest.raises(ValueError, match="no classes"):
        ens.predict(data.images)
