"""Ensembles grown from a baseline vs members from scratch: MNIST-test digits and Si-defect crops.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ensemble_baseline.py \
        [--parts mnist,si,si_k] [--seeds 0,1,2]

mnist: the 10,000 MNIST test digits (../shared/data/mnist, the only MNIST here) split once
(seeded) into 5,000 training and 2,000 held-out digits (3,000 unused: CPU budget). A joint VAE
(MLP, hidden 256, 10 classes, 10 continuous latents, Bernoulli, balance 100), 8 members, 16
epochs, batch 128, lr 1e-3; "scratch" = every member from its own start, "baseline" = one
model for 8 epochs, then 8 perturbed copies (1 % of each tensor's RMS) for the other 8 epochs,
each in its own sample order. Classes are named with the Hungarian matching on the training
split and scored on the held-out split. Dispersion on the held-out split: mean disagreement
and probability std, the members' agreement with the ensemble, and how well disagreement
ranks the ensemble's own errors (AUROC). Baseline beside: k-means (k = 10) on 50 PCA scores.

si: the 94 Si-dopant crops of LibraryNet/library_refined_dev, resampled to 15.625 pm/px and
cut 48 x 48 around the mean of the defect's atom coordinates (the first defect listed), each
scaled to [0, 1]. A joint rVAE (rotation + translation, 3 classes, transform decoder),
8 members, 60 epochs (baseline 30), batch 16. No split (94 crops): labels are used only to
score (Hungarian accuracy, balanced accuracy over the 8 labelled classes), never to choose
settings. Baselines:
k-means (k = 3) on 10 PCA scores, and the majority class.

si_k: suggest_n_classes on the crops for K = 2..5 (baseline ensembles, seed 0).

Writes benchmarks/results/ensemble_baseline.json after every part. CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from latentatlas.analysis.classes import match_labels
from latentatlas.datasets.mnist import load_mnist_idx
from latentatlas.models import get_model
from latentatlas.models.ensemble import suggest_n_classes, summarise

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parents[1] / "shared" / "data"
RESULT = ROOT / "results" / "ensemble_baseline.json"

MNIST_MODEL = dict(discrete=(10,), latent_dim=10, hidden=256, likelihood="bernoulli",
                   balance=100.0)
MNIST_FIT = dict(epochs=16, batch_size=128, lr=1e-3, progress=False, test_fraction=0.0)
SI_MODEL = dict(discrete=(3,), latent_dim=2, hidden=128, balance=100.0)
SI_FIT = dict(epochs=60, batch_size=16, lr=1e-3, progress=False, test_fraction=0.0)
SI_PIXEL = 15.625  # pm per pixel: the coarsest crops' sampling
SI_WINDOW = 48


def save(results: dict[str, Any]) -> None:
    RESULT.parent.mkdir(exist_ok=True)
    tmp = RESULT.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float))
    tmp.replace(RESULT)


def mapped(pred: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    return np.array([mapping.get(int(p), -1) for p in pred])


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([(pred[true == k] == k).mean() for k in np.unique(true)]))


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "values": [round(float(v), 4) for v in values]}


def fit_ensemble(x: np.ndarray, seed: int, variant: str, model: dict[str, Any],
                 fit: dict[str, Any], member: str) -> tuple[Any, float]:
    baseline = fit["epochs"] // 2 if variant == "baseline" else 0
    ens = get_model("ensemble", x.shape[1:], seed=seed, member=member, n_members=8,
                    from_baseline_epochs=baseline, perturbation=0.01, **model)
    start = time.perf_counter()
    ens.fit(x, seed=seed, **fit)
    return ens, time.perf_counter() - start


def score_run(ens: Any, x_map: np.ndarray, y_map: np.ndarray, x_eval: np.ndarray,
              y_eval: np.ndarray) -> dict[str, Any]:
    """Ensemble and member accuracy (classes named on x_map) and dispersion on x_eval."""
    # one call on both sets: the consensus alignment may number the classes differently
    # for different data, so naming and scoring must share one alignment
    both = ens.uncertainty(np.concatenate([x_map, x_eval]))
    naming = match_labels(y_map, both.labels[:len(x_map)])
    pred = summarise(both.members[:, len(x_map):])
    labels = mapped(pred.labels, naming)
    wrong = labels != y_eval
    member_acc = []
    for m in ens.members:  # each member's classes named on x_map by its own matching
        own = match_labels(y_map, m.predict(x_map))
        member_acc.append(float((mapped(m.predict(x_eval), own) == y_eval).mean()))
    auroc = (float(roc_auc_score(wrong, pred.disagreement + 1e-6 * pred.uncertainty))
             if 0 < wrong.sum() < len(wrong) else float("nan"))
    return {
        "accuracy": float((~wrong).mean()),
        "balanced_accuracy": balanced_accuracy(y_eval, labels),
        "member_accuracy_mean": float(np.mean(member_acc)),
        "member_accuracy_min": float(np.min(member_acc)),
        "disagreement": float(pred.disagreement.mean()),
        "uncertainty": float(pred.uncertainty.mean()),
        "member_agreement_min": float(pred.member_agreement.min()),
        "error_auroc_of_disagreement": auroc,
        "class_disagreement": [round(float(v), 3) for v in pred.class_disagreement],
    }


def compare(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
            seeds: list[int], model: dict[str, Any], fit: dict[str, Any], member: str,
            label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in ("scratch", "baseline"):
        runs = []
        for seed in seeds:
            ens, secs = fit_ensemble(x_fit, seed, variant, model, fit, member)
            run = {"seed": seed, "seconds": round(secs, 1),
                   **score_run(ens, x_fit, y_fit, x_eval, y_eval)}
            print(label, variant, run, flush=True)
            runs.append(run)
        keys = [k for k in runs[0] if isinstance(runs[0][k], float) and k != "seconds"]
        out[variant] = {"runs": runs, **{k: summary([r[k] for r in runs]) for k in keys},
                        "seconds": summary([r["seconds"] for r in runs])}
    return out


def kmeans_baseline(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray,
                    y_eval: np.ndarray, k: int, n_pca: int, seeds: list[int]) -> dict[str, Any]:
    acc, bal = [], []
    for seed in seeds:
        pca = PCA(n_pca, random_state=seed).fit(x_fit.reshape(len(x_fit), -1))
        km = KMeans(k, n_init=10, random_state=seed).fit(pca.transform(x_fit.reshape(len(x_fit), -1)))
        naming = match_labels(y_fit, km.labels_)
        pred = mapped(km.predict(pca.transform(x_eval.reshape(len(x_eval), -1))), naming)
        acc.append(float((pred == y_eval).mean()))
        bal.append(balanced_accuracy(y_eval, pred))
    return {"accuracy": summary(acc), "balanced_accuracy": summary(bal)}


def part_mnist(results: dict[str, Any], seeds: list[int]) -> None:
    images, labels = load_mnist_idx(SHARED / "mnist", "t10k")
    order = np.random.default_rng(0).permutation(len(images))
    train, held = order[:5000], order[5000:7000]
    x, y, xt, yt = images[train, None], labels[train], images[held, None], labels[held]
    res = compare(x, y, xt, yt, seeds, MNIST_MODEL, MNIST_FIT, "jvae", "mnist")
    res["kmeans_pca50"] = kmeans_baseline(x, y, xt, yt, 10, 50, seeds)
    res["setup"] = {"train": len(x), "held_out": len(xt), "model": MNIST_MODEL,
                    "fit": MNIST_FIT, "members": 8, "baseline_epochs": MNIST_FIT["epochs"] // 2}
    results["mnist"] = res
    save(results)


def si_crops() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(94, 1, 48, 48) crops in [0, 1] at 15.625 pm/px around each defect, labels, names."""
    root = SHARED / "stem_graphene_aicrystallographer" / "LibraryNet" / "library_refined_dev"
    names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    crops, labels = [], []
    for k, name in enumerate(names):
        for path in sorted((root / name).glob("*.hdf5")):
            with h5py.File(path, "r") as f:
                image = np.asarray(f["nn_input"][0, :, :, 0], dtype=np.float64)
                fov = float(f["nn_input"].attrs["scan size"])
                # a few crops list their defect under defect_coord_1..4 (several defects in
                # view): take the first listed
                key = min(k for k in f if k.startswith("defect_coord_"))
                atoms = np.array([[float(r[1]), float(r[0])] for r in f[key][:]])
            zoom = fov / image.shape[1] / SI_PIXEL
            small = ndimage.zoom(image, zoom, order=1)
            centre = atoms.mean(0) * zoom  # (row, col) = (y, x)
            half = SI_WINDOW // 2
            padded = np.pad(small, half, mode="reflect")
            r, c = np.rint(centre).astype(int) + half
            crop = padded[r - half:r + half, c - half:c + half]
            crop = (crop - crop.min()) / max(crop.max() - crop.min(), 1e-12)
            crops.append(crop.astype(np.float32))
            labels.append(k)
    return np.stack(crops)[:, None], np.array(labels), names


