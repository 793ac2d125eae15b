"""Ensembles: N models of one family from different seeds, trained in one vectorised pass.

``EnsembleModule`` holds the members' parameters stacked along a new first axis and its forward
maps ``torch.func.functional_call`` over the members with ``torch.func.vmap`` (independent
random draws per member), returning one ``LossRecord`` whose total is the sum of the members'
losses. Gradients of that sum reach each member's slice only, and Adam is element-wise, so the
one training plan trains N independent models at once.

``Ensemble`` is the user-facing model: fit, then per-member class probabilities aligned to a
reference member (Hungarian matching, since unsupervised members may number their classes
differently), their mean, and their dispersion per sample and per class ("uncertainty").
With ``from_baseline_epochs`` the members are not trained from scratch: one baseline model
trains for that many epochs, and its copies, perturbed and each fed the data in its own
order, train for the rest of the epochs (the members then differ only in what they learned
after the baseline, so their dispersion measures how stable the baseline's classes are).

:func:`suggest_n_classes` trains such ensembles over a range of class counts and reports the
dispersion of every class, recommending the largest count whose classes all stay stable.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import save_file
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.func import functional_call, stack_module_state, vmap

from latentatlas import __version__
from latentatlas._checks import check_array
from latentatlas._repr import html_summary, text_summary
from latentatlas.io import LoadError
from latentatlas.models._saved import (
    check_shapes,
    config_dict,
    expected_shapes,
    load_finite,
    read_header,
    read_history,
    seed_of,
)
from latentatlas.models.base import CONFIG_FILE, HISTORY_FILE, WEIGHTS_FILE, model_folder
from latentatlas.models.config import VAEConfig
from latentatlas.models.losses import LossRecord
from latentatlas.models.registry import capabilities, registered
from latentatlas.train.plan import FitData, TrainConfig, fit_module, split_indices
from latentatlas.train.schedules import Schedule
from latentatlas.train.stream import PatchStream


def _key(name: str) -> str:
    # Parameter names may not contain dots inside a ParameterDict.
    return name.replace(".", "__")


class EnsembleModule(nn.Module):
    """Members' parameters and buffers stacked: each (n_members, *shape).

    members: modules of identical architecture (same class and config). Their forward must be
    free of data-dependent Python control flow (true for the VAE family).
    per_member_data: every data tensor carries a member axis second, (n, n_members, ...), and
    member j sees ``data[:, j]`` (its own order of the samples); otherwise all members see the
    same batch.
    """

    def __init__(self, members: list[nn.Module], per_member_data: bool = False) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.per_member_data = per_member_data
        params, buffers = stack_module_state(members)
        self.n_members = len(members)
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        self.stacked = nn.ParameterDict(
            {_key(k): nn.Parameter(v.detach().clone()) for k, v in params.items()}
        )
        self.persistent = set(members[0].state_dict())
        for k, v in buffers.items():
            self.register_buffer("buf__" + _key(k), v.clone(), persistent=k in self.persistent)
        # The skeleton only supplies code (forward, config, penalties); its tensors live on the
        # meta device and are never used. A tuple keeps it out of the submodules and state_dict.
        self._skeleton = (copy.deepcopy(members[0]).to("meta"),)

    @property
    def schedule_names(self) -> frozenset[str]:
        """The members' schedule names (every member reads the same knobs)."""
        return frozenset(getattr(self._skeleton[0], "schedule_names", ()))

    def member_state(self, i: int) -> dict[str, Tensor]:
        """Member i's state_dict (parameters and persistent buffers) under its own names."""
        out = {k: self.stacked[_key(k)][i].detach() for k in self.param_names}
        out.update(
            {
                k: getattr(self, "buf__" + _key(k))[i]
                for k in self.buffer_names
                if k in self.persistent
            }
        )
        return out

    def forward(
        self, batch: Mapping[str, Tensor], knobs: Mapping[str, float] | None = None
    ) -> LossRecord:
        """Every member's loss on the same batch; total = sum over members, other terms = mean."""
        base = self._skeleton[0]
        base.train(self.training)
        params = {k: self.stacked[_key(k)] for k in self.param_names}
        buffers = {k: getattr(self, "buf__" + _key(k)) for k in self.buffer_names}
        knob_values = dict(knobs or {})

        def one(
            p: dict[str, Tensor], b: dict[str, Tensor], data: dict[str, Tensor]
        ) -> dict[str, Tensor]:
            record: LossRecord = functional_call(base, (p, b), (data, knob_values))
            return record.to_tensors()

        # Argument validation in torch.distributions branches on tensor values, which vmap
        # cannot do; the members' inputs are valid by construction.
        previous = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            with warnings.catch_warnings():
                # affine_grid (transform decoder) has no vmap batching rule yet: torch falls back
                # to a loop over members for that one op and warns every step. Results are exact.
                warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule")
                data_dim = 1 if self.per_member_data else None
                out = vmap(one, in_dims=(0, 0, data_dim), randomness="different")(
                    params, buffers, dict(batch)
                )
        finally:
            Distribution.set_default_validate_args(previous)
        # total = sum over members (each member's gradient is its own loss's); the rest: means
        return LossRecord.from_tensors(
            {k: v.sum() if k == "total" else v.mean() for k, v in out.items()})


