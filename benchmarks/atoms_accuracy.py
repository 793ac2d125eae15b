"""Accuracy of the three atom finders on held-back generated lattices and real graphene HAADF.

    PYTHONPATH=src python benchmarks/atoms_accuracy.py [--n-generated 48] [--threads 2]

Writes benchmarks/out/atoms_accuracy.json and prints a markdown table. F1 at a 1.5-pixel match
radius (and 3 px, to separate detection from localisation); RMSE of matched pairs in pixels.
Generated images use seeds disjoint from training (the training pool uses seed 0).
Real images: ../shared/data/stem_graphene_aicrystallographer/AtomNet/exp_data, against the
coordinates provided beside them (AtomNet's output, not a manual annotation); unmatched points
within 6 px of the edge are not counted because those lists omit edge columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from latentatlas.analysis.matching import (
    MatchCounts,
    match_counts,
    match_points,
    scores_from_counts,
)
from latentatlas.datasets.lattices import random_lattice
from latentatlas.descriptors.atoms import find_atoms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from atoms_data import IMAGES, REFERENCE_BORDER, load_graphene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# name -> (method, extra keyword arguments of find_atoms)
VARIANTS: dict[str, tuple[str, dict]] = {
    "peaks": ("peaks", {}),
    "log": ("log", {}),
    "dcnn": ("dcnn", {}),
    "dcnn+tta": ("dcnn", {"tta": True}),
    "peaks+lattice": ("peaks", {"refine": "lattice"}),
    "dcnn+lattice": ("dcnn", {"refine": "lattice"}),
}
SHARED = ROOT.parent / "shared" / "data"


def _scores(pred: np.ndarray, true: np.ndarray, shape: tuple[int, int], border: float) -> dict:
    s15 = match_points(pred, true, 1.5, shape=shape, border=border)
    s3 = match_points(pred, true, 3.0, shape=shape, border=border)
    return {
        "precision": s15.precision,
        "recall": s15.recall,
        "f1": s15.f1,
        "rmse": s15.rmse,
        "f1_3px": s3.f1,
        "n_pred": len(pred),
        "n_true": len(true),
    }


def generated(n: int, seed: int, variants: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(seed)
    lattices = [random_lattice(rng, (128, 128)) for _ in range(n)]
    out: dict[str, dict] = {}
    for m in variants:
        method, kw = VARIANTS[m]
        t0 = time.perf_counter()
        # Pool the matches over all images (micro-averaged F1).
        total = np.zeros(4)
        per_cnr: dict[str, list[float]] = {"cnr<1.5": [], "cnr>=1.5": []}
        for lat in lattices:
            at = find_atoms(lat.image, method, **kw)
            c = match_counts(at.positions, lat.positions, 1.5, shape=(128, 128), border=3.0)
            total += np.asarray(c, dtype=np.float64)
            key = "cnr<1.5" if 1.0 / lat.params["gaussian_noise"] < 1.5 else "cnr>=1.5"
            per_cnr[key].append(scores_from_counts(c).f1)
        s = scores_from_counts(MatchCounts(int(total[0]), int(total[1]), int(total[2]), total[3]))
        out[m] = {
            "f1": s.f1,
            "precision": s.precision,
            "recall": s.recall,
            "rmse": s.rmse,
            "f1_mean_low_cnr": float(np.mean(per_cnr["cnr<1.5"])),
            "f1_mean_high_cnr": float(np.mean(per_cnr["cnr>=1.5"])),
            "seconds_per_image": (time.perf_counter() - t0) / n,
        }
    return out


def real(variants: tuple[str, ...]) -> dict:
    out: dict[str, dict] = {}
    for name in IMAGES:
        path = SHARED.joinpath("stem_graphene_aicrystallographer", "AtomNet", "exp_data")
        if not path.exists():
            print(f"skipping real data: {path} absent")
            return out
        image, ref = load_graphene(SHARED, name)
        out[name] = {}
        for m in variants:
            method, kw = VARIANTS[m]
            t0 = time.perf_counter()
            at = find_atoms(image, method, **kw)
            res = _scores(at.positions, ref, image.shape, REFERENCE_BORDER)
            res["seconds"] = time.perf_counter() - t0
            out[name][m] = res
    return out


def _weights_info() -> dict:
    from latentatlas.descriptors.atoms import load_atom_finder

    try:
        meta = load_atom_finder().metadata
    except FileNotFoundError:
        return {}
    return {k: meta["training"].get(k) for k in ("command", "epochs_done", "seconds")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-generated", type=int, default=48)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    methods = tuple(args.variants)
    result = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "PYTHONPATH=src python benchmarks/atoms_accuracy.py " + " ".join(sys.argv[1:]),
        "weights": _weights_info(),
        "generated": generated(args.n_generated, args.seed, methods),
        "real": real(methods),
    }
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "atoms_accuracy.json").write_text(json.dumps(result, indent=2))
    print(f"generated ({args.n_generated} held-back 128x128 images, seed {args.seed}):")
    print("| method | F1 @1.5px | precision | recall | RMSE px | F1 CNR<1.5 | F1 CNR>=1.5 |")
    print("|---|---|---|---|---|---|---|")
    for m, r in result["generated"].items():
        print(
            f"| {m} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['rmse']:.2f} "
            f"| {r['f1_mean_low_cnr']:.3f} | {r['f1_mean_high_cnr']:.3f} |"
        )
    print("\nreal graphene HAADF (AtomNet reference coordinates):")
    print("| image | method | F1 @1.5px | precision | recall | RMSE px | F1 @3px | found/ref |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in result["real"].items():
        for m, r in rows.items():
            print(
                f"| {name} | {m} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
                f"| {r['rmse']:.2f} | {r['f1_3px']:.3f} | {r['n_pred']}/{r['n_true']} |"
            )


if __name__ == "__main__":
    main()
