"""Out-of-core spectral methods on a cube larger than the memory they may use (issue 20).

A 512 x 512 x 2048 EELS-like cube (float32, 2.1 GB; 5 endmembers, Poisson counts) is
generated block by block into a Zarr store. Each method then runs in a fresh process, and
the process's peak resident memory comes from ``wait4``:

- latentatlas out of core, reading the store as a Dask array: ``IncrementalPCA``,
  ``ChunkedNMF``, ``ChunkedKMeans``;
- scikit-learn in memory (the cube loaded whole): ``PCA``, ``NMF``, ``KMeans``;
- the whole command, ``latentatlas unmix cube.zarr -m pca|nmf --memory-budget "2 GB"``
  (cases ``cli_pca``, ``cli_nmf``): preprocessing, maps, figures and report included.

    nice python benchmarks/ooc_spectral.py [--size 512 --channels 2048] [--only ipca,sk_pca]

Writes benchmarks/results/ooc_spectral.json and prints a markdown table. The cube is deleted
at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ["ipca", "sk_pca", "ckmeans", "sk_kmeans", "cnmf", "sk_nmf", "cli_pca", "cli_nmf"]
#: the memory budget given to `latentatlas unmix --memory-budget` in the cli_* cases
CLI_BUDGET = "2 GB"


def make_cube(path: Path, size: int, channels: int, seed: int = 0) -> float:
    import zarr

    from latentatlas.datasets.spectral import make_spectral_cube, smooth_abundances

    t = time.perf_counter()
    endmembers = make_spectral_cube("eels", shape=(4, 4), n_channels=channels, n_components=5,
                                    counts=200, seed=seed).endmembers.astype(np.float64)
    rng = np.random.default_rng(seed)
    abundances = smooth_abundances((size, size), 5, 12.0, 12.0, rng)
    z = zarr.create_array(str(path), shape=(size, size, channels),
                          chunks=(8, size, channels), dtype="float32", overwrite=True)
    for r in range(0, size, 8):
        clean = abundances[r:r + 8] @ endmembers
        z[r:r + 8] = rng.poisson(clean).astype(np.float32)
    return time.perf_counter() - t


def _nmf_tol(nmf_iter: int) -> dict:
    """The default tolerance for 200 iterations; a shorter run does exactly ``nmf_iter``."""
    return {} if nmf_iter >= 200 else {"tol": 0.0}


def run_case(case: str, path: str, k: int, nmf_iter: int) -> dict:
    import dask.array as da
    import torch
    import zarr

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    info: dict = {"case": case, "k": k}
    if case.startswith("cli_"):
        from latentatlas.cli.app import app

        method = case.removeprefix("cli_")
        out = Path(path).with_name(f"unmix_{method}")
        extra = ["-p", f"max_iter={nmf_iter}", "-p", "init=nndsvda",
                 *(["-p", "tol=0"] if _nmf_tol(nmf_iter) else [])] if method == "nmf" else []
        t = time.perf_counter()
        app(["unmix", path, "-m", method, "-k", str(k), "-q", "-f", "--out", str(out),
             "--memory-budget", CLI_BUDGET, *extra], standalone_mode=False)
        info["fit_s"] = time.perf_counter() - t  # the whole command: load to report
        info["memory_budget"] = CLI_BUDGET
        params = json.loads((out / f"{method}_params.json").read_text())
        info["relative_error"] = params.get("reconstruction_error")
        return info
    if case.startswith("sk_"):
        import warnings

        from sklearn.cluster import KMeans
        from sklearn.decomposition import NMF, PCA
        from sklearn.exceptions import ConvergenceWarning

        t = time.perf_counter()
        cube = np.asarray(zarr.open_array(path, mode="r")[:])
        X = cube.reshape(-1, cube.shape[-1])
        info["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if case == "sk_pca":
                est = PCA(k, random_state=0).fit(X)
                info["explained_variance_ratio_sum"] = float(est.explained_variance_ratio_.sum())
                info["solver"] = est._fit_svd_solver
            elif case == "sk_nmf":
                est = NMF(k, random_state=0, max_iter=nmf_iter, **_nmf_tol(nmf_iter)).fit(X)
                info["relative_error"] = float(est.reconstruction_err_ / np.linalg.norm(X))
                info["n_iter"] = int(est.n_iter_)
            else:
                est = KMeans(8, random_state=0).fit(X)
                info["inertia"] = float(est.inertia_)
                info["n_iter"] = int(est.n_iter_)
        info["fit_s"] = time.perf_counter() - t
        return info
    from latentatlas.spectral import ChunkedKMeans, ChunkedNMF, IncrementalPCA

    X = da.from_zarr(path)  # (ny, nx, c): read one block of rows at a time
    t = time.perf_counter()
    if case == "ipca":
        est = IncrementalPCA(k).fit(X)
        info["explained_variance_ratio_sum"] = float(est.explained_variance_ratio_.sum())
    elif case == "cnmf":
        est = ChunkedNMF(k, init="nndsvda", random_state=0, max_iter=nmf_iter,
                         **_nmf_tol(nmf_iter)).fit(X)
        info["n_iter"] = int(est.n_iter_)
        norm = float(np.sqrt(sum(float((np.asarray(b, np.float64) ** 2).sum())
                                 for b in (X[i:i + 8].compute() for i in range(0, X.shape[0], 8)))))
        info["relative_error"] = float(est.reconstruction_err_ / norm)
    else:
        est = ChunkedKMeans(8, random_state=0).fit(X)
        info["inertia"] = float(est.inertia_)
        info["n_iter"] = int(est.n_iter_)
    info["fit_s"] = time.perf_counter() - t
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--channels", type=int, default=2048)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--nmf-iter", type=int, default=200,
                    help="NMF iterations; under 200 both NMFs run exactly this many (tol 0)")
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out" / "ooc"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "ooc_spectral.json"),
                    help="the JSON to write (a partial run on the same cube merges into it)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child[0], args.child[1], int(args.child[2]),
                                    int(args.child[3]))))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"cube_{args.size}x{args.size}x{args.channels}.zarr"
    gen_s = make_cube(path, args.size, args.channels) if not path.exists() else 0.0
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    only = [c for c in CASES if not args.only or c in args.only.split(",")]
    rows = []
    for case in only:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", case, str(path),
                                 str(args.k), str(args.nmf_iter)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        out = proc.stdout.read() if proc.stdout else ""
        err = proc.stderr.read() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            row = {"case": case, "error": err[-2000:]}
        else:
            row = json.loads(out.strip().splitlines()[-1])
            row["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9
            row["process_s"] = time.perf_counter() - t
        row.update(date=time.strftime("%Y-%m-%d %H:%M %Z"), load_average=os.getloadavg(),
                   threads=args.threads, command="python benchmarks/ooc_spectral.py "
                   + " ".join(sys.argv[1:]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    cube_gb = args.size * args.size * args.channels * 4 / 1e9
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": platform.processor() or
            platform.machine(), "threads": args.threads, "load_average": os.getloadavg(),
            "cube": [args.size, args.size, args.channels], "cube_gb": cube_gb,
            "store_gb_on_disk": sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            / 1e9, "generate_s": gen_s,
            "command": "python benchmarks/ooc_spectral.py " + " ".join(sys.argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out)
    if args.only and out.exists():
        # a partial run replaces its own cases and keeps the others measured on the same cube
        old = json.loads(out.read_text())
        if old["meta"]["cube"] == meta["cube"]:
            done = {r["case"] for r in rows}
            rows = [r for r in old["rows"] if r["case"] not in done] + rows
            rows.sort(key=lambda r: CASES.index(r["case"]))
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    print(f"\ncube {args.size}x{args.size}x{args.channels} ({cube_gb:.2f} GB), "
          f"{args.threads} threads")
    print("| case | fit (s) | peak RSS (GB) | result |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | failed | | {r['error'][-80:]!r} |")
            continue
        res = {k: v for k, v in r.items() if k in ("explained_variance_ratio_sum",
                                                   "relative_error", "inertia", "n_iter")}
        print(f"| {r['case']} | {r['fit_s']:.1f} | {r['peak_rss_gb']:.2f} | {res} |")


if __name__ == "__main__":
    main()
