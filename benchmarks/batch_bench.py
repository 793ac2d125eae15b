"""The batch runner on many files: serial vs a local Dask cluster (issue 20).

``--files`` generated lattice images (``.npy``, two kinds of columns, a seed each) are
analysed by the batch runner, ``run_batch("analyze", ...)`` (one results folder per file:
atoms, patches, rVAE, classes, baselines, figures, report; a summary across files), first
serially in this process, then with ``scheduler="local", workers=2`` (a local Dask cluster
of 2 worker processes, 1 thread each, through ``pipelines.parallel.run_many``). Both use one
thread per job; the rows are compared file by file (same number of patches).

    nice python benchmarks/batch_bench.py --files 100 --epochs 5

Writes benchmarks/results/batch_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out" / "batch"))
    args = ap.parse_args()
    import torch

    from latentatlas.datasets.lattices import two_site_lattice
    from latentatlas.pipelines.batch import run_batch

    torch.set_num_threads(1)
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    for i in range(args.files):
        img = two_site_lattice(shape=(args.size, args.size), seed=i).image
        np.save(work / "in" / f"lattice_{i:03d}.npy", img.astype(np.float32))

    options = {"epochs": args.epochs}
    runs = {}
    for tag, scheduler in (("serial", None), ("local", "local")):
        t = time.perf_counter()
        res = run_batch("analyze", [str(work / "in" / "*.npy")], work / tag, options,
                        scheduler=scheduler, workers=args.workers)
        wall = time.perf_counter() - t
        runs[tag] = {"wall_s": wall, "files_per_min": 60 * args.files / wall,
                     "failed": [r["input"] for r in res.failed],
                     "job_s_sum": sum(r["seconds"] for r in res.rows),
                     "patches": [r.get("patches") for r in res.rows],
                     "load_average_after": os.getloadavg()}
        print(tag, json.dumps({k: v for k, v in runs[tag].items() if k != "patches"}),
              flush=True)
    same = runs["serial"]["patches"] == runs["local"]["patches"]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cores": os.cpu_count(),
            "machine": platform.machine(), "load_average": os.getloadavg(),
            "files": args.files, "size": args.size, "epochs": args.epochs,
            "workers": args.workers, "same_patches_per_file": same,
            "command": "python benchmarks/batch_bench.py " + " ".join(sys.argv[1:])}
    for r in runs.values():
        r.pop("patches")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_bench.json").write_text(json.dumps({"meta": meta, **runs}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    s, loc = runs["serial"], runs["local"]
    print(f"\n{args.files} files of {args.size}x{args.size}, analyze with {args.epochs} epochs")
    print("| run | wall (s) | files/min | sum of job times (s) | failed |\n|---|---|---|---|---|")
    for tag, r in (("serial", s), (f"local cluster, {args.workers} workers", loc)):
        print(f"| {tag} | {r['wall_s']:.0f} | {r['files_per_min']:.1f} | {r['job_s_sum']:.0f} | "
              f"{len(r['failed'])} |")
    print(f"speed-up {s['wall_s'] / loc['wall_s']:.2f}x; same patches per file: {same}")


if __name__ == "__main__":
    main()
