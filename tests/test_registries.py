"""One place per fact: network names come from the nn registries; schedule names are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentatlas.models import VAEConfig, get_model
from latentatlas.models import config as model_config
from latentatlas.nn import decoders, encoders
from latentatlas.train.schedules import Constant, Linear


def test_config_takes_network_names_from_the_nn_registries() -> None:
    assert model_config.ENCODERS is encoders.ENCODERS
    assert model_config.DECODERS is decoders.DECODERS
    assert set(decoders.DECODERS) == set(decoders.GENERATORS) | set(decoders.POSE_DECODERS)
    with pytest.raises(ValueError, match="encoder") as err:
        VAEConfig(input_shape=(1, 8, 8), encoder="convv")
    assert all(name in str(err.value) for name in encoders.ENCODERS)
    with pytest.raises(ValueError, match="decoder_base") as err:
        VAEConfig(input_shape=(1, 8, 8), decoder="transform", decoder_base="spatial")
    assert all(name in str(err.value) for name in decoders.GENERATORS)


@pytest.mark.parametrize("kind", sorted(decoders.DECODERS))
def test_every_registered_decoder_builds_and_renders_the_input_shape(kind: str) -> None:
    torch.manual_seed(0)
    net = decoders.build_decoder(kind, 3, (2, 8, 8), hidden=8, layers=2, base="conv")
    assert net(torch.randn(5, 3)).shape == (5, 2, 8, 8)


@pytest.mark.parametrize("name", ["vae", "jvae", "ensemble"])
def test_a_misspelt_schedule_name_is_refused_naming_the_allowed_ones(name: str) -> None:
    extra = {"member": "jvae", "n_members": 2} if name == "ensemble" else {}
    model = get_model(name, (8, 8), hidden=8, latent_dim=2, **extra)
    x = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    before = [p.detach().clone() for p in _parameters(model)]
    with pytest.raises(ValueError, match="betaa") as err:
        model.fit(x, schedules={"betaa": Linear(0.0, 1.0, 10)}, epochs=1, progress=False)
    assert "'beta'" in str(err.value)
    # refused before any step: the weights are untouched
    assert all(torch.equal(a, b) for a, b in zip(before, _parameters(model), strict=True))


def _parameters(model: object) -> list[torch.Tensor]:
    members = getattr(model, "members", [model])  # an ensemble holds its members' models
    return [p for m in members for p in m.module.parameters()]


def test_a_known_schedule_name_is_accepted() -> None:
    model = get_model("vae", (8, 8), hidden=8, latent_dim=2)
    x = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    model.fit(x, schedules={"beta": Constant(0.5)}, epochs=1, progress=False, test_fraction=0.0)
    assert np.isfinite(model.history["train/total"]).all()


def test_a_loss_record_flattens_one_way_and_back() -> None:
    from latentatlas.train.record import LossRecord

    rec = LossRecord(torch.tensor(3.0), torch.tensor(2.0), kl={"z": torch.tensor(0.5)},
                     extras={"kl_like": torch.tensor(0.25)})
    back = LossRecord.from_tensors(rec.to_tensors())
    assert back.kl == rec.kl and back.extras == rec.extras and back.total == rec.total
    assert rec.scalars() == {"total": 3.0, "reconstruction": 2.0, "elbo": -2.5, "kl_z": 0.5,
                             "kl_like": 0.25}
