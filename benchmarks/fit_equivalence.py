"""Same-seed fits of every model family and the training pipelines, recorded by one checkout
and compared by another: a refactor of the fit path must leave them unchanged.

    # on the code before the change (e.g. a `git archive` of it in /tmp/old):
    PYTHONPATH=/tmp/old/src python benchmarks/fit_equivalence.py --record /tmp/before.npz
    # on the code after it:
    PYTHONPATH=src python benchmarks/fit_equivalence.py --compare /tmp/before.npz

Records, on small generated data (96 rotated shapes, 12x12; 3 epochs): weights, latents and
loss histories of vae, shiftvae, rvae, cvae, jvae (plain, with groups, learned prior), jrvae,
ssvae (class-balanced, with validation), ssrvae (consistency, groups) and ensembles of jvae,
ssvae (grown from a baseline), cvae and vae members; decodings with given pose (2-D, and 1-D
with scale); the graphene pipeline with ssvae, jvae and cvae; train runs of cvae and ssvae
with a labels file, and of rvae. Uses the public API only, so old code runs it too. With
--compare it writes benchmarks/results/fit_equivalence.json (worst absolute difference).
CPU, one thread, about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentatlas.datasets.shapes import rotated_shapes
from latentatlas.models import get_model
from latentatlas.pipelines.graphene import analyze_graphene, example_graphene
from latentatlas.pipelines.train import train_run

RESULTS = Path(__file__).resolve().parent / "results" / "fit_equivalence.json"


def _record_model(out: dict[str, np.ndarray], key: str, model: Any) -> None:
    x = _data()[0]
    for i, member in enumerate(getattr(model, "members", [model])):
        latents = member.encode(x)
        out[f"{key}/{i}/mean"], out[f"{key}/{i}/std"] = latents.mean, latents.std
        out[f"{key}/{i}/names"] = np.array(latents.names)
        for name, value in sorted(member.module.state_dict().items()):
            out[f"{key}/{i}/w/{name}"] = value.numpy()
    for name, values in model.history.items():
        out[f"{key}/history/{name}"] = np.array(values)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = rotated_shapes(n=96, size=12, seed=1).images.astype(np.float32)
    y = (np.arange(len(x)) % 3).astype(np.int64)
    partial = np.where(np.arange(len(x)) % 4 == 0, y, -1)
    return x, y, partial, np.arange(len(x)) // 2


def run() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    x, y, partial, groups = _data()
    train = dict(epochs=3, batch_size=32, seed=0, progress=False)
    small = dict(hidden=16, latent_dim=2)
    shape = x.shape[1:]
    out: dict[str, np.ndarray] = {}
    fits: dict[str, Any] = {
        "vae": lambda: get_model("vae", shape, **small).fit(x, **train),
        "shiftvae": lambda: get_model("shiftvae", shape, **small).fit(x, test_fraction=0.2,
                                                                       **train),
        "rvae": lambda: get_model("rvae", shape, **small).fit(x, **train),
        "cvae": lambda: get_model("cvae", shape, n_classes=3, **small).fit(x, y, **train),
        "jvae": lambda: get_model("jvae", shape, discrete=(3,), **small).fit(x, **train),
        "jvae_groups": lambda: get_model("jvae", shape, discrete=(3,), consistency=0.5,
                                         **small).fit(x, groups=groups, **train),
        "jvae_learned": lambda: get_model("jvae", shape, discrete=(3,), class_prior="learned",
                                          **small).fit(x, **{**train, "epochs": 4}),
        "jrvae": lambda: get_model("jrvae", shape, discrete=(3,), **small).fit(x, **train),
        "ssvae": lambda: get_model("ssvae", shape, n_classes=3, class_balanced=True,
                                   **small).fit(x, partial, validation=(x[:20], y[:20]), **train),
        "ssrvae": lambda: get_model("ssrvae", shape, n_classes=3, consistency=0.3,
                                    **small).fit(x, partial, groups=groups, **train),
        "ensemble_jvae": lambda: get_model("ensemble", shape, member="jvae", n_members=2,
                                           discrete=(3,), **small).fit(x, **train),
        "ensemble_ssvae": lambda: get_model("ensemble", shape, member="ssvae", n_members=2,
                                            n_classes=3, from_baseline_epochs=1,
                                            **small).fit(x, partial, **train),
        "ensemble_cvae": lambda: get_model("ensemble", shape, member="cvae", n_members=2,
                                           n_classes=3, **small).fit(x, y, **train),
        "ensemble_vae": lambda: get_model("ensemble", shape, member="vae", n_members=2,
                                          **small).fit(x, **train),
    }
    for key, fit in fits.items():
        _record_model(out, key, fit())
    z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    rvae = get_model("rvae", shape, hidden=16)
    out["decode/pose"] = rvae.decode(z, angle=np.linspace(-1, 1, 5), shift=np.full((5, 2), 0.1))
    out["decode/zero_pose"] = rvae.decode(z)
    spectra = get_model("vae", (16,), signal_dims=1, hidden=16, translation=True,
                        decoder="transform", scale=True)
    out["decode/1d"] = spectra.decode(z, shift=np.full(5, 0.2), log_scale=np.full(5, 0.1))
    sheet = example_graphene(seed=0)
    coords = np.column_stack([sheet.coords, sheet.classes])
    for model in ("ssvae", "jvae", "cvae"):
        result = analyze_graphene(sheet.image, coords=coords, model=model, epochs=2, hidden=16)
        out[f"graphene/{model}/predictions"] = result.predictions
        out[f"graphene/{model}/latents"] = result.latents
        if result.probabilities is not None:
            out[f"graphene/{model}/probabilities"] = result.probabilities
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/y.npy", y)
        np.save(f"{tmp}/x.npy", x[:, 0])
        for model in ("cvae", "ssvae", "rvae"):
            labels = None if model == "rvae" else f"{tmp}/y.npy"
            run_ = train_run(f"{tmp}/x.npy", f"{tmp}/{model}", model=model, labels=labels,
                             model_options={"hidden": 16}, epochs=2, batch_size=32,
                             progress=False)
            out[f"train_run/{model}"] = run_.latents.mean
    return out


def compare(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]
            ) -> dict[str, Any]:
    missing = sorted(set(reference) ^ set(current))
    worst, differ = 0.0, []
    for key in sorted(set(reference) & set(current)):
        a, b = reference[key], current[key]
        if a.dtype.kind in "US" or a.shape != b.shape:
            if a.shape != b.shape or not np.array_equal(a, b):
                differ.append(key)
            continue
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        worst = max(worst, d)
        if d > 1e-6:
            differ.append(key)
    return {"arrays": len(reference), "worst_abs_difference": worst,
            "differ_over_1e-6": differ[:20], "only_in_one": missing[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path, help="write this run's arrays here (.npz)")
    group.add_argument("--compare", type=Path, help="compare this run with a recorded .npz")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    current = run()
    if args.record:
        np.savez(args.record, **current)
        print(f"recorded {len(current)} arrays in {args.record}")
        return
    with np.load(args.compare) as f:
        reference = {k: f[k] for k in f.files}
    summary = compare(reference, current)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
