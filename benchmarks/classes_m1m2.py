"""MNIST classes on the latents of an unsupervised VAE: Kingma et al. 2014's M1+M2 (issue 4).

    nice python benchmarks/classes_m1m2.py [--parts ssvae,jvae] [--labels 100,600,1000,3000]
        [--m1-epochs 30] [--m2-epochs 15] [--jvae-inputs m1,umap] [--jvae-epochs 20]
        [--jvae-options JSON] [--out benchmarks/out/classes_m1m2.json]

M1: a plain VAE (MLP 512 x 2, 50 latents, Bernoulli likelihood) trained without labels on the
60,000 MNIST training digits; it is saved in benchmarks/out/ and reused by later runs with the
same settings. Its posterior means on the active latents (``Latents.active``) are the data of
M2, the semi-supervised VAE with M2's q(z | x, y) (``encoder_sees_class``) and a Gaussian
likelihood on those vectors; the labelled digits are 10 per class (seed 0). The joint VAE part
clusters, without labels, the same vectors ("m1") or their 10-d UMAP embedding ("umap"; the
recipe of N2D, McConville et al. 2019: n_neighbors 20, min_dist 0, fitted on the training digits,
test digits placed with ``transform``). Test: the 10,000 IDX digits in ../shared/data/mnist,
never seen in training. Results go to the JSON file after every run.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from classes_bench import OUT, SHARED_MNIST, mnist_train, open_results, save  # benchmarks/ is on sys.path
from latentatlas.analysis.classes import cluster_accuracy
from latentatlas.datasets.mnist import load_mnist_idx
from latentatlas.models import get_model, load_model

RESULT = OUT / "classes_m1m2.json"
M1 = dict(latent_dim=50, hidden=512, layers=2, likelihood="bernoulli")
# M2 on M1's means: sigma 0.5 is about the spread of a digit's M1 posterior (std 0.1-0.75 on
# the active latents), so the decoder cannot demand the exact vector and a small content latent
# leaves the class to y. With a learnt sigma and 16 latents, sigma shrank, z took the class and
# test accuracy fell below 50 % within 4 epochs (RESULTS.md).
M2 = dict(latent_dim=8, hidden=256, layers=2, likelihood="gaussian", sigma=0.5, alpha=50.0,
          encoder_sees_class=True)


def m1_features(results: dict, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Active M1 latent means of the training (60,000) and test (10,000) digits. M1 is trained
    once per setting and saved; its record (time, ELBO, active latents) goes to results["m1"]."""
    x, _ = mnist_train()
    xt, _ = load_mnist_idx(SHARED_MNIST)
    folder = OUT / f"m1_vae_{M1['latent_dim']}x{M1['hidden']}_{epochs}ep"
    if folder.exists():
        m1 = load_model(folder)
    else:
        m1 = get_model("vae", (28, 28), **M1)
        t = time.perf_counter()
        m1.fit(x, epochs=epochs, batch_size=128, lr=1e-3, progress=False, test_fraction=0.0)
        results["m1"] = {"config": M1, "epochs": epochs, "train_s": time.perf_counter() - t}
        m1.save(folder)
    latents = m1.encode(x)
    active = latents.active()
    results.setdefault("m1", {"config": M1, "epochs": epochs}).update(
        folder=str(folder), final_train_elbo=m1.history["train/elbo"][-1],
        active_latents=int(active.sum()))
    return latents.mean[:, active], m1.encode(xt).mean[:, active]


