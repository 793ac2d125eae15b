"""Ring analysis: statistics on the real graphene images, runtime, noise robustness, generator.

Writes benchmarks/out/rings.json and prints a markdown summary. Run from the repo root:

    PYTHONPATH=src nice python benchmarks/rings_benchmark.py

The real coordinates (../shared/data/stem_graphene_aicrystallographer/AtomNet/exp_data) are
skipped when absent. Their *-coord.npy files are pickled dicts {0: (n, 3) array}; they are
read with a restricted unpickler that only rebuilds numpy arrays and plain containers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from atoms_data import load_reference_coordinates  # noqa: E402  (benchmarks/ is on sys.path)
from latentatlas.datasets.graphene import make_graphene  # noqa: E402
from latentatlas.descriptors.rings import (  # noqa: E402
    analyze_rings,
    estimate_bond_cutoff,
    estimate_bond_length,
    find_bonds,
    find_rings,
    label_atoms,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "stem_graphene_aicrystallographer" / "AtomNet" / "exp_data"
OUT = ROOT / "benchmarks" / "out"


def timed(fn, repeat: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def real_images() -> list[dict]:
    rows = []
    for name in ("G-GrainBoundary-4nm", "G-GrainBoundary-6nm", "G-Si-2nm"):
        path = DATA / f"{name}-coord.npy"
        if not path.exists():
            print(f"skip {name}: {path} absent", file=sys.stderr)
            continue
        c = load_reference_coordinates(path)
        xy = c[:, :2]
        sec, res = timed(lambda xy=xy: analyze_rings(xy))
        b = estimate_bond_length(xy)
        _figure(name, np.load(DATA / f"{name}.npy"), res)
        rows.append({
            "image": name, "atoms": len(xy), "bond_px": round(b, 2),
            "cutoff_bonds": round(res.cutoff / b, 3), "bonds": len(res.bonds),
            "rings": res.size_counts(), "labels": res.label_counts(),
            "time_ms": round(1e3 * sec, 2),
            **_between_grains(res, b),
        })
    return rows


def _between_grains(res: object, b: float) -> dict:
    """Where the 5/7 rings are: the fraction with hexagons of both grains within 2.5 bonds.

    Grains come from the hexagons' own 6-fold orientation (two clusters on the circle), so
    this does not use the ring sizes.
    """
    from scipy.spatial import cKDTree

    coords, rings, size = res.coords, res.rings, res.ring_size  # type: ignore[attr-defined]
    hexes = [r for r in rings if len(r) == 6]
    defects = np.isin(size, [5, 7])
    if len(hexes) < 4 or not defects.any():
        return {}
    hc = np.stack([coords[r].mean(axis=0) for r in hexes])
    z = np.array([np.exp(6j * np.arctan2(*(coords[r] - c).T)).mean()
                  for r, c in zip(hexes, hc, strict=True)])
    z /= np.abs(z)
    c0, c1 = z[0], -z[0]
    for _ in range(20):
        grain = np.abs(z - c0) > np.abs(z - c1)
        c0, c1 = z[~grain].mean(), z[grain].mean()
        c0, c1 = c0 / abs(c0), c1 / abs(c1)
    tilt = abs(np.rad2deg(np.angle(c0 / c1)) / 6)
    tree = cKDTree(hc)
    centres = res.ring_centres()[defects]  # type: ignore[attr-defined]
    between = [len(set(grain[tree.query_ball_point(c, 2.5 * b)].tolist())) == 2
               for c in centres]
    return {"grain_misorientation_deg": round(float(tilt), 1),
            "rings_5_7_between_grains": round(float(np.mean(between)), 3)}


def _figure(name: str, image: np.ndarray, res: object) -> None:
    """Labelled image with rings, as benchmarks/out/rings_<name>.png."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from latentatlas.plots.rings import plot_rings

    fig, ax = plt.subplots(figsize=(7, 6))
    plot_rings(ax, res.coords, res.rings, res.labels, res.table.label_names, res.bonds,  # type: ignore[attr-defined]
               image=image)
    ax.set_title(name)
    fig.savefig(OUT / f"rings_{name}.png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def runtime(target_atoms: int = 10_000) -> dict:
    side = int(np.sqrt(target_atoms / (4 / (3 * np.sqrt(3))))) * 10  # pixels at 0.1 bond/px
    t0 = time.perf_counter()
    s = make_graphene(shape=(side, side), pixel_size=0.1, stone_wales=20, divacancies=10,
                      vacancies=10, silicon=20, rng=0)
    gen = time.perf_counter() - t0
    xy = s.coords
    t_cut, cut = timed(lambda: estimate_bond_cutoff(xy))
    t_bonds, bonds = timed(lambda: find_bonds(xy, cutoff=cut))
    t_rings, rings = timed(lambda: find_rings(xy, bonds))
    t_lab, _ = timed(lambda: label_atoms(len(xy), rings))
    t_all, res = timed(lambda: analyze_rings(xy, s.classes))
    return {
        "atoms": len(xy), "image_px": side, "generate_s": round(gen, 2),
        "cutoff_ms": round(1e3 * t_cut, 1), "bonds_ms": round(1e3 * t_bonds, 1),
        "rings_ms": round(1e3 * t_rings, 1), "labels_ms": round(1e3 * t_lab, 1),
        "analyze_rings_ms": round(1e3 * t_all, 1), "rings": res.size_counts(),
        "labels_match_truth": bool((res.labels == s.labels).all()),
    }


def noise_sweep(seeds: int = 20) -> list[dict]:
    """Labels from noisy coordinates against the generator's truth, 2 lattices per kind."""
    defects = {"stone_wales": 1, "divacancies": 1, "vacancies": 1, "silicon": 1}
    lattices = {
        kind: [make_graphene(shape=(240, 240), pixel_size=0.1, rng=r, **kw) for r in (3, 4)]
        for kind, kw in (("pristine", {}), ("defected", defects))
    }
    rows = []
    for kind, refs in lattices.items():
        for sigma in (0.05, 0.0707, 0.1, 0.12):
            wrong, perfect, atoms = 0, 0, 0
            for ref in refs:
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    noisy = ref.coords + rng.normal(0, sigma * ref.bond_length, ref.coords.shape)
                    bad = int((analyze_rings(noisy).labels != ref.labels).sum())
                    wrong += bad
                    perfect += bad == 0
                    atoms += ref.n_atoms
            rows.append({
                "lattice": kind, "atoms_per_sample": refs[0].n_atoms,
                "sigma_per_coord": sigma, "rms_displacement": round(sigma * np.sqrt(2), 3),
                "samples_all_right": f"{perfect}/{seeds * len(refs)}",
                "atom_label_accuracy": round(1 - wrong / atoms, 5),
            })
    return rows


def end_to_end(samples: int = 3) -> list[dict]:
    """Rendered noisy image -> atoms (descriptors.atoms 'peaks') -> rings, against the truth.

    Interior atoms only (more than 2.5 bond lengths from the image edge), where the image
    holds every ring of an atom.
    """
    from scipy.spatial import cKDTree

    from latentatlas.descriptors.atoms import find_atoms

    rows = []
    for silicon in (0, 2):
        found_n, interior_n, right_n, missed_near_si = 0, 0, 0, 0
        for r in range(samples):
            s = make_graphene(shape=(256, 256), pixel_size=0.1, rng=r, stone_wales=1,
                              divacancies=1, vacancies=1, silicon=silicon)
            atoms = find_atoms(s.image, "peaks", spacing=s.bond_length,
                               n_classes=2 if silicon else 1).as_array()
            d, idx = cKDTree(atoms[:, :2]).query(s.coords)
            found = d < 0.3 * s.bond_length
            edge = np.minimum(s.coords.min(axis=1), (256 - s.coords).min(axis=1))
            inner = edge > 2.5 * s.bond_length
            labels = analyze_rings(atoms[:, :2]).labels
            got = np.where(found, labels[idx], -1)
            interior_n += int(inner.sum())
            found_n += int((found & inner).sum())
            right_n += int((got[inner] == s.labels[inner]).sum())
            if silicon:
                d_si, _ = cKDTree(s.coords[s.classes == 1]).query(s.coords[inner & ~found])
                missed_near_si += int((d_si < 1.2 * s.bond_length).sum())
        rows.append({
            "silicon_per_image": silicon, "images": samples, "interior_atoms": interior_n,
            "found": found_n, "label_accuracy": round(right_n / interior_n, 4),
            "missed_atoms_next_to_si": missed_near_si,
        })
    return rows


def grain_boundaries(seeds: int = 6) -> list[dict]:
    rows = []
    for tilt in (13.2, 21.8, 27.8, 32.2):
        agree, counts = 0, {}
        t0 = time.perf_counter()
        for seed in range(seeds):
            s = make_graphene(shape=(200, 200), pixel_size=0.1, grain_boundary=tilt, rng=seed)
            res = analyze_rings(s.coords)
            agree += bool((res.labels == s.labels).all())
            for k, v in s.ring_size_counts().items():
                counts[k] = counts.get(k, 0) + v
        rows.append({
            "tilt_deg": tilt, "samples": seeds, "finder_equals_truth": f"{agree}/{seeds}",
            "rings_total": dict(sorted(counts.items())),
            "generate_s_each": round((time.perf_counter() - t0) / seeds, 2),
        })
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": 1, "date": str(date.today()), "python": platform.python_version(),
        "real": real_images(), "runtime": runtime(), "noise": noise_sweep(),
        "grain_boundary_generator": grain_boundaries(), "end_to_end": end_to_end(),
    }
    tmp = OUT / "rings.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(OUT / "rings.json")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
