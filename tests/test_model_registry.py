"""Every registered model family, driven by the registry: a new family is tested without new code.

Each family is built from its registry entry (``example`` config) at tiny sizes, and its
declared capabilities (needs labels, takes a condition, has classes, has pose) are checked
against what its models do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latentatlas.models import get_model, list_models, load_model
from latentatlas.models.registry import Capabilities, capabilities, registered

SHAPE = (8, 8)
N = 12
FAMILIES = sorted(list_models())


def _build(name: str, seed: int = 0) -> Any:
    return get_model(name, SHAPE, seed=seed, hidden=8, latent_dim=2, **registered(name).example)


def _data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((N, *SHAPE)).astype(np.float32)


def _labels() -> np.ndarray:
    return np.arange(N) % 3


def _caps(name: str) -> Capabilities:
    return capabilities(name, registered(name).example)


TRAIN = {"epochs": 1, "batch_size": N, "seed": 0, "progress": False, "test_fraction": 0.0}


def _fit(model: Any, name: str, x: np.ndarray) -> None:
    labels = {"y": _labels()} if _caps(name).needs_labels else {}
    model.fit(x, **labels, **TRAIN)


def _members(model: Any) -> list[Any]:
    return list(getattr(model, "members", [model]))  # an ensemble holds one model per member


def _state(model: Any) -> list[torch.Tensor]:
    return [t.detach().clone() for m in _members(model) for t in m.module.state_dict().values()]


def _condition(name: str) -> np.ndarray | None:
    # families whose decoder is conditioned on a known class get the labels as condition
    return _labels() if _caps(name).takes_condition else None


def _outputs(name: str, model: Any, x: np.ndarray) -> list[np.ndarray]:
    out = []
    for m in _members(model):
        out += [m.encode(x).mean, m.reconstruct(x, _condition(name))]
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_save_and_load_give_identical_weights_and_outputs(name: str, tmp_path: Path) -> None:
    model, x = _build(name, seed=3), _data()
    loaded = load_model(model.save(tmp_path / name))
    assert type(loaded) is type(model)
    for a, b in zip(_state(model), _state(loaded), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(_outputs(name, model, x), _outputs(name, loaded, x), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_model_and_one_step_changes_the_weights(name: str) -> None:
    x = _data()
    first, second, other = _build(name, seed=1), _build(name, seed=1), _build(name, seed=2)
    initial = _state(first)
    assert all(torch.equal(a, b) for a, b in zip(initial, _state(second), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(initial, _state(other), strict=True))
    _fit(first, name, x)
    _fit(second, name, x)
    trained = _state(first)
    assert all(torch.equal(a, b) for a, b in zip(trained, _state(second), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(initial, trained, strict=True))


@pytest.mark.parametrize("name", FAMILIES)
def test_gradient_of_the_loss_reaches_the_input(name: str) -> None:
    torch.manual_seed(0)
    for member in _members(_build(name)):
        module = member.module.train()
        x = torch.rand(N, 1, *SHAPE, requires_grad=True)
        batch = {"x": x}
        if member.config.condition_dim > 0:
            batch["condition"] = torch.nn.functional.one_hot(torch.from_numpy(_labels())).float()
        module(batch, {}).total.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_encode_and_reconstruct_shapes(name: str) -> None:
    x = _data()
    for member in _members(_build(name)):
        latents = member.encode(x)
        assert latents.mean.shape == latents.std.shape == (N, len(latents.names))
        assert (latents.std > 0).all()
        assert member.reconstruct(x, _condition(name)).shape == (N, *member.config.input_shape)


def test_an_ensemble_has_the_capabilities_of_its_member_family() -> None:
    for member in ("vae", "cvae", "jvae", "ssrvae"):
        assert capabilities("ensemble", {"member": member}) == capabilities(member)
    assert capabilities("ensemble") == capabilities(registered("ensemble").defaults["member"])
    with pytest.raises(ValueError, match="member"):
        capabilities("ensemble", {"member": "ensemble"})


@pytest.mark.parametrize("name", FAMILIES)
def test_needs_labels_is_what_fit_does(name: str) -> None:
    """A family that needs labels refuses to train without them; one that does not refuses
    them (through the fit protocol every family and ensemble shares)."""
    x = _data()
    if _caps(name).needs_labels:
        with pytest.raises(ValueError, match="label|condition"):
            _build(name).fit(x, **TRAIN)
        _build(name).fit(x, _labels(), **TRAIN)
    else:
        with pytest.raises(ValueError, match="label|condition"):
            _build(name).prepare_fit(x, _labels(), **TRAIN)


@pytest.mark.parametrize("name", FAMILIES)
def test_has_classes_is_what_predict_proba_gives(name: str) -> None:
    model, x = _build(name), _data()
    if not _caps(name).has_classes:
        with pytest.raises((AttributeError, ValueError)):
            model.predict_proba(x)
        return
    _fit(model, name, x)
    proba = model.predict_proba(x)
    k = proba.shape[1]
    assert proba.shape == (N, k) and k >= 2
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x), proba.argmax(1))


@pytest.mark.parametrize("name", FAMILIES)
def test_takes_condition_is_what_reconstruct_needs(name: str) -> None:
    """A conditional family's decoder needs the condition, and another class decodes to
    another image; the other families reconstruct from X alone."""
    x = _data()
    for member in _members(_build(name)):
        if not _caps(name).takes_condition:
            assert member.reconstruct(x).shape == (N, *member.config.input_shape)
            continue
        with pytest.raises(ValueError, match="condition"):
            member.reconstruct(x)
        first = member.reconstruct(x, np.zeros(N, np.int64))
        second = member.reconstruct(x, np.ones(N, np.int64))
        assert not np.allclose(first, second)


@pytest.mark.parametrize("name", FAMILIES)
def test_has_pose_is_what_encode_names(name: str) -> None:
    """Pose latents come first, in the order of the config's pose layout, then the content
    latents; a family has them exactly when it says so."""
    x = _data()
    for member in _members(_build(name)):
        latents = member.encode(x)
        pose = list(member.config.pose.names)
        assert bool(pose) == _caps(name).has_pose
        assert latents.names == pose + latents.content_names
        assert len(latents.content_names) == member.config.latent_dim


class _Recording(Mapping[str, float]):
    """A knobs mapping that records every name the loss looks up."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values, self.read = values, set[str]()

    def __getitem__(self, key: str) -> float:
        self.read.add(key)
        return self.values[key]

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __bool__(self) -> bool:
        return True  # an empty recording must not be swapped for a plain {} by `knobs or {}`


