"""Joint VAE (Dupont 2018): continuous latents plus discrete latents learned without labels.

The continuous part (content and optional pose: the "joint rVAE") is the core ``VAEModule``;
a second encoder gives the logits of q(c_i | x) for each discrete variable i, and the decoder
is conditioned on the concatenated one-hots (``condition_dim = sum(K_i)``). Objective per sample:

    recon + gamma_z |KL_continuous - C_z(t)| + gamma_d |KL_discrete - C_d(t)|,

with C_d capped at sum log K_i (the largest KL a uniform prior allows). Training samples the
discrete latents with the Gumbel-softmax relaxation at temperature ``temperature`` (a knob, so
a schedule can anneal it) or, with ``enumerate_classes``, sums the reconstruction exactly over
every class combination weighted by q(c | x).

The uniform prior's capacity term is satisfied by confident classes of any sizes, so on its own
it lets every sample share one class; the ``balance`` term that prevents this pulls the classes
to equal sizes. For imbalanced classes, ``class_prior="learned"`` changes the model: the classes
are the components of a Gaussian mixture prior over the content latents, p(c) = pi,
p(z | c) = N(m_c, s_c^2), and q(c | x) is the responsibility p(c | z) (VaDE, Jiang et al. 2017);
no classifier network. The objective is the ELBO (weight ``beta``); the mixture (pi, m, s) is
fitted in closed form: by a GMM on the latents after a warm-up as a plain VAE, then by an
M-step after every epoch in which pi follows the classes' sizes under a
Dirichlet(``prior_concentration``) hyperprior (below 1, a class left with almost no sample
empties). ``fit(X, groups=...)`` names the object each sample shows (views of one crop): the
views share their class in the M-step and the consistency term asks their content latents to
agree. ``elbo(X)`` compares restarts without labels.

Knobs the training plan may pass (schedules): ``capacity_z``, ``capacity_d``, ``gamma_z``,
``gamma_d``, ``temperature``, ``balance``, ``consistency``, ``mixture`` (0 during the learned
prior's warm-up). Missing knobs take the config's values (the final capacities).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

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


CLASS_PRIORS = ("uniform", "learned")


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    """KL(Categorical(logits) || Uniform(K)) per sample (n,) = log K - entropy."""
    log_q = F.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum(-1) + math.log(logits.shape[-1])


def categorical_kl(logits: Tensor, log_prior: Tensor) -> Tensor:
    """KL(Categorical(logits) || Categorical(exp(log_prior))) per sample (n,)."""
    log_q = F.log_softmax(logits, dim=-1)
    return (log_q.exp() * (log_q - log_prior)).sum(-1)


@dataclass(frozen=True)
class JointConfig(VAEConfig):
    """VAEConfig plus discrete latents.

    discrete: number of classes K_i of each discrete variable, e.g. (10,) or (3, 2).
    class_prior: ``uniform`` (Dupont 2018: KL to the uniform prior under the capacity
    C_d) or ``learned`` (the Gaussian mixture prior of the module docstring, with learned
    class weights; the capacities, gammas, temperature and ``balance`` then do not apply, and
    ``consistency`` compares the content latents of two views). prior_concentration: alpha of
    the Dirichlet(alpha) hyperprior on the learned weights (1 = none, below 1 empties classes
    expected to hold fewer than 1 - alpha objects). tied_mixture: the learned prior's components
    share one weight (1/K) and one diagonal variance (their responsibility-weighted mean), a
    soft k-means in the content latents: no class can absorb a rare one by a larger weight or
    spread (``prior_concentration`` then does not apply).
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
    class_prior: str = "uniform"
    prior_concentration: float = 1.0
    tied_mixture: bool = False
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
        if self.class_prior not in CLASS_PRIORS:
            _fail("class_prior", f"one of {CLASS_PRIORS}", self.class_prior)
        if not self.prior_concentration > 0:
            _fail("prior_concentration", "> 0", self.prior_concentration)
        if self.class_prior == "learned" and self.balance:
            _fail("balance", "0 with class_prior='learned' (it pulls the classes to equal sizes)",
                  self.balance)
        if self.tied_mixture and self.class_prior != "learned":
            _fail("tied_mixture", "False unless class_prior='learned'", self.tied_mixture)
        if self.class_prior == "learned" and len(discrete) != 1:
            _fail("discrete", "one discrete variable (K,) with class_prior='learned'", discrete)
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
    equal their sum. Shared by the joint and the semi-supervised VAE. ``classifier``: build
    the network of q(c | x) (a subclass that derives q(c | x) otherwise passes False).
    """

    def __init__(self, config: VAEConfig, sizes: tuple[int, ...], classifier: bool = True
                 ) -> None:
        super().__init__(config)
        self.sizes = tuple(sizes)
        if classifier:
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
        max_log_scale: float, pair: Tensor | None = None,
    ) -> Tensor:
        """Mean over samples of KL(q(c|x) || q(c|x')) summed over discrete variables, where x'
        is ``pair`` (another view of the same object, e.g. a rotated copy cut from the same
        crop) or else T x for a random affine map T per sample
        (``nn.pose.random_pose_matrix``). q(c|x) is held fixed (no gradient), so the other view
        learns to agree with it, not the reverse."""
        if pair is None:
            matrix = random_pose_matrix(len(x), x.dim() - 2, max_angle, max_shift,
                                        max_log_scale, x)
            pair = warp(x, matrix)
        moved = self.discrete_logits(pair)
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
    """Network and loss of the joint VAE. Batches: ``x`` (n, c, *spatial), optionally ``pair``
    (another view of each sample, for the consistency term)."""

    config: JointConfig
    schedule_names: ClassVar[frozenset[str]] = frozenset(
        {"temperature", "capacity_z", "capacity_d", "gamma_z", "gamma_d", "beta", "balance",
         "consistency", "mixture"})

    def __init__(self, config: JointConfig) -> None:
        mixture = config.class_prior == "learned"
        # with the learned prior the classes are components of a Gaussian mixture over the
        # content latents and q(c | x) is their responsibility: no classifier network
        super().__init__(config, config.discrete, classifier=not mixture)
        if mixture:
            k, d = config.discrete[0], config.latent_dim
            # fitted in closed form (JointVAE.fit: a GMM after the warm-up, then an M-step
            # after every epoch), not by the optimiser
            self.register_buffer("mixture_log_weight", torch.full((k,), -math.log(k)))
            self.register_buffer("mixture_mean", torch.randn(k, d))
            self.register_buffer("mixture_logvar", torch.zeros(k, d))

    def mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        """The mixture's log-weights (K,), means and log-variances (K, d)."""
        return (cast(Tensor, self.mixture_log_weight), cast(Tensor, self.mixture_mean),
                cast(Tensor, self.mixture_logvar))

    def component_log_density(self, content: Tensor) -> Tensor:
        """log N(content; m_k, s_k^2) of each mixture component, (n, K), for content (n, d)."""
        _, mean, logvar = self.mixture()
        diff = content[:, None, :] - mean[None]
        return -0.5 * ((diff**2 / logvar.exp()) + logvar + math.log(2 * math.pi)).sum(-1)

    def discrete_logits(self, x: Tensor) -> list[Tensor]:
        if self.config.class_prior != "learned":
            return super().discrete_logits(x)
        mu, _ = self.encode(x)
        return [self.mixture()[0] + self.component_log_density(mu[:, self.n_pose :])]

    @torch.no_grad()
    def set_mixture(self, weight: Tensor, mean: Tensor, var: Tensor) -> None:
        """Set the mixture: weights (K,) (zeros allowed: an empty class), means and variances
        (K, d) of the content latents."""
        log_weight, old_mean, logvar = self.mixture()
        log_weight.copy_(torch.log(weight.clamp_min(1e-30)))
        old_mean.copy_(mean)
        logvar.copy_(torch.log(var.clamp_min(1e-6)))

    def forward(
        self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None
    ) -> LossRecord:
        if self.config.class_prior == "learned":
            return self.mixture_forward(batch, knobs or {})
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
        return self._finish(batch, knobs, x, logits, nll, kl, total, extras)

    def mixture_forward(self, batch: Mapping[str, Tensor], knobs: Mapping[str, float]
                        ) -> LossRecord:
        """The ELBO of the mixture prior: p(c) = pi, p(z | c) = N(m_c, s_c^2) over the content
        latents, q(c | x) = p(c | z) for the sampled z (as in VaDE, Jiang et al. 2017):

            -log p(x | z, q) + sum_c q_c KL(q(z|x) || N(m_c, s_c^2)) + KL(q(c|x) || pi)
            + KL of the pose latents,

        all with weight ``beta`` (1: the ELBO), plus the Dirichlet hyperprior on pi. The decoder
        sees the soft one-hot q(c | x)."""
        c = self.config
        x = batch["x"]
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        log_prior, mean_k, logvar_k = self.mixture()
        content = slice(self.n_pose, None)
        mu_c, logvar_c = mu[:, content], logvar[:, content]
        logits = log_prior + self.component_log_density(z[:, content])
        kl = self.kl_terms(mu, logvar)
        if knobs.get("mixture", 1.0):
            q = torch.softmax(logits, -1)
            kl_components = 0.5 * (
                logvar_k[None] - logvar_c[:, None]
                + (logvar_c.exp()[:, None] + (mu_c[:, None] - mean_k[None]) ** 2)
                / logvar_k.exp()[None] - 1.0
            ).sum(-1)  # (n, K)
            kl["content"] = (q * kl_components).sum(-1)
            # empty classes (weight 0) have q = 0 there: 0 * log 0 counts as 0
            kl["discrete"] = (q * (torch.log(q.clamp_min(1e-30)) - log_prior.clamp_min(-69.0))
                              ).sum(-1)
        else:
            # warm-up: a plain VAE (content prior N(0, I)); the decoder sees no class
            q = torch.full_like(logits, 1.0 / logits.shape[-1])
        raw = self.decode(z, q)
        nll = reconstruction_nll(x, raw, c.likelihood, self.log_sigma)
        beta = knobs.get("beta", c.beta)
        total = (nll + beta * torch.stack(list(kl.values())).sum(0)).mean()
        extras = self.penalty_extras(x, raw, z, mu, [logits])
        weight = knobs.get("consistency", c.consistency)
        if weight:
            extras["consistency"] = weight * self.content_consistency(
                x, mu_c, logvar_c, batch.get("pair"))
        for value in extras.values():
            total = total + value
        return LossRecord(total=total, reconstruction=nll.mean(),
                          kl={k: v.mean() for k, v in kl.items()}, extras=extras)

    def content_consistency(self, x: Tensor, mu: Tensor, logvar: Tensor, pair: Tensor | None
                            ) -> Tensor:
        """Mean over samples of KL(q(z|x') || q(z|x)) over the content latents, x' the other
        view (``pair``, or a random small warp of x), q(z|x) held fixed: the content latents,
        and with them the mixture's classes, must not change when the object moves."""
        c = self.config
        if pair is None:
            matrix = random_pose_matrix(len(x), x.dim() - 2, c.augment_angle, c.augment_shift,
                                        c.augment_scale, x)
            pair = warp(x, matrix)
        mu_p, logvar_p = self.encode(pair)
        mu_p, logvar_p = mu_p[:, self.n_pose :], logvar_p[:, self.n_pose :]
        mu, logvar = mu.detach(), logvar.detach()
        kl = 0.5 * (logvar - logvar_p + (logvar_p.exp() + (mu_p - mu) ** 2) / logvar.exp() - 1)
        return kl.sum(-1).mean()

    def _finish(self, batch: Mapping[str, Tensor], knobs: Mapping[str, float], x: Tensor,
                logits: list[Tensor], nll: Tensor, kl: dict[str, Tensor], total: Tensor,
                extras: dict[str, Tensor]) -> LossRecord:
        """Add the consistency term and the extras to the total; the record."""
        c = self.config
        weight = knobs.get("consistency", c.consistency)
        if weight:
            extras["consistency"] = weight * self.consistency_term(
                x, logits, c.augment_angle, c.augment_shift, c.augment_scale, batch.get("pair")
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
    def elbo(self, X: object, batch_size: int = 1024, seed: int = 0) -> float:
        """Mean evidence lower bound per sample of X (nats): reconstruction log-likelihood
        minus every KL term (continuous, pose, discrete against the class prior), unweighted,
        from one posterior sample drawn with ``seed``; the classes are the most probable ones.
        Needs no labels, so it can choose between restarts."""
        x = self._as_tensor(X)  # type: ignore[attr-defined]
        self.module.eval()
        total = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size].to(self.device)  # type: ignore[attr-defined]
                record = self.module({"x": xb}, {})
                total += float(record.negative_elbo) * len(xb)
        return -total / len(x)

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


def partner_index(groups: object, n: int, seed: int = 0) -> np.ndarray:
    """For each of n samples, the index of another sample of its group (itself when alone):
    the second view of the consistency term. groups: (n,) integers, e.g. the crop each
    rotated copy was cut from."""
    g = np.asarray(groups)
    if g.shape != (n,) or g.dtype.kind not in "iu":
        raise ValueError(f"groups must be (n,) = ({n},) integers (the object each sample shows), "
                         f"got shape {g.shape} of {g.dtype}")
    rng = np.random.default_rng(seed)
    out = np.arange(n)
    for k in np.unique(g):
        members = np.flatnonzero(g == k)
        if len(members) > 1:
            # a random derangement: every member gets another member of the group
            shift = rng.integers(1, len(members))
            order = rng.permutation(members)
            out[order] = np.roll(order, shift)
    return out


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
        self, X: object, schedules: dict[str, Schedule] | None = None,
        groups: object | None = None, **train_options: Any
    ) -> tuple[dict[str, Tensor], dict[str, Schedule]]:
        """The data dict and schedules ``fit`` hands to the training plan (used by ensembles)."""
        x = self._as_tensor(X)
        options = {
            k: v
            for k, v in train_options.items()
            if k not in ("checkpoint_dir", "resume_from", "on_epoch_end")
        }
        defaults = default_joint_schedules(self.config, total_steps(len(x), options))
        data = {"x": x}
        if groups is not None:
            partner = partner_index(groups, len(x), int(options.get("seed", 0)))
            data["pair"] = x[torch.from_numpy(partner)]
        return data, {**defaults, **(schedules or {})}

    def fit(  # type: ignore[override]  # no condition: classes are learned
        self, X: object, schedules: dict[str, Schedule] | None = None,
        groups: object | None = None, **kwargs: Any
    ) -> JointVAE:
        """Train on X (n, *input_shape) without labels. Schedules not given default to
        ``default_joint_schedules`` (capacities growing over 80% of the run at Dupont's equal
        rate). groups: (n,) the object each sample shows (e.g. rotated copies of one crop):
        the consistency term then compares each sample with another of its group instead of a
        random small warp of itself, and the learned prior's hyperprior counts objects. Further
        keyword arguments are TrainConfig fields and checkpoint options, as in
        ``VAEModel.fit``."""
        if self.config.class_prior == "learned":
            return self._fit_mixture(X, schedules, groups, **kwargs)
        data, merged = self.prepare_fit(X, schedules, groups, **kwargs)
        self._fit_data(data, merged, **kwargs)
        return self

    def _fit_mixture(self, X: object, schedules: dict[str, Schedule] | None,
                     groups: object | None, warmup: float = 0.5, **kwargs: Any) -> JointVAE:
        """The learned-prior joint VAE in two stages. First a plain VAE (content prior
        N(0, I), the decoder seeing no class) for a ``warmup`` fraction of the epochs; then a
        Gaussian mixture of K components fitted to the content means (scikit-learn,
        diagonal covariances, 4 initialisations) starts the classes, and the mixture ELBO
        trains the rest of the epochs, the mixture being refitted in closed form after every
        epoch (:meth:`mixture_m_step`)."""
        from sklearn.mixture import GaussianMixture

        if not 0 < warmup < 1:
            raise ValueError(f"warmup must be a fraction of the epochs in (0, 1), got {warmup}")
        if kwargs.get("checkpoint_dir") is not None or kwargs.get("resume_from") is not None:
            raise ValueError("checkpoints are not supported for the learned-prior joint VAE "
                             "(its mixture is refitted between epochs); train it in one go")
        x = self._as_tensor(X)
        n = len(x)
        g = np.arange(n) if groups is None else np.asarray(groups)
        partner_index(g, n)  # validates groups
        epochs = int(kwargs.pop("epochs", TrainConfig().epochs))
        first = max(1, round(warmup * epochs))
        if epochs - first < 1:
            raise ValueError(f"the learned-prior joint VAE needs epochs >= 2 (warm-up and "
                             f"mixture), got {epochs}")
        seed = int(kwargs.get("seed", 0))
        data, merged = self.prepare_fit(x, schedules, groups, epochs=first, **kwargs)
        self._fit_data(data, {**merged, "mixture": Constant(0.0)}, epochs=first, **kwargs)
        warm_history = self.history
        mu, _ = self._content_posterior(x)
        gmm = GaussianMixture(self.config.discrete[0], covariance_type="diag", n_init=4,
                              random_state=seed).fit(mu)
        self.module.set_mixture(*(torch.as_tensor(a, dtype=torch.float32)
                                  for a in (gmm.weights_, gmm.means_, gmm.covariances_)))
        self.mixture_m_step(x, g)

        def m_step(epoch: int, values: dict[str, float]) -> None:
            self.mixture_m_step(x, g)
            if callback is not None:
                callback(epoch, values)

        callback = kwargs.pop("on_epoch_end", None)
        data, merged = self.prepare_fit(x, schedules, groups, epochs=epochs - first, **kwargs)
        self._fit_data(data, merged, epochs=epochs - first, on_epoch_end=m_step, **kwargs)
        self.history = {key: warm_history.get(key, []) + self.history.get(key, [])
                        for key in {*warm_history, *self.history}}
        self.history["mixture_start_epoch"] = [float(first)]
        return self

    @torch.no_grad()
    def _content_posterior(self, x: Tensor, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and variances (n, d) of the content latents."""
        was_training = self.module.training
        self.module.eval()
        mus, variances = [], []
        for i in range(0, len(x), batch_size):
            mu, logvar = self.module.encode(x[i : i + batch_size].to(self.device))
            mus.append(mu[:, self.module.n_pose :].float().cpu())
            variances.append(logvar[:, self.module.n_pose :].exp().float().cpu())
        self.module.train(was_training)
        return torch.cat(mus).numpy(), torch.cat(variances).numpy()

    @torch.no_grad()
    def mixture_m_step(self, x: Tensor, groups: np.ndarray) -> None:
        """Refit the class prior and the mixture to the current encoder (one EM M-step).

        Responsibilities are taken at the posterior means and averaged over each group (the
        views of one object share their class). Weights follow the Dirichlet(alpha) MAP
        estimate in objects: pi_k proportional to max(n_k + alpha - 1, 0), n_k the expected
        number of objects in class k; with alpha < 1 a class expected to hold fewer than
        1 - alpha objects empties, the stated rule that prunes K. Means and variances are the
        responsibility-weighted moments of the posteriors (variances floored at 1e-4)."""
        mu, var = self._content_posterior(x)
        m = self.module
        log_weight, old_mean, old_logvar = m.mixture()
        device = old_mean.device
        logits = log_weight.cpu() + m.component_log_density(torch.from_numpy(mu).to(device)).cpu()
        resp = torch.softmax(logits.double(), -1).numpy()
        _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        group_resp = np.zeros((len(counts), resp.shape[1]))
        np.add.at(group_resp, inverse, resp)
        group_resp /= counts[:, None]
        resp = group_resp[inverse]
        weight_n = resp.sum(0)
        objects = group_resp.sum(0)
        alpha = self.config.prior_concentration
        weight = np.maximum(objects + alpha - 1.0, 0.0)
        if weight.sum() <= 0:
            weight = objects
        weight = weight / weight.sum()
        safe = np.maximum(weight_n, 1e-12)[:, None]
        mean = resp.T @ mu / safe
        second = resp.T @ (var + mu**2) / safe
        variance = np.maximum(second - mean**2, 1e-4)
        if self.config.tied_mixture:
            weight = np.full_like(weight, 1.0 / len(weight))
            variance[:] = (weight_n[:, None] * variance).sum(0) / weight_n.sum()
        empty = weight_n < 1e-6
        mean[empty] = old_mean.cpu().numpy()[empty]
        variance[empty] = old_logvar.exp().cpu().numpy()[empty]
        m.set_mixture(*(torch.as_tensor(a, dtype=torch.float32, device=device)
                        for a in (weight, mean, variance)))
