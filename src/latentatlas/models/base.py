"""The user-facing model: fit, encode, decode, reconstruct, manifold, save, load.

It owns a pure ``nn.Module`` (the network and its loss) and hands training to the one training
plan in ``latentatlas.train.plan``. Families that need more (classes, labels) extend it in their
own modules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from latentatlas import __version__
from latentatlas._checks import check_array
from latentatlas._files import atomic_directory, safe_text
from latentatlas._repr import html_summary, text_summary
from latentatlas.io import LoadError
from latentatlas.models._saved import (
    MAX_CONFIG_BYTES,
    check_shapes,
    config_dict,
    expected_shapes,
    load_finite,
    read_header,
    read_history,
    read_json,
    seed_of,
)
from latentatlas.models.config import VAEConfig, normalise_shape
from latentatlas.models.latents import Latents
from latentatlas.models.losses import Penalty
from latentatlas.models.vae import VAEModule
from latentatlas.train.plan import FitData, TrainConfig, fit_module
from latentatlas.train.schedules import Schedule
from latentatlas.train.stream import PatchStream

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.json"
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE})


@contextmanager
def model_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder to write a saved model into, swapped in as ``path`` when complete.

    An existing ``path`` is replaced only when it is empty or a saved model (nothing but
    config.json, model.safetensors, history.json): saving never deletes other files.
    """
    path = Path(path)
    if path.exists():
        entries = {e.name for e in path.iterdir()} if path.is_dir() else None
        if entries is None or not entries <= MODEL_FILES:
            raise ValueError(
                f"cannot save a model to {safe_text(path)}: it exists and is not a saved model "
                f"(it holds {', '.join(sorted(entries or {path.name})[:5])}); choose a new folder")
    with atomic_directory(path) as tmp:
        yield tmp


