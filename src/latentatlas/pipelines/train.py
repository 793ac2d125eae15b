"""A training run: samples file (or a generated example) -> trained model, latents, figures.

The run folder holds model/ (config.json, model.safetensors, history.json), latents.npz,
checkpoints/ (when asked) and PNG figures. The results are built under a temporary name and
swapped in when complete (:mod:`latentatlas.pipelines.outputs`). Checkpoints are the
exception: they are written into ``RUN/checkpoints/`` while training runs (each file
atomically), so ``--resume RUN`` finds the last one after the process was killed at any
moment.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._files import write_atomic
from latentatlas._latent_names import ANGLE, SHIFT_1D, SHIFTS_2D
from latentatlas.datasets.shapes import ShapeSet, rotated_shapes, shifted_peaks
from latentatlas.models import Latents, get_model, load_model
from latentatlas.models.registry import capabilities
from latentatlas.pipelines.outputs import (
    OutputError,
    add_own_entry,
    check_output,
    check_output_file,
    read_marker,
    results_folder,
)
from latentatlas.train.plan import CHECKPOINT_FILE

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"

EXAMPLES: dict[str, Callable[[], ShapeSet]] = {
    "example:shapes": rotated_shapes,
    "example:peaks": shifted_peaks,
}


@dataclass
class TrainRun:
    out: Path
    n_samples: int
    test_elbo: float
    latents: Latents


def read_samples(source: str | Path, signal_dims: int | None = None) -> tuple[np.ndarray, ShapeSet | None]:
    """Samples (n, c, *spatial) from a file or a generated example; the example's truth or None.

    Arrays (n, h, w) are read as single-channel images and (n, L) as spectra unless
    signal_dims says otherwise ((n, c, L) needs signal_dims=1).
    """
    if str(source) in EXAMPLES:
        truth = EXAMPLES[str(source)]()
        return truth.images, truth
    if str(source).startswith("example:"):
        raise ValueError(f"unknown example {source!r}; available: {', '.join(EXAMPLES)}")
    from latentatlas.io import load

    data = np.asarray(load(source).data)
    if data.ndim == 2:
        data = data[:, None]
    elif data.ndim == 3 and signal_dims != 1:
        data = data[:, None]
    elif data.ndim not in (3, 4):
        raise ValueError(f"{source} holds an array of shape {data.shape}; expected samples "
                         "(n, h, w), (n, c, h, w), (n, L) or (n, c, L)")
    return data, None


def train_run(
    source: str | Path,
    out: str | Path,
    model: str = "rvae",
    signal_dims: int | None = None,
    model_options: dict[str, Any] | None = None,
    resume_from: str | Path | None = None,
    labels: str | Path | None = None,
    overwrite: bool = False,
    **train_options: Any,
) -> TrainRun:
    """Train ``model`` on the samples in ``source`` and write the run folder ``out``.

    labels: a file of integer classes (n,), -1 where unknown, for the models that learn from
    labels (``fit(X, y)``: cvae, ssvae, ...); ``n_classes`` defaults to the largest label + 1.
    resume_from: a run folder; training continues from its ``checkpoints/`` (a run killed
    before its first checkpoint, or before it made its folder, starts again from the
    beginning, with a warning).
    overwrite: see :func:`latentatlas.pipelines.outputs.check_output`.
    """
    inputs = [os.fspath(p) for p in (source, labels) if p is not None
              and not str(p).startswith("example:")]
    plan = check_output(out, inputs, overwrite)
    resume = _resume_checkpoint(resume_from)
    record = {"model": model, "model_options": dict(model_options or {}),
              "signal_dims": signal_dims, "train": train_options,
              "resume_from": None if resume_from is None else os.fspath(resume_from)}
    checkpoints = None
    if train_options.get("checkpoint_every"):
        # claimed before any work, so a run killed at any moment leaves a folder to resume
        plan = add_own_entry(plan, CHECKPOINTS, "train", record, inputs)
        checkpoints = plan.path / CHECKPOINTS
    x, truth = read_samples(source, signal_dims)
    dims = x.ndim - 2
    options = dict(model_options or {})
    fit_labels: dict[str, np.ndarray] = {}
    if labels is not None:
        from latentatlas.io import load

        y = np.asarray(load(labels).data).astype(np.int64).ravel()
        if len(y) != len(x):
            raise ValueError(f"{labels} holds {len(y)} labels for {len(x)} samples")
        if not capabilities(model, options).needs_labels:
            raise ValueError(f"model {model!r} does not learn from labels; use one that does "
                             "(e.g. cvae, ssvae) or leave out the labels")
        options.setdefault("n_classes", int(y.max()) + 1)
        fit_labels["y"] = y
    net = get_model(model, x.shape[1:], signal_dims=dims, seed=train_options.get("seed", 0),
                    **options)
    net.fit(x, **fit_labels, checkpoint_dir=checkpoints, resume_from=resume, **train_options)
    with results_folder(plan, "train", record, inputs) as tmp:
        if checkpoints is not None and checkpoints.is_dir():
            shutil.copytree(checkpoints, tmp / CHECKPOINTS)
        net.save(tmp / "model")
        latents = net.encode(x)
        np.savez(tmp / "latents.npz", names=np.array(latents.names), mean=latents.mean,
                 std=latents.std, latentatlas=np.array("latents"))
        _figures(net, latents, truth, dims, tmp)
    elbo = net.history.get("test/elbo") or net.history.get("train/elbo") or [float("nan")]
    return TrainRun(plan.path, len(x), elbo[-1], latents)


def _figures(net: Any, latents: Latents, truth: ShapeSet | None, dims: int, folder: Path) -> None:
    """history.png, latents.png, manifold.png (images) and pose_vs_truth.png (examples)."""
    from matplotlib.figure import Figure

    from latentatlas.plots.latents import plot_history, plot_latent_pair, plot_latent_vs_truth
    from latentatlas.plots.maps import plot_manifold, save_figure

    fig = Figure(figsize=(5, 4), layout="tight")
    plot_history(fig.subplots(), net.history)
    save_figure(fig, folder / "history.png")
    content = latents.content
    fig = Figure(figsize=(5, 4), layout="tight")
    color = truth.angle if truth is not None and "angle" in latents.names else None
    plot_latent_pair(fig.subplots(), content[:, 0],
                     content[:, 1] if content.shape[1] > 1 else latents.std[:, -1],
                     color=color, color_label="true angle" if color is not None else "",
                     ylabel="z2" if content.shape[1] > 1 else "std z1")
    save_figure(fig, folder / "latents.png")
    if dims == 2:
        fig = Figure(figsize=(6, 6), layout="tight")
        # conditional models: the manifold of the first class (a one-hot condition)
        k = net.config.condition_dim
        plot_manifold(fig.subplots(),
                      net.manifold(n=8, condition=np.eye(k, dtype=np.float32)[0] if k else None))
        save_figure(fig, folder / "manifold.png")
    # the generated examples' true pose, by the name of the latent that should follow it
    values = {} if truth is None else {ANGLE: truth.angle, SHIFTS_2D[0]: truth.shift[:, 0],
                                       SHIFTS_2D[1]: truth.shift[:, -1], SHIFT_1D: truth.shift[:, 0]}
    pose = [n for n in net.config.pose.names if n in values]
    if pose:
        fig = Figure(figsize=(4 * len(pose), 3.6), layout="tight")
        axes = np.atleast_1d(fig.subplots(1, len(pose)))
        for a, name in zip(axes, pose, strict=True):
            plot_latent_vs_truth(a, values[name], latents[name], name)
        save_figure(fig, folder / "pose_vs_truth.png")


def _resume_checkpoint(resume_from: str | Path | None) -> Path | None:
    """The checkpoint folder to resume from, None to start afresh, or a clear error."""
    if resume_from is None:
        return None
    run = Path(resume_from)
    folder = run / CHECKPOINTS
    if (folder / CHECKPOINT_FILE).is_file():
        return folder
    if not run.exists():
        log.warning("%s does not exist (the run was stopped before it wrote anything): "
                    "training from the start", run)
        return None
    marker = read_marker(run) if run.is_dir() else None
    if marker is not None and marker.get("command") == "train":
        log.warning("%s holds no checkpoint yet (the run stopped before its first one): "
                    "training from the start", run)
        return None
    raise OutputError(f"--resume {resume_from}: no checkpoint {CHECKPOINTS}/{CHECKPOINT_FILE} "
                      "there and not a latentatlas training run; give the --out folder of a "
                      "run started with --checkpoint-every")


def _is_latents_file(path: Path) -> bool:
    """True for an .npz that ``encode_file`` wrote (it may be replaced without asking)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return "latentatlas" in f.files and str(f["latentatlas"]) == "latents"
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def encode_file(run: str | Path, source: str | Path, out: str | Path,
                overwrite: bool = False) -> Latents:
    """Encode the samples in ``source`` with the model of a run folder; write an .npz atomically.

    ``out`` is never one of the inputs; an existing file is replaced only when this function
    wrote it (or with ``overwrite``).
    """
    run = Path(run)
    own = Path(out).is_file() and _is_latents_file(Path(out))
    out_path = check_output_file(out, [os.fspath(source)], overwrite, own)
    model = load_model(run / "model" if (run / "model").exists() else run)
    x, _ = read_samples(source, model.config.spatial_dims)
    latents: Latents = model.encode(x)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, names=np.array(latents.names), mean=latents.mean, std=latents.std,
                     latentatlas=np.array("latents"))

    write_atomic(out_path, write)
    return latents
