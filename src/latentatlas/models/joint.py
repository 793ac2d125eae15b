"""Joint VAE (Dupont 2018): continuous latents plus discrete latents learned without labels.

The continuous part (content and optional pose: the "joint rVAE") is the core ``VAEModule``;
a second encoder gives the logits of q(c_i | x) for each discrete variable i, and the decoder
is conditioned on the concatenated one-hots (``condition_dim = sum(K_i)``). Objective per sample:

    recon + gamma_z |KL_continuous - C_z(t)| + gamma_d |KL_discrete - C_d(t)|,

with C_d capped at sum log K_i (the largest KL a uniform prior allows). Training samples the
discrete latents with the Gumbel-softmax relaxation at temperature ``temperature`` (a knob, so
a schedule can anneal it) or, with ``enumerate_classes``, sums the reconstruction exactly over
every class combination weighted by q(c | x).

Knobs the training plan may pass (schedules): ``capacity_z``, ``capacity_d``, ``gamma_z``,
``gamma_d``, ``temperature``, ``balance``, ``consistency``. Missing knobs take the config's values
(the final capacities).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import RelaxedOneHotCategorical

from latentatlas.models.base import VAEModel
from latentatlas.models.conditional import one_hot_labels
from latentatlas.models.config import MAX_CONDITION, VAEConfig, _fail
from latentatlas.models.losses import LossRecord, PenaltyInput, reconstruction_nll
from latentatlas.models.vae import VAEModule
from latentatlas.nn.encoders import ENCODERS
from latentatlas.nn.pose import random_pose_matrix, warp
from latentatlas.train.plan import TrainConfig, train
from latentatlas.train.schedules import Constant, Linear, Schedule

MAX_ENUMERATED = 256


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    """KL(Categorical(logits) || Uniform(K)) per sample (n,) = log K - entropy."""
    log_q = F.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum(-1) + math.log(logits.shape[-1])


@dataclass(frozen=True)
class JointConfig(VAEConfig):
    """VAEConfig plus discrete latents.

    discrete: number of classes K_i of each discrete variable, e.g. (10,) or (3, 2).
    temperature: Gumbel-softmax temperature when no ``temperature`` schedule is given.
    enumerate_classes: sum exactly over the class combinations (at most 256) instead of sampling.
    capacity_z, capacity_d: final capacities in nats (capacity_d < 0 means sum log K_i).
    gamma_z, gamma_d: weights of the |KL - C| terms. condition_dim is set to sum(discrete).
    balance: weight of KL(batch-mean q(c|x) || uniform), a guard against classes left unused
    (not in Dupont 2018; 0 turns it off).
    capacity_covers_pose: the continuous capacity bounds the KL of the pose latents too (True)
    or only that of the content latents, the pose KL then entering with weight ``beta``.
    consistency: weight of KL(q(c|x) || q(c|T x)) for a random small affine T per sample
    (rotation within +-augment_angle radians, 2-D only; shift within +-augment_shift
    half-widths; log-scale within +-augment_scale): the class must not change when the object
    moves a little (not in Dupont 2018; 0 turns it off).
    """

    discrete: tuple[int, ...] = (10,)
    temperature: float = 0.67
    enumerate_classes: bool = False
    capacity_z: float = 5.0
    capacity_d: float = -1.0
    gamma_z: float = 30.0
    gamma_d: float = 30.0
    balance: float = 0.0
    capacity_covers_pose: bool = True
    consistency: float = 0.0
    augment_angle: float = 0.25
    augment_shift: float = 0.1
    augment_scale: float = 0.1

    def _validate(self) -> None:
        discrete = self.discrete
        if not discrete or min(discrete) < 2 or sum(discrete) > MAX_CONDITION:
            _fail("discrete", f"a non-empty tuple of class counts, each >= 2, summing to at most "
                  f"{MAX_CONDITION}", discrete)
        if self.condition_dim not in (0, sum(discrete)):
            _fail(
                "condition_dim",
                f"0 or sum(discrete)={sum(discrete)} (set from discrete)",
                self.condition_dim,
            )
        object.__setattr__(self, "condition_dim", sum(discrete))
        super()._validate()
        if not self.temperature > 0:
            _fail("temperature", "> 0", self.temperature)
        if self.capacity_z < 0:
            _fail("capacity_z", ">= 0 nats", self.capacity_z)
        weights = (self.gamma_z, self.gamma_d, self.balance, self.consistency)
        if min(weights) < 0:
            _fail("gamma_z, gamma_d, balance and consistency", ">= 0", weights)
        augment = (self.augment_angle, self.augment_shift, self.augment_scale)
        if min(augment) < 0:
            _fail("augment_angle, augment_shift and augment_scale", ">= 0", augment)
        if self.enumerate_classes and math.prod(discrete) > MAX_ENUMERATED:
            _fail(
                "enumerate_classes",
                f"False when the class combinations exceed {MAX_ENUMERATED}",
                math.prod(discrete),
            )

    @property
    def max_discrete_capacity(self) -> float:
        return float(sum(math.log(k) for k in self.discrete))

    @property
    def final_capacity_d(self) -> float:
        cap = self.max_discrete_capacity
        return cap if self.capacity_d < 0 else min(self.capacity_d, cap)


class DiscreteLatentModule(VAEModule):
    """The core VAE plus an encoder of discrete logits; the decoder is conditioned on one-hots.

    ``sizes`` are the class counts of the discrete variables; the config's condition_dim must
    equal their sum. Shared by the joint and the semi-supervised VAE.
    """

    def __init__(self, config: VAEConfig, sizes: tuple[int, ...]) -> None:
        super().__init__(config)
        self.sizes = tuple(sizes)
        self.classifier = ENCODERS[config.encoder](
            config.input_shape, sum(self.sizes), config.hidden, config.layers
        )

    def discrete_logits(self, x: Tensor) -> list[Tensor]:
        """Logits of q(c_i | x) for each discrete variable, each (n, K_i)."""
        return list(self.classifier(x).split(self.sizes, dim=-1))

    def sample_discrete(self, logits: list[Tensor], temperature: float) -> Tensor:
        """Relaxed one-hots (training) or argmax one-hots (eval), concatenated (n, sum K)."""
        if self.training:
            t = torch.tensor(float(temperature), dtype=logits[0].dtype, device=logits[0].device)
            return torch.cat(
                [RelaxedOneHotCategorical(t, logits=lg).rsample() for lg in logits], -1
            )
        return torch.cat([F.one_hot(lg.argmax(-1), lg.shape[-1]).to(lg.dtype) for lg in logits], -1)

    def combinations(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Every class combination: one-hots (M, sum K) and class indices (M, n_discrete)."""
        idx = torch.tensor(
            list(itertools.product(*[range(k) for k in self.sizes])), device=like.device
        )
        onehots = torch.cat([F.one_hot(idx[:, j], k) for j, k in enumerate(self.sizes)], -1)
        return onehots.to(like.dtype), idx

    def enumerated_nll(self, x: Tensor, z: Tensor, logits: list[Tensor]) -> Tensor:
        """E_q(c|x)[-log p(x | z, c)] summed exactly over class combinations, (n,)."""
        onehots, idx = self.combinations(z)
        m, n = len(onehots), len(x)
        raw = self.decode(z.repeat(m, 1), onehots.repeat_interleave(n, 0))
        nll = reconstruction_nll(
            x.repeat(m, *([1] * (x.dim() - 1))), raw, self.config.likelihood, self.log_sigma
        ).view(m, n)
        log_w = sum(F.log_softmax(lg, -1)[:, idx[:, j]] for j, lg in enumerate(logits))  # (n, M)
        return (log_w.exp() * nll.T).sum(1)  # type: ignore[union-attr]

    def balance_term(self, logits: list[Tensor]) -> Tensor:
        """Sum over variables of KL(mean_n q(c|x_n) || uniform); 0 when classes are used equally."""
        out = logits[0].new_zeros(())
        for lg in logits:
            marginal = torch.softmax(lg, -1).mean(0)
            out = out + (marginal * marginal.clamp_min(1e-12).log()).sum() + math.log(lg.shape[-1])
        return out

    def consistency_term(
        self, x: Tensor, logits: list[Tensor], max_angle: float, max_shift: float,
        max_log_scale: float,
    ) -> Tensor:
        """Mean over samples of KL(q(c|x) || q(c|T x)) summed over discrete variables, with T a
        random affine map per sample (``nn.pose.random_pose_matrix``). q(c|x) is held fixed (no
        gradient), so the moved view learns to agree with the original, not the reverse."""
        matrix = random_pose_matrix(len(x), x.dim() - 2, max_angle, max_shift, max_log_scale, x)
        moved = self.discrete_logits(warp(x, matrix))
        out = x.new_zeros(())
        for lg, lg_moved in zip(logits, moved, strict=True):
            log_p = F.log_softmax(lg.detach(), -1)
            out = out + (log_p.exp() * (log_p - F.log_softmax(lg_moved, -1))).sum(-1).mean()
        return out

    def penalty_extras(
        self, x: Tensor, raw: Tensor | None, z: Tensor, mu: Tensor, logits: list[Tensor]
    ) -> dict[str, Tensor]:
        """Weighted penalty terms; reconstruction from ``raw`` or, if None, the argmax classes."""
        if not self.penalties:
            return {}
        if raw is None:
            onehot = torch.cat(
                [F.one_hot(lg.argmax(-1), lg.shape[-1]).to(lg.dtype) for lg in logits], -1
            )
            raw = self.decode(z, onehot)
        inputs = PenaltyInput(
            x=x,
            reconstruction=self.mean_output(raw),
            latents={n: z[:, i] for i, n in enumerate(self.names)},
            means={n: mu[:, i] for i, n in enumerate(self.names)},
        )
        return {name: w * p(inputs) for name, (w, p) in self.penalties.items()}


