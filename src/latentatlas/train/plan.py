"""The one training plan: Lightning Fabric owns devices, precision and distribution.

The whole dataset sits on the device as tensors; batches are index slices of a seeded
permutation, so there is no per-sample Python work and no DataLoader. Data larger than
memory takes the other path: a :class:`~latentatlas.train.stream.PatchStream` reads blocks of
samples from a store on disk into a shuffled buffer (see :mod:`latentatlas.train.stream`).
Every random draw is derived from (seed, epoch, rank), which makes a run resumed from an
epoch checkpoint identical to an uninterrupted one.

Multi-GPU / multi-node: pass ``devices``, ``num_nodes`` and ``strategy`` (e.g. "ddp") and start
the script with Fabric's launchers: ``fabric run --devices 4 script.py``,
``torchrun --nproc_per_node 4 script.py`` or under SLURM ``srun python script.py``. A plain
``python script.py`` with devices > 1 lets Fabric start the other processes itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from lightning_fabric import Fabric
from torch import Tensor, nn
from tqdm.auto import tqdm

from latentatlas._files import write_atomic
from latentatlas.train.record import LossRecord
from latentatlas.train.schedules import Schedule, check_schedule_names, schedule_to_dict
from latentatlas.train.stream import PatchStream

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Device options pass straight to ``lightning.fabric.Fabric``.

    precision None picks "bf16-mixed" on a GPU and "32-true" elsewhere.
    checkpoint_every: save the training state every N epochs (0 = only at the end when a
    checkpoint_dir is given).
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    test_fraction: float = 0.1
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    compile: bool = False
    checkpoint_every: int = 0
    progress: bool = True
    schedules: dict[str, Schedule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        check_devices(self.accelerator, self.devices, self.precision)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["schedules"] = {k: schedule_to_dict(v) for k, v in self.schedules.items()}
        return values


@dataclass(frozen=True)
class FitData:
    """What a model family's ``prepare_fit`` hands to the training plan.

    data: tensors sharing their first (sample) axis, at least ``x`` (and ``y``, ``condition``,
    ``pair``, ``weight`` as the family's loss reads them), or a
    :class:`~latentatlas.train.stream.PatchStream`. schedules: the family's default schedules
    merged with the user's.
    """

    data: Mapping[str, Tensor] | PatchStream
    schedules: dict[str, Schedule] = field(default_factory=dict)


def train_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """A ``fit``'s keyword arguments without its hand-off options (checkpoint_dir,
    resume_from, on_epoch_end): the TrainConfig fields, which ``prepare_fit`` may read."""
    return {k: v for k, v in options.items()
            if k not in ("checkpoint_dir", "resume_from", "on_epoch_end")}


def fit_module(
    module: nn.Module,
    fit: FitData,
    train_options: Mapping[str, Any],
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    start_step: int = 0,
) -> tuple[dict[str, list[float]], TrainConfig]:
    """The one hand-off from a model's ``fit`` to the plan: ``fit``'s data and schedules with
    ``train_options`` (TrainConfig fields) trained by :func:`train`; the module is left on the
    CPU. Returns the history and the TrainConfig used."""
    config = TrainConfig(schedules=dict(fit.schedules), **train_options)
    history = train(module, fit.data, config, checkpoint_dir=checkpoint_dir,
                    resume_from=resume_from, on_epoch_end=on_epoch_end, start_step=start_step)
    module.to("cpu")
    return history, config


ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def check_devices(accelerator: str, devices: int | str, precision: str | None) -> None:
    """Device options a user can get wrong, checked before any work starts."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got "
                         f"{accelerator!r}")
    if accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {accelerator!r} asked for, but no CUDA GPU is visible to "
                         "PyTorch (is the CUDA build of torch installed?); use accelerator 'cpu' "
                         "or 'auto'")
    ok = (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1) or (
        isinstance(devices, str) and (devices == "auto" or devices.replace(",", "").isdigit()))
    if not ok:
        raise ValueError(f"devices must be a number >= 1, 'auto' or a list like '0,1', got "
                         f"{devices!r}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return accelerator


def make_fabric(config: TrainConfig) -> Fabric:
    accelerator = resolve_accelerator(config.accelerator)
    precision = config.precision or ("bf16-mixed" if accelerator in ("cuda", "gpu") else "32-true")
    return Fabric(
        accelerator=accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=precision,  # type: ignore[arg-type]
    )


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded train/test split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    if n - n_test < 1:
        raise ValueError(f"{n} samples leave none for training at test_fraction={test_fraction}")
    return perm[n_test:], perm[:n_test]


def _seed_for(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**31)


def _batches(data: Mapping[str, Tensor], index: Tensor, batch_size: int) -> list[dict[str, Tensor]]:
    return [{k: v[index[i : i + batch_size]] for k, v in data.items()}
            for i in range(0, len(index), batch_size)]


def train(
    module: nn.Module,
    data: Mapping[str, Tensor] | PatchStream,
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    fabric: Fabric | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    start_step: int = 0,
) -> dict[str, list[float]]:
    """Fit ``module`` (whose forward(batch, knobs) returns a LossRecord) on ``data``.

    data: tensors sharing their first (sample) axis, at least ``x``; or a
    :class:`~latentatlas.train.stream.PatchStream` over samples on disk, whose own held-out
    blocks are the test set (``config.test_fraction`` is then not used).
    start_step: the first value of the step counter that drives the schedules, for a run
    that continues another one (ensemble members grown from a trained baseline).
    Schedules are evaluated at ``step * world_size``: their unit is one batch of
    ``batch_size`` samples, whatever the number of processes sharing the data.
    Returns the history: per-epoch means of every loss term, keys "train/<term>" and
    "test/<term>" (test terms only when test_fraction > 0).
    """
    check_schedule_names(config.schedules, module)
    stream = data if isinstance(data, PatchStream) else None
    tensors: Mapping[str, Tensor] = {} if isinstance(data, PatchStream) else data
    if stream is None:
        if "x" not in tensors:
            raise ValueError("data must hold the samples under the key 'x'")
        n = len(tensors["x"])
        if any(len(v) != n for v in tensors.values()):
            raise ValueError(f"every tensor in data must have {n} samples, got "
                             f"{ {k: len(v) for k, v in tensors.items()} }")
    fabric = fabric or make_fabric(config)
    if not getattr(fabric, "_launched", False):
        fabric.launch()
    if stream is None:
        train_idx, test_idx = split_indices(n, config.test_fraction, config.seed)
        device_data = {k: v.to(fabric.device) for k, v in tensors.items()}
        n_train, has_test = len(train_idx), len(test_idx) > 0
    else:
        n_train, has_test = stream.n_train, stream.n_test > 0
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)

    wrapped = torch.compile(module) if config.compile else module
    model, optimizer = fabric.setup(cast(nn.Module, wrapped), optimizer)

    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    start_epoch, step = 0, start_step
    history: dict[str, list[float]] = {}
    if resume_from is not None:
        # Loaded after setup so the optimizer state lands on the parameters' device.
        state = load_training_state(Path(resume_from), module, config)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        log.warning("resuming from %s at epoch %d (step %d)", resume_from, start_epoch, step)
        if start_epoch >= config.epochs:
            log.info("checkpoint is already at epoch %d of %d", start_epoch, config.epochs)
    rank, world = fabric.global_rank, fabric.world_size
    per_rank = n_train // world
    if per_rank < 1:
        raise ValueError(f"{n_train} training samples cannot be shared by {world} processes")

    epochs = range(start_epoch, config.epochs)
    bar = tqdm(epochs, desc="training", disable=not config.progress or rank != 0, leave=False)
    for epoch in bar:
        model.train()
        torch.manual_seed(_seed_for(config.seed, epoch, rank))
        batches: Iterable[dict[str, Tensor]]
        if stream is None:
            order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(
                _seed_for(config.seed, epoch, 0)))
            mine = train_idx[order][rank * per_rank : (rank + 1) * per_rank].to(fabric.device)
            batches = _batches(device_data, mine, config.batch_size)
        else:
            batches = stream.train_batches(epoch, rank, world, config.batch_size, fabric.device)
        sums: dict[str, Tensor] = {}
        n_batches = 0
        for batch in batches:
            # Schedules count batches of batch_size samples over all processes: each process
            # takes 1/world of the steps, so a schedule planned for one device (joint VAE
            # capacities over the run) reaches the same value at the same epoch on any number.
            knobs = {name: schedule(step * world) for name, schedule in config.schedules.items()}
            record: LossRecord = model(batch, knobs)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(record.total)
            optimizer.step()
            step += 1
            n_batches += 1
            _accumulate(sums, record)
        means = {f"train/{k}": v / n_batches for k, v in sums.items()}
        if has_test:
            test_batches = (
                _batches(device_data, test_idx.to(fabric.device), max(config.batch_size, 1024))
                if stream is None else
                stream.test_batches(max(config.batch_size, 1024), fabric.device))
            means.update({f"test/{k}": v for k, v in
                          evaluate_batches(model, test_batches, config).items()})
        reduced = {k: float(cast(Tensor, fabric.all_reduce(v, reduce_op="mean"))) for k, v in means.items()}
        for k, v in reduced.items():
            history.setdefault(k, []).append(v)
        bar.set_postfix(loss=f"{reduced['train/total']:.4g}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, reduced)
        done = epoch + 1
        if checkpoint_dir is not None and (
            (config.checkpoint_every and done % config.checkpoint_every == 0) or done == config.epochs
        ):
            save_training_state(fabric, module, optimizer, done, step, history, Path(checkpoint_dir),
                                config)
    return history


def evaluate(model: nn.Module, data: Mapping[str, Tensor], index: Tensor, config: TrainConfig,
             epoch: int) -> dict[str, Tensor]:
    """Mean loss terms on ``index`` with a fixed seed (so the test loss is comparable across epochs)."""
    return evaluate_batches(model, _batches(data, index, max(config.batch_size, 1024)), config)


def evaluate_batches(model: nn.Module, batches: Iterable[dict[str, Tensor]], config: TrainConfig
                     ) -> dict[str, Tensor]:
    """Mean loss terms over ``batches`` with a fixed seed, weighted by batch size."""
    model.eval()
    sums: dict[str, Tensor] = {}
    count = 0
    device = next(model.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[] if device.type == "cpu" else None):
        torch.manual_seed(config.seed + 17)
        for batch in batches:
            record: LossRecord = model(batch, {})
            m = len(batch["x"])
            _accumulate(sums, record, weight=m)
            count += m
    return {k: v / count for k, v in sums.items()}


def _accumulate(sums: dict[str, Tensor], record: LossRecord, weight: float = 1.0) -> None:
    # Summed as detached tensors; converted to floats once per epoch to avoid a device sync per step.
    for k, v in record.terms().items():
        value = v.detach().float() * weight
        sums[k] = sums[k] + value if k in sums else value


# What must match between a checkpoint and the run resuming it (the rest, e.g. epochs or
# devices, may change).
_RESUME_KEYS = ("batch_size", "lr", "test_fraction", "seed", "schedules")


def _run_identity(module: nn.Module, config: TrainConfig) -> dict[str, Any]:
    model_config: Any = getattr(module, "config", None)
    to_dict = getattr(model_config, "to_dict", None)
    return {"train": {k: v for k, v in config.to_dict().items() if k in _RESUME_KEYS},
            "model": to_dict() if to_dict is not None else None}


def save_training_state(fabric: Fabric, module: nn.Module, optimizer: Any, epoch: int, step: int,
                        history: dict[str, list[float]], directory: Path,
                        config: TrainConfig) -> None:
    """Everything needed to resume exactly, written atomically (rank 0 only).

    The random state need not be stored: every draw of an epoch is seeded from (seed, epoch,
    rank), and checkpoints fall on epoch boundaries. The step counter drives every schedule.
    """
    if fabric.global_rank == 0:
        state = {
            "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step,
            "history": history,
            "identity": json.dumps(_run_identity(module, config), sort_keys=True),
        }
        write_atomic(directory / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))
    fabric.barrier()


def load_training_state(directory: Path, module: nn.Module, config: TrainConfig) -> dict[str, Any]:
    """The state saved by :func:`save_training_state`, checked against the resuming run."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; train with checkpoint_every > 0 first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file fails in many ways inside torch/zipfile/pickle
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})"
                         ) from exc
    missing = {"model", "optimizer", "epoch", "step", "history"} - set(state)
    if missing:
        raise ValueError(f"{path} is not a latentatlas checkpoint (missing {sorted(missing)})")
    saved = json.loads(state.get("identity", "null") or "null")
    current = json.loads(json.dumps(_run_identity(module, config), sort_keys=True))
    if saved is not None and saved != current:
        diff = [f"{part}.{k}" for part in ("train", "model")
                for k in sorted(set(saved.get(part) or {}) | set(current.get(part) or {}))
                if (saved.get(part) or {}).get(k) != (current.get(part) or {}).get(k)]
        raise ValueError(f"{path} was written by a run with other settings ({', '.join(diff)}); "
                         "resume with the same model and training options, or start afresh")
    return dict(state)
