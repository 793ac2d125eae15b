"""The GPU figures of latentatlas in one run (issue 20); ``benchmarks/gpu_suite.sh`` calls it.

Sections (each timed after a warm-up; every setting is stated in the JSON):

1. ``rvae``: rVAE training throughput (images/s through the one training plan) with the
   spatial and the transform decoder, batch 100 and 1000, precision ``32-true`` and
   ``bf16-mixed``, without and with ``torch.compile`` (16 runs, 28 x 28 generated rotated
   shapes; the compiled runs' compilation happens in the untimed warm-up epoch).
2. ``ensemble``: wall time of one joint VAE against an 8-member vectorised ensemble, same
   data and epochs.
3. ``spectral``: PCA, NMF and k-means of latentatlas on the device against scikit-learn (on
   the CPU) on the same 256 x 256 x 1024 generated EELS cube, in the same run.
4. ``atoms``: DCNN atom-finder inference on a 2048 x 2048 generated lattice (network in
   512-pixel tiles on the device, then the probability map to points).

Targets (H100/H200): spatial decoder at batch 1000 >= 550,000 images/s; spectral methods
>= 10x scikit-learn. A time guard (``--budget-s``, default 450 s) skips what would not finish
and says so in the JSON, so the whole script stays under 8 minutes.

``--cpu-smoke`` runs every section at toy sizes on the CPU (``torch.compile`` runs are
recorded as skipped there: compilation alone takes minutes on a CPU), to check the script
before a GPU is at hand; its JSON is ``gpu_suite_cpu_smoke.json``, never the GPU figures.

    bash benchmarks/gpu_suite.sh                 # on the GPU machine
    python benchmarks/gpu_suite.py --cpu-smoke   # anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"

#: sizes on the GPU and in --cpu-smoke (the smoke run checks the code paths, in seconds)
SIZES: dict[bool, dict[str, Any]] = {
    False: {"rvae": (100_000, 28, 5), "ensemble": (60_000, 3), "cube": (256, 1024),
            "atoms": 2048},
    True: {"rvae": (100, 8, 1), "ensemble": (100, 1), "cube": (16, 64), "atoms": 96},
}


class Guard:
    """Skips work once the time budget is spent (the result says it was skipped)."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def run(self, name: str, need_s: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.left() < need_s:
            return {"name": name, "skipped": f"time budget: {self.left():.0f} s left, "
                                             f"~{need_s:.0f} s needed"}
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # one failing section must not lose the others' figures
            out = {"error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()[-2000:]}
        out.update(name=name, section_s=time.perf_counter() - t)
        print(json.dumps({k: v for k, v in out.items() if k != "traceback"}), flush=True)
        return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- 1. rVAE


def rvae_run(decoder: str, batch: int, precision: str, compile_: bool, n: int, size: int,
             epochs: int, accelerator: str) -> dict[str, Any]:
    from latentatlas.datasets.shapes import rotated_shapes
    from latentatlas.models import get_model

    data = rotated_shapes(n, size=size, seed=0).images
    model = get_model("rvae", (size, size), latent_dim=2, decoder=decoder, seed=0)
    stamps: list[float] = []
    start = time.perf_counter()

    def stamp(epoch: int, _: dict[str, float]) -> None:
        _sync(accelerator)
        stamps.append(time.perf_counter())

    model.fit(data, epochs=epochs + 1, batch_size=batch, lr=1e-3, progress=False,
              accelerator=accelerator, precision=precision, compile=compile_,
              test_fraction=0.0, on_epoch_end=stamp)
    timed = stamps[-1] - stamps[0]  # the first epoch (warm-up, compilation) is not timed
    return {"images_per_s": n * epochs / timed, "s_per_epoch": timed / epochs,
            "warmup_epoch_s": stamps[0] - start,
            "final_train_elbo": model.history["train/elbo"][-1]}


def section_rvae(guard: Guard, smoke: bool, device: str) -> list[dict[str, Any]]:
    # n is a multiple of both batch sizes: a smaller last batch would recompile
    n, size, epochs = SIZES[smoke]["rvae"]
    rows = []
    # the target setting (spatial decoder, batch 1000) first: the time guard trims the end
    for decoder in ("spatial", "transform"):
        for batch in (1000, 100):
            for compile_ in (False, True):
                for precision in ("32-true", "bf16-mixed"):
                    name = f"rvae {decoder} b{batch} {precision}{' compile' if compile_ else ''}"
                    if compile_ and smoke:
                        row = {"name": name, "skipped": "torch.compile is not run in "
                               "--cpu-smoke (compilation takes minutes on a CPU)"}
                    else:
                        need = (90 if compile_ else 15) if not smoke else 1
                        row = guard.run(name, need, lambda d=decoder, b=batch, p=precision,
                                        c=compile_: rvae_run(d, b, p, c, n, size, epochs,
                                                             device))
                    row.update(decoder=decoder, batch=batch, precision=precision,
                               compile=compile_, n_images=n, image=[size, size],
                               timed_epochs=epochs)
                    rows.append(row)
    return rows


# ----------------------------------------------------------------------------- 2. ensemble


def section_ensemble(guard: Guard, smoke: bool, device: str) -> dict[str, Any]:
    from latentatlas.datasets.shapes import rotated_shapes
    from latentatlas.models import get_model

    n, epochs = SIZES[smoke]["ensemble"]
    x = np.clip(rotated_shapes(n, size=28, seed=1).images, 0.0, 1.0)
    cfg = dict(discrete=(10,), latent_dim=10, hidden=128, likelihood="bernoulli", balance=10.0)
    opts = dict(epochs=epochs, batch_size=1000, lr=1e-3, progress=False, test_fraction=0.0,
                accelerator=device)

    def run() -> dict[str, Any]:
        get_model("jvae", (28, 28), seed=0, **cfg).fit(x[:2000], **{**opts, "epochs": 1,
                                                                    "batch_size": 100})
        _sync(device)
        t = time.perf_counter()
        get_model("jvae", (28, 28), seed=0, **cfg).fit(x, **opts)
        _sync(device)
        one = time.perf_counter() - t
        t = time.perf_counter()
        get_model("ensemble", (28, 28), member="jvae", n_members=8, **cfg).fit(x, **opts)
        _sync(device)
        eight = time.perf_counter() - t
        return {"setup": f"jvae mlp hidden 128, {n} generated 28x28 shapes, {epochs} epochs, "
                         "batch 1000", "one_s": one, "eight_vectorised_s": eight,
                "eight_over_one": eight / one}

    return guard.run("ensemble of 8 vs one", 5 if smoke else 60, run)


# ----------------------------------------------------------------------------- 3. spectral


def section_spectral(guard: Guard, smoke: bool, device: str) -> list[dict[str, Any]]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from latentatlas.datasets.spectral import make_spectral_cube
    from latentatlas.spectral import NMF, PCA, KMeans

    size, channels = SIZES[smoke]["cube"]
    cube = make_spectral_cube("eels", shape=(size, size), n_channels=channels, n_components=5,
                              counts=200, seed=0, smoothness=12).cube.astype(np.float32)
    X = cube.reshape(-1, channels)
    rows = []

    def timed(fit: Callable[[], Any]) -> tuple[float, Any]:
        _sync(device)
        t = time.perf_counter()
        est = fit()
        _sync(device)
        return time.perf_counter() - t, est

    def case(method: str) -> dict[str, Any]:
        from sklearn.cluster import KMeans as SkKMeans
        from sklearn.decomposition import NMF as SkNMF
        from sklearn.decomposition import PCA as SkPCA

        ours = {"pca": lambda: PCA(10, random_state=0, device=device).fit(X),
                "nmf": lambda: NMF(10, init="spa", random_state=0, device=device).fit(X),
                "kmeans": lambda: KMeans(8, random_state=0, device=device).fit(X)}[method]
        theirs = {"pca": lambda: SkPCA(10, random_state=0).fit(X),
                  "nmf": lambda: SkNMF(10, random_state=0).fit(X),
                  "kmeans": lambda: SkKMeans(8, random_state=0).fit(X)}[method]
        ours()  # warm-up: kernels, cuBLAS handles
        t_ours, est = timed(ours)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t_sk, sk = timed(theirs)
        out: dict[str, Any] = {"latentatlas_s": t_ours, "sklearn_cpu_s": t_sk,
                               "speedup": t_sk / t_ours, "cube": [size, size, channels]}
        if method == "nmf":
            out.update(latentatlas_error=float(est.reconstruction_err_),
                       sklearn_error=float(sk.reconstruction_err_))
        if method == "kmeans":
            out.update(latentatlas_inertia=float(est.inertia_),
                       sklearn_inertia=float(sk.inertia_))
        return out

    for method in ("pca", "kmeans", "nmf"):
        rows.append(guard.run(f"spectral {method}", 2 if smoke else 45,
                              lambda m=method: case(m)))
    return rows


# ----------------------------------------------------------------------------- 4. atoms


def section_atoms(guard: Guard, smoke: bool, device: str) -> dict[str, Any]:
    from latentatlas.datasets.lattices import generate_lattice
    from latentatlas.descriptors.atoms import load_atom_finder, probability_to_points
    from latentatlas.train.segmentation import normalize_percentile, predict_probability

    size = SIZES[smoke]["atoms"]

    def run() -> dict[str, Any]:
        img = generate_lattice((size, size), kind="perovskite", spacing=9.0, angle=12.0,
                               gaussian_noise=0.1, seed=0).image.astype(np.float32)
        net = load_atom_finder("general")
        x = normalize_percentile(img, low=1.0, high=99.0, clip=(-0.5, 1.5))
        predict_probability(net, x[:96, :96], device=device)  # warm-up
        _sync(device)
        t = time.perf_counter()
        prob = predict_probability(net, x, batch_size=16, device=device)
        _sync(device)
        t_net = time.perf_counter() - t
        t = time.perf_counter()
        points = probability_to_points(prob[0])
        t_points = time.perf_counter() - t
        return {"image": [size, size], "network_s": t_net, "points_s": t_points,
                "megapixels_per_s": size * size / 1e6 / t_net, "atoms": int(len(points))}

    return guard.run("atom finder inference", 2 if smoke else 20, run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU")
    ap.add_argument("--budget-s", type=float, default=450.0)
    ap.add_argument("--sections", default="rvae,ensemble,spectral,atoms")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    args = ap.parse_args()
    if os.environ.get("LATENTATLAS_CPU_SMOKE") == "1":
        args.cpu_smoke = True
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to PyTorch: run on a GPU machine, or pass "
                         "--cpu-smoke to check the script on the CPU")
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    guard = Guard(args.budget_s)
    sections = set(args.sections.split(","))
    out = Path(args.out) if args.out else RESULTS / (
        "gpu_suite_cpu_smoke.json" if args.cpu_smoke else "gpu_suite.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    def save() -> None:
        """Written after every section, so a run cut short keeps what it measured."""
        meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "device": device,
                "device_name": torch.cuda.get_device_name() if device == "cuda" else
                (platform.processor() or platform.machine()),
                "torch": torch.__version__, "cpu_smoke": args.cpu_smoke,
                "total_s": time.perf_counter() - guard.start, "budget_s": args.budget_s,
                "threads": torch.get_num_threads(), "sections_done": sorted(results)}
        out.write_text(json.dumps({"meta": meta, **results}, indent=2, default=str))

    # short sections first: the time guard trims the long rVAE grid, not the rest
    for name, section in (("atoms", section_atoms), ("spectral", section_spectral),
                          ("ensemble", section_ensemble), ("rvae", section_rvae)):
        if name in sections:
            results[name] = section(guard, args.cpu_smoke, device)
            save()
    print(f"wrote {out} in {time.perf_counter() - guard.start:.0f} s")


if __name__ == "__main__":
    main()
