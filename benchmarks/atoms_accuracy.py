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
from latentatlas.datasets.graphene import graphene_sheets, random_graphene
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
    "dcnn-graphene": ("dcnn", {"model": "graphene"}),
    "peaks+lattice": ("peaks", {"refine": "lattice"}),
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


def held_back(n: int, seed: int, kind: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """n images (128 x 128) of the general training distribution (kind="lattices") or of the
    low-dose graphene one (kind="graphene"), as (image, true positions, contrast-to-noise)."""
    rng = np.random.default_rng(seed)
    if kind == "lattices":
        lattices = [random_lattice(rng, (128, 128)) for _ in range(n)]
        return [(lat.image, lat.positions, 1.0 / lat.params["gaussian_noise"]) for lat in lattices]
    sheets = graphene_sheets(max(4, n // 4), rng, size=160)
    # random_graphene draws its noise last; every graphene image is in the low-CNR regime.
    drawn = [random_graphene(rng, sheets, 128) for _ in range(n)]
    return [(img, pos, 1.0) for img, pos, _elements in drawn]


def generated(images: list[tuple[np.ndarray, np.ndarray, float]], variants: tuple[str, ...]) -> dict:
    out: dict[str, dict] = {}
    for m in variants:
        method, kw = VARIANTS[m]
        t0 = time.perf_counter()
        # Pool the matches over all images (micro-averaged F1).
        total = np.zeros(4)
        per_cnr: dict[str, list[float]] = {"cnr<1.5": [], "cnr>=1.5": []}
        for image, truth, cnr in images:
            at = find_atoms(image, method, **kw)
            c = match_counts(at.positions, truth, 1.5, shape=(128, 128), border=3.0)
            total += np.asarray(c, dtype=np.float64)
            per_cnr["cnr<1.5" if cnr < 1.5 else "cnr>=1.5"].append(scores_from_counts(c).f1)
        s = scores_from_counts(MatchCounts(int(total[0]), int(total[1]), int(total[2]), total[3]))
        out[m] = {
            "f1": s.f1,
            "precision": s.precision,
            "recall": s.recall,
            "rmse": s.rmse,
            "f1_mean_low_cnr": float(np.mean(per_cnr["cnr<1.5"])) if per_cnr["cnr<1.5"] else None,
            "f1_mean_high_cnr": float(np.mean(per_cnr["cnr>=1.5"])) if per_cnr["cnr>=1.5"] else None,
            "seconds_per_image": (time.perf_counter() - t0) / len(images),
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
    from latentatlas.descriptors.atoms import SHIPPED_ATOM_FINDERS, load_atom_finder

    info = {}
    for name in SHIPPED_ATOM_FINDERS:
        try:
            meta = load_atom_finder(name).metadata
        except FileNotFoundError:
            continue
        info[name] = {k: meta["training"].get(k) for k in ("command", "epochs_done", "seconds")}
    return info


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
        "generated": generated(held_back(args.n_generated, args.seed, "lattices"), methods),
        "generated_graphene": generated(held_back(args.n_generated, args.seed, "graphene"), methods),
        "real": real(methods),
    }
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "atoms_accuracy.json").write_text(json.dumps(result, indent=2))
    for part in ("generated", "generated_graphene"):
        print(f"{part} ({args.n_generated} held-back 128x128 images, seed {args.seed}):")
        print("| method | F1 @1.5px | precision | recall | RMSE px | F1 CNR<1.5 | F1 CNR>=1.5 |")
        print("|---|---|---|---|---|---|---|")
        for m, r in result[part].items():
            low, high = r["f1_mean_low_cnr"], r["f1_mean_high_cnr"]
            print(
                f"| {m} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['rmse']:.2f} "
                f"| {'-' if low is None else f'{low:.3f}'} | {'-' if high is None else f'{high:.3f}'} |"
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