def _align_to(target: np.ndarray, probas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member's classes renumbered to best overlap ``target`` (n, K) (Hungarian)."""
    perms = np.zeros((len(probas), probas.shape[2]), np.int64)
    aligned = np.empty_like(probas)
    for j in range(len(probas)):
        overlap = target.T @ probas[j]  # (K_target, K_j)
        rows, cols = linear_sum_assignment(-overlap)
        perms[j, rows] = cols
        aligned[j] = probas[j][:, perms[j]]
    return aligned, perms


def align_to_reference(
    probas: np.ndarray, reference: int | None = 0, max_rounds: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Renumber each member's classes to agree with member ``reference`` or, with None, with
    the consensus of all members.

    probas: (m, n, K) class probabilities of m members on the same n samples. The permutation
    of member j maximises the soft overlap sum_i t[i, a] p_j[i, perm[a]] with the target t
    (Hungarian). Consensus: from each member in turn, align every member to the mean of the
    aligned members until no permutation changes (at most ``max_rounds`` rounds); keep the
    start whose members overlap their mean most. A member that merged two classes then cannot
    impose its split on the others, as it can when it is the reference.
    Returns the aligned probabilities (m, n, K) and permutations (m, K) with
    aligned[j][:, a] = probas[j][:, perms[j, a]].
    """
    p = check_array(probas, "probas", ndim=3, dtype=np.float64)
    if reference is not None:
        if not 0 <= reference < len(p):
            raise ValueError(f"reference must be a member index in [0, {len(p)}) or None, "
                             f"got {reference}")
        return _align_to(p[reference], p)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for start in range(len(p)):
        aligned, perms = _align_to(p[start], p)
        for _ in range(max_rounds):
            aligned, new = _align_to(aligned.mean(0), p)
            if np.array_equal(new, perms):
                break
            perms = new
        agreement = float((aligned * aligned.mean(0)).sum())
        if best is None or agreement > best[0]:
            best = (agreement, aligned, perms)
    assert best is not None
    return best[1], best[2]


@dataclass
class EnsemblePrediction:
    """labels (n,): argmax of the mean; proba (n, K): mean aligned probabilities; std (n, K):
    their standard deviation over members; uncertainty (n,): mean over classes of std;
    disagreement (n,): fraction of members whose class differs from ``labels``;
    per_class (K,): mean uncertainty of the samples given each class (NaN for empty classes);
    members (m, n, K): the aligned member probabilities."""

    labels: np.ndarray
    proba: np.ndarray
    std: np.ndarray
    uncertainty: np.ndarray
    disagreement: np.ndarray
    per_class: np.ndarray
    members: np.ndarray

    @property
    def class_disagreement(self) -> np.ndarray:
        """(K,) mean disagreement of the samples given each class (NaN for empty classes):
        the fraction of members that put a sample of that class elsewhere, on average."""
        k = self.proba.shape[1]
        counts = np.bincount(self.labels, minlength=k)
        sums = np.bincount(self.labels, weights=self.disagreement, minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    @property
    def member_agreement(self) -> np.ndarray:
        """(m,) fraction of samples on which each member's class is the ensemble's: a member
        far below the others settled on a different partition of the data."""
        return (self.members.argmax(2) == self.labels[None]).mean(1)


def summarise(aligned: np.ndarray) -> EnsemblePrediction:
    """Mean, dispersion and disagreement of aligned member probabilities (m, n, K)."""
    p = check_array(aligned, "aligned", ndim=3, dtype=np.float64)
    mean = p.mean(0)
    std = p.std(0)
    labels = mean.argmax(1)
    uncertainty = std.mean(1)
    disagreement = (p.argmax(2) != labels[None]).mean(0)
    k = p.shape[2]
    counts = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=uncertainty, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return EnsemblePrediction(labels, mean, std, uncertainty, disagreement, per_class, p)


MAX_MEMBERS = 1024


def _checked_alignment(value: object, n_members: int) -> np.ndarray | None:
    """The saved (m, K) class permutations, or None; anything else is a LoadError."""
    if value is None:
        return None
    perms = np.asarray(value)
    if (perms.ndim != 2 or len(perms) != n_members or perms.dtype.kind not in "iu"
            or any(sorted(p) != list(range(perms.shape[1])) for p in perms.tolist())):
        raise LoadError(f"'alignment' must hold one permutation of the classes per member "
                        f"({n_members} rows), got {value!r:.200}")
    return perms


def _check_n_members(n_members: object) -> int:
    if isinstance(n_members, bool) or not isinstance(n_members, int) or not (
        1 <= n_members <= MAX_MEMBERS
    ):
        raise ValueError(f"n_members must be an integer in [1, {MAX_MEMBERS}], got "
                         f"{str(n_members)[:40]!r}")
    return n_members


@torch.no_grad()
def perturb_weights(module: nn.Module, scale: float, seed: int) -> None:
    """Add Gaussian noise of ``scale`` times each floating parameter tensor's RMS, in place
    (seeded): copies of one model become distinct starting points."""
    if scale == 0:
        return
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.is_floating_point():
            rms = p.pow(2).mean().sqrt()
            p.add_(torch.randn(p.shape, generator=g).to(p) * scale * rms)


class Ensemble:
    """N members of a registered class-aware family (``jvae``, ``ssvae``...) from seeds
    seed, seed + 1, ...; trained together in one vectorised pass.

    from_baseline_epochs: 0 trains every member from its own random start. A positive value
    first trains one baseline (member 0's start) for that many of the ``epochs`` given to
    ``fit``; each member then starts from a copy of it, its weights perturbed by Gaussian
    noise of ``perturbation`` times each tensor's RMS (seeded by the member's seed), and
    trains for the remaining epochs on the same training samples in its own order, with its
    own random draws (the training data are held once per member for that). Schedules
    continue where the baseline left them; the optimizer state starts afresh. The baseline
    model is kept as ``baseline`` and its history as ``baseline_history``.

    Create with ``get_model("ensemble", input_shape, member="jvae", n_members=8, **config)``.
    """

    def __init__(
        self,
        name: str,
        member: str,
        config: VAEConfig,
        n_members: int = 8,
        seed: int = 0,
        from_baseline_epochs: int = 0,
        perturbation: float = 0.01,
    ) -> None:
        _check_n_members(n_members)
        if from_baseline_epochs < 0:
            raise ValueError(f"from_baseline_epochs must be >= 0 (0 = members from scratch), "
                             f"got {from_baseline_epochs}")
        if not 0 <= perturbation < 1:
            raise ValueError(f"perturbation must be in [0, 1) (noise / weight RMS), got "
                             f"{perturbation}")
        entry = registered(member)
        self.name = name
        self.member = member
        self.config = config
        self.seed = seed
        self.from_baseline_epochs = int(from_baseline_epochs)
        self.perturbation = float(perturbation)
        self.members = [entry.model_class(member, config, seed=seed + i) for i in range(n_members)]
        self.baseline: Any | None = None
        self.history: dict[str, list[float]] = {}
        self.baseline_history: dict[str, list[float]] = {}
        self.train_config: TrainConfig | None = None
        # (m, K) class permutation of every member, fixed by `align` (fit calls it), so class
        # numbers do not change from one prediction call to the next
        self.alignment: np.ndarray | None = None

    def _summary(self) -> dict[str, Any]:
        return {"name": self.name, "member": self.member, "n_members": len(self.members),
                "input_shape": self.config.input_shape, "latents": self.config.latent_names,
                "trained_epochs": len(next(iter(self.history.values()), [])),
                "seed": self.seed}

    def __repr__(self) -> str:
        return text_summary("Ensemble", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("Ensemble", self._summary())

    @classmethod
    def create(
        cls,
        name: str,
        input_shape: tuple[int, ...] | list[int],
        seed: int = 0,
        signal_dims: int | None = None,
        *,
        member: str,
        n_members: int = 8,
        from_baseline_epochs: int = 0,
        perturbation: float = 0.01,
        **config: Any,
    ) -> Ensemble:
        entry = registered(member)
        model_class: Any = entry.model_class
        if model_class is cls:
            raise ValueError("an ensemble's member must be a model family, not 'ensemble'")
        one = model_class.create(
            member, input_shape, seed=seed, signal_dims=signal_dims, **{**entry.defaults, **config}
        )
        return cls(name, member, one.config, n_members=n_members, seed=seed,
                   from_baseline_epochs=from_baseline_epochs, perturbation=perturbation)

    @classmethod
    def from_members(cls, models: list[Any], name: str = "ensemble") -> Ensemble:
        """An ensemble of models trained separately (in other processes or on other machines):
        same family and config, different seeds. Its predictions are those of an ensemble
        trained in one pass."""
        if not models:
            raise ValueError("from_members needs at least one model")
        first = models[0]
        for m in models[1:]:
            if m.name != first.name or m.config != first.config:
                raise ValueError(
                    f"members must share family and config; {m.name!r} (seed {m.seed}) differs "
                    f"from {first.name!r} (seed {first.seed})")
        ens = cls(name, first.name, first.config, n_members=len(models), seed=first.seed)
        ens.members = list(models)
        ens.train_config = first.train_config
        return ens

    @property
    def n_members(self) -> int:
        return len(self.members)

    # -- training ---------------------------------------------------------------------------
    def prepare_fit(self, X: object, y: object | None = None, **options: Any) -> FitData:
        """The fit protocol: the data and schedules of the member family's own
        ``prepare_fit`` (every member trains on them)."""
        return self.members[0].prepare_fit(X, y, **options)

    def fit(
        self,
        X: object,
        y: object | None = None,
        schedules: dict[str, Schedule] | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        groups: object | None = None,
        checkpoint_dir: str | Path | None = None,
        resume_from: str | Path | None = None,
        **train_options: Any,
    ) -> Ensemble:
        """Train every member at once on X (and labels y for semi-supervised members).

        The data and default schedules are what the member family's own ``fit`` would use
        (``groups``: the object of each sample, for families whose ``fit`` takes them).
        train_options: TrainConfig fields (epochs, batch_size, lr, ...); ``epochs`` counts the
        baseline's epochs too when the members grow from a baseline. checkpoint_dir,
        resume_from: as in ``VAEModel.fit``, for members trained from scratch.
        """
        first = self.members[0]
        if getattr(first.config, "class_prior", "uniform") == "learned":
            raise ValueError("joint VAEs with a learned class prior train in two stages (warm-up, "
                             "then the mixture); fit them one by one and combine them with "
                             "Ensemble.from_members (or keep the best: best_member)")
        if y is not None:
            # labelled samples are never held out silently (see SSVAE.fit)
            train_options.setdefault("test_fraction", 0.0)
        prepared = self.prepare_fit(X, y, schedules=schedules, groups=groups, **train_options)
        if isinstance(prepared.data, PatchStream):
            raise ValueError("ensembles train on in-memory data: pass arrays")
        if self.from_baseline_epochs == 0:
            module = EnsembleModule([m.module for m in self.members])
            self.history, config = fit_module(module, prepared, train_options,
                                              checkpoint_dir=checkpoint_dir,
                                              resume_from=resume_from, on_epoch_end=on_epoch_end)
        elif checkpoint_dir is not None or resume_from is not None:
            raise ValueError("an ensemble grown from a baseline trains in two stages and keeps "
                             "no checkpoint; train it in one go (or set from_baseline_epochs=0)")
        else:
            module, config = self._grow_from_baseline(prepared, train_options, on_epoch_end)
        for i, m in enumerate(self.members):
            m.module.load_state_dict(module.member_state(i))
            m.train_config = config
        self.train_config = config
        return self.align(X)

    def align(self, X: object, max_samples: int = 5000, **kwargs: Any) -> Ensemble:
        """Fix the numbering of the members' classes to their consensus on X (at most
        ``max_samples`` evenly spaced samples); every later prediction uses it, so a class
        keeps its number from call to call, even on a single sample. ``fit`` aligns on the
        training data; call it yourself after :meth:`from_members`."""
        if not capabilities(self.member).has_classes:
            return self
        x = self.members[0]._as_tensor(X)
        keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), max_samples)).astype(int))
        _, self.alignment = align_to_reference(self.member_proba(x[keep], **kwargs), None)
        return self

    def _grow_from_baseline(
        self,
        prepared: FitData,
        train_options: dict[str, Any],
        on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    ) -> tuple[EnsembleModule, TrainConfig]:
        """Train the baseline, copy and perturb it into the members, train them on. Returns
        the members' module and the TrainConfig of the whole run."""
        config = TrainConfig(schedules=dict(prepared.schedules), **train_options)
        b = self.from_baseline_epochs
        if b >= config.epochs:
            raise ValueError(f"from_baseline_epochs ({b}) must be smaller than epochs "
                             f"({config.epochs}): the members need epochs of their own")
        baseline = copy.deepcopy(self.members[0])
        self.baseline_history, baseline.train_config = fit_module(
            baseline.module, prepared, {**train_options, "epochs": b}, on_epoch_end=on_epoch_end)
        self.baseline = baseline
        state = baseline.module.state_dict()
        for i, m in enumerate(self.members):
            m.module.load_state_dict(state)
            perturb_weights(m.module, self.perturbation, seed=self.seed + i)
        data = cast(Mapping[str, Tensor], prepared.data)  # arrays: fit refuses a PatchStream
        n = len(data["x"])
        train_idx, test_idx = split_indices(n, config.test_fraction, config.seed)
        orders = []
        for i in range(self.n_members):
            # the same training (and held-out) samples for everyone, in the member's own order
            g = torch.Generator().manual_seed(self.seed + i)
            order = torch.arange(n)
            order[train_idx] = train_idx[torch.randperm(len(train_idx), generator=g)]
            order[test_idx] = test_idx[torch.randperm(len(test_idx), generator=g)]
            orders.append(order)
        index = torch.stack(orders, dim=1)  # (n, members)
        member_data = FitData({k: v[index] for k, v in data.items()}, prepared.schedules)
        module = EnsembleModule([m.module for m in self.members], per_member_data=True)
        steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)

        def shifted(epoch: int, logs: dict[str, float]) -> None:
            assert on_epoch_end is not None
            on_epoch_end(b + epoch, logs)

        self.history, _ = fit_module(
            module, member_data, {**train_options, "epochs": config.epochs - b},
            on_epoch_end=None if on_epoch_end is None else shifted,
            start_step=b * steps_per_epoch)
        return module, config

    # -- predictions ------------------------------------------------------------------------
    def member_proba(self, X: object, **kwargs: Any) -> np.ndarray:
        """Unaligned class probabilities of every member, (m, n, K)."""
        if not capabilities(self.member).has_classes:
            raise ValueError(f"members of {self.member!r} have no classes to predict")
        return np.stack([m.predict_proba(X, **kwargs) for m in self.members])

    def uncertainty(
        self, X: object, reference: int | None = None, **kwargs: Any
    ) -> EnsemblePrediction:
        """Aligned mean prediction and its dispersion over members (see EnsemblePrediction);
        classes aligned to the members' consensus (the one fixed by :meth:`align`, else the
        consensus on X), or to member ``reference``."""
        probas = self.member_proba(X, **kwargs)
        if reference is None and self.alignment is not None:
            return summarise(np.stack([p[:, perm] for p, perm in zip(probas, self.alignment, strict=True)]))
        aligned, _ = align_to_reference(probas, reference)
        return summarise(aligned)

    def predict_proba(self, X: object, **kwargs: Any) -> np.ndarray:
        """Mean aligned class probabilities (n, K)."""
        return self.uncertainty(X, **kwargs).proba

    def predict(self, X: object, **kwargs: Any) -> np.ndarray:
        """Class of the mean aligned probabilities (n,)."""
        return self.uncertainty(X, **kwargs).labels

    def elbo(self, X: object, **kwargs: Any) -> np.ndarray:
        """(m,) each member's mean ELBO per sample on X (its ``elbo``): no labels needed."""
        if not hasattr(self.members[0], "elbo"):
            raise ValueError(f"members of {self.member!r} have no elbo method")
        return np.array([m.elbo(X, **kwargs) for m in self.members])

    def best_member(self, X: object, **kwargs: Any) -> Any:
        """The member with the highest ELBO on X: restarts chosen without labels."""
        return self.members[int(np.argmax(self.elbo(X, **kwargs)))]

    def encode(self, X: object) -> list[Any]:
        """Each member's ``encode`` (named latents)."""
        return [m.encode(X) for m in self.members]

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """config.json (family, member, seeds, member config) and model.safetensors with every
        member's tensors under '<i>.<name>'; written to a temporary folder and renamed."""
        path = Path(path)
        with model_folder(path) as tmp:
            meta = {
                "model": self.name,
                "member": self.member,
                "n_members": self.n_members,
                "latentatlas_version": __version__,
                "seed": self.seed,
                "from_baseline_epochs": self.from_baseline_epochs,
                "perturbation": self.perturbation,
                "config": self.config.to_dict(),
                "train": None if self.train_config is None else self.train_config.to_dict(),
                "alignment": None if self.alignment is None else self.alignment.tolist(),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
            state = {
                f"{i}.{k}": v.detach().cpu().contiguous()
                for i, m in enumerate(self.members)
                for k, v in m.module.state_dict().items()
            }
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / HISTORY_FILE).write_text(json.dumps(self.history))
        return path

    @classmethod
    def from_saved(cls, name: str, meta: dict[str, Any], path: Path) -> Ensemble:
        """The ensemble saved in folder ``path``; config and member count are checked against
        the weights before any member is built."""
        member = meta.get("member")
        if not isinstance(member, str):
            raise ValueError(f"'member' must name a registered model family, got {member!r}")
        entry = registered(member)
        model_class: Any = entry.model_class
        if model_class is cls:
            raise ValueError("an ensemble's member must be a model family, not 'ensemble'")
        n_members = _check_n_members(meta.get("n_members"))
        config = model_class.config_class.from_dict(config_dict(meta))
        seed = seed_of(meta)
        weights = path / WEIGHTS_FILE
        header = read_header(weights)
        one = expected_shapes(lambda: model_class.module_class(config))
        if len(header) != n_members * len(one):
            raise LoadError(
                f"{weights} holds {len(header)} tensors but {n_members} members of "
                f"{member!r} have {n_members * len(one)}; config and weights do not belong "
                "together")
        check_shapes(weights, header,
                     {f"{i}.{k}": v for i in range(n_members) for k, v in one.items()})
        state = load_finite(weights)
        ens = cls(name, member, config, n_members=n_members, seed=seed,
                  from_baseline_epochs=int(meta.get("from_baseline_epochs", 0)),
                  perturbation=float(meta.get("perturbation", 0.01)))
        for i, m in enumerate(ens.members):
            prefix = f"{i}."
            m.module.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        ens.history = read_history(path)
        ens.alignment = _checked_alignment(meta.get("alignment"), n_members)
        return ens


