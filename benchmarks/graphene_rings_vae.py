"""Graphene: ring-labelled class-aware VAEs on a generated sheet and on a real grain boundary.

Writes benchmarks/out/graphene_<name>.json and prints a markdown table row per run.

    PYTHONPATH=src python benchmarks/graphene_rings_vae.py [--real-only] [--models ssvae,jvae,cvae]

Real data: ../shared/data/stem_graphene_aicrystallographer/AtomNet/exp_data/
G-GrainBoundary-4nm.npy with its -coord.npy. The coordinate file is a pickled dict (trusted,
shared file), loaded here with allow_pickle=True and converted to a plain (n, 3) array, as the
library never unpickles.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from latentatlas.pipelines.graphene import analyze_graphene, example_graphene

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "stem_graphene_aicrystallographer" / "AtomNet" / "exp_data"
OUT = ROOT / "benchmarks" / "out"


def _row(name: str, model: str, r: object, wall: float) -> dict[str, object]:
    s = r.scores  # type: ignore[attr-defined]
    return {
        "data": name, "model": model, "atoms": len(r.coords),  # type: ignore[attr-defined]
        "patches": len(r.patches), "n_scored": s.get("n_scored"),  # type: ignore[attr-defined]
        "accuracy": s.get("accuracy"), "balanced_accuracy": s.get("balanced_accuracy"),
        "majority_baseline": s.get("majority_baseline"), "recall": s.get("recall"),
        "support": s.get("support"), "ring_sizes": r.rings.size_counts(),  # type: ignore[attr-defined]
        "train_s": r.timings["train"], "total_s": wall,  # type: ignore[attr-defined]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="ssvae,jvae,cvae")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--real-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    inputs: list[tuple[str, np.ndarray, np.ndarray]] = []
    if not args.real_only:
        s = example_graphene(seed=0)
        inputs.append(("generated 160x160 (example:graphene)", s.image,
                       np.column_stack([s.coords, s.classes])))
    img_path = DATA / "G-GrainBoundary-4nm.npy"
    if img_path.exists():
        coords = np.load(DATA / "G-GrainBoundary-4nm-coord.npy", allow_pickle=True)[()][0]
        inputs.append(("G-GrainBoundary-4nm (real, 512x512)", np.load(img_path), coords))
    else:
        print(f"skipping the real image: {img_path} not present")
    for name, image, coords in inputs:
        for model in args.models.split(","):
            t = time.perf_counter()
            r = analyze_graphene(image, coords=coords, model=model, epochs=args.epochs,
                                 out=OUT / f"graphene_{model}_{name.split()[0]}" if args.out else None)
            row = _row(name, model, r, time.perf_counter() - t)
            rows.append(row)
            print(f"| {name} | {model} | {row['patches']} | {row['n_scored']} | "
                  f"{row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | "
                  f"{row['majority_baseline']:.3f} | {row['train_s']:.1f} |", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "epochs": args.epochs}
    tag = "real" if args.real_only else "all"
    (OUT / f"graphene_{tag}.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2,
                                                          default=str))


if __name__ == "__main__":
    main()
