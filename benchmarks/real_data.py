"""Real data first (issue 13): analyze with its default settings on real scans, baselines beside.

    PYTHONPATH=src python benchmarks/real_data.py pfm --channels PhaseRetrace --seeds 0 1 2
    PYTHONPATH=src python benchmarks/real_data.py pfm --channels AmplitudeRetrace,PhaseRetrace
    PYTHONPATH=src python benchmarks/real_data.py stem --seeds 0 1 2
    PYTHONPATH=src python benchmarks/real_data.py graphene
    PYTHONPATH=src python benchmarks/real_data.py generated --seeds 0 1 2
    PYTHONPATH=src python benchmarks/real_data.py table    (markdown tables from the JSON files)
    ... --only 'PTO*' --tag phase_pto  (pfm: a subset of the scans, into its own JSON; the
                                        table reads every JSON of a part)
    ... --set normalize='"image"'      (override AnalysisConfig fields; JSON values)
    ... --legacy                       (the settings before issue 13: image min-max, 20 epochs
                                        of 128, no KL warm-up)
    ... --dump /tmp/lat                (stem/generated: also save each run's latents, PCA
                                        scores and reference labels as npz, to study the class
                                        rule on them without retraining)

Parts and their figures of merit (every one also for the baselines on the same patches):

* ``pfm``: every ``pfm_dtmicroscope/PZT_final000*.h5`` and ``PTO_Funakubo000*.h5`` with
  sliding windows (``atoms="none"``). Latent activity (collapse check), and the strongest
  |Spearman rho| of any latent with the switched fraction and the wall density of its window
  (Gaussian wall finder on the phase); beside it the strongest |rho| of a PCA score and of a
  plain window statistic (mean, std, fraction above the median).
* ``stem``: the SrTiO3 ABF image (inverted; atoms by ``peaks``). Reference sublattices from
  geometry: the Bravais lattice of the strongest columns (the top one of three intensity
  groups of the smoothed image at the atoms), every atom assigned to a site of the unit cell
  by its position (``analysis.sublattices.cell_sites``). ARI of the classes against the sites,
  and the share of the slow background's variance the classes explain.
* ``graphene``: the AtomNet HAADF frames with their published coordinates. ARI of the classes
  against "atom on a non-hexagonal ring" (ring analysis of the coordinates), and the
  background share.
* ``generated``: a two-sublattice lattice under a background ramp (1x the A peak across the
  image) and a thickness change (+-50 % contrast); ARI against the true sublattices.

Nothing here selects a setting: the runs use ``AnalysisConfig``'s defaults (or the stated
overrides). Each run is appended to benchmarks/results/real_data_<part>[_<tag>].json as it
finishes, so a long run that is stopped keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage, stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from latentatlas.analysis.baselines import background_share
from latentatlas.analysis.labels import MERGE_RATIO
from latentatlas.analysis.sublattices import cell_sites
from latentatlas.descriptors import windows
from latentatlas.pipelines.analyze import AnalysisResult, analyze

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
LEGACY = {"normalize": "image", "epochs": 20, "batch_size": 128, "kl_warmup": 0.0}


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _r(x: Any, digits: int = 3) -> Any:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _common(r: AnalysisResult, seconds: float) -> dict[str, Any]:
    """What every run records: training, activity, classes, baselines and the verdict."""
    assert r.activity is not None and r.baselines is not None
    b = r.baselines
    return {
        "seconds": round(seconds, 1),
        "n_patches": len(r.patches), "window": r.patches.window,
        "stride": r.patches.extra.get("stride"), "window_rule": r.patches.extra.get("window_rule"),
        "domain_size_px": r.patches.extra.get("domain_size_px"),
        "training": {k: v for k, v in r.training.items() if k != "schedules"},
        "ratio": {n: _r(v, 2) for n, v in zip(r.activity.names, r.activity.ratio, strict=True)},
        "active": r.activity.active_names,
        "collapsed": r.activity.collapsed,
        "n_classes": r.labels.n_components, "bic_minimum": r.labels.bic_minimum,
        "pca_explained": [_r(v) for v in b.pca_explained],
        "pca_gmm_classes": b.gmm_components,
        "ari_model_vs_pca_kmeans": _r(b.ari_kmeans),
        "background_share": {"model": _r(b.background_share_model),
                             "pca_kmeans": _r(b.background_share_kmeans)},
        "physics": {k: m.to_dict() for k, m in b.physics.items()},
        "verdict": b.verdict,
    }


def _best(values: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """The column with the largest |Spearman rho| with ``values``."""
    best = ("", 0.0)
    for name, col in columns.items():
        if np.ptp(col) > 0 and np.ptp(values) > 0:
            rho = float(stats.spearmanr(values, col).statistic)
            if abs(rho) > abs(best[1]):
                best = (name, rho)
    return {"by": best[0], "rho": _r(best[1])}


# ------------------------------------------------------------------------------ parts


def run_pfm(seed: int, options: dict[str, Any], channels: list[str], only: str = "*") -> Any:
    files = (sorted((DATA / "pfm_dtmicroscope").glob("PZT_final000*.h5"))
             + sorted((DATA / "pfm_dtmicroscope").glob("PTO_Funakubo000*.h5")))
    files = [f for f in files if fnmatch.fnmatch(f.name, only)]
    if not files:
        raise SystemExit(f"no PFM scans in {DATA / 'pfm_dtmicroscope'}")
    for path in files:
        t = time.perf_counter()
        r = analyze(str(path), atoms="none", channel=channels if len(channels) > 1 else channels[0],
                    progress=False, seed=seed, **options)
        row = {"file": path.name, "seed": seed, **_common(r, time.perf_counter() - t)}
        b = r.baselines
        assert b is not None and r.activity is not None
        names = r.maps.names
        latents = {n: r.maps[n] for n in names}
        active = {n: r.maps[n] for n in r.activity.active_names}
        pcs = {f"PC{i + 1}": b.pca_scores[:, i] for i in range(b.pca_scores.shape[1])}
        plain = {k: v for k, v in b.descriptors.items()
                 if k.split("_")[0] in ("mean", "std", "above")}
        for target in ("switched_fraction", "wall_density"):
            v = b.descriptors[target]
            row[target] = {"any_latent": _best(v, latents), "active_latent": _best(v, active),
                           "pca": _best(v, pcs), "plain": _best(v, plain)}
        yield row


DUMP: Path | None = None  # --dump: folder for each run's latents (npz)


def _dump(name: str, r: AnalysisResult, truth: np.ndarray) -> None:
    """Save the clustered latents, all latents, the PCA scores and the reference labels."""
    if DUMP is None:
        return
    assert r.baselines is not None
    DUMP.mkdir(parents=True, exist_ok=True)
    cols = [r.maps.names.index(f) for f in r.labels.features]
    np.savez(DUMP / f"{name}.npz", latents=r.maps.values[:, cols],
             all_latents=r.maps.values, std=r.maps.std, names=np.array(r.maps.names),
             features=np.array(r.labels.features), pca_scores=r.baselines.pca_scores,
             truth=truth, labels=r.labels.labels, active=np.array(r.activity.active_names
                                                                  if r.activity else []))


def run_stem(seed: int, options: dict[str, Any]) -> Any:
    from latentatlas.descriptors.atoms import find_atoms
    from latentatlas.io import load

    path = DATA / "stem_perovskite" / "stem_abf_data.hspy"
    img = -np.asarray(load(path).data, dtype=np.float64)  # ABF: atoms are dark
    pos = find_atoms(img, method="peaks").positions
    rc = np.rint(pos).astype(np.int64)
    peak = ndimage.gaussian_filter(img, 1.5)[rc[:, 0], rc[:, 1]]
    groups = KMeans(3, n_init=10, random_state=0).fit_predict(peak[:, None])
    strongest = groups == groups[np.argmax(peak)]
    sites = cell_sites(pos, pos[strongest], 3)
    t = time.perf_counter()
    r = analyze(img, atoms=pos, progress=False, seed=seed, **options)
    b = r.baselines
    assert b is not None
    truth = sites[r.patches.index]
    _dump(f"stem_s{seed}", r, truth)
    yield {"file": path.name, "seed": seed, **_common(r, time.perf_counter() - t),
           "n_atoms": len(pos), "sites_per_cell": 3,
           "sites_vs_intensity_groups_ari": _r(adjusted_rand_score(sites, groups)),
           "ari_vs_sites": {"model": _r(adjusted_rand_score(truth, r.labels.labels)),
                            "pca_kmeans": _r(adjusted_rand_score(truth, b.kmeans_labels)),
                            "pca_gmm": _r(adjusted_rand_score(truth, b.gmm_labels))}}


def run_graphene(seed: int, options: dict[str, Any]) -> Any:
    from latentatlas.descriptors.rings import analyze_rings

    folder = DATA / "stem_graphene_aicrystallographer" / "AtomNet" / "exp_data"
    for name in ("G-Si-2nm", "G-GrainBoundary-4nm", "G-GrainBoundary-6nm"):
        img = np.load(folder / f"{name}.npy").astype(np.float64)
        pos = np.load(folder / f"{name}-coord.npy", allow_pickle=True)[()][0][:, :2]
        sizes = analyze_rings(pos).atom_ring_sizes
        defect = ((sizes > 0) & (sizes != 6)).any(axis=1).astype(np.int64)
        t = time.perf_counter()
        r = analyze(img, atoms=pos, progress=False, seed=seed, **options)
        b = r.baselines
        assert b is not None
        d = defect[r.patches.index]
        yield {"file": name, "seed": seed, **_common(r, time.perf_counter() - t),
               "atoms_on_non_hexagonal_rings": int(d.sum()),
               "ari_vs_defect_atoms": {"model": _r(adjusted_rand_score(d, r.labels.labels)),
                                       "pca_kmeans": _r(adjusted_rand_score(d, b.kmeans_labels))},
               "defect_share_by_class": {"model": _shares(r.labels.labels, d),
                                         "pca_kmeans": _shares(b.kmeans_labels, d)},
               "mean_intensity_eta2": {
                   "model": _r(background_share(r.labels.labels, b.descriptors["mean"])),
                   "pca_kmeans": _r(background_share(b.kmeans_labels, b.descriptors["mean"]))}}


def _shares(labels: np.ndarray, flag: np.ndarray) -> list[list[float]]:
    """[class size, share of flagged atoms in it] for every class, largest share first."""
    rows = [[int((labels == c).sum()), _r(flag[labels == c].mean())] for c in np.unique(labels)]
    return sorted(rows, key=lambda row: -row[1])


def run_generated(seed: int, options: dict[str, Any], gradient: float = 1.0,
                  thickness: float = 0.5) -> Any:
    from latentatlas.datasets.lattices import two_site_lattice

    lat = two_site_lattice(gradient=gradient, thickness=thickness, seed=seed)
    t = time.perf_counter()
    r = analyze(lat.image, atoms=lat.positions, progress=False, seed=seed, **options)
    b = r.baselines
    assert b is not None
    truth = lat.classes[r.patches.index]
    _dump(f"generated_g{gradient:g}_t{thickness:g}_s{seed}", r, truth)
    yield {"file": f"two_site_lattice(gradient={gradient:g}, thickness={thickness:g})",
           "seed": seed,
           **_common(r, time.perf_counter() - t),
           "ari_vs_truth": {"model": _r(adjusted_rand_score(truth, r.labels.labels)),
                            "pca_kmeans": _r(adjusted_rand_score(truth, b.kmeans_labels)),
                            "pca_gmm": _r(adjusted_rand_score(truth, b.gmm_labels))}}


def _records(part: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(settings, runs) of every JSON file of one part: "default" or its overrides."""
    out = []
    for path in sorted(RESULTS.glob(f"real_data_{part}*.json")):
        record = json.loads(path.read_text())
        o = record.get("overrides") or {}
        label = "legacy" if o == LEGACY else (
            ", ".join(f"{k}={v}" for k, v in o.items()) or "default")
        rule = record.get("class_rule", "")
        if not rule:
            label += ", BIC elbow (before)"
        elif "knee" in rule:
            pass  # the current rule (third pass): modes, at most the BIC knee
        elif "elbow" not in rule:
            label += ", modes only (no elbow cap)"
        elif "last step" not in rule:
            label += ", modes, first-small-step elbow cap"
        else:
            label += ", modes, 10 % elbow cap (second pass)"
        out.append((label, record["runs"]))
    return out