@dataclass
class ClassCountReport:
    """What :func:`suggest_n_classes` found for every number of classes K it tried.

    disagreement[K]: (K,) per class, the mean fraction of members that put the class's samples
    elsewhere (:attr:`EnsemblePrediction.class_disagreement`); dispersion[K]: (K,) the mean
    standard deviation of their probabilities (:attr:`EnsemblePrediction.per_class`);
    sizes[K]: (K,) samples per class; labels[K]: (n,) ensemble classes; unstable[K]: the
    classes whose disagreement exceeds ``threshold``, and the empty ones (no sample given
    them); recommended: the largest K whose classes are all stable (or, when every K has an
    unstable class, the K with the fewest, the one whose worst used class is least unstable
    among those).
    """

    n_classes: tuple[int, ...]
    disagreement: dict[int, np.ndarray]
    dispersion: dict[int, np.ndarray]
    sizes: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]
    unstable: dict[int, tuple[int, ...]]
    threshold: float
    recommended: int

    def to_markdown(self, digits: int = 2) -> str:
        """One row per K: per-class disagreement (class sizes in brackets), unstable classes."""
        rows = ["| K | disagreement per class (size) | unstable |", "|---|---|---|"]
        for k in self.n_classes:
            cells = ", ".join(f"{d:.{digits}f} ({n})"
                              for d, n in zip(self.disagreement[k], self.sizes[k], strict=True))
            mark = " (recommended)" if k == self.recommended else ""
            rows.append(f"| {k}{mark} | {cells} | {list(self.unstable[k]) or '-'} |")
        return "\n".join(rows)


