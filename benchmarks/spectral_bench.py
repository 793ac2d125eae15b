"""Spectral benchmark: time and peak memory of PCA, NMF, k-means, GMM, UMAP and BLU.

Each (method, implementation) runs in a fresh subprocess that loads the cube from disk.
``extra_peak_mib`` is that process' own resident high-water mark (``VmHWM``, reset to the
current size just before the method starts, cube already loaded) minus the resident size at
that moment; ``peak_over_cube`` is ``(cube + extra_peak) / cube``. ``ru_maxrss`` is not used: a
child started by fork + exec inherits its parent's peak there (Linux keeps the larger of the
two), so when the parent had just generated the cube every row read ~700 MiB too high.

    nice python benchmarks/spectral_bench.py                # 256x256x1024, 2 threads
    nice python benchmarks/spectral_bench.py --size 128 --channels 512   # reduced

Writes benchmarks/results/spectral_bench_<size>x<size>x<channels>.json and prints a markdown
table; the generated cubes are cached in benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"  # generated cubes (large, not committed)
RESULTS = Path(__file__).resolve().parent / "results"

# (label, implementation, k); the method runs are defined in run_one
CASES = [
    ("pca", "latentatlas", 10),
    ("pca", "sklearn", 10),
    ("nmf", "latentatlas", 10),
    ("nmf", "sklearn", 10),
    ("kmeans", "latentatlas", 8),
    ("kmeans", "sklearn", 8),
    ("gmm", "latentatlas", 8),
    ("gmm", "sklearn", 8),
    ("umap", "umap-learn", 2),
    ("blu", "latentatlas", 4),
]


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB: this process only."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field} line (Linux only)")


def _reset_peak() -> None:
    """Set this process' resident high-water mark (VmHWM) to its current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _rel_err(X, W, H) -> float:  # type: ignore[no-untyped-def]
    import numpy as np

    # chunked so the residual never costs a second cube of memory
    num = 0.0
    for i in range(0, X.shape[0], 8192):
        r = X[i:i + 8192].astype(np.float64) - W[i:i + 8192] @ H
        num += float((r * r).sum())
    return float(np.sqrt(num) / np.linalg.norm(X.astype(np.float64)))