def _spread(values: list[float]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{v[0]:.2f}" if len(v) == 1 else f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})"


def table() -> None:
    """Markdown tables of every JSON file written by the parts above."""
    for tag, title in (("phase", "PhaseRetrace"), ("amp_phase", "AmplitudeRetrace + PhaseRetrace")):
        records = _records(f"pfm_{tag}")
        runs = [r for label, rs in records if label == "default" for r in rs]
        legacy = {r["file"]: r for label, rs in records if label == "legacy" for r in rs}
        if not runs:
            continue
        print(f"\nPFM, {title}: best |rho| with the switched fraction (SF) / wall density (WD) "
              "of a model latent, a PCA score and a plain window statistic (mean over seeds, "
              "range); active = active content latents per seed; verdict = its first clause "
              "per seed\n")
        print("| scan | seeds | active content | latent SF | PCA SF | plain SF | latent WD | "
              "PCA WD | plain WD | classes | ARI vs PCA k-means | verdict | "
              "before (legacy): collapsed, latent SF / WD |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for f in dict.fromkeys(r["file"] for r in runs):
            rs = [r for r in runs if r["file"] == f]
            def col(target: str, kind: str, rs: list[dict[str, Any]] = rs) -> str:
                return _spread([abs(r[target][kind]["rho"]) for r in rs])
            old = legacy.get(f)
            before = "-" if old is None else (
                f"{'yes' if old['collapsed'] else 'no'}, "
                f"{abs(old['switched_fraction']['any_latent']['rho']):.2f} / "
                f"{abs(old['wall_density']['any_latent']['rho']):.2f}")
            active = " / ".join(",".join(n for n in r["active"] if n.startswith("z")) or "none"
                                for r in rs)
            verdicts = " / ".join(r["verdict"].split(":")[0].split(".")[0] for r in rs)
            print(f"| {f.removesuffix('.h5')} | {len(rs)} | {active} | "
                  f"{col('switched_fraction', 'any_latent')} | {col('switched_fraction', 'pca')} | "
                  f"{col('switched_fraction', 'plain')} | {col('wall_density', 'any_latent')} | "
                  f"{col('wall_density', 'pca')} | {col('wall_density', 'plain')} | "
                  f"{'/'.join(str(r['n_classes']) for r in rs)} | "
                  f"{_spread([r['ari_model_vs_pca_kmeans'] for r in rs])} | {verdicts} | "
                  f"{before} |")
    _window_table()
    for part, key in (("stem", "ari_vs_sites"), ("generated", "ari_vs_truth"),
                      ("graphene", "ari_vs_defect_atoms")):
        rows = [(label, r) for label, rs in _records(part) for r in rs]
        if not rows:
            continue
        print(f"\n{part}: ARI of the classes ({key}); background share = eta^2 of the slow "
              "background on the classes\n")
        print("| image | settings | seeds | classes (BIC min) | ARI model | ARI PCA k-means | "
              "ARI PCA GMM (same class rule) | background share model / PCA k-means | "
              "active content | verdict |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for f in dict.fromkeys(r["file"] for _, r in rows):
            for tag in dict.fromkeys(t for t, _ in rows):
                rs = [r for t, r in rows if t == tag and r["file"] == f]
                if not rs:
                    continue
                print(f"| {f} | {tag} | {len(rs)} | "
                      + ", ".join(f"{r['n_classes']} ({r['bic_minimum']})" for r in rs) + " | "
                      f"{_spread([r[key]['model'] for r in rs])} | "
                      f"{_spread([r[key]['pca_kmeans'] for r in rs])} | "
                      f"{_spread([r[key].get('pca_gmm') for r in rs])} | "
                      f"{_spread([r['background_share']['model'] for r in rs])} / "
                      f"{_spread([r['background_share']['pca_kmeans'] for r in rs])} | "
                      + " / ".join(",".join(n for n in r["active"] if n.startswith("z"))
                                   or "none" for r in rs) + " | "
                      + " / ".join(r["verdict"].split(":")[0].split(".")[0] for r in rs) + " |")


def _window_table() -> None:
    """PFM phase runs with the window from the domain width, one row per scan and factor."""
    files = sorted(RESULTS.glob("real_data_pfm_window*.json")) + sorted(
        RESULTS.glob("real_data_pfm_defaults*.json"))
    rows = [(json.loads(p.read_text()), p) for p in files]
    if not rows:
        return
    print("\nPFM, PhaseRetrace, window = k x the mean domain width (clamped to [16, 64]), stride "
          "window/4: best |rho| with the switched fraction (SF) / wall density (WD) of a model "
          "latent, a PCA score and a plain window statistic\n")
    print("| scan | k | domain width px | window / stride | patches | active content | "
          "latent SF | PCA SF | plain SF | latent WD | PCA WD | plain WD | classes (rule) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for record, _ in rows:
        rule = ("elbow" if "class_rule" not in record else
                "modes, knee cap" if "knee" in record["class_rule"] else
                "modes" if "elbow" not in record["class_rule"] else "modes, elbow cap")  # PFM
        for r in record["runs"]:
            def rho(target: str, kind: str, r: dict[str, Any] = r) -> str:
                return f"{abs(r[target][kind]['rho']):.2f}"
            active = ",".join(n for n in r["active"] if n.startswith("z")) or "none"
            print(f"| {r['file'].removesuffix('.h5')} | {record['window_per_domain']:g} | "
                  f"{r['domain_size_px']} | {r['window']} / {r['stride']} | {r['n_patches']} | "
                  f"{active} | {rho('switched_fraction', 'any_latent')} | "
                  f"{rho('switched_fraction', 'pca')} | {rho('switched_fraction', 'plain')} | "
                  f"{rho('wall_density', 'any_latent')} | {rho('wall_density', 'pca')} | "
                  f"{rho('wall_density', 'plain')} | {r['n_classes']} ({rule}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["pfm", "stem", "graphene", "generated", "table"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--channels", default="PhaseRetrace", help="pfm: comma-separated channels")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                    help="AnalysisConfig overrides, e.g. normalize='\"image\"'")
    ap.add_argument("--legacy", action="store_true", help="the settings before issue 13")
    ap.add_argument("--only", default="*",
                    help="pfm: only the scans whose name matches this pattern, e.g. 'PTO*'")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--dump", type=Path, default=None,
                    help="stem/generated: folder for each run's latents (npz)")
    ap.add_argument("--window-per-domain", type=float, default=None,
                    help="pfm: window = this x the domain width (descriptors.windows."
                         "WINDOW_PER_DOMAIN; default: the library's)")
    ap.add_argument("--gradient", type=float, default=1.0,
                    help="generated: background rise across the image, in A peaks")
    ap.add_argument("--thickness", type=float, default=0.5,
                    help="generated: relative contrast change from top to bottom")
    args = ap.parse_args()
    if args.part == "table":
        table()
        return
    torch.set_num_threads(1)
    global DUMP
    DUMP = args.dump
    if args.window_per_domain is not None:
        windows.WINDOW_PER_DOMAIN = args.window_per_domain
    options: dict[str, Any] = dict(LEGACY) if args.legacy else {}
    for item in args.set:
        key, value = item.split("=", 1)
        options[key] = json.loads(value)
    channels = args.channels.split(",")
    name = f"real_data_{args.part}" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    record: dict[str, Any] = {
        "command": "PYTHONPATH=src python benchmarks/real_data.py " + " ".join(sys.argv[1:]),
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores shared, CPU only, torch threads 1",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "overrides": options, "channels": channels if args.part == "pfm" else None,
        "window_per_domain": windows.WINDOW_PER_DOMAIN,
        "class_rule": f"BIC minimum, components merged at valley ratio {MERGE_RATIO}, then "
                      "down to the knee of the BIC curve when that is smaller",
        "runs": [],
    }
    for seed in args.seeds:
        if args.part == "pfm":
            runs = run_pfm(seed, options, channels, args.only)
        elif args.part == "generated":
            runs = run_generated(seed, options, args.gradient, args.thickness)
        else:
            runs = {"stem": run_stem, "graphene": run_graphene}[args.part](seed, options)
        for row in runs:
            record["runs"].append(row)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(out)
            print(json.dumps({k: row[k] for k in row if k not in ("ratio", "training")}),
                  flush=True)


if __name__ == "__main__":
    main()
