"""Wall F1 (2-pixel tolerance) of each wall finder on generated PFM domain images, and time.

    PYTHONPATH=src python benchmarks/walls_f1.py

Writes benchmarks/out/walls_f1.json. The generated set (seed 777, never used in training)
covers every pattern kind; the noisy set doubles the phase noise range (5-50 degrees); the
hard set (40-70 degrees) lies outside the DCNN's training range (5-35 degrees).
"""

from __future__ import annotations

import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from latentatlas.analysis.domains import wall_f1
from latentatlas.datasets.domains import PATTERN_KINDS, make_domain_images
from latentatlas.descriptors.walls import METHODS, find_walls

OUT = Path(__file__).resolve().parent / "out"


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


if __name__ == "__main__":
    main()