class JointVAEModule(DiscreteLatentModule):
    """Network and loss of the joint VAE. Batches: ``x`` (n, c, *spatial)."""

    config: JointConfig

    def __init__(self, config: JointConfig) -> None:
        super().__init__(config, config.discrete)

    def forward(
        self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None
    ) -> LossRecord:
        knobs = knobs or {}
        c = self.config
        x = batch["x"]
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.discrete_logits(x)
        raw: Tensor | None = None
        if c.enumerate_classes:
            nll = self.enumerated_nll(x, z, logits)
        else:
            onehot = self.sample_discrete(logits, knobs.get("temperature", c.temperature))
            raw = self.decode(z, onehot)
            nll = reconstruction_nll(x, raw, c.likelihood, self.log_sigma)
        kl = self.kl_terms(mu, logvar)
        capped = kl if c.capacity_covers_pose else {k: v for k, v in kl.items() if k == "content"}
        kl_cont = torch.stack(list(capped.values())).sum(0)
        kl_pose = sum((v for k, v in kl.items() if k not in capped), torch.zeros_like(kl_cont))
        kl_disc = [categorical_kl_uniform(lg) for lg in logits]
        for i, value in enumerate(kl_disc):
            kl[f"discrete{i if len(kl_disc) > 1 else ''}"] = value
        cap_z = knobs.get("capacity_z", c.capacity_z)
        cap_d = min(knobs.get("capacity_d", c.final_capacity_d), c.max_discrete_capacity)
        loss = (
            nll
            + knobs.get("gamma_z", c.gamma_z) * (kl_cont - cap_z).abs()
            + knobs.get("beta", c.beta) * kl_pose
            + knobs.get("gamma_d", c.gamma_d) * (torch.stack(kl_disc).sum(0) - cap_d).abs()
        )
        total = loss.mean()
        extras = self.penalty_extras(x, raw, z, mu, logits)
        weight = knobs.get("balance", c.balance)
        if weight:
            extras["balance"] = weight * self.balance_term(logits)
        weight = knobs.get("consistency", c.consistency)
        if weight:
            extras["consistency"] = weight * self.consistency_term(
                x, logits, c.augment_angle, c.augment_shift, c.augment_scale
            )
        for value in extras.values():
            total = total + value
        return LossRecord(
            total=total,
            reconstruction=nll.mean(),
            kl={k: v.mean() for k, v in kl.items()},
            extras=extras,
        )


