"""Si dopants in graphene: does the graphene atom finder find them, and label them Si?

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/atoms_si.py [--models graphene PATH ...]

Writes benchmarks/results/atoms_si.json and prints markdown tables. For every model (a shipped
name or a weights path):

- AtomNet frames (../shared/data/stem_graphene_aicrystallographer/AtomNet/exp_data): carbon F1
  at 1.5 px against the ``*-coord.npy`` lists (unmatched points within 6 px of the edge not
  counted), plain and with test-time augmentation; the Si columns of those lists (all marked
  class 0; picked by intensity, ``atoms_data.si_by_intensity``: one in G-Si-2nm) found and
  labelled Si; atoms labelled Si in each frame.
- G-dimSi / G-trimSi (no reference lists; two and three Si columns by eye): atoms labelled Si.
- LibraryNet dev crops (94 crops of Si complexes, ``atoms_data.load_librarynet``): Si recall at
  1.5 px in the crop's own pixels, with the spacing from the crop's ``scan size`` (bond = 142 pm)
  and with the spacing estimated; per complex class; for the Si of every ``defect_coord_<k>``
  (164) and of ``defect_coord_0`` alone (149).
- Held-back generated graphene with Si (``random_graphene``, seed 2024, training used seeds 0,
  1 and 1000): carbon F1, Si recall and precision at the network's own scale.

"detected" counts a reference Si matched by any found atom, "labelled" one matched by an atom
the finder labelled Si. Baseline beside the network's labels: the same atoms labelled Si by
intensity alone (``si_by_intensity`` on the found positions: 4x the median column above the
local background).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from latentatlas.analysis.matching import MatchCounts, match_counts, match_points, scores_from_counts
from latentatlas.datasets.graphene import graphene_sheets, random_graphene
from latentatlas.descriptors.atoms import find_atoms, load_atom_finder, take_elements

sys.path.insert(0, str(Path(__file__).resolve().parent))
from atoms_data import (  # noqa: E402
    ATOMNET,
    IMAGES,
    REFERENCE_BORDER,
    SI_BY_EYE,
    load_graphene,
    load_librarynet,
    si_by_intensity,
    si_scores,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: the plain baseline: LoG peaks, Si by the intensity rule (no network)
BASELINE = "log+intensity"
PARTS = ("atomnet", "librarynet", "generated")


def _intensity_labels(image: np.ndarray, positions: np.ndarray) -> np.ndarray:
    if len(positions) < 4:
        return np.zeros(len(positions), dtype=np.int64)
    return si_by_intensity(image, positions).astype(np.int64)


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def _find(image: np.ndarray, model: str, **kw: object) -> tuple[np.ndarray, np.ndarray, float]:
    """Positions (n, 2), element classes (n,) (1 = Si) and the spacing used, from the network
    ``model``, or for ``model == BASELINE`` from LoG peaks labelled by the intensity rule."""
    if model == BASELINE:
        kw.pop("tta", None)
        kw.pop("scale", None)
        at = find_atoms(image, "log", **kw)  # type: ignore[arg-type]
        return at.positions, _intensity_labels(image, at.positions), float(at.params["spacing"])
    if "+" in model:  # positions from the first network, elements from the second
        first, second = model.split("+")
        base = find_atoms(image, "dcnn", model=first, **kw)  # type: ignore[arg-type]
        spacing = float(base.params["spacing"])
        labeller = find_atoms(image, "dcnn", model=second, **{**kw, "spacing": spacing})  # type: ignore[arg-type]
        at = take_elements(base, labeller, radius=0.5 * spacing)
        return at.positions, at.classes, spacing
    at = find_atoms(image, "dcnn", model=model, **kw)  # type: ignore[arg-type]
    return at.positions, at.classes, float(at.params["spacing"])


def atomnet(model: str, tta: bool = True) -> dict:
    out: dict[str, dict] = {}
    for name in IMAGES:
        image, ref = load_graphene(SHARED, name)
        si_ref = ref[si_by_intensity(image, ref)]
        row: dict[str, object] = {"n_ref": len(ref), "n_si_ref": len(si_ref)}
        for with_tta in (False, True) if tta and model != BASELINE else (False,):
            t0 = time.perf_counter()
            positions, classes, _ = _find(image, model, tta=with_tta)
            tag = "tta" if with_tta else "plain"
            s = match_points(positions, ref, 1.5, shape=image.shape, border=REFERENCE_BORDER)
            row[f"f1_{tag}"] = s.f1
            row[f"si_{tag}"] = si_scores(positions, classes, si_ref)
            row[f"si_intensity_{tag}"] = si_scores(positions, _intensity_labels(image, positions), si_ref)
            row[f"seconds_{tag}"] = time.perf_counter() - t0
        out[name] = row
    import h5py

    for name, si_ref in SI_BY_EYE.items():
        with h5py.File(SHARED.joinpath(*ATOMNET, "G-dimtrimSi", f"{name}.hdf5"), "r") as h:
            image = np.asarray(h["image_data"], dtype=np.float32)
        positions, classes, spacing = _find(image, model)
        # these frames are at ~30 px per bond: 1.5 px at the network's 11 px per bond
        radius = 1.5 * spacing / 11.0
        out[name] = {
            "si_by_eye": len(si_ref),
            "atoms": len(positions),
            "spacing": spacing,
            "radius": radius,
            "si": si_scores(positions, classes, np.array(si_ref), radius=radius),
            "si_intensity": si_scores(positions, _intensity_labels(image, positions), np.array(si_ref),
                                      radius=radius),
        }
    return out


def librarynet(model: str) -> dict:
    crops = load_librarynet(SHARED)
    out: dict[str, dict] = {}
    for mode in ("scan_size", "estimated"):
        total: dict[str, int] = {}
        total_int: dict[str, int] = {}
        per_class: dict[str, dict[str, int]] = defaultdict(dict)
        missed = []
        t0 = time.perf_counter()
        for crop in crops:
            spacing = crop.bond if mode == "scan_size" else None
            positions, classes, _ = _find(crop.image, model, spacing=spacing)
            s = si_scores(positions, classes, crop.si)
            s["labelled_3px"] = si_scores(positions, classes, crop.si, radius=3.0)["labelled"]
            first = si_scores(positions, classes, crop.si_first)
            s["n_si_coord0"], s["labelled_coord0"] = first["n_si"], first["labelled"]
            _add(total, s)
            _add(per_class[crop.complex_class], s)
            _add(total_int, si_scores(positions, _intensity_labels(crop.image, positions), crop.si))
            if s["labelled"] < s["n_si"]:
                missed.append(f"{crop.complex_class}/{crop.name}")
        out[mode] = {
            "total": total,
            "intensity_baseline": total_int,
            "per_class": dict(per_class),
            "crops_with_a_missed_si": missed,
            "seconds": time.perf_counter() - t0,
        }
    return out


def generated(model: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sheets = [s for s in graphene_sheets(max(8, n // 2), rng, size=176) if s.classes.any()]
    counts = {"c": np.zeros(4), "si": np.zeros(4), "si_int": np.zeros(4)}
    for _ in range(n):
        img, pos, cls = random_graphene(rng, sheets, 128)
        positions, classes, _ = _find(img, model, scale=1.0)
        kw = {"shape": img.shape, "border": 3.0}
        counts["c"] += np.asarray(match_counts(positions, pos, 1.5, **kw), float)
        si_true = pos[cls == 1]
        counts["si"] += np.asarray(match_counts(positions[classes == 1], si_true, 1.5, **kw), float)
        lab = _intensity_labels(img, positions) == 1
        counts["si_int"] += np.asarray(match_counts(positions[lab], si_true, 1.5, **kw), float)
    out = {}
    for k, c in counts.items():
        s = scores_from_counts(MatchCounts(int(c[0]), int(c[1]), int(c[2]), float(c[3])))
        out[k] = {"f1": s.f1, "precision": s.precision, "recall": s.recall, "n_true": int(c[2])}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["graphene"])
    p.add_argument("--n-generated", type=int, default=48)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                   help="which evaluations to run (atomnet: the real frames)")
    p.add_argument("--no-tta", action="store_true", help="atomnet: skip the test-time-augmented pass")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "atoms_si.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not SHARED.joinpath(*ATOMNET).exists():
        raise SystemExit(f"real data absent: {SHARED.joinpath(*ATOMNET)}")
    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "PYTHONPATH=src python benchmarks/atoms_si.py " + " ".join(sys.argv[1:]),
        "models": {},
    }
    for model in args.models:
        meta = {} if model == BASELINE else load_atom_finder(model.split("+")[-1]).metadata
        result["models"][model] = {  # type: ignore[index]
            "training_command": meta.get("training", {}).get("command"),
            "classes": meta.get("classes"),
            **({"atomnet": atomnet(model, tta=not args.no_tta)} if "atomnet" in args.parts else {}),
            **({"librarynet": librarynet(model)} if "librarynet" in args.parts else {}),
            **({"generated": generated(model, args.n_generated, args.seed)}
               if "generated" in args.parts else {}),
        }
        if "atomnet" in args.parts:
            entry = result["models"][model]  # type: ignore[index]
            entry["real_summary"] = real_summary(entry["atomnet"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_tables(result)


def _frac(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "-"


def real_summary(atomnet_result: dict) -> dict[str, float]:
    """Si recall and precision pooled over the five real frames (the AtomNet frames without
    test-time augmentation; Si only in G-Si-2nm, G-dimSi and G-trimSi, so Si labelled in the
    grain-boundary frames count against the precision), and carbon F1 of each AtomNet frame."""
    parts = [atomnet_result[n]["si_plain"] for n in IMAGES] + [atomnet_result[n]["si"] for n in SI_BY_EYE]
    n_si = sum(p["n_si"] for p in parts)
    labelled = sum(p["labelled"] for p in parts)
    found = sum(p["si_found"] for p in parts)
    out = {"si_recall": labelled / n_si, "si_precision": labelled / found if found else 0.0,
           "n_si": n_si, "si_labelled": labelled, "si_found": found}
    out.update({f"c_f1 {name}": atomnet_result[name]["f1_plain"] for name in IMAGES})
    return out


def print_tables(result: dict) -> None:
    print("\n| model | Si recall (real) | Si precision (real) | "
          + " | ".join(f"C F1 {n}" for n in IMAGES) + " |")
    print("|---|---|---|" + "---|" * len(IMAGES))
    for model, r in result["models"].items():
        if "real_summary" not in r:
            continue
        t = r["real_summary"]
        print(f"| {model} | {t['si_recall']:.2f} ({t['si_labelled']}/{t['n_si']}) | "
              f"{t['si_precision']:.2f} ({t['si_labelled']}/{t['si_found']}) | "
              + " | ".join(f"{t[f'c_f1 {n}']:.3f}" for n in IMAGES) + " |")
    for model, r in result["models"].items():
        print(f"\n## {model}\n")
        if "atomnet" in r:
            _print_atomnet(r["atomnet"])
        if "librarynet" in r:
            _print_librarynet(r["librarynet"])
        if "generated" in r:
            g = r["generated"]
            print(f"\ngenerated: atoms F1 {g['c']['f1']:.3f}; Si recall {g['si']['recall']:.3f} precision "
                  f"{g['si']['precision']:.3f} (n={g['si']['n_true']}); intensity rule recall "
                  f"{g['si_int']['recall']:.3f} precision {g['si_int']['precision']:.3f}")


def _print_atomnet(atomnet_result: dict) -> None:
    print("| frame | C F1 plain | C F1 tta | Si ref | Si labelled (plain / tta) | atoms labelled Si |")
    print("|---|---|---|---|---|---|")
    for name in IMAGES:
        a = atomnet_result[name]
        tta = a.get("si_tta", {}).get("labelled", "-")
        print(
            f"| {name} | {a['f1_plain']:.3f} | {a.get('f1_tta', float('nan')):.3f} | {a['n_si_ref']} "
            f"| {a['si_plain']['labelled']} / {tta} | {a['si_plain']['si_found']} |"
        )
    for name in SI_BY_EYE:
        a = atomnet_result[name]
        print(f"| {name} | - | - | {a['si_by_eye']} (by eye) | {a['si']['labelled']} "
              f"(intensity rule: {a['si_intensity']['labelled']}) | {a['si']['si_found']} |")


def _print_librarynet(librarynet_result: dict) -> None:
    print("\n| LibraryNet spacing | Si | detected | labelled Si (network) | labelled Si (intensity) "
          "| labelled Si at 3 px | defect_coord_0 Si labelled | atoms labelled Si |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, m in librarynet_result.items():
        t, b = m["total"], m["intensity_baseline"]
        print(f"| {mode} | {t['n_si']} | {_frac(t['detected'], t['n_si'])} "
              f"| {_frac(t['labelled'], t['n_si'])} | {_frac(b['labelled'], b['n_si'])} "
              f"| {_frac(t['labelled_3px'], t['n_si'])} "
              f"| {_frac(t['labelled_coord0'], t['n_si_coord0'])} | {t['si_found']} |")
    print("\n| class (scan size spacing) | Si | detected | labelled Si |")
    print("|---|---|---|---|")
    for cls, t in sorted(librarynet_result["scan_size"]["per_class"].items()):
        det, lab = _frac(t["detected"], t["n_si"]), _frac(t["labelled"], t["n_si"])
        print(f"| {cls} | {t['n_si']} | {det} | {lab} |")


if __name__ == "__main__":
    main()
