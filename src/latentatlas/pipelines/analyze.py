"""The main job: image or stack -> atoms (or sliding windows) -> patches -> VAE -> latent
maps and classes -> results file, figures and an HTML page.

``analyze`` is the Python entry point; ``latentatlas analyze`` is a thin shell over it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._files import safe_text, write_atomic, write_text_atomic
from latentatlas._latent_names import DEFAULT_LATENT_DIM, content_columns, is_content_latent
from latentatlas._repr import html_summary, text_summary
from latentatlas.analysis.baselines import Baselines
from latentatlas.analysis.labels import LatentLabels, gmm_labels, label_image
from latentatlas.analysis.latent_maps import LatentMaps, latent_maps, typical_spacing
from latentatlas.descriptors.patches import NORMALIZE_MODES, Patches, as_stack, extract_patches
from latentatlas.descriptors.timedelay import time_delay_stack
from latentatlas.descriptors.windows import choose_window, sliding_windows
from latentatlas.io import Dataset, load
from latentatlas.io.calibration import Calibration
from latentatlas.models.latents import LatentActivity
from latentatlas.pipelines.outputs import OutputPlan, check_output, results_folder, save_signals

log = logging.getLogger(__name__)

__all__ = ["AnalysisConfig", "AnalysisResult", "analyze", "load_example", "EXAMPLES"]

ATOM_METHODS = ("peaks", "log", "dcnn", "none", "given")
EXAMPLES = {
    "lattice": "generated perovskite-like lattice with two kinds of sites (256 x 256)",
    "lattice-small": "the same lattice, 128 x 128 (fast; used by tests)",
}


@dataclass(frozen=True)
class AnalysisConfig:
    """Every choice of an analysis run (saved as ``config.json`` beside the results).

    atoms: atom finder (``peaks``, ``log``, ``dcnn``), ``none`` for sliding windows, or
        ``given`` when coordinates were passed in.
    window: patch side in pixels (None: twice the typical atom spacing; for sliding windows
        ``descriptors.windows.choose_window``: from the PFM phase's domain width, else 32).
    stride: sliding-window step (None: window // 4).
    model: a registered VAE family name (``vae``, ``shiftvae``, ``rvae``, ...).
    latent_dim: content latents. batch_size, lr: training.
    epochs: None chooses them for the number of patches: enough epochs for about ``steps``
        optimiser steps (at least 20, at most 1000). Real scans give a few hundred to a few
        thousand patches; 20 epochs of 128 were ~120 steps on a 256 x 256 PFM scan, too few
        to leave the prior, and every latent collapsed on half the scans (issue 13).
    steps: the number of optimiser steps the automatic epochs aim for.
    kl_warmup: the KL weight rises linearly from 0 to the model's beta over this fraction of
        the steps (plain VAE family only; 0 = off), so the encoder learns to use its latents
        before the prior pulls them in.
    train_samples: train on a seeded random subset of at most this many patches (None: all);
        every patch is encoded. One CPU epoch of the rVAE on 40,000 22x22 patches took
        minutes (benchmarks/RESULTS.md), and a few thousand patches of a lattice
        already cover its variability.
    n_components: GMM size (None: chosen by BIC up to ``max_components``).
    cluster_on: ``content`` (z1..zk; pose latents are nuisance) or ``all`` latents.
    normalize, border: patch options (see ``extract_patches``). The default ``auto`` is
        ``background`` for patches around atoms: the slow background and local contrast
        changes are removed at the scale ``background_sigma`` (None: the window, i.e. two
        atomic spacings) before cutting, so classes follow the sublattices instead of a
        gradient or a thickness change. For sliding windows it is ``image``: there the
        contrast between windows (a domain's phase, its switched fraction) is the signal,
        and dividing by the local contrast lowered the latents' correlation with the
        switched fraction on the real PZT scans (benchmarks/RESULTS.md, issue 13).
    channel: channel of a multi-channel file; a list of channels (e.g. ["AmplitudeRetrace",
        "PhaseRetrace"]) stacks them as the channels of every patch (multilayer descriptors).
        invert: negate the image first, for contrast where atoms are dark (annular bright
        field, some SPM channels).
    time_delay: frames per descriptor for stacks (1 = off): frames t, t+lag, ..,
        t+(time_delay-1)*lag become the channels of one patch, in time order (time-delay
        descriptors); atoms or windows are taken from frame t.
    seed: for training and the GMM.
    model_from: reuse a trained model instead of training one: a previous ``analyze``
        results folder or a saved model folder (``model.save``). The patch side is the
        model's; ``model``, ``latent_dim`` and the training settings are then unused.
    atom_options: keyword arguments for ``descriptors.atoms.find_atoms`` (spacing,
        threshold, n_classes, ...); atoms are found on the first channel.
    model_options: further config fields of the registered model, e.g.
        ``{"equivariant_angle": False}`` for the rVAE's plain encoder (about five times faster
        per training step; its angle latent can absorb content when several kinds of object
        share the patches).
    """

    atoms: str = "peaks"
    window: int | None = None
    stride: int | None = None
    model: str = "rvae"
    latent_dim: int = DEFAULT_LATENT_DIM
    epochs: int | None = None
    steps: int = 3000
    kl_warmup: float = 0.3
    batch_size: int = 64
    train_samples: int | None = 5000
    lr: float = 1e-3
    n_components: int | None = None
    max_components: int = 6
    cluster_on: str = "content"
    normalize: str = "auto"
    background_sigma: float | None = None
    border: str = "drop"
    channel: int | str | list[int | str] | None = None
    time_delay: int = 1
    lag: int = 1
    invert: bool = False
    seed: int = 0
    model_from: str | None = None
    atom_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        taken = {"input_shape", "latent_dim", "seed"} & set(self.model_options)
        if taken:
            raise ValueError(f"model_options cannot set {sorted(taken)}: they come from the "
                             "patches, latent_dim and seed")
        if self.atoms not in ATOM_METHODS:
            raise ValueError(f"atoms must be one of {ATOM_METHODS} (or an array of coordinates "
                             f"passed to analyze), got {self.atoms!r}")
        if self.window is not None and self.window < 4:
            raise ValueError(f"window must be >= 4 pixels, got {self.window}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.cluster_on not in ("content", "all"):
            raise ValueError(f"cluster_on must be 'content' or 'all', got {self.cluster_on!r}")
        if self.train_samples is not None and self.train_samples < 4:
            raise ValueError(f"train_samples must be >= 4 or None, got {self.train_samples}")
        if self.time_delay < 1 or self.lag < 1:
            raise ValueError(f"time_delay and lag must be >= 1, got {self.time_delay}, {self.lag}")
        if (self.epochs is not None and self.epochs < 1) or self.latent_dim < 1:
            raise ValueError(f"epochs (or None) and latent_dim must be >= 1, got {self.epochs}, "
                             f"{self.latent_dim}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0 <= self.kl_warmup <= 1:
            raise ValueError(f"kl_warmup must be in [0, 1] (a fraction of the steps), got "
                             f"{self.kl_warmup}")
        if self.normalize not in ("auto", *NORMALIZE_MODES):
            raise ValueError(f"normalize must be 'auto' or one of {NORMALIZE_MODES}, got "
                             f"{self.normalize!r}")
        if self.background_sigma is not None and not self.background_sigma > 0:
            raise ValueError(f"background_sigma must be > 0 pixels or None, got "
                             f"{self.background_sigma}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def normalization(self, windows: bool) -> str:
        """The normalisation used: ``normalize``, with ``auto`` resolved for atom patches
        (``background``) or sliding windows (``image``)."""
        if self.normalize != "auto":
            return self.normalize
        return "image" if windows else "background"


@dataclass
class AnalysisResult:
    """What ``analyze`` produced (also written to ``out`` when given)."""

    config: AnalysisConfig
    image: np.ndarray  # (n_frames, c, h, w) as analysed
    patches: Patches
    maps: LatentMaps
    labels: LatentLabels
    model: Any
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None
    truth: dict[str, np.ndarray] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    activity: LatentActivity | None = None
    baselines: Baselines | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def _summary(self) -> dict[str, Any]:
        return {"model": self.config.model, "frames": int(self.image.shape[0]),
                "image": f"{self.image.shape[2]} x {self.image.shape[3]} px, "
                         + self.calibration.describe(),
                "patches": len(self.patches), "window": self.patches.window,
                "latents": self.maps.names, "classes": self.labels.n_components,
                "scores": self.scores or None, "out": self.out}

    def __repr__(self) -> str:
        return text_summary("AnalysisResult", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("AnalysisResult", self._summary())

    def plot(self) -> dict[str, Any]:
        """The figures of the report as ``{name: matplotlib Figure}`` (maps calibrated)."""
        return {name: fig for name, (_, fig) in _figure_set(self).items()}

    def to_signals(self) -> dict[str, Any]:
        """Latent and class maps as calibrated HyperSpy signals (needs ``hyperspy``); see
        :func:`latentatlas.pipelines.signals.analysis_signal_dicts`."""
        from latentatlas.pipelines.signals import analysis_signal_dicts, to_signals

        return to_signals(analysis_signal_dicts(self))

    def explore(self, **options: Any) -> Any:
        """The interactive explorer of this result in a Jupyter notebook (the same views as
        ``explorer.html`` in the results folder)."""
        from latentatlas.report import explore

        return explore(self, **options)

    @property
    def label_image(self) -> np.ndarray:
        """Classes of frame 0 painted at the patch centres, ``(h, w)``, NaN elsewhere."""
        sel = self.patches.frames == 0
        return label_image(self.labels.labels[sel], self.patches.centers[sel],
                           self.patches.image_shape)


# ------------------------------------------------------------------------------- input


def load_example(name: str) -> tuple[Dataset, dict[str, np.ndarray]]:
    """A built-in example by name (``example:lattice``) and its ground truth."""
    from latentatlas.datasets.lattices import two_site_lattice

    key = name.removeprefix("example:")
    if key not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; available: "
                         + ", ".join(f"example:{k}" for k in EXAMPLES))
    shape = (256, 256) if key == "lattice" else (128, 128)
    lat = two_site_lattice(shape=shape)
    data = load(lat.image)
    data.name = f"example:{key}"
    data.metadata["example"] = EXAMPLES[key]
    return data, {"positions": lat.positions, "classes": lat.classes}


def _load_stack(source: Any, channel: Any) -> tuple[Dataset, np.ndarray]:
    """Load one source, or several files as the frames of one stack (e.g. repeated scans of
    one area); a list of channels becomes the channels of every frame."""
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    channels = channel if isinstance(channel, list) else [channel]
    frames, first = [], None
    for src in sources:
        layers = []
        for ch in channels:
            data = load(src, channel=ch)
            first = first or data
            layers.append(_images_from(data))
        frames.append(np.concatenate(layers, axis=1))
    if len({f.shape[1:] for f in frames}) != 1:
        raise ValueError(f"the files have different image sizes {[f.shape[2:] for f in frames]}; "
                         "frames of one stack must match")
    assert first is not None
    return first, np.concatenate(frames, axis=0)


def _images_from(data: Dataset) -> np.ndarray:
    """Dataset -> ``(n_frames, c, h, w)`` float32, refusing spectrum images."""
    if data.axes and data.axes[-1].kind == "spectral" and data.ndim >= 2:
        raise ValueError(
            f"{data.source or 'the input'} is a spectrum image {data.shape} (last axis "
            f"{data.axes[-1].name!r}); analyze works on images and image stacks: use "
            "latentatlas unmix for spectral cubes"
        )
    arr = np.asarray(data.data)
    # files often carry singleton batch/channel axes, e.g. (1, h, w, 1)
    arr = arr.reshape([n for n in arr.shape if n != 1]) if arr.ndim > 2 else arr
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"analyze needs an image (h, w), a stack (n_frames, h, w) or (n_frames, c, h, w); "
            f"got shape {data.shape}"
        )
    return as_stack(arr, "image")


def _as_points(found: Any) -> tuple[np.ndarray, np.ndarray]:
    """Whatever an atom finder returns -> ``(n, 2)`` (row, col) and ``(n,)`` classes."""
    if hasattr(found, "positions"):
        pos = np.asarray(found.positions, dtype=np.float64)
        cls = getattr(found, "classes", None)
        cls_arr = np.zeros(len(pos), np.int64) if cls is None else np.asarray(cls, np.int64)
        return pos.reshape(-1, 2), cls_arr
    if isinstance(found, tuple) and len(found) == 3:
        r, c, k = (np.asarray(a) for a in found)
        return np.stack([r, c], axis=1).astype(np.float64), k.astype(np.int64)
    arr = np.asarray(found, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] in (2, 3):
        cls_arr = arr[:, 2].astype(np.int64) if arr.shape[1] == 3 else np.zeros(len(arr), np.int64)
        return arr[:, :2], cls_arr
    raise ValueError(f"cannot read atom coordinates from a {type(found).__name__}")


def _input_paths(source: Any) -> list[str]:
    """The files a run reads (a results folder must never replace one)."""
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    return [os.fspath(s) for s in sources if isinstance(s, (str, os.PathLike))
            and not str(s).startswith("example:")]


def _find_atoms(
    stack: np.ndarray, method: str, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atoms in every frame (on the first channel): centres, classes, frames."""
    from latentatlas.descriptors.atoms import find_atoms

    images = stack[0, 0] if stack.shape[0] == 1 else stack[:, 0]
    found = find_atoms(images, method=method, **options)
    centers, classes = _as_points(found)
    frames = getattr(found, "frame", None)
    frm = np.zeros(len(centers), np.int64) if frames is None else np.asarray(frames, np.int64)
    return centers, classes, frm


def _auto_window(spacing: float, image_shape: tuple[int, int]) -> int:
    """About two atomic spacings (the atom and its first neighbours), even, >= 8 pixels."""
    w = int(2 * np.ceil(spacing))
    return int(np.clip(w + (w % 2), 8, max(8, min(image_shape) // 2)))


# ------------------------------------------------------------------------------- run


def analyze(
    source: Any,
    atoms: str | np.ndarray = "peaks",
    window: int | None = None,
    model: str = "rvae",
    out: str | Path | None = None,
    *,
    frames: Any = None,
    progress: bool = True,
    overwrite: bool = False,
    figure_formats: Sequence[str] = (),
    **options: Any,
) -> AnalysisResult:
    """Run the whole analysis on an image, a stack, a file or ``"example:lattice"``.

    Parameters
    ----------
    source : file path (anything ``latentatlas.load`` reads), array ``(h, w)``,
        ``(n_frames, h, w)`` or ``(n_frames, c, h, w)``, a Dataset, or ``example:<name>``.
    atoms : ``peaks``, ``log``, ``dcnn`` (atom finders), ``none`` (sliding windows) or an
        array of known coordinates ``(n, 2)``/``(n, 3)`` (row, col[, class]); pass
        ``frames=`` with it for stacks.
    window : patch side in pixels (default: twice the typical atom spacing; for sliding
        windows sized from the PFM phase's domain width, else 32: ``choose_window``).
    model : registered model name.
    out : folder for results.h5, config.json, figures, model and index.html; built under a
        temporary name and swapped in when complete. An existing latentatlas results folder
        is replaced; any other existing folder is refused before the work starts, unless
        ``overwrite`` (then only latentatlas's own files in it are replaced; see
        :mod:`latentatlas.pipelines.outputs`).
    figure_formats : ``svg`` and/or ``pdf`` copies of every figure beside the PNGs.
    options : further :class:`AnalysisConfig` fields (epochs, latent_dim, n_components, ...).
    """
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    given = None if isinstance(atoms, str) else np.asarray(atoms, dtype=np.float64)
    if options.get("model_from") is not None:
        options["model_from"] = os.fspath(options["model_from"])
    cfg = AnalysisConfig(atoms=atoms if isinstance(atoms, str) else "given", window=window,
                         model=model, **options)
    pretrained = None if cfg.model_from is None else _pretrained(cfg)
    if pretrained is not None:
        cfg = dataclasses.replace(cfg, model=pretrained.name,
                                  window=int(pretrained.config.input_shape[-1]))
    inputs = _input_paths(source)
    plan = None if out is None else check_output(out, inputs, overwrite)
    truth = None
    from tqdm.auto import tqdm

    # one bar over the stages; training shows its own per-epoch bar
    bar = tqdm(total=6 if out is not None else 5, desc="analyze", disable=not progress,
               leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    t = time.perf_counter()
    if isinstance(source, str) and source.startswith("example:"):
        data, truth = load_example(source)
        stack = _images_from(data)
    else:
        data, stack = _load_stack(source, cfg.channel)
    if cfg.time_delay > 1:
        stack = time_delay_stack(stack, cfg.time_delay, cfg.lag)
    if cfg.invert:
        stack = -stack
    n_frames, _, h, w = stack.shape
    timings["load"] = time.perf_counter() - t
    step("loaded")
    log.info("analysing %s: %d frame(s) of %d x %d", data.name or data.source, n_frames, h, w)

    # -- descriptors
    t = time.perf_counter()
    if cfg.atoms == "given" and given is None:
        raise ValueError("atoms='given' needs the coordinates: pass atoms=array of (row, col)")
    if cfg.atoms != "none":
        if given is not None:
            centers, classes = _as_points(given)
            frm = (np.zeros(len(centers), np.int64) if frames is None
                   else np.asarray(frames, np.int64))
        else:
            centers, classes, frm = _find_atoms(stack, cfg.atoms, dict(cfg.atom_options))
        timings["atoms"] = time.perf_counter() - t
        if len(centers) == 0:
            raise ValueError(f"the atom finder {cfg.atoms!r} found no atoms; try another "
                             "method or atoms='none' (sliding windows)")
        win = cfg.window or _auto_window(typical_spacing(centers[frm == frm[0]]), (h, w))
        t = time.perf_counter()
        patches = extract_patches(stack, centers, win, frames=frm, classes=classes,
                                  border=cfg.border,  # type: ignore[arg-type]
                                  normalize=cfg.normalization(windows=False),  # type: ignore[arg-type]
                                  background_sigma=cfg.background_sigma or win)
    else:
        if cfg.window is None:
            phase = _phase_channel(cfg, stack, data)
            choice = choose_window((h, w), None if phase is None else phase[0])
            win, why, size = choice.window, choice.why, choice.domain_size
        else:
            win, why, size = cfg.window, "given", None
        patches = sliding_windows(stack, win, cfg.stride or max(1, win // 4),
                                  normalize=cfg.normalization(windows=True),  # type: ignore[arg-type]
                                  background_sigma=cfg.background_sigma or win)
        patches.extra["window_rule"] = why
        if size is not None:
            patches.extra["domain_size_px"] = round(size, 1)
        log.info("sliding windows of %d px: %s", win, why)
    timings["patches"] = time.perf_counter() - t
    step(f"{len(patches)} patches")
    log.info("%d patches of %d x %d (%d dropped at the border)", len(patches), win, win,
             patches.n_dropped)
    if len(patches) < 4:
        raise ValueError(f"only {len(patches)} patches: too few to train a model; use a smaller "
                         "window or a larger image")

    # -- model
    from latentatlas.models import get_model

    X = patches.as_model_input()
    shape = X.shape[1:]
    if pretrained is not None:
        expected = tuple(pretrained.config.input_shape)  # (channels, h, w)
        got = tuple(shape) if len(shape) == len(expected) else (1, *shape)
        if got != expected:
            raise ValueError(
                f"the model from {cfg.model_from} takes patches {expected} but these are {got}: "
                "use the same channels (and time_delay) as its run")
        vae = pretrained
        training: dict[str, Any] = {"reused": str(cfg.model_from)}
        log.info("reusing the trained %s from %s (no training)", vae.name, cfg.model_from)
    else:
        vae = get_model(cfg.model, input_shape=shape, latent_dim=cfg.latent_dim, seed=cfg.seed,
                        **cfg.model_options)
        train_x = X
        if cfg.train_samples is not None and len(X) > cfg.train_samples:
            pick = np.sort(np.random.default_rng(cfg.seed).choice(len(X), cfg.train_samples,
                                                                  replace=False))
            train_x = X[pick]
            log.info("training on %d of %d patches (train_samples)", len(train_x), len(X))
        t = time.perf_counter()
        training = training_plan(cfg, len(train_x), vae)
        vae.fit(train_x, epochs=training["epochs"], batch_size=training["batch_size"],
                lr=cfg.lr, seed=cfg.seed, progress=progress, schedules=training.pop("schedules"))
        timings["train"] = time.perf_counter() - t
    step("trained")
    t = time.perf_counter()
    lat = vae.encode(X)
    timings["encode"] = time.perf_counter() - t
    maps = latent_maps(lat, patches)
    activity = lat.activity()
    if activity.collapsed:
        log.warning("%s", activity.warning())
    step("encoded")

    # -- labels
    t = time.perf_counter()
    if cfg.cluster_on == "content":
        cols = content_columns(maps.names)
    else:
        cols = list(range(len(maps.names)))
    labels = gmm_labels(maps.values[:, cols], n_components=cfg.n_components,
                        max_components=cfg.max_components, random_state=cfg.seed,
                        feature_names=[maps.names[i] for i in cols])
    timings["labels"] = time.perf_counter() - t
    step(f"{labels.n_components} classes")

    t = time.perf_counter()
    baselines = _baselines(stack, patches, maps, activity, labels, cfg, data)
    timings["baselines"] = time.perf_counter() - t
    log.info("verdict: %s", baselines.verdict)
    result = AnalysisResult(config=cfg, image=stack, patches=patches, maps=maps, labels=labels,
                            model=vae, timings=timings, truth=truth,
                            calibration=_calibration(data), activity=activity,
                            baselines=baselines, training=training)
    if truth is not None:
        result.scores = _score_against_truth(result, truth)
    if plan is not None:
        t = time.perf_counter()
        result.out = _write_run(result, data, plan, inputs, tuple(figure_formats))
        timings["write"] = time.perf_counter() - t
        step("written")
    bar.close()
    timings["total"] = time.perf_counter() - t_all
    return result


def _pretrained(cfg: AnalysisConfig) -> Any:
    """The model of ``cfg.model_from``: an analyze results folder (its ``model``) or a saved
    model folder."""
    from latentatlas.models import load_model

    path = Path(str(cfg.model_from))
    folder = path / "model" if (path / "model").is_dir() else path
    if not folder.is_dir():
        raise ValueError(f"model_from {path} is neither an analyze results folder nor a saved "
                         "model folder")
    return load_model(folder)


def training_plan(cfg: AnalysisConfig, n_train: int, model: Any) -> dict[str, Any]:
    """Batch size, epochs and KL warm-up for ``n_train`` training patches (see AnalysisConfig).

    The fit holds out 10 % for its test loss, so an epoch is ceil(0.9 n / batch) steps.
    """
    from latentatlas.models.vae import VAEModule
    from latentatlas.train.schedules import Linear

    batch = max(1, min(cfg.batch_size, n_train))
    per_epoch = max(1, int(np.ceil(0.9 * n_train / batch)))
    epochs = cfg.epochs or int(np.clip(np.ceil(cfg.steps / per_epoch), 20, 1000))
    total = epochs * per_epoch
    schedules: dict[str, Any] = {}
    # Only the plain VAE family's loss reads one "beta" knob for all its KL terms; the joint
    # and semi-supervised families bring their own capacity schedules.
    if cfg.kl_warmup > 0 and getattr(model, "module_class", None) is VAEModule:
        warm = max(1, int(cfg.kl_warmup * total))
        schedules["beta"] = Linear(0.0, float(model.config.beta), warm)
    return {"epochs": epochs, "batch_size": batch, "steps": total, "schedules": schedules,
            "kl_warmup_steps": int(schedules["beta"].steps) if schedules else 0}


def _phase_channel(cfg: AnalysisConfig, stack: np.ndarray, data: Dataset) -> np.ndarray | None:
    """The PFM phase ``(n_frames, h, w)`` (sign as analysed), or None when there is none:
    taken from the channel's name, or the file's quantity when the stack has that one
    channel. It gives domains and walls (window size, switched fraction, wall density)."""
    channels = cfg.channel if isinstance(cfg.channel, list) else [cfg.channel]
    phase = [i for i, c in enumerate(channels) if isinstance(c, str) and "phase" in c.lower()]
    if not phase and stack.shape[1] == 1 and "phase" in str(data.quantity or "").lower():
        phase = [0]
    if not phase or cfg.time_delay != 1:
        return None
    sign = -1.0 if cfg.invert else 1.0
    return sign * stack[:, phase[0]]


def _baselines(stack: np.ndarray, patches: Patches, maps: LatentMaps, activity: LatentActivity,
               labels: LatentLabels, cfg: AnalysisConfig, data: Dataset) -> Baselines:
    """PCA, PCA k-means/GMM and plain descriptors on the same patches (analysis.baselines)."""
    from latentatlas.analysis.baselines import (
        background_level,
        compute_baselines,
        pfm_descriptors,
        plain_descriptors,
    )

    if patches.grid_shape is not None:
        raw = sliding_windows(stack, patches.window, int(patches.extra["stride"]), normalize="none")
    else:
        raw = extract_patches(stack, patches.centers, patches.window, frames=patches.frames,
                              border=cfg.border, normalize="none")  # type: ignore[arg-type]
    channels = cfg.channel if isinstance(cfg.channel, list) else [cfg.channel]
    names = [str(c) for c in channels] if len(channels) == stack.shape[1] else None
    desc = plain_descriptors(raw.data, np.median(stack, axis=(0, 2, 3)), names)
    desc["background"] = background_level(stack[:, 0], patches.centers, 2.0 * patches.window,
                                          patches.frames)
    phase = _phase_channel(cfg, stack, data)
    if phase is not None:
        desc.update(pfm_descriptors(phase, patches))
    return compute_baselines(patches.as_model_input(), maps.values, maps.names, activity,
                             labels.labels, desc, max_components=cfg.max_components,
                             seed=cfg.seed)


def _score_against_truth(result: AnalysisResult, truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Adjusted Rand index of the labels against the true classes of matched atoms."""
    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    pos = result.patches.centers[result.patches.frames == 0]
    lab = result.labels.labels[result.patches.frames == 0]
    d, idx = cKDTree(truth["positions"]).query(pos, k=1)
    ok = d <= 0.25 * typical_spacing(truth["positions"])
    if ok.sum() < 2:
        return {"matched_atoms": float(ok.sum())}
    return {"matched_atoms": float(ok.sum()),
            "adjusted_rand": float(adjusted_rand_score(truth["classes"][idx[ok]], lab[ok]))}


# ------------------------------------------------------------------------------- output


def save_results(path: Path, result: AnalysisResult) -> Path:
    """results.h5 (or .npz): coordinates, frames, latents, labels and the config as JSON."""
    p, m, lab = result.patches, result.maps, result.labels
    arrays: dict[str, np.ndarray] = {
        "centers": p.centers, "frames": p.frames, "atom_classes": p.classes, "index": p.index,
        "latents_mean": m.values, "latents_std": m.std, "labels": lab.labels,
        "label_probabilities": lab.probabilities,
    }
    config = json.dumps({"analysis": result.config.to_dict(), "patches": p.summary(),
                         "labels": lab.summary(), "latent_names": m.names,
                         "timings": result.timings, "scores": result.scores,
                         **_checks(result)})

    def write(tmp: Path) -> None:
        if path.suffix == ".npz":
            payload = {"config": np.asarray(config), "latent_names": np.asarray(m.names),
                       **arrays}
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **payload)  # type: ignore[arg-type]  # numpy stub quirk
            return
        import h5py

        with h5py.File(tmp, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v, compression="gzip" if v.size > 4096 else None)
            f.attrs["config"] = config
            f.attrs["latent_names"] = json.dumps(m.names)
            if p.grid_shape is not None:
                f.attrs["grid_shape"] = list(p.grid_shape)

    write_atomic(path, write)
    return path


def _calibration(data: Dataset) -> Calibration:
    """The pixel size of the analysed images: the last two axes longer than one (files often
    carry singleton batch/channel axes)."""
    axes = [a for a in data.axes if a.size > 1 and a.kind != "spectral"]
    cal = Calibration.from_axes(axes[-2:])
    if cal.calibrated and not cal.square:
        log.warning("the pixels are not square (%s): atoms and patches are found in pixels, so "
                    "shapes look stretched by %.2f along x; the maps are drawn at the true size. "
                    "Resample the image to square pixels first for a rotation-invariant model",
                    cal.describe(), cal.scale[0] / cal.scale[1])
    return cal


def _checks(result: AnalysisResult) -> dict[str, Any]:
    """The trust block of the results: training plan, latent activity, baselines, verdict."""
    out: dict[str, Any] = {"training": {k: v for k, v in result.training.items()
                                        if k != "schedules"}}
    if result.activity is not None:
        out["activity"] = result.activity.to_dict()
        out["warning"] = result.activity.warning()
    if result.baselines is not None:
        out["baselines"] = result.baselines.to_dict()
        out["verdict"] = result.baselines.verdict
    return out


def _report_tables(b: Baselines) -> dict[str, dict[str, Any]]:
    """Verdict, latent activity and the baseline comparison as report tables."""
    d = b.to_dict()
    act = d["activity"]["latents"]
    return {
        "Verdict": {"verdict": b.verdict, **({"warning": b.activity.warning()}
                                             if b.activity.collapsed else {})},
        "Latent activity (active: spread of the means >= "
        f"{b.activity.threshold} x posterior std)": {
            n: f"ratio {v['ratio']:.2f}, KL {v['kl']:.2f} nats, "
               f"{'active' if v['active'] else 'inactive'}" for n, v in act.items()},
        "Baselines": {
            "PCA explained variance": [round(v, 3) for v in d["pca_explained_variance"]],
            "PCA k-means: classes, ARI vs model": [d["pca_kmeans"]["n_classes"],
                                                   d["pca_kmeans"]["ari_vs_model"]],
            "PCA GMM (BIC): classes, ARI vs model": [d["pca_gmm"]["n_classes"],
                                                     d["pca_gmm"]["ari_vs_model"]],
            **{f"{lat} best match": f"{e['by']} (rho {e['rho']})"
               for lat, e in d["explained_by"].items()},
        },
    }


def _figure_set(result: AnalysisResult) -> dict[str, Any]:
    """name -> (caption, Figure) of every figure of a run."""
    from matplotlib.figure import Figure

    from latentatlas.plots.maps import (
        latent_label,
        latent_maps_figure,
        plot_image,
        plot_labels,
        plot_latent_hist2d,
        plot_manifold,
    )

    p, m, lab = result.patches, result.maps, result.labels
    cal = result.calibration
    img = result.image[0, 0]
    sel = p.frames == 0
    figs: dict[str, Any] = {}

    fig = Figure(figsize=(5.5, 5.5), layout="constrained")
    ax = fig.subplots()
    plot_image(ax, img, cal, title=f"frame 0: {int(sel.sum())} patches of {p.window} px")
    if p.grid_shape is None:
        from latentatlas.plots.style import display_calibration, to_display

        xy = to_display(display_calibration(cal, img.shape), p.centers[sel])
        ax.scatter(xy[:, 0], xy[:, 1], s=6, c="tab:red", linewidths=0)
    figs["image"] = ("Input image (frame 0) with the patch centres", fig)

    fig = latent_maps_figure(m, image=img, calibration=cal, window=p.window)
    figs["latent_maps"] = ("Latent maps, one per latent (angle in degrees, shifts in "
                           f"{cal.length_units}, content latents unitless)", fig)

    z = [n for n in m.names if is_content_latent(n)]
    pairs = [(z[0], z[1])] if len(z) > 1 else []
    if "angle" in m.names and z:
        pairs.append(("angle", z[0]))
    if pairs:
        fig = Figure(figsize=(4.5 * len(pairs), 4), layout="constrained")
        for ax, (a, b) in zip(np.atleast_1d(fig.subplots(1, len(pairs))), pairs, strict=True):
            (fa, la), (fb, lb) = (latent_label(a, p.window, cal), latent_label(b, p.window, cal))
            plot_latent_hist2d(ax, m[a] * fa, m[b] * fb, bins=48, xlabel=la, ylabel=lb)
        figs["latent_hist2d"] = ("Latent distributions (2-D histograms, log colour scale)", fig)

    if hasattr(result.model, "manifold"):
        fig = Figure(figsize=(5.5, 5.5), layout="constrained")
        plot_manifold(fig.subplots(), result.model.manifold(n=8))
        figs["manifold"] = ("Decoded manifold over the content latents (canonical pose)", fig)

    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    if p.grid_shape is None:
        plot_labels(ax, p.centers[sel], lab.labels[sel], image=img,
                    label_raster=result.label_image, calibration=cal)
    else:
        grid = lab.labels.reshape(p.n_frames, *p.grid_shape)[0].astype(float)
        plot_labels(ax, p.centers[sel], lab.labels[sel], image=img, calibration=cal,
                    label_raster=_grid_raster(grid, p.centers[sel], img.shape))
    figs["labels"] = (f"Gaussian-mixture classes ({lab.n_components} components)", fig)
    return figs


def explorer_calibration(calibration: Calibration) -> dict[str, Any]:
    """``pixel_size`` and ``units`` for the explorer, which draws square pixels (pixels when
    the image is uncalibrated or its pixels are not square)."""
    sy, sx = calibration.scale
    if calibration.units and np.isclose(sy, sx):
        return {"pixel_size": float(sy), "units": calibration.units}
    return {}


def _grid_raster(grid: np.ndarray, centers: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A window-grid map painted on the image pixels (each window's centre cell)."""
    from latentatlas.analysis.latent_maps import paint_points

    return paint_points(grid.ravel(), centers[: grid.size], (int(shape[0]), int(shape[1])))


def _figures(result: AnalysisResult, folder: Path,
             formats: Sequence[str] = ()) -> list[tuple[str, Path]]:
    from latentatlas.plots.style import save_figure

    return [(caption, save_figure(fig, folder / f"{name}.png", formats=formats))
            for name, (caption, fig) in _figure_set(result).items()]


def _write_run(result: AnalysisResult, data: Dataset, plan: OutputPlan,
               inputs: list[str], formats: tuple[str, ...] = ()) -> Path:
    from latentatlas.pipelines.signals import analysis_signal_dicts, save_signal_dicts
    from latentatlas.report import write_explorer, write_report

    source = safe_text(data.source or data.name)
    with results_folder(plan, "analyze", result.config.to_dict(), inputs) as tmp:
        save_results(tmp / "results.h5", result)
        config = {"analysis": result.config.to_dict(), "source": source,
                  "patches": result.patches.summary(), "labels": result.labels.summary(),
                  "latent_names": result.maps.names, "scores": result.scores,
                  "calibration": result.calibration.to_dict(), **_checks(result)}
        write_text_atomic(tmp / "config.json", json.dumps(config, indent=2, default=safe_text))
        result.model.save(tmp / "model")
        save_signals(lambda f: save_signal_dicts(analysis_signal_dicts(result), f), tmp)
        figs = _figures(result, tmp, formats)
        counts = result.labels.summary().get("counts")
        summary: dict[str, Any] = {
            "patches": f"{len(result.patches)} of {result.patches.window} px "
                       f"({result.patches.n_dropped} dropped at the border)",
            "model": f"{result.config.model}, latents {', '.join(result.maps.names)}",
            "classes": f"{result.labels.n_components} (patches per class: {counts})",
            **{f"score: {k}": v for k, v in result.scores.items()},
            "seconds": sum(v for k, v in result.timings.items() if k != "total"),
        }
        tables: dict[str, dict[str, Any]] = {
            "Parameters": result.config.to_dict(),
            "Input": {"source": source, "shape": list(data.shape),
                      "quantity": data.quantity, "units": data.units},
            "Patches": result.patches.summary(),
            "Classes": result.labels.summary(),
            "Timings (s)": result.timings,
        }
        verdict = ""
        if result.baselines is not None:
            tables = {**_report_tables(result.baselines), **tables}
            verdict = result.baselines.verdict
        if result.activity is not None and result.activity.collapsed:
            verdict = f"{result.activity.warning()} {verdict}".strip()
        write_report(tmp / "index.html", f"latentatlas analyze: {safe_text(data.name or source)}",
                     figs, tables, summary=summary, verdict=verdict, inputs=inputs,
                     command="latentatlas analyze",
                     calibration=_calibration_table(data, result.calibration))
        write_explorer(tmp / "explorer.html", result, **explorer_calibration(result.calibration))
    return plan.path


def _calibration_table(data: Dataset, cal: Calibration) -> dict[str, Any]:
    """The report's calibration section: the pixel size used and every axis of the file."""
    table: dict[str, Any] = {"pixel size": cal.describe()}
    for a in data.axes:
        table[f"axis {a.name}"] = (f"{a.size} x {a.scale:.6g} {a.units}, offset {a.offset:.6g}"
                                   if a.uniform else f"{a.size} values (non-uniform) {a.units}")
    return table