class VAEModel:
    """A model of the VAE family (plain, shift, rotation; optionally conditional).

    Create it with ``latentatlas.models.get_model(name, input_shape, ...)``.
    """

    config_class: type[VAEConfig] = VAEConfig
    module_class: type[VAEModule] = VAEModule

    def __init__(self, name: str, config: VAEConfig, seed: int = 0) -> None:
        self.name = name
        self.config = config
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = self.module_class(config)
        self.history: dict[str, list[float]] = {}
        self.train_config: TrainConfig | None = None

    @classmethod
    def create(cls, name: str, input_shape: tuple[int, ...] | list[int], seed: int = 0,
               signal_dims: int | None = None, channels: str | None = None,
               **config: Any) -> VAEModel:
        if signal_dims not in (None, 1, 2):
            raise ValueError(f"signal_dims must be 1 (spectra) or 2 (images), got {signal_dims}")
        shape = normalise_shape(input_shape, image=None if signal_dims is None else signal_dims == 2,
                                channels=channels)
        return cls(name, cls.config_class(input_shape=shape, **config), seed=seed)

    # -- display ----------------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        epochs = len(next(iter(self.history.values()), []))
        return {"name": self.name, "input_shape": self.config.input_shape,
                "latents": self.config.latent_names,
                "parameters": sum(p.numel() for p in self.module.parameters()),
                "trained_epochs": epochs, "seed": self.seed}

    def __repr__(self) -> str:
        return text_summary(type(self).__name__, self._summary())

    def _repr_html_(self) -> str:
        return html_summary(type(self).__name__, self._summary())

    # -- data -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def _as_tensor(self, X: object, name: str = "X") -> Tensor:
        """(n, *input_shape) float32 tensor; single-channel data may omit the channel axis."""
        shape = self.config.input_shape
        arr = check_array(X, name, ndim=(len(shape), len(shape) + 1))
        if arr.ndim == len(shape):
            if shape[0] != 1:
                raise ValueError(f"{name} has shape {arr.shape} but the model expects {shape[0]} "
                                 f"channels: pass (n, {', '.join(map(str, shape))})")
            arr = arr[:, None]
        if arr.shape[1:] != shape and arr.ndim == 4 and arr.shape[1:] == (*shape[1:], shape[0]):
            raise ValueError(
                f"{name} has shape {arr.shape}: channel-last (n, h, w, c) where the model takes "
                f"channels first {shape}; pass np.moveaxis({name}, -1, 1)")
        if arr.shape[1:] != shape:
            raise ValueError(
                f"{name} samples have shape {arr.shape[1:]} but the model was built for "
                f"{shape} (channels first); cut patches of that size or build a new model"
            )
        if self.config.likelihood == "bernoulli" and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} must lie in [0, 1] for the Bernoulli likelihood; rescale it "
                             "or use likelihood='gaussian'")
        return torch.from_numpy(np.ascontiguousarray(arr))

    def _condition(self, condition: object | None, n: int) -> Tensor | None:
        if self.config.condition_dim == 0:
            if condition is not None:
                raise ValueError("condition given to a model built with condition_dim=0")
            return None
        if condition is None:
            raise ValueError(f"this model is conditional: pass condition of shape (n, "
                             f"{self.config.condition_dim})")
        arr = check_array(condition, "condition", ndim=2)
        if arr.shape != (n, self.config.condition_dim):
            raise ValueError(f"condition must have shape ({n}, {self.config.condition_dim}), "
                             f"got {arr.shape}")
        return torch.from_numpy(arr)

    # -- training ---------------------------------------------------------------------------
    def add_penalty(self, name: str, penalty: Penalty, weight: float = 1.0) -> VAEModel:
        """Add a term ``weight * penalty(PenaltyInput)`` to the loss (a physics-based prior).

        The callable receives the batch, the reconstruction and the latents by name (see
        ``latentatlas.models.losses.PenaltyInput``) and returns a scalar tensor. Penalties are
        code, so they are not saved with the model: add them again before resuming training.
        """
        self.module.penalties[name] = (float(weight), penalty)
        return self

    def prepare_fit(
        self,
        X: object,
        y: object | None = None,
        *,
        condition: object | None = None,
        schedules: dict[str, Schedule] | None = None,
        groups: object | None = None,
        **train_options: Any,
    ) -> FitData:
        """The fit protocol, shared by every family: the data and schedules ``fit`` hands to
        the training plan (ensembles prepare their members' data with it).

        y: class labels (n,), for the families that learn from them; here they are the
        decoder's condition (a conditional VAE), else refused. groups: (n,) the object each
        sample shows, for families with a consistency term (refused here). train_options:
        the TrainConfig fields of the run (families whose defaults depend on the run length
        read them).
        """
        if groups is not None:
            raise ValueError(f"groups are for models with a consistency term (jvae, ssvae); "
                             f"{self.name!r} takes none")
        if y is not None:
            if not self.config.condition_dim:
                raise ValueError(f"{self.name!r} does not learn from class labels: leave y out, "
                                 "or use a model that does (cvae, ssvae)")
            if condition is not None:
                raise ValueError("pass either y (class labels) or condition (factor vectors), "
                                 "not both")
            condition = y
        data: dict[str, Tensor] | PatchStream
        if isinstance(X, PatchStream):
            if self.config.condition_dim:
                raise ValueError("conditional models train on in-memory data: pass arrays")
            data = X.reshaped(self.config.input_shape)
        else:
            data = {"x": self._as_tensor(X)}
            cond = self._condition(condition, len(data["x"]))
            if cond is not None:
                data["condition"] = cond
        return FitData(data, dict(schedules or {}))

    def fit(
        self,
        X: object,
        condition: object | None = None,
        schedules: dict[str, Schedule] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume_from: str | Path | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        **train_options: Any,
    ) -> VAEModel:
        """Train on X: (n, *input_shape) (the channel axis may be omitted for one channel), or
        a :class:`~latentatlas.train.stream.PatchStream` of such samples on disk (streamed in
        blocks; its held-out blocks are the test set).

        train_options are TrainConfig fields: epochs, batch_size, lr, test_fraction, seed,
        accelerator, devices, num_nodes, strategy, precision, compile, checkpoint_every,
        progress. schedules: e.g. {"beta": Linear(0, 1, 1000)} or {"capacity": Linear(0, 25,
        5000), "gamma": Constant(30)}.
        """
        prepared = self.prepare_fit(X, condition=condition, schedules=schedules, **train_options)
        return self._train(prepared, checkpoint_dir=checkpoint_dir, resume_from=resume_from,
                           on_epoch_end=on_epoch_end, **train_options)

    def _train(
        self,
        prepared: FitData,
        checkpoint_dir: str | Path | None = None,
        resume_from: str | Path | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        **train_options: Any,
    ) -> VAEModel:
        """Train the module on prepared data through the one hand-off to the plan
        (:func:`~latentatlas.train.plan.fit_module`); keep its history and TrainConfig."""
        self.history, self.train_config = fit_module(
            self.module, prepared, train_options, checkpoint_dir=checkpoint_dir,
            resume_from=resume_from, on_epoch_end=on_epoch_end)
        return self

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, X: object, batch_size: int = 4096) -> Latents:
        """Posterior means and standard deviations of every latent, by name."""
        x = self._as_tensor(X)
        self.module.eval()
        mus, stds = [], []
        for i in range(0, len(x), batch_size):
            mu, logvar = self.module.encode(x[i : i + batch_size].to(self.device))
            mus.append(mu.float().cpu())
            stds.append(torch.exp(0.5 * logvar).float().cpu())
        prior = getattr(self.module, "prior_scale", None)
        return Latents(list(self.module.names), torch.cat(mus).numpy(), torch.cat(stds).numpy(),
                       prior_std=None if prior is None else prior.detach().cpu().numpy())

    @torch.no_grad()
    def decode(self, z: object, angle: object | None = None, shift: object | None = None,
               log_scale: object | None = None, condition: object | None = None) -> np.ndarray:
        """Images (n, *input_shape) for content latents z (n, k); pose latents default to 0.

        angle: (n,) radians; shift: (n, 2) (x, y) or (n,) for 1-D, in half-widths.
        """
        z_arr = check_array(z, "z", ndim=(1, 2))
        z_arr = z_arr.reshape(len(z_arr), -1)
        if z_arr.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have {self.config.latent_dim} columns, got {z_arr.shape[1]}")
        n = len(z_arr)
        pose = np.zeros((n, len(self.config.pose)), np.float32)
        columns = self.config.pose.split(pose)  # views into ``pose``, filled in place
        for given, column, name in zip((angle, shift, log_scale), columns,
                                       ("angle", "shift", "log_scale"), strict=True):
            if given is not None and column is not None:
                column[...] = check_array(given, name).reshape(column.shape)
        latents = torch.from_numpy(np.concatenate([pose, z_arr], axis=1)).to(self.device)
        cond = self._condition(condition, n)
        self.module.eval()
        raw = self.module.decode(latents, None if cond is None else cond.to(self.device))
        return self.module.mean_output(raw).float().cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, X: object, condition: object | None = None, batch_size: int = 4096) -> np.ndarray:
        """Decoded posterior means, same shape as the model input (n, *input_shape)."""
        x = self._as_tensor(X)
        cond = self._condition(condition, len(x))
        self.module.eval()
        out = []
        for i in range(0, len(x), batch_size):
            mu, _ = self.module.encode(x[i : i + batch_size].to(self.device))
            c = None if cond is None else cond[i : i + batch_size].to(self.device)
            out.append(self.module.mean_output(self.module.decode(mu, c)).float().cpu())
        return torch.cat(out).numpy()

    def manifold(self, n: int = 8, dims: tuple[int, int] = (0, 1), extent: float = 2.0,
                 condition: object | None = None) -> np.ndarray:
        """Canonical (zero pose) decodings over a grid of two content latents.

        Returns (n, n, *input_shape): row i sweeps dims[1] from +extent to -extent, column j
        sweeps dims[0] from -extent to +extent (in prior standard deviations); other content
        latents are 0. With one content latent the grid is (1, n, *input_shape).
        condition: one condition vector (condition_dim,) used for every cell.
        """
        k = self.config.latent_dim
        values = np.linspace(-extent, extent, n, dtype=np.float32)
        if k == 1:
            z = values[:, None]
            rows, cols = 1, n
        else:
            if not (0 <= dims[0] < k and 0 <= dims[1] < k and dims[0] != dims[1]):
                raise ValueError(f"dims must be two different content latents in [0, {k}), got {dims}")
            z = np.zeros((n * n, k), np.float32)
            gy, gx = np.meshgrid(values[::-1], values, indexing="ij")
            z[:, dims[0]], z[:, dims[1]] = gx.ravel(), gy.ravel()
            rows, cols = n, n
        cond = None
        if condition is not None:
            cond = np.repeat(check_array(condition, "condition").reshape(1, -1), len(z), axis=0)
        images = self.decode(z, condition=cond)
        return images.reshape(rows, cols, *self.config.input_shape)

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write config.json, model.safetensors and history.json into the folder ``path``.

        The folder appears complete or not at all: it is written under a temporary name and
        renamed.
        """
        path = Path(path)
        with model_folder(path) as tmp:
            meta = {
                "model": self.name,
                "latentatlas_version": __version__,
                "seed": self.seed,
                "config": self.config.to_dict(),
                "train": None if self.train_config is None else self.train_config.to_dict(),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
            state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / HISTORY_FILE).write_text(json.dumps(self.history))
        return path

    @classmethod
    def from_saved(cls, name: str, meta: dict[str, Any], path: Path) -> VAEModel:
        """The model saved in folder ``path`` whose config.json holds ``meta``; checked against
        its weights before anything is built (``latentatlas.models._saved``)."""
        config = cls.config_class.from_dict(config_dict(meta))
        seed = seed_of(meta)
        weights = path / WEIGHTS_FILE
        check_shapes(weights, read_header(weights),
                     expected_shapes(lambda: cls.module_class(config)))
        state = load_finite(weights)
        model = cls(name, config, seed=seed)
        model.module.load_state_dict(state)
        model.history = read_history(path)
        return model


def load_model(path: str | Path) -> Any:
    """Load a model saved with ``save``: JSON config and safetensors weights, never a pickle.

    Raises FileNotFoundError when a file is missing and LoadError (a ValueError) naming the
    folder and the problem when config.json or the weights are damaged or do not match.
    """
    from latentatlas.models.registry import registered

    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.exists():
        raise FileNotFoundError(f"{path} is not a saved model: {CONFIG_FILE} is missing")
    meta = read_json(config_file, MAX_CONFIG_BYTES)
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise LoadError(f"{config_file} must be a JSON object naming the model family under "
                        "'model'; the model folder is damaged")
    try:
        entry = registered(meta["model"])
        return entry.model_class.from_saved(meta["model"], meta, path)
    except LoadError:
        raise
    except ValueError as exc:
        raise LoadError(f"cannot load the model in {path}: {config_file.name}: {exc}") from exc
