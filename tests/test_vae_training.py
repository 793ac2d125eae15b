"""Training mechanics: determinism, resume, save/load in a new process, DDP, penalties, schedules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning_fabric import Fabric
from safetensors.torch import load_file

from latentatlas.datasets.shapes import rotated_shapes
from latentatlas.models import get_model, load_model
from latentatlas.train.plan import TrainConfig, train
from latentatlas.train.schedules import (
    Constant,
    Exponential,
    Linear,
    schedule_from_dict,
    schedule_to_dict,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes() -> np.ndarray:
    return rotated_shapes(300, size=12, seed=0).images


def small_rvae(seed: int = 0):
    return get_model("rvae", (12, 12), hidden=32, decoder="transform", seed=seed)


def test_same_seed_same_result_and_weights_change(shapes: np.ndarray) -> None:
    a, b, untouched = small_rvae(), small_rvae(), small_rvae()
    a.fit(shapes, epochs=2, batch_size=50, progress=False)
    b.fit(shapes, epochs=2, batch_size=50, progress=False)
    for (k, va), vb in zip(a.module.state_dict().items(), b.module.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    changed = [not torch.equal(va, v0) for va, v0 in
               zip(a.module.parameters(), untouched.module.parameters(), strict=True)]
    assert all(changed)
    assert a.history == b.history


def test_gradients_reach_the_input(shapes: np.ndarray) -> None:
    model = small_rvae()
    x = torch.from_numpy(shapes[:8]).requires_grad_(True)  # (8, 1, 12, 12)
    model.module({"x": x}, {}).total.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_resume_equals_uninterrupted(shapes: np.ndarray, tmp_path: Path) -> None:
    full = small_rvae()
    full.fit(shapes, epochs=4, batch_size=50, progress=False)
    part = small_rvae()
    part.fit(shapes, epochs=2, batch_size=50, progress=False, checkpoint_dir=tmp_path / "ck",
             checkpoint_every=2)
    resumed = small_rvae(seed=99)  # different init: everything must come from the checkpoint
    resumed.fit(shapes, epochs=4, batch_size=50, progress=False, resume_from=tmp_path / "ck")
    for (k, v1), v2 in zip(full.module.state_dict().items(), resumed.module.state_dict().values(),
                           strict=True):
        assert torch.equal(v1, v2), k
    assert resumed.history == full.history


def test_resume_restores_the_step_that_drives_capacity_and_temperature(shapes: np.ndarray,
                                                                     tmp_path: Path) -> None:
    # 300 samples, 10 % held out, batch 54 -> 5 steps per epoch; the schedules move every step
    schedules = {"capacity_z": Linear(0.0, 4.0, 20), "capacity_d": Linear(0.0, 0.7, 20),
                 "gamma_z": Constant(20.0), "gamma_d": Constant(20.0),
                 "temperature": Linear(1.0, 0.3, 20)}

    def joint(seed: int = 0):
        return get_model("jrvae", (12, 12), hidden=32, discrete=(3,), seed=seed)

    options = dict(batch_size=54, progress=False, schedules=schedules)
    full = joint().fit(shapes, epochs=4, **options)
    joint().fit(shapes, epochs=2, checkpoint_dir=tmp_path / "ck", checkpoint_every=1, **options)
    resumed = joint(seed=5).fit(shapes, epochs=4, resume_from=tmp_path / "ck", **options)
    for (k, v1), v2 in zip(full.module.state_dict().items(), resumed.module.state_dict().values(),
                           strict=True):
        assert torch.equal(v1, v2), k
    assert resumed.history == full.history
    # a checkpoint only resumes the run that wrote it
    with pytest.raises(ValueError, match="other settings.*schedules"):
        joint().fit(shapes, epochs=4, resume_from=tmp_path / "ck",
                    **{**options, "schedules": {**schedules, "temperature": Constant(0.5)}})


def test_saved_model_gives_identical_outputs_in_a_new_process(shapes: np.ndarray, tmp_path: Path) -> None:
    model = small_rvae()
    model.fit(shapes, epochs=1, batch_size=50, progress=False)
    model.save(tmp_path / "model")
    np.save(tmp_path / "x.npy", shapes[:20])
    code = (
        "import sys, numpy as np\n"
        "from latentatlas.models import load_model\n"
        "m = load_model(sys.argv[1])\n"
        "lat = m.encode(np.load(sys.argv[2]))\n"
        "np.save(sys.argv[3], np.concatenate([lat.mean, lat.std], 1))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "model"), str(tmp_path / "x.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=ROOT)
    here = model.encode(shapes[:20])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.concatenate([here.mean, here.std], 1))
    assert load_model(tmp_path / "model").history == model.history
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folders left


def test_two_process_ddp_on_cpu_keeps_identical_weights(tmp_path: Path) -> None:
    env_script = ROOT / "tests" / "scripts" / "ddp_train.py"
    subprocess.run([sys.executable, str(env_script), str(tmp_path)], check=True, cwd=ROOT, timeout=300)
    w0 = load_file(str(tmp_path / "rank0.safetensors"))
    w1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    fresh = small_rvae(seed=3)
    assert any(not torch.equal(w0[k], v) for k, v in fresh.module.state_dict().items() if k in w0)


def test_penalty_hook_changes_what_is_learned(shapes: np.ndarray) -> None:
    """A physics-style prior 'the angle stays near -0.5 rad' pulls the angle latent there."""
    def angle_prior(inputs):
        return ((inputs.means["angle"] + 0.5) ** 2).mean()

    free = small_rvae()
    free.fit(shapes, epochs=5, batch_size=50, lr=3e-3, progress=False)
    pulled = small_rvae().add_penalty("angle_prior", angle_prior, weight=1000.0)
    pulled.fit(shapes, epochs=5, batch_size=50, lr=3e-3, progress=False)
    assert "train/angle_prior" in pulled.history
    pulled_gap = abs(pulled.encode(shapes)["angle"].mean() + 0.5)
    free_gap = abs(free.encode(shapes)["angle"].mean() + 0.5)
    assert pulled_gap < 0.1 and free_gap > pulled_gap + 0.15, (pulled_gap, free_gap)


def test_capacity_schedule_holds_kl_near_the_target(shapes: np.ndarray) -> None:
    model = small_rvae()
    model.fit(shapes, epochs=6, batch_size=50, progress=False,
              schedules={"capacity": Constant(3.0), "gamma": Constant(1000.0)})
    kl = sum(np.array(v) for k, v in model.history.items() if k.startswith("train/kl_"))
    assert abs(kl[-1] - 3.0) < 1.5


def test_schedules_values_and_round_trip() -> None:
    warm = Linear(0.0, 1.0, steps=100, delay=10)
    assert warm(0) == 0.0 and warm(60) == pytest.approx(0.5) and warm(500) == 1.0
    temp = Exponential(1.0, 0.5, steps=10)
    assert temp(0) == 1.0 and temp(10) == pytest.approx(0.5) and temp(5) == pytest.approx(0.5**0.5)
    for s in (warm, temp, Constant(2.0)):
        assert schedule_from_dict(schedule_to_dict(s)) == s
    assert schedule_from_dict(0.3) == Constant(0.3)
    with pytest.raises(ValueError, match="schedule kind"):
        schedule_from_dict({"kind": "cosine"})


class _FourProcessFabric(Fabric):
    """Rank 0 of four: the plan gives it a quarter of the data, as under DDP."""

    @property
    def world_size(self) -> int:
        return 4


@pytest.mark.parametrize("fabric_class", [Fabric, _FourProcessFabric])
def test_joint_capacities_reach_their_targets_on_any_number_of_processes(fabric_class) -> None:
    """The joint VAE plans its capacity ramps for the whole run; with the data shared by four
    processes each takes a quarter of the steps, and the ramps must still end at their targets
    (they stopped at about a third of them when schedules counted each process's own steps)."""
    model = get_model("jvae", (8, 8), discrete=(3,), hidden=8, latent_dim=2, capacity_z=10.0)
    x = np.random.default_rng(0).random((256, 8, 8)).astype(np.float32)
    options = {"epochs": 4, "batch_size": 16, "test_fraction": 0.0}
    prepared = model.prepare_fit(x, **options)
    seen: list[float] = []
    forward = model.module.forward

    def recording(batch, knobs):  # type: ignore[no-untyped-def]
        seen.append(knobs["capacity_z"])
        return forward(batch, knobs)

    model.module.forward = recording  # type: ignore[method-assign]
    fabric = fabric_class(accelerator="cpu", devices=1)
    fabric.launch()
    train(model.module, prepared.data,
          TrainConfig(schedules=prepared.schedules, progress=False, **options), fabric=fabric)
    assert len(seen) == 4 * 256 // 16 // (4 if fabric_class is _FourProcessFabric else 1)
    assert seen[-1] == pytest.approx(10.0)