class DiscreteModelMixin:
    """Class-aware helpers shared by user-facing models whose module has discrete logits."""

    module: DiscreteLatentModule
    config: VAEConfig
    history: dict[str, list[float]]
    train_config: TrainConfig | None

    def _fit_data(
        self,
        data: dict[str, Tensor],
        schedules: dict[str, Schedule],
        checkpoint_dir: str | Path | None = None,
        resume_from: str | Path | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        **train_options: Any,
    ) -> None:
        """Hand a data dict (``x`` plus labels, masks...) to the one training plan."""
        config = TrainConfig(schedules=dict(schedules), **train_options)
        self.history = train(
            self.module,
            data,
            config,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
            on_epoch_end=on_epoch_end,
        )
        self.train_config = config
        self.module.to("cpu")

    def _condition(self, condition: object | None, n: int) -> Tensor | None:
        # Integer labels (n,) or (n, n_discrete) become the decoder's one-hots.
        if condition is not None:
            arr = np.asarray(condition)
            sizes = self.module.sizes
            if arr.ndim == 0:
                arr = np.full((n, 1), arr)
            if arr.ndim == 1 or (
                arr.ndim == 2 and arr.shape[1] == len(sizes) and arr.shape[1] != sum(sizes)
            ):
                if len(arr) != n:
                    raise ValueError(f"labels must have {n} rows, got {len(arr)}")
                return torch.from_numpy(one_hot_labels(arr, sizes))
        return super()._condition(condition, n)  # type: ignore[misc]

    @torch.no_grad()
    def predict_proba(self, X: object, variable: int = 0, batch_size: int = 4096) -> np.ndarray:
        """q(c | x) of discrete variable ``variable``: (n, K)."""
        if not 0 <= variable < len(self.module.sizes):
            raise ValueError(f"variable must be in [0, {len(self.module.sizes)}), got {variable}")
        x = self._as_tensor(X)  # type: ignore[attr-defined]
        self.module.eval()
        out = []
        for i in range(0, len(x), batch_size):
            logits = self.module.discrete_logits(x[i : i + batch_size].to(self.device))  # type: ignore[attr-defined]
            out.append(torch.softmax(logits[variable].float(), -1).cpu())
        return torch.cat(out).numpy()

    def predict(self, X: object, variable: int = 0, batch_size: int = 4096) -> np.ndarray:
        """Most probable class (n,) of discrete variable ``variable``."""
        return self.predict_proba(X, variable, batch_size).argmax(1)

    @torch.no_grad()
    def reconstruct(
        self, X: object, condition: object | None = None, batch_size: int = 4096
    ) -> np.ndarray:
        """Decoded posterior means with the most probable classes (or the labels given)."""
        if condition is None:
            x = self._as_tensor(X)  # type: ignore[attr-defined]
            self.module.eval()
            parts = []
            for i in range(0, len(x), batch_size):
                logits = self.module.discrete_logits(x[i : i + batch_size].to(self.device))  # type: ignore[attr-defined]
                parts.append(torch.stack([lg.argmax(-1) for lg in logits], 1).cpu())
            condition = torch.cat(parts).numpy()
        return super().reconstruct(X, condition, batch_size)  # type: ignore[misc]

    def traversal(
        self,
        n: int = 8,
        dim: int = 0,
        extent: float = 2.0,
        variable: int = 0,
        others: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """Rows = classes of discrete ``variable``, columns = content latent ``dim`` swept over
        +-extent prior std; the other discrete variables are fixed at ``others`` (default 0).

        Returns (K, n, *input_shape) at zero pose and zero for the other content latents.
        """
        sizes = self.module.sizes
        k_dim = self.config.latent_dim
        if not 0 <= dim < k_dim:
            raise ValueError(f"dim must be in [0, {k_dim}), got {dim}")
        if not 0 <= variable < len(sizes):
            raise ValueError(f"variable must be in [0, {len(sizes)}), got {variable}")
        fixed = list(others) if others is not None else [0] * len(sizes)
        if len(fixed) != len(sizes):
            raise ValueError(
                f"others must give a class for each of the {len(sizes)} discrete variables"
            )
        k = sizes[variable]
        values = np.linspace(-extent, extent, n, dtype=np.float32)
        z = np.zeros((k * n, k_dim), np.float32)
        z[:, dim] = np.tile(values, k)
        labels = np.tile(np.asarray(fixed, np.int64), (k * n, 1))
        labels[:, variable] = np.repeat(np.arange(k), n)
        images = self.decode(z, condition=labels)  # type: ignore[attr-defined]
        return images.reshape(k, n, *self.config.input_shape)


def default_joint_schedules(config: JointConfig, total_steps: int) -> dict[str, Schedule]:
    """Dupont's capacities, scaled to the run length: the continuous one ramps linearly from 0
    to ``capacity_z`` over the first 80% of training and the discrete one grows at the same
    rate in nats per step until its final value, so it fills first (it is the smaller, at most
    sum log K). Constant gammas and temperature."""
    ramp = max(int(0.8 * total_steps), 1)
    final_d = config.final_capacity_d
    rate = config.capacity_z / ramp
    ramp_d = ramp if rate == 0 else min(ramp, max(round(final_d / rate), 1))
    return {
        "capacity_z": Linear(0.0, config.capacity_z, ramp),
        "capacity_d": Linear(0.0, final_d, ramp_d),
        "gamma_z": Constant(config.gamma_z),
        "gamma_d": Constant(config.gamma_d),
        "temperature": Constant(config.temperature),
    }


def total_steps(n: int, train_options: Mapping[str, Any]) -> int:
    """Optimisation steps the training plan will take for n samples with these options."""
    cfg = TrainConfig(**{k: v for k, v in train_options.items() if k != "schedules"})
    n_train = n - int(round(n * cfg.test_fraction))
    return cfg.epochs * math.ceil(max(n_train, 1) / cfg.batch_size)


class JointVAE(DiscreteModelMixin, VAEModel):
    """Joint VAE: unsupervised discrete classes + continuous latents (+ optional pose).

    ``predict``/``predict_proba`` give q(c | x); ``traversal`` shows each class along a latent.
    """

    config_class = JointConfig
    module_class = JointVAEModule
    config: JointConfig
    module: JointVAEModule

    def prepare_fit(
        self, X: object, schedules: dict[str, Schedule] | None = None, **train_options: Any
    ) -> tuple[dict[str, Tensor], dict[str, Schedule]]:
        """The data dict and schedules ``fit`` hands to the training plan (used by ensembles)."""
        x = self._as_tensor(X)
        options = {
            k: v
            for k, v in train_options.items()
            if k not in ("checkpoint_dir", "resume_from", "on_epoch_end")
        }
        merged = {
            **default_joint_schedules(self.config, total_steps(len(x), options)),
            **(schedules or {}),
        }
        return {"x": x}, merged

    def fit(  # type: ignore[override]  # no condition: classes are learned
        self, X: object, schedules: dict[str, Schedule] | None = None, **kwargs: Any
    ) -> JointVAE:
        """Train on X (n, *input_shape) without labels. Schedules not given default to
        ``default_joint_schedules`` (capacities growing over 80% of the run at Dupont's equal
        rate). Further keyword arguments are TrainConfig fields and checkpoint options, as in
        ``VAEModel.fit``."""
        data, merged = self.prepare_fit(X, schedules, **kwargs)
        self._fit_data(data, merged, **kwargs)
        return self
