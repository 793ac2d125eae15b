"""Time and peak memory of the analyze stages on a 2048 x 2048 image with ~40,000 atoms (CPU).

Stages: atom finding (peaks), patch extraction (vectorised, and a per-atom loop for
reference), encoding with an rVAE (untrained weights: encoding cost does not depend on them),
GMM labels. Peak memory is the largest resident-set growth over the stage, sampled every 5 ms
from /proc/self/status (Linux).

    PYTHONPATH=src python benchmarks/analyze_bench.py [--threads 1] [--size 2048]

Writes benchmarks/results/analyze_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS growth in MB) of fn()."""
    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    stop.set()
    th.join()
    peak[0] = max(peak[0], _rss_mb())
    return out, dt, peak[0] - base


def loop_patches(image: np.ndarray, centers: np.ndarray, window: int) -> np.ndarray:
    """The per-atom Python loop the vectorised version replaces (reference only)."""
    half = window // 2
    out = []
    for r, c in np.rint(centers).astype(int):
        if r - half >= 0 and c - half >= 0 and r - half + window <= image.shape[0] \
                and c - half + window <= image.shape[1]:
            out.append(image[r - half:r - half + window, c - half:c - half + window])
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--spacing", type=float, default=14.5,
                    help="A-A spacing of the perovskite-like lattice (two atoms per cell)")
    ap.add_argument("--window", type=int, default=0, help="0 = automatic, as in analyze")
    ap.add_argument("--train-epochs", type=int, default=1)
    ap.add_argument("--plain-encoder", action="store_true",
                    help="the rVAE with equivariant_angle=False (the encoder before issue 21)")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also time `analyze` with its default settings on the same image")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from latentatlas.analysis.labels import gmm_labels
    from latentatlas.datasets.lattices import two_site_lattice
    from latentatlas.descriptors.atoms import find_atoms
    from latentatlas.descriptors.patches import extract_patches
    from latentatlas.models import get_model

    lat = two_site_lattice(shape=(args.size, args.size), spacing=args.spacing)
    image = lat.image
    rows: list[dict[str, Any]] = []

    # spacing estimated by the finder itself, as in `latentatlas analyze`
    found, dt, mem = measure(lambda: find_atoms(image, method="peaks"))
    rows.append({"stage": "atom finding (peaks)", "seconds": dt, "peak_mb": mem,
                 "detail": f"{len(found)} atoms found ({len(lat.positions)} generated)"})
    centers = found.positions
    if not args.window:
        from latentatlas.analysis.latent_maps import typical_spacing
        from latentatlas.pipelines.analyze import _auto_window

        args.window = _auto_window(typical_spacing(centers), image.shape)

    patches, dt, mem = measure(lambda: extract_patches(image, centers, args.window))
    rows.append({"stage": "patch extraction (vectorised)", "seconds": dt, "peak_mb": mem,
                 "detail": f"{len(patches)} x {args.window}x{args.window} float32 "
                           f"({patches.data.nbytes / 2**20:.0f} MB)"})
    norm = (image - image.min()) / (image.max() - image.min())
    ref, dt, mem = measure(lambda: loop_patches(norm.astype(np.float32), centers, args.window))
    assert np.allclose(ref, patches.data[:, 0], atol=1e-6)
    rows.append({"stage": "patch extraction (per-atom loop, reference)", "seconds": dt,
                 "peak_mb": mem, "detail": "same patches"})

    model_options = {"equivariant_angle": False} if args.plain_encoder else {}
    model = get_model("rvae", input_shape=(args.window, args.window), latent_dim=2,
                      **model_options)
    X = patches.as_model_input()
    lat_out, dt, mem = measure(lambda: model.encode(X))
    rows.append({"stage": "encoding (rvae, batch 4096)", "seconds": dt, "peak_mb": mem,
                 "detail": f"{len(X)} patches -> {len(lat_out.names)} latents"})

    if args.train_epochs:
        _, dt, mem = measure(lambda: model.fit(X, epochs=args.train_epochs, batch_size=256,
                                               progress=False))
        rows.append({"stage": f"training (rvae, {args.train_epochs} epoch, batch 256)",
                     "seconds": dt, "peak_mb": mem, "detail": "for scale; not a hot path"})

    _, dt, mem = measure(lambda: gmm_labels(lat_out.content))
    rows.append({"stage": "GMM labels (BIC 1..6, 20k-sample fit)", "seconds": dt,
                 "peak_mb": mem, "detail": ""})

    if args.end_to_end:
        import tempfile

        from latentatlas.pipelines.analyze import analyze

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "lattice.npy"
            np.save(path, image)
            result, dt, mem = measure(lambda: analyze(str(path), out=Path(tmp) / "run",
                                                      progress=False,
                                                      model_options=model_options))
        rows.append({"stage": "end to end: analyze with its defaults (results folder written)",
                     "seconds": dt, "peak_mb": mem,
                     "detail": f"{len(result.patches)} patches, model {result.config.model}, "
                               + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())})

    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_1min": round(__import__("os").getloadavg()[0], 2),
            "machine": _cpu_name(),
            "cpu_count": __import__("os").cpu_count(), "torch_threads": args.threads,
            "image": [args.size, args.size], "window": args.window,
            "model_options": model_options,
            "torch": torch.__version__, "numpy": np.__version__}
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "analyze_bench_plain_encoder.json" if args.plain_encoder else "analyze_bench.json"
    (out / name).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(json.dumps(meta))
    print("| stage | time (s) | peak RSS growth (MB) | detail |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['detail']} |")


if __name__ == "__main__":
    main()