@pytest.mark.parametrize("name", FAMILIES)
def test_schedule_names_are_exactly_the_knobs_the_loss_reads(name: str) -> None:
    """Every knob the loss reads is a schedule the training plan accepts (else it could never
    be scheduled), and every declared name is read unless the config rules it out."""
    torch.manual_seed(0)
    for member in _members(_build(name)):
        module = member.module.train()
        batch = {"x": torch.rand(N, 1, *SHAPE)}
        if member.config.condition_dim > 0:
            batch["condition"] = torch.nn.functional.one_hot(torch.from_numpy(_labels())).float()
        read: set[str] = set()
        # absent knobs take the config's values; present ones can switch a branch on
        for values in ({}, dict.fromkeys(module.schedule_names, 0.5)):
            knobs = _Recording(values)
            with torch.no_grad():
                module(batch, knobs)
            read |= knobs.read
        assert read and read <= set(module.schedule_names)
        assert set(module.schedule_names) - _read_only_under_other_configs(member.config) <= read


def _read_only_under_other_configs(config: object) -> set[str]:
    """Declared schedules a loss reads only under some configs: the Gumbel temperature when
    the classes are sampled (not enumerated), the mixture switch with the learned class prior."""
    names = set()
    if getattr(config, "enumerate_classes", False):
        names.add("temperature")
    if getattr(config, "class_prior", "learned") != "learned":
        names.add("mixture")
    return names
