"""Agreement between wall finders on the real PFM phase images (PbTiO3 and PZT).

    PYTHONPATH=src python benchmarks/walls_real.py

Agreement = F1 of one method's wall pixels against the other's at a 2-pixel tolerance (the
score is symmetric). Also the per-image descriptors (gaussian domains). Writes
benchmarks/out/walls_real.json.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from latentatlas.analysis.domains import analyze_walls, wall_agreement
from latentatlas.descriptors.walls import METHODS
from latentatlas.io import load

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfm_dtmicroscope"
OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    torch.set_num_threads(1)
    files = sorted(DATA.glob("PTO_Funakubo*.h5")) + sorted(DATA.glob("PZT_final*.h5"))
    if not files:
        raise SystemExit(f"no PFM files in {DATA}")
    rows = []
    for path in files:
        phase = load(path, channel="PhaseRetrace").data
        masks, tables = {}, {}
        for method in METHODS:
            walls, table = analyze_walls(phase, method, phase=True)
            masks[method] = walls.mask
            tables[method] = table[0]
        agree = {f"{a}-{b}": round(wall_agreement(masks[a], masks[b]), 3)
                 for a, b in itertools.combinations(METHODS, 2)}
        row = {"file": path.name, "agreement_f1_2px": agree,
               "wall_pixels": {m: int(masks[m].sum()) for m in METHODS},
               "gaussian_descriptors": {k: round(v, 4) for k, v in tables["gaussian"].items()}}
        rows.append(row)
        print(path.name, agree, row["wall_pixels"])
    OUT.mkdir(exist_ok=True)
    (OUT / "walls_real.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