def suggest_n_classes(
    X: object,
    n_classes: Sequence[int],
    member: str = "jvae",
    n_members: int = 8,
    threshold: float = 0.2,
    seed: int = 0,
    from_baseline_epochs: int = 0,
    perturbation: float = 0.01,
    fit_options: Mapping[str, Any] | None = None,
    **config: Any,
) -> ClassCountReport:
    """Train an ensemble of an unsupervised class-aware family for each number of classes in
    ``n_classes`` and report how stable every class is.

    X: (n, *input_shape). member: a family with discrete classes (``jvae``, ``jrvae``), built
    with ``discrete=(K,)`` and ``config``; fit_options: TrainConfig fields for every fit
    (epochs, batch_size, lr, ...). A class is unstable when its samples' mean disagreement
    (the fraction of members that put them elsewhere) exceeds ``threshold``, or when no sample
    is given it: past the K the data support, the extra classes split real ones at places each
    member picks differently, or stay empty.
    Returns a :class:`ClassCountReport`.
    """
    ks = tuple(int(k) for k in n_classes)
    if not ks or min(ks) < 2:
        raise ValueError(f"n_classes must list numbers of classes >= 2, got {list(n_classes)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if "discrete" in config:
        raise ValueError("suggest_n_classes sets discrete=(K,) itself; pass the K to try as "
                         "n_classes")
    entry = registered(member)
    fields = getattr(entry.model_class.config_class, "__dataclass_fields__", {})
    if "discrete" not in fields:
        raise ValueError(f"suggest_n_classes needs a family with unsupervised classes (jvae, "
                         f"jrvae), got member={member!r}")
    x = check_array(X, "X", dtype=np.float32)
    report: dict[str, dict[int, Any]] = {
        "disagreement": {}, "dispersion": {}, "sizes": {}, "labels": {}, "unstable": {}}
    for k in ks:
        ens = Ensemble.create("ensemble", x.shape[1:], seed=seed, member=member,
                              n_members=n_members, from_baseline_epochs=from_baseline_epochs,
                              perturbation=perturbation, discrete=(k,), **config)
        ens.fit(x, **dict(fit_options or {}))
        pred = ens.uncertainty(x)
        dis = pred.class_disagreement
        report["disagreement"][k] = dis
        report["dispersion"][k] = pred.per_class
        report["sizes"][k] = np.bincount(pred.labels, minlength=k)
        report["labels"][k] = pred.labels
        # an empty class is one the ensemble found no use for: K is more than it supports
        report["unstable"][k] = tuple(int(c) for c in np.flatnonzero(np.nan_to_num(dis, nan=1.0)
                                                                     > threshold))
    stable = [k for k in ks if not report["unstable"][k]]
    if stable:
        recommended = max(stable)
    else:
        recommended = min(ks, key=lambda k: (len(report["unstable"][k]),
                                             float(np.nanmax(report["disagreement"][k]))))
    return ClassCountReport(ks, report["disagreement"], report["dispersion"], report["sizes"],
                            report["labels"], report["unstable"], float(threshold), recommended)
