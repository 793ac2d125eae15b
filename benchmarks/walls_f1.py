"""Wall F1 (2-pixel tolerance) of each wall finder on generated PFM domain images, and time.

    PYTHONPATH=src python benchmarks/walls_f1.py           # the original sets
    PYTHONPATH=src python benchmarks/walls_f1.py --hard    # noise, 90-degree walls, tip artefacts

Writes benchmarks/out/walls_f1.json. The generated set (seed 777, never used in training)
covers every pattern kind; the noisy set doubles the phase noise range (5-50 degrees); the
hard set (40-70 degrees) lies outside the DCNN's training range (5-35 degrees).

``--hard`` (benchmarks/results/walls_hard.json) renders images the DCNN never saw: 90-degree
walls (the two states 90 degrees apart in phase, so the projected contrast halves), and tip
artefacts: a double tip (a ghost copy of the pattern, shifted 3-6 px, at 25-45 % weight, which
draws faint false walls), a tip that blunts part-way down the scan (blur 0.8 -> 2-3 px), and
scan-line jumps (2-4 % of rows with a phase offset of 60-120 degrees). Three sets, three
generator seeds each (spread = std over seeds); all settings are the methods' defaults, none
tuned on these images.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from latentatlas.analysis.domains import wall_f1
from latentatlas.datasets.domains import (
    PATTERN_KINDS,
    domain_pattern,
    domain_walls,
    make_domain_images,
    signed_wall_distance,
)
from latentatlas.descriptors.walls import METHODS, find_walls

OUT = Path(__file__).resolve().parent / "out"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    torch.set_num_threads(1)
    sets = {
        "generated 64x64 (noise 5-25 deg)": make_domain_images(
            100, (64, 64), PATTERN_KINDS, seed=777),
        "generated 128x128 (noise 5-50 deg)": make_domain_images(
            40, (128, 128), PATTERN_KINDS, seed=778, phase_noise=(5.0, 50.0)),
        "hard 128x128 (noise 40-70 deg)": make_domain_images(
            40, (128, 128), PATTERN_KINDS, seed=779, phase_noise=(40.0, 70.0)),
    }
    rows = []
    for set_name, data in sets.items():
        for method in METHODS:
            find_walls(data.phase[0], method, phase=True)  # warm-up (loads the DCNN)
            start = time.perf_counter()
            pred = np.stack([find_walls(p, method, phase=True).mask for p in data.phase])
            secs = (time.perf_counter() - start) / len(data.phase)
            score = wall_f1(pred, data.walls, tolerance=2.0)
            per_kind = {
                k: round(wall_f1(pred[np.array(data.kinds) == k],
                                 data.walls[np.array(data.kinds) == k]).f1, 4)
                for k in sorted(set(data.kinds))
            }
            rows.append({"set": set_name, "method": method, "f1": round(score.f1, 4),
                         "precision": round(score.precision, 4),
                         "recall": round(score.recall, 4), "ms_per_image": round(1e3 * secs, 2),
                         "f1_per_kind": per_kind})
            print(f"{set_name:36s} {method:9s} F1 {score.f1:.3f} (P {score.precision:.3f}, "
                  f"R {score.recall:.3f}) {1e3 * secs:.1f} ms/image {per_kind}")
    OUT.mkdir(exist_ok=True)
    meta = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
            "torch_threads": 1, "command": "PYTHONPATH=src python benchmarks/walls_f1.py"}
    (OUT / "walls_f1.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


def render_hard(dom: np.ndarray, rng: np.random.Generator, angle: float, noise: float,
                artefacts: bool) -> np.ndarray:
    """PFM phase (degrees, wrapped to [-90, 270)) of a domain map whose states sit ``angle``
    degrees apart, with Gaussian phase noise of ``noise`` degrees and, if ``artefacts``, a
    double tip, a tip that blunts part-way down and scan-line jumps (see the module docs)."""
    h, _ = dom.shape
    pol = -np.tanh(np.clip(signed_wall_distance(dom), -50, 50) / rng.uniform(0.6, 1.6))
    blur = np.full(h, 0.8)
    if artefacts:
        shift = rng.integers(3, 7, size=2) * rng.choice([-1, 1], size=2)
        ghost = np.roll(pol, tuple(int(v) for v in shift), axis=(0, 1))
        weight = rng.uniform(0.25, 0.45)
        pol = (pol + weight * ghost) / (1.0 + weight)
        blur[int(rng.uniform(0.3, 0.7) * h):] = rng.uniform(2.0, 3.0)
    sharp = ndimage.gaussian_filter(pol, 0.8, mode="nearest")
    blunt = ndimage.gaussian_filter(pol, float(blur.max()), mode="nearest")
    pol = np.where((blur > 0.8)[:, None], blunt, sharp)
    # P = +1 -> offset, P = -1 -> offset + angle; a wall passes through the middle phase
    phase = rng.uniform(-30, 30) + angle * (1.0 - np.clip(pol, -1, 1)) / 2.0
    phase = phase + rng.normal(0.0, noise, dom.shape)
    if artefacts:
        rows = rng.random(h) < rng.uniform(0.02, 0.04)
        phase[rows] += rng.uniform(60, 120) * rng.choice([-1, 1])
    return ((phase + 90.0) % 360.0 - 90.0).astype(np.float32)


HARD_SETS = {
    # name: (angle between the states, phase noise range, artefacts)
    "180 deg + tip artefacts, noise 10-30 deg": (180.0, (10.0, 30.0), True),
    "90 deg walls, noise 5-25 deg": (90.0, (5.0, 25.0), False),
    "90 deg + tip artefacts, noise 10-30 deg": (90.0, (10.0, 30.0), True),
}


# The input each method sees: phase=True projects the phase on the domain axis found by the
# doubled-angle mean (built for 180-degree walls); phase=False takes the phase as it is.
INPUTS = {"projection": True, "raw phase": False}


def hard(n: int = 40, seeds: tuple[int, ...] = (880, 881, 882)) -> None:
    torch.set_num_threads(1)
    rows = []
    for set_name, (angle, noise, artefacts) in HARD_SETS.items():
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            doms = []
            for i in range(n):
                dom = domain_pattern((128, 128), PATTERN_KINDS[i % len(PATTERN_KINDS)], rng)
                if dom.all() or not dom.any():
                    dom = domain_pattern((128, 128), "straight", rng)
                doms.append(dom)
            domains = np.stack(doms)
            phase = np.stack([render_hard(d, rng, angle, rng.uniform(*noise), artefacts)
                              for d in domains])
            truth = domain_walls(domains)
            for input_name, projected in INPUTS.items():
                for method in METHODS:
                    start = time.perf_counter()
                    pred = np.stack([find_walls(p, method, phase=projected).mask for p in phase])
                    secs = (time.perf_counter() - start) / n
                    score = wall_f1(pred, truth, tolerance=2.0)
                    runs.setdefault((input_name, method), []).append(
                        {"f1": score.f1, "precision": score.precision, "recall": score.recall,
                         "ms": 1e3 * secs})
        for (input_name, method), scores in runs.items():
            row: dict[str, object] = {"set": set_name, "input": input_name, "method": method,
                                      "seeds": list(seeds), "images_per_seed": n}
            for key in ("f1", "precision", "recall", "ms"):
                vals = np.array([r[key] for r in scores])
                row[key] = round(float(vals.mean()), 4)
                row[key + "_std"] = round(float(vals.std()), 4)
            rows.append(row)
            print(f"{set_name:40s} {input_name:10s} {method:9s} F1 {row['f1']:.3f} +- "
                  f"{row['f1_std']:.3f} (P {row['precision']:.3f}, R {row['recall']:.3f}) "
                  f"{row['ms']:.1f} ms/image")
    meta = {"date": str(date.today()), "machine": "2-core Xeon VM, no GPU", "torch_threads": 1,
            "command": "PYTHONPATH=src python benchmarks/walls_f1.py --hard",
            "tolerance_px": 2.0, "settings": "every method at its defaults (none tuned here)"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "walls_hard.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hard", action="store_true",
                        help="noise, 90-degree walls and tip artefacts (results/walls_hard.json)")
    if parser.parse_args().hard:
        hard()
    else:
        main()
