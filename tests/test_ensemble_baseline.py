"""Ensembles grown from a baseline model, and the number of classes from their dispersion."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import latentatlas.models.ensemble as ensemble_module
from latentatlas.datasets.cards import rotated_classes
from latentatlas.models import get_model, load_model
from latentatlas.models.ensemble import EnsembleModule, suggest_n_classes
from latentatlas.train.plan import FitData, split_indices

FAST = dict(batch_size=32, lr=3e-3, progress=False)


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def relative_change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a if a[k].is_floating_point())
    den = sum(float(a[k].pow(2).sum()) for k in a if a[k].is_floating_point())
    return math.sqrt(num / den)


@pytest.fixture
def continuation(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records what the members' training run starts from (states, data, step counter)."""
    seen: list[dict[str, Any]] = []
    real_fit = ensemble_module.fit_module

    def spy(module: torch.nn.Module, fit: FitData, train_options: dict[str, Any],
            **kw: Any) -> Any:
        if isinstance(module, EnsembleModule):
            seen.append({"states": [{k: v.clone() for k, v in module.member_state(i).items()}
                                    for i in range(module.n_members)],
                         "x": fit.data["x"].clone(), "epochs": train_options["epochs"],
                         "start_step": kw.get("start_step", 0)})
        return real_fit(module, fit, train_options, **kw)

    monkeypatch.setattr(ensemble_module, "fit_module", spy)
    return seen


def test_members_start_equal_to_the_baseline_and_differ_afterwards(
        continuation: list[dict[str, Any]], tmp_path: Any) -> None:
    x = rotated_classes(100, size=10, seed=0).images
    ens = get_model("ensemble", (10, 10), member="jvae", n_members=3, discrete=(3,), hidden=8,
                    from_baseline_epochs=2, perturbation=0.0)
    ens.fit(x, epochs=4, test_fraction=0.2, **FAST)
    base = ens.baseline.module.state_dict()
    (run,) = continuation
    assert all(states_equal(s, base) for s in run["states"])  # copies of the baseline
    finals = [m.module.state_dict() for m in ens.members]
    for i, final in enumerate(finals):  # ... that went their own ways
        assert relative_change(final, base) > 1e-3
        for other in finals[i + 1:]:
            assert relative_change(final, other) > 1e-3
    # each member saw the 80 training digits (and 20 held out) in its own order
    xs = run["x"]
    assert xs.shape == (100, 3, 1, 10, 10)
    train_idx, _ = split_indices(100, 0.2, seed=0)
    assert not torch.equal(xs[train_idx, 0], xs[train_idx, 1])
    rows = [sorted(map(tuple, xs[:, j].reshape(100, -1).tolist())) for j in range(3)]
    assert rows[0] == rows[1] == rows[2]
    # schedules carry on from the baseline's last step; histories split at the hand-over
    assert run["start_step"] == 2 * math.ceil(80 / 32) and run["epochs"] == 2
    assert len(ens.baseline_history["train/total"]) == 2 and len(ens.history["train/total"]) == 2
    loaded = load_model(ens.save(tmp_path / "ens"))
    assert loaded.from_baseline_epochs == 2
    np.testing.assert_array_equal(loaded.predict_proba(x), ens.predict_proba(x))


def test_perturbation_makes_distinct_starting_points_of_the_stated_size(
        continuation: list[dict[str, Any]]) -> None:
    x = rotated_classes(60, size=10, seed=1).images
    ens = get_model("ensemble", (10, 10), member="jvae", n_members=2, discrete=(3,), hidden=8,
                    from_baseline_epochs=1, perturbation=0.05)
    ens.fit(x, epochs=2, test_fraction=0.0, **FAST)
    base = ens.baseline.module.state_dict()
    starts = continuation[0]["states"]
    for s in starts:
        assert 0.03 < relative_change(s, base) < 0.07
    assert relative_change(starts[0], starts[1]) > 0.03
    with pytest.raises(ValueError, match="smaller than epochs"):
        ens.fit(x, epochs=1, **FAST)
    with pytest.raises(ValueError, match="from_baseline_epochs"):
        get_model("ensemble", (10, 10), member="jvae", discrete=(3,), from_baseline_epochs=-1)


def test_suggest_n_classes_flags_the_ambiguous_class() -> None:
    # three clean shapes and a fourth "class" of half-way blends of shapes 0 and 1
    data = rotated_classes(300, size=12, max_angle=0.2, max_shift=0.05, seed=0)
    rng = np.random.default_rng(0)
    a, b = data.images[data.labels == 0][:100], data.images[data.labels == 1][:100]
    w = rng.uniform(0.35, 0.65, (100, 1, 1, 1)).astype(np.float32)
    x = np.concatenate([data.images, w * a + (1 - w) * b])
    truth = np.concatenate([data.labels, np.full(100, 3)])
    report = suggest_n_classes(
        x, [3, 4], n_members=6, latent_dim=2, hidden=32, balance=100.0, enumerate_classes=True,
        fit_options=dict(epochs=20, batch_size=64, lr=3e-3, progress=False, test_fraction=0.0))
    dis = report.disagreement[4]
    worst = int(np.nanargmax(dis))
    assert worst in report.unstable[4]
    members = truth[report.labels[4] == worst]
    assert (members == 3).mean() > 0.8  # the unstable class is the blends
    clean = int(np.bincount(report.labels[4][truth == 2]).argmax())
    assert dis[clean] < 0.1  # the shape no blend resembles stays put in every member
    assert report.recommended == 3
    assert "| 3 (recommended) |" in report.to_markdown()
    with pytest.raises(ValueError, match="unsupervised classes"):
        suggest_n_classes(x, [2], member="ssvae")


def test_an_ensemble_resumed_from_its_checkpoint_ends_as_one_trained_in_one_go(tmp_path: Any
                                                                             ) -> None:
    x = rotated_classes(60, size=8, seed=0).images

    def build() -> Any:
        return get_model("ensemble", (8, 8), member="jvae", n_members=2, discrete=(3,),
                         hidden=8)

    whole = build().fit(x, epochs=2, **FAST)

    def killed(epoch: int, logs: dict[str, float]) -> None:
        if epoch == 1:  # after the first epoch's checkpoint, before the second's
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build().fit(x, epochs=2, checkpoint_dir=tmp_path, checkpoint_every=1,
                    on_epoch_end=killed, **FAST)
    epochs_run: list[int] = []
    resumed = build().fit(x, epochs=2, resume_from=tmp_path,
                          on_epoch_end=lambda epoch, logs: epochs_run.append(epoch), **FAST)
    assert epochs_run == [1]  # the first epoch came from the checkpoint
    for a, b in zip(whole.members, resumed.members, strict=True):
        assert states_equal(a.module.state_dict(), b.module.state_dict())
    assert resumed.history["train/total"] == whole.history["train/total"]
    grown = get_model("ensemble", (8, 8), member="jvae", n_members=2, discrete=(3,), hidden=8,
                      from_baseline_epochs=1)
    with pytest.raises(ValueError, match="checkpoint"):
        grown.fit(x, epochs=2, checkpoint_dir=tmp_path, **FAST)