def run_one(method: str, impl: str, k: int, cube_path: str, blu_path: str, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    path = blu_path if method == "blu" else cube_path
    cube = np.load(path)
    X = cube.reshape(-1, cube.shape[-1])
    info: dict = {"method": method, "impl": impl, "k": k, "shape": list(cube.shape)}
    # warm up imports outside the timed region
    if impl == "latentatlas":
        import latentatlas.spectral as spectral
    else:
        import sklearn.cluster  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        import sklearn.mixture  # noqa: F401
    if method == "umap":
        import umap  # noqa: F401
    # warm-up on a small slice so lazily loaded kernels and thread pools are not counted as
    # the method's memory (or time)
    if method in ("pca", "nmf", "kmeans") and impl == "latentatlas":
        {"pca": spectral.PCA, "nmf": spectral.NMF, "kmeans": spectral.KMeans}[method](
            2, random_state=0).fit(X[:64])
    elif method in ("pca", "nmf", "kmeans"):
        from sklearn.cluster import KMeans as SkKMeans
        from sklearn.decomposition import NMF as SkNMF
        from sklearn.decomposition import PCA as SkPCA

        {"pca": SkPCA, "nmf": SkNMF, "kmeans": SkKMeans}[method](2, random_state=0).fit(X[:64])
    _reset_peak()
    rss0 = _status_mib("VmRSS")
    t0 = time.perf_counter()
    if method == "pca":
        if impl == "latentatlas":
            est = spectral.PCA(k, random_state=0).fit(X)
            info["solver"] = est.solver_
        else:
            from sklearn.decomposition import PCA

            est = PCA(k, random_state=0).fit(X)
            info["solver"] = est._fit_svd_solver
        info["explained_variance_ratio_sum"] = float(est.explained_variance_ratio_.sum())
    elif method == "nmf":
        if impl == "latentatlas":
            est = spectral.NMF(k, init="spa", random_state=0)
            W = est.fit_transform(X)
            info["n_iter"] = est.n_iter_
        else:
            import warnings

            from sklearn.decomposition import NMF
            from sklearn.exceptions import ConvergenceWarning

            est = NMF(k, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                W = est.fit_transform(X)
            info["n_iter"] = est.n_iter_
        elapsed = time.perf_counter() - t0
        # the error check below allocates; take the method's memory peak before it
        info["_peak"] = _status_mib("VmHWM")
        info["relative_error"] = _rel_err(X, W, est.components_)
    elif method == "kmeans":
        if impl == "latentatlas":
            est = spectral.KMeans(k, random_state=0).fit(X)
        else:
            from sklearn.cluster import KMeans

            est = KMeans(k, random_state=0).fit(X)
        info["inertia"] = float(est.inertia_)
        info["n_iter"] = int(est.n_iter_)
    elif method == "gmm":
        if impl == "latentatlas":
            res = spectral.unmix(cube, "gmm", k, random_state=0)
            info["note"] = "unmix: 8 PCA scores + tied-covariance GMM"
            info["converged"] = bool(res.extras["converged"])
        else:
            from sklearn.decomposition import PCA
            from sklearn.mixture import GaussianMixture

            feats = PCA(10, random_state=0).fit_transform(X)
            est = GaussianMixture(k, random_state=0).fit(feats)
            info["note"] = "sklearn PCA(10) scores + GaussianMixture defaults (full covariance)"
            info["converged"] = bool(est.converged_)
    elif method == "umap":
        import umap
        from sklearn.decomposition import PCA

        feats = PCA(10, random_state=0).fit_transform(X)
        umap.UMAP(n_components=k, random_state=0, n_jobs=1).fit_transform(feats)
        info["note"] = "on 10 PCA scores, umap-learn defaults (time includes numba JIT)"
    elif method == "blu":
        est = spectral.BayesianLinearUnmixing(k, random_state=0).fit(X)
        info["sweeps"] = est.n_burn + est.n_samples
    if "relative_error" not in info:
        elapsed = time.perf_counter() - t0
    peak = info.pop("_peak", None) or _status_mib("VmHWM")
    cube_mib = cube.nbytes / 2**20
    info.update(time_s=elapsed, cube_mib=cube_mib, extra_peak_mib=max(peak - rss0, 0.0),
                peak_over_cube=(cube_mib + max(peak - rss0, 0.0)) / cube_mib)
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated methods to run")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, impl, k, cube_path, blu_path, threads = args.child
        print(json.dumps(run_one(method, impl, int(k), cube_path, blu_path, int(threads))))
        return

    import numpy as np

    from latentatlas.datasets.spectral import make_spectral_cube

    OUT.mkdir(parents=True, exist_ok=True)
    cube_path = OUT / f"spectral_cube_{args.size}x{args.size}x{args.channels}.npy"
    if not cube_path.exists():
        s = make_spectral_cube("eels", shape=(args.size, args.size), n_channels=args.channels,
                               n_components=5, counts=200, seed=0, smoothness=12)
        np.save(cube_path, s.cube.astype(np.float32))
    blu_path = OUT / "spectral_cube_64x64x512.npy"
    if not blu_path.exists():
        s = make_spectral_cube("eels", shape=(64, 64), n_channels=512, n_components=4,
                               counts=200, seed=0)
        np.save(blu_path, s.cube.astype(np.float32))
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    only = set(filter(None, args.only.split(",")))
    load_start = os.getloadavg()
    rows = []
    for method, impl, k in CASES:
        if only and method not in only:
            continue
        cmd = [sys.executable, __file__, "--child", method, impl, str(k), str(cube_path),
               str(blu_path), str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            rows.append({"method": method, "impl": impl, "error": proc.stderr[-2000:]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or
            platform.machine(), "threads": args.threads, "load_average_start": load_start,
            "load_average_end": os.getloadavg(), "methods": sorted(only) or "all",
            "size": args.size, "channels": args.channels}
    tag = f"{args.size}x{args.size}x{args.channels}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"spectral_bench_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                               indent=2))
    print("\n| method | implementation | k | time (s) | extra peak (MiB) | peak / cube | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['impl']} | | failed | | | {r['error'][-80:]!r} |")
            continue
        notes = {k: v for k, v in r.items() if k in ("solver", "relative_error", "n_iter",
                                                     "inertia", "note", "converged", "sweeps")}
        print(f"| {r['method']} | {r['impl']} | {r['k']} | {r['time_s']:.2f} | "
              f"{r['extra_peak_mib']:.0f} | {r['peak_over_cube']:.2f} | {notes} |")


if __name__ == "__main__":
    main()