def part_ssvae(results: dict, features: tuple, n_labels: int, epochs: int,
               labelled_fraction: float = 0.1) -> None:
    f, ft = features
    _, y = mnist_train()
    _, yt = load_mnist_idx(SHARED_MNIST)
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == k), n_labels // 10, replace=False)
                               for k in range(10)])
    partial = np.full(len(y), -1)
    partial[labelled] = y[labelled]
    model = get_model("ssvae", (f.shape[1],), signal_dims=1, n_classes=10, **M2)
    accuracy: list[float] = []
    t = time.perf_counter()
    model.fit(f, partial, epochs=epochs, batch_size=128, lr=1e-3, progress=False,
              test_fraction=0.0, labelled_fraction=labelled_fraction,
              on_epoch_end=lambda e, h: accuracy.append(float((model.predict(ft) == yt).mean())))
    results[f"m1m2_ssvae_{n_labels}_labels"] = {
        "m2": M2, "labels": n_labels, "epochs": epochs,
        "test_accuracy": accuracy[-1], "test_accuracy_per_epoch": accuracy,
        "train_s": time.perf_counter() - t}
    save(results)


def umap_embedding(features: tuple) -> tuple[np.ndarray, np.ndarray, float]:
    """10-d UMAP of the training features, the test features placed in it, and the seconds."""
    with warnings.catch_warnings():
        # umap announces its optional TensorFlow extra with an ImportWarning on import
        warnings.simplefilter("ignore", ImportWarning)
        import umap
    f, ft = features
    t = time.perf_counter()
    est = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, random_state=0, n_jobs=1)
    e = est.fit_transform(f)
    return e.astype(np.float32), est.transform(ft).astype(np.float32), time.perf_counter() - t


def part_jvae(results: dict, features: tuple, source: str, epochs: int, options: dict) -> None:
    record: dict = {"input": source}
    if source == "umap":
        e, et, record["umap_s"] = umap_embedding(features)
        features = (e, et)
    f, ft = features
    _, yt = load_mnist_idx(SHARED_MNIST)
    # The baseline the joint VAE has to beat on the same input
    kmeans = KMeans(10, n_init=3, random_state=0).fit(f)
    record["kmeans_test_accuracy_hungarian"] = cluster_accuracy(yt, kmeans.predict(ft))
    # The UMAP embedding is 10-d with tight clusters: a smaller network and continuous latent.
    size = dict(latent_dim=2, hidden=128) if source == "umap" else dict(latent_dim=8, hidden=256)
    config = {**dict(discrete=(10,), **size, layers=2, likelihood="gaussian", sigma=0.5,
                     enumerate_classes=True, balance=100.0), **options}
    model = get_model("jvae", (f.shape[1],), signal_dims=1, **config)
    accuracy: list[float] = []
    t = time.perf_counter()
    model.fit(f, epochs=epochs, batch_size=128, lr=1e-3, progress=False, test_fraction=0.0,
              on_epoch_end=lambda e, h: accuracy.append(cluster_accuracy(yt, model.predict(ft))))
    results[f"jvae_on_{source}"] = {
        **record, "config": config, "epochs": epochs,
        "test_accuracy_hungarian": accuracy[-1], "test_accuracy_per_epoch": accuracy,
        "train_s": time.perf_counter() - t}
    save(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="ssvae,jvae")
    parser.add_argument("--labels", default="100,600,1000,3000")
    parser.add_argument("--m1-epochs", type=int, default=30)
    parser.add_argument("--m2-epochs", type=int, default=15)
    parser.add_argument("--labelled-fraction", type=float, default=0.1,
                        help="M2: labels repeated until they are this fraction of the data")
    parser.add_argument("--jvae-inputs", default="m1,umap", help="jvae on M1 latents, their UMAP")
    parser.add_argument("--jvae-epochs", type=int, default=20)
    parser.add_argument("--jvae-options", default="{}", help="JSON of jvae config overrides")
    parser.add_argument("--out", default=str(RESULT), help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = open_results(Path(args.out))
    features = m1_features(results, args.m1_epochs)
    parts = args.parts.split(",")
    if "ssvae" in parts:
        for n in (int(v) for v in args.labels.split(",")):
            part_ssvae(results, features, n, args.m2_epochs, args.labelled_fraction)
    if "jvae" in parts:
        for source in args.jvae_inputs.split(","):
            part_jvae(results, features, source, args.jvae_epochs, json.loads(args.jvae_options))
    print(json.dumps({k: v for k, v in results.items() if k != "_out"}, indent=2))


if __name__ == "__main__":
    main()