def part_si(results: dict[str, Any], seeds: list[int]) -> None:
    x, y, names = si_crops()
    res = compare(x, y, x, y, seeds, SI_MODEL, SI_FIT, "jrvae", "si")
    res["kmeans_pca10"] = kmeans_baseline(x, y, x, y, 3, 10, seeds)
    res["majority"] = {"accuracy": float(np.bincount(y).max() / len(y)),
                       "balanced_accuracy": 1 / len(names)}
    res["setup"] = {"crops": len(x), "classes": dict(zip(names, np.bincount(y).tolist(),
                                                          strict=True)),
                    "model": SI_MODEL, "fit": SI_FIT, "members": 8,
                    "baseline_epochs": SI_FIT["epochs"] // 2, "pixel_pm": SI_PIXEL,
                    "window": SI_WINDOW}
    results["si"] = res
    save(results)


def part_si_k(results: dict[str, Any]) -> None:
    x, y, names = si_crops()
    model = {k: v for k, v in SI_MODEL.items() if k != "discrete"}
    start = time.perf_counter()
    report = suggest_n_classes(x, [2, 3, 4, 5], member="jrvae", n_members=8,
                               from_baseline_epochs=SI_FIT["epochs"] // 2, seed=0,
                               fit_options={**SI_FIT, "seed": 0}, **model)
    composition = {k: [dict(zip(names, np.bincount(y[report.labels[k] == c],
                                                   minlength=len(names)).tolist(), strict=True))
                       for c in range(k)] for k in report.n_classes}
    print(report.to_markdown(), flush=True)
    results["si_k"] = {"table": report.to_markdown(), "recommended": report.recommended,
                       "unstable": {str(k): list(v) for k, v in report.unstable.items()},
                       "composition": {str(k): v for k, v in composition.items()},
                       "seconds": round(time.perf_counter() - start, 1)}
    save(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="mnist,si,si_k")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    results.update({"date": datetime.now(UTC).isoformat(timespec="minutes"),
                    "machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
                    "command": "nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python "
                               f"benchmarks/ensemble_baseline.py --parts {args.parts} "
                               f"--seeds {args.seeds}"})
    parts = args.parts.split(",")
    if "si" in parts:
        part_si(results, seeds)
    if "si_k" in parts:
        part_si_k(results)
    if "mnist" in parts:
        part_mnist(results, seeds)


if __name__ == "__main__":
    main()
