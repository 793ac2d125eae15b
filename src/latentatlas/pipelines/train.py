"""A training run: samples file (or a generated example) -> trained model, latents, figures.

The run folder holds model/ (config.json, model.safetensors, history.json), latents.npz,
checkpoint/ (when asked) and PNG figures. It is built under a temporary name and renamed, so
a failed run never leaves a half-written folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._files import atomic_directory
from latentatlas.datasets.shapes import ShapeSet, rotated_shapes, shifted_peaks
from latentatlas.models import Latents, get_model, load_model
from latentatlas.models.registry import registered

log = logging.getLogger(__name__)

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
    **train_options: Any,
) -> TrainRun:
    """Train ``model`` on the samples in ``source`` and write the run folder ``out``.

    labels: a file of integer classes (n,), -1 where unknown, for the models that learn from
    labels (``fit(X, y)``: cvae, ssvae, ...); ``n_classes`` defaults to the largest label + 1.
    """
    from latentatlas.plots.latents import plot_history, plot_latent_pair, plot_latent_vs_truth

    x, truth = read_samples(source, signal_dims)
    dims = x.ndim - 2
    options = dict(model_options or {})
    fit_labels: dict[str, np.ndarray] = {}
    if labels is not None:
        from latentatlas.io import load

        y = np.asarray(load(labels).data).astype(np.int64).ravel()
        if len(y) != len(x):
            raise ValueError(f"{labels} holds {len(y)} labels for {len(x)} samples")
        config_fields = {f.name for f in dataclasses.fields(registered(model).model_class.config_class)}
        if "n_classes" in config_fields:
            options.setdefault("n_classes", int(y.max()) + 1)
        fit_labels["y"] = y
    net = get_model(model, x.shape[1:], signal_dims=dims, seed=train_options.get("seed", 0),
                    **options)
    if fit_labels and "y" not in inspect.signature(net.fit).parameters:
        raise ValueError(f"model {model!r} does not learn from labels; use one that does "
                         "(e.g. cvae, ssvae) or leave out the labels")
    out = Path(out)
    with atomic_directory(out) as tmp:
        resume = Path(resume_from) / "checkpoint" if resume_from is not None else None
        checkpoints = tmp / "checkpoint" if train_options.get("checkpoint_every") else None
        net.fit(x, **fit_labels, checkpoint_dir=checkpoints, resume_from=resume, **train_options)
        net.save(tmp / "model")
        latents = net.encode(x)
        np.savez(tmp / "latents.npz", names=np.array(latents.names), mean=latents.mean, std=latents.std)
        figures: list[tuple[str, Any]] = []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        plot_history(ax, net.history)
        figures.append(("history.png", fig))
        content = latents.content
        fig, ax = plt.subplots(figsize=(5, 4))
        color = truth.angle if truth is not None and "angle" in latents.names else None
        plot_latent_pair(ax, content[:, 0], content[:, 1] if content.shape[1] > 1 else latents.std[:, -1],
                         color=color, color_label="true angle" if color is not None else "",
                         ylabel="z2" if content.shape[1] > 1 else "std z1")
        figures.append(("latents.png", fig))
        if dims == 2:
            from latentatlas.plots.maps import plot_manifold

            fig, ax = plt.subplots(figsize=(6, 6))
            # conditional models: the manifold of the first class (a one-hot condition)
            k = net.config.condition_dim
            plot_manifold(ax, net.manifold(n=8, condition=np.eye(k, dtype=np.float32)[0] if k else None))
            figures.append(("manifold.png", fig))
        if truth is not None:
            pose = [n for n in ("angle", "shift_x", "shift_y", "shift") if n in latents.names]
            if pose:
                fig, axes = plt.subplots(1, len(pose), figsize=(4 * len(pose), 3.6), squeeze=False)
                values = {"angle": truth.angle, "shift_x": truth.shift[:, 0],
                          "shift_y": truth.shift[:, -1], "shift": truth.shift[:, 0]}
                for a, name in zip(axes[0], pose, strict=True):
                    plot_latent_vs_truth(a, values[name], latents[name], name)
                figures.append(("pose_vs_truth.png", fig))
        for name, f in figures:
            f.tight_layout()
            f.savefig(tmp / name, dpi=100)
            plt.close(f)
    elbo = net.history.get("test/elbo") or net.history.get("train/elbo") or [float("nan")]
    return TrainRun(out, len(x), elbo[-1], latents)


def encode_file(run: str | Path, source: str | Path, out: str | Path) -> Latents:
    """Encode the samples in ``source`` with the model of a run folder; write an .npz atomically."""
    run = Path(run)
    model = load_model(run / "model" if (run / "model").exists() else run)
    x, _ = read_samples(source, model.config.spatial_dims)
    latents: Latents = model.encode(x)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez(tmp, names=np.array(latents.names), mean=latents.mean, std=latents.std)
    tmp.replace(out)
    return latents
