"""Streaming analyze on generated atomic-resolution movies in Zarr (issue 20).

For each movie length, a movie of ``size x size`` float32 frames is generated into a Zarr
store (a drifting perovskite-like lattice, two kinds of columns, fresh Gaussian noise every
frame), then ``analyze_stream`` runs on it in a fresh process under ``--budget``; the
process's peak resident memory (from ``wait4``), the time per frame and the disk use of
the results are recorded. ``--compare`` frames of the movie are also analysed by the
in-memory ``analyze`` with the same options, and the two results compared.

    nice python benchmarks/stream_movie.py --frames 64 256 --size 1024 --budget "4 GB"

Writes benchmarks/results/stream_movie.json and prints a markdown table. The movies and
results live under --workdir and are deleted at the end (--keep keeps them).
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
OPTIONS = dict(model="rvae", epochs=10, latent_dim=2, n_components=2, train_samples=5000)


def make_movie(path: Path, n_frames: int, size: int, seed: int = 0) -> float:
    """Write the movie frame chunk by frame chunk; returns seconds taken."""
    import zarr

    from latentatlas.datasets.lattices import generate_lattice

    t = time.perf_counter()
    margin = 96
    lat = generate_lattice((size + margin, size + margin), kind="perovskite", spacing=16.0,
                           angle=10.0, sigma=0.16 * 16.0, second_intensity=0.45,
                           gaussian_noise=0.0, seed=seed).image.astype(np.float32)
    rng = np.random.default_rng(seed)
    z = zarr.create_array(str(path), shape=(n_frames, size, size), chunks=(4, size, size),
                          dtype="float32", overwrite=True)
    z.attrs["latentatlas"] = {"axes": [{"name": "frame", "kind": "frame"},
                                       {"name": "y", "kind": "spatial"},
                                       {"name": "x", "kind": "spatial"}],
                              "name": f"generated movie, {n_frames} frames"}
    for f0 in range(0, n_frames, 4):
        block = []
        for f in range(f0, min(f0 + 4, n_frames)):
            # a slow drift along a closed path, whole pixels (the lattice is band-limited)
            dy = int(round(margin / 2 + 30 * np.sin(2 * np.pi * f / 500)))
            dx = int(round(margin / 2 + 30 * np.cos(2 * np.pi * f / 700)))
            frame = lat[dy:dy + size, dx:dx + size] + rng.normal(0.0, 0.08, (size, size))
            block.append(frame.astype(np.float32))
        z[f0:f0 + len(block)] = np.stack(block)
    return time.perf_counter() - t


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child_stream(movie: str, out: str, budget: str) -> dict:
    import torch

    from latentatlas.pipelines.stream import analyze_stream

    torch.set_num_threads(1)
    res = analyze_stream(movie, out, "peaks", memory_budget=budget, progress=False,
                         **OPTIONS)  # type: ignore[arg-type]
    return {"frames": res.n_frames, "atoms": res.n_atoms, "patches": res.n_patches,
            "frames_per_chunk": res.frames_per_chunk, "timings": res.timings,
            "peak_rss_self_bytes": res.peak_rss_bytes, "n_classes": res.n_classes}


def child_compare(movie: str, out: str, n: int) -> dict:
    import torch
    import zarr

    from latentatlas.pipelines.analyze import analyze
    from latentatlas.pipelines.stream import analyze_stream

    torch.set_num_threads(1)
    frames = np.asarray(zarr.open_array(movie, mode="r")[:n])
    Path(out).mkdir(parents=True, exist_ok=True)
    small = Path(out) / "small.zarr"
    z = zarr.create_array(str(small), shape=frames.shape, chunks=(1, *frames.shape[1:]),
                          dtype="float32", overwrite=True)
    z[:] = frames
    t = time.perf_counter()
    ref = analyze(frames, "peaks", progress=False, **OPTIONS)  # type: ignore[arg-type]
    t_mem = time.perf_counter() - t
    t = time.perf_counter()
    res = analyze_stream(str(small), Path(out) / "res", "peaks", progress=False,
                         **OPTIONS)  # type: ignore[arg-type]
    t_stream = time.perf_counter() - t
    g = res.open()
    same_centers = bool(np.array_equal(g["patches/centers"][:], ref.patches.centers))
    return {"frames": n, "patches": len(ref.patches), "same_patch_centres": same_centers,
            "same_patch_data": bool(np.array_equal(g["patches/data"][:], ref.patches.data)),
            "max_abs_latent_difference": float(np.abs(g["latents/mean"][:] -
                                                      ref.maps.values).max()),
            "same_labels_fraction": float(np.mean(g["labels/labels"][:] == ref.labels.labels)),
            "time_in_memory_s": t_mem, "time_streamed_s": t_stream}


def run_child(args: list[str]) -> tuple[dict, int]:
    """Run this script as a child; its JSON and its peak resident memory (bytes)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {args} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), int(usage.ru_maxrss) * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--budget", default="4 GB")
    ap.add_argument("--compare", type=int, default=6, help="frames analysed both ways")
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out" / "stream"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (child_stream(rest[0], rest[1], rest[2]) if kind == "stream"
                  else child_compare(rest[0], rest[1], int(rest[2])))
        print(json.dumps(result))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    compare = None
    for n in args.frames:
        movie = work / f"movie_{n}x{args.size}.zarr"
        gen_s = make_movie(movie, n, args.size)
        movie_bytes = n * args.size * args.size * 4
        out = work / f"results_{n}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        info, peak = run_child(["stream", str(movie), str(out), args.budget])
        wall = time.perf_counter() - t
        info.update(movie_gb=movie_bytes / 1e9, generate_s=gen_s, wall_s=wall,
                    peak_rss_bytes=peak, results_disk_bytes=_du(out),
                    movie_disk_bytes=_du(movie))
        rows.append(info)
        print(json.dumps(info), flush=True)
        if compare is None and args.compare:
            compare, cpeak = run_child(["compare", str(movie), str(work / "compare"),
                                        str(args.compare)])
            compare["peak_rss_bytes"] = cpeak
            print(json.dumps(compare), flush=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(movie, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work / "compare", ignore_errors=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or
            platform.machine(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "size": args.size, "budget": args.budget, "options": OPTIONS,
            "command": "python benchmarks/stream_movie.py " + " ".join(sys.argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_movie.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "compare": compare}, indent=2))
    print("\n| movie | frames | GB | atoms | patches | frames/chunk | peak RSS (GB) | s/frame "
          "(atoms+patches, encode, paint) | train (s) | total (s) | results on disk (GB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tm = r["timings"]
        print(f"| {args.size}x{args.size} | {r['frames']} | {r['movie_gb']:.2f} | {r['atoms']} | "
              f"{r['patches']} | {r['frames_per_chunk']} | {r['peak_rss_bytes'] / 1e9:.2f} | "
              f"{tm['per_frame']:.3f} | {tm['train']:.1f} | {tm['total']:.1f} | "
              f"{r['results_disk_bytes'] / 1e9:.2f} |")


if __name__ == "__main__":
    main()
