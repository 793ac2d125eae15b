"""Cross-validated defect classes on the real LibraryNet development crops (issue 14).

Every number comes from ``latentatlas.pipelines.classify.classify_defects``, the code behind
``latentatlas classify``, with its baselines on the same patches and split.

Parts:
- ``semi``: semi-supervised with ``--labelled-fraction`` (20 %) of the labels: for each split
  seed (a stratified labelled subset) and each model seed, accuracy and balanced accuracy of
  the model and of every baseline on the crops whose label was hidden. ``model`` is the
  pipeline's semi-supervised prediction (``semi_prediction``), ``classifier`` the model's
  classifier alone, with the rule each run chose (``prediction_rule``).
- ``unsup3``: no labels, the three largest classes (Si1C3, Si3C6, Si1C4), K = 3: ARI of the
  joint VAE (best of its restarts by ELBO) and of k-means / GMM on PCA, per seed.
- ``unsup8``: no labels, all eight classes, K = 8: accuracy (Hungarian-matched) per seed.
- ``centring``: how far the defect centre found in the image (the bright dopant columns of
  ``descriptors.defects.defect_centre`` with the ``peaks`` and the graphene ``dcnn`` finder)
  lies from the centroid of the file's ``defect_coord_0`` atoms, in pm.

The JSON is rewritten after every run, so an interrupted benchmark keeps what it measured.
Parts and seeds can run in parallel processes, each with its own ``--out``; ``--combine``
merges their JSON files into one.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/classify_cv.py \\
        --parts semi,unsup3,unsup8 --out benchmarks/results/classify_cv.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentatlas.datasets.crops import LabelledCrops, load_labelled_crops
from latentatlas.pipelines.classify import ClassifyConfig, classify_defects, prepare_defects

DATA = (Path(__file__).resolve().parents[1].parent / "shared" / "data"
        / "stem_graphene_aicrystallographer" / "LibraryNet" / "library_refined_dev")
THREE = ("Si1C3", "Si3C6", "Si1C4")


def _scores(result: Any) -> dict[str, Any]:
    keep = ("accuracy", "balanced_accuracy", "ari", "recall", "confusion")
    s = result.scores
    # semi-supervised: ``model`` is the prediction rule in use, ``classifier`` the model's
    # classifier alone
    extra = ({"classifier": {k: s["classifier"][k] for k in keep},
              "prediction_rule": result.prediction_rule} if "classifier" in s else {})
    return {
        "model": {k: s["model"][k] for k in keep},
        **extra,
        "baselines": {b: {k: v[k] for k in keep} for b, v in s["baselines"].items()},
        "restarts_elbo_and_classes": result.restarts,
        "occupied": result.occupied,
        "scored": s["scored_crops"],
        "seconds": round(sum(result.timings.values()), 1),
    }


def _runs(crops: LabelledCrops, base: ClassifyConfig, seeds: list[int],
          splits: list[int | None], sink: list[dict[str, Any]], save: Any,
          earlier: dict[tuple[int, int | None], dict[str, Any]] | None = None,
          arrays: Path | None = None) -> None:
    """Run every seed and split into ``sink``. ``earlier``: (seed, split) -> a run of an
    earlier file on the same crops, patches, split and seed; its baselines are taken instead
    of re-measured (their code and settings must be the same) and its model's scores are kept
    as ``earlier_model``, so the new model stands beside the old one on the same runs.
    ``arrays``: a folder for one ``.npz`` per run (labels, split masks, the model's class
    probabilities, the crops' content latents, the unrotated patches), to study prediction
    rules on the trained models without training them again."""
    for seed in seeds:
        data = prepare_defects(crops, dataclasses.replace(base, seed=seed))
        for split in splits:
            t = time.perf_counter()
            config = dataclasses.replace(base, seed=seed, split_seed=split)
            result = classify_defects(data, config, with_baselines=earlier is None)
            row = {"seed": seed, "split_seed": split, **_scores(result),
                   "wall_s": round(time.perf_counter() - t, 1)}
            if earlier is not None:
                old = earlier[(seed, split)]
                if old["scored"] != row["scored"]:
                    raise SystemExit(f"seed {seed} split {split}: the earlier run scored "
                                     f"{old['scored']} crops, this one {row['scored']}")
                row["baselines"] = old["baselines"]
                row["earlier_model"] = old["model"]
            sink.append(row)
            if arrays is not None:
                arrays.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    arrays / f"seed{seed}_split{split}.npz", y=crops.labels,
                    seen=result.labelled, scored=result.scored, proba=result.probabilities,
                    latents=result.latents, latents_std=result.latents_std,
                    canonical=data.canonical)
            m = row["model"]
            print(f"seed {seed} split {split}: acc {m['accuracy']:.3f} bal "
                  f"{m['balanced_accuracy']:.3f} ari {m['ari']:.3f}  baselines "
                  + " ".join(f"{b} {v['accuracy']:.3f}/{v['balanced_accuracy']:.3f}/{v['ari']:.3f}"
                             for b, v in row["baselines"].items()), flush=True)
            save()


def summarise(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Mean, standard deviation, min and max of ``metric`` over runs, for the model and every
    baseline; with several splits also the per-split means (averaged over seeds)."""
    methods = _methods(rows)
    out: dict[str, Any] = {}
    for m in methods:
        values = np.array([_method(r, m)[metric] for r in rows])
        entry = {"mean": float(values.mean()), "std": float(values.std()),
                 "min": float(values.min()), "max": float(values.max())}
        splits = sorted({r["split_seed"] for r in rows if r["split_seed"] is not None})
        if splits:
            per = [float(np.mean([_method(r, m)[metric] for r in rows if r["split_seed"] == s]))
                   for s in splits]
            entry["split_means"] = per
            entry["std_of_split_means"] = float(np.std(per))
        out[m] = entry
    return out


def per_class(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean recall of every class and the confusion matrix summed over runs, per method."""
    out: dict[str, Any] = {}
    for m in _methods(rows):
        scores = [_method(r, m) for r in rows]
        names = list(scores[0]["recall"])
        out[m] = {"recall_mean": {c: float(np.mean([s["recall"][c] for s in scores]))
                                  for c in names},
                  "confusion_sum": np.sum([s["confusion"] for s in scores], axis=0).tolist()}
    return out


def wins(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per baseline and metric: in how many runs the model scored above it (of how many)."""
    out: dict[str, Any] = {}
    for b in _methods(rows)[1:]:
        out[b] = {metric: f"{sum(r['model'][metric] > _method(r, b)[metric] for r in rows)}"
                          f"/{len(rows)}" for metric in ("accuracy", "balanced_accuracy", "ari")}
    return out


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    """``model``, ``classifier`` and ``earlier_model`` when the runs carry them, then the
    baselines."""
    return ["model", *[m for m in _OWN[1:] if m in rows[0]], *rows[0]["baselines"]]


_OWN = ("model", "classifier", "earlier_model")


def _method(row: dict[str, Any], name: str) -> dict[str, Any]:
    return row[name] if name in _OWN else row["baselines"][name]


def summarised(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the summaries of every part's runs (re)computed."""
    for part in doc["parts"].values():
        if part.get("runs"):
            part["summary"] = {m: summarise(part["runs"], m)
                               for m in ("accuracy", "balanced_accuracy", "ari")}
            part["per_class"] = per_class(part["runs"])
            part["model_above_baseline"] = wins(part["runs"])
    return doc


def combine(files: list[str], out: Path) -> None:
    """One JSON from the partial ones of runs started in parallel (same parts, same configs)."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    doc = {k: docs[0][k] for k in ("machine", "data")}
    doc["command"] = [d["command"] for d in docs]
    doc["date"] = sorted(d["date"] for d in docs)
    doc["parts"] = {}
    for d in docs:
        for name, part in d["parts"].items():
            if name not in doc["parts"]:
                doc["parts"][name] = {k: v for k, v in part.items() if k not in ("summary",)}
                doc["parts"][name]["runs"] = list(part.get("runs", []))
                continue
            if part.get("config") != doc["parts"][name].get("config"):
                raise SystemExit(f"part {name}: the files ran different configurations")
            doc["parts"][name]["runs"] += part.get("runs", [])
    for part in doc["parts"].values():
        if "runs" in part:
            part["runs"].sort(key=lambda r: (r["seed"], r["split_seed"] or 0))
    out.write_text(json.dumps(summarised(doc), indent=1))
    print(f"wrote {out}")


def centring(crops: LabelledCrops) -> dict[str, Any]:
    """Distance (pm) between the finder's defect centre and the given atoms' centroid."""
    from latentatlas.descriptors.defects import defect_centre

    out: dict[str, Any] = {}
    names = crops.names()
    for finder in ("peaks", "dcnn"):
        t = time.perf_counter()
        dist = []
        for i, image in enumerate(crops.images):
            given = defect_centre(image, crops.pixel_sizes[i], crops.defect_coords[i]).centre
            found = defect_centre(image, crops.pixel_sizes[i], finder=finder).centre
            dist.append(float(np.hypot(*(found - given)) * crops.pixel_sizes[i]))
        d = np.array(dist)
        out[finder] = {"median_pm": float(np.median(d)), "within_100pm": float((d < 100).mean()),
                       "within_300pm": float((d < 300).mean()),
                       "missed": {names[i]: round(dist[i]) for i in np.flatnonzero(d >= 100)},
                       "seconds": round(time.perf_counter() - t, 1)}
        print(f"centring {finder}: median {np.median(d):.0f} pm, within 100 pm "
              f"{(d < 100).mean():.2f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="semi,unsup3,unsup8")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--splits", default="0,1,2,3,4", help="split seeds of the semi part")
    ap.add_argument("--semi-model", default="ssvae")
    ap.add_argument("--unsup-model", default="jvae")
    ap.add_argument("--labelled-fraction", type=float, default=0.2)
    ap.add_argument("--options", default="{}", help="further ClassifyConfig fields (JSON)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default="benchmarks/results/classify_cv.json")
    ap.add_argument("--baselines-from", default="", help="an earlier JSON of the same parts, "
                    "seeds and splits: its baselines are reused (not re-run) and its model is "
                    "reported beside this one as earlier_model")
    ap.add_argument("--save-arrays", default="", help="a folder for one .npz per run "
                    "(labels, split, probabilities, latents, patches); not committed")
    ap.add_argument("--combine", default="", help="comma-separated JSON files of parallel runs "
                    "to merge into --out (nothing is run)")
    args = ap.parse_args()
    if args.combine:
        combine(args.combine.split(","), Path(args.out))
        return
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = [int(s) for s in args.splits.split(",")]
    options = json.loads(args.options)
    crops = load_labelled_crops(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "command": "python benchmarks/classify_cv.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("data", "combine", "save_arrays")),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, "
                   f"torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": "LibraryNet library_refined_dev (94 crops, 8 classes)",
        "parts": {},
    }

    def save() -> None:
        out.write_text(json.dumps(summarised(doc), indent=1))

    for part in args.parts.split(","):
        if part == "centring":
            doc["parts"]["centring"] = centring(crops)
            save()
            continue
        if part == "semi":
            base = ClassifyConfig(model=args.semi_model, labelled_fraction=args.labelled_fraction,
                                  **options)
            sub, split_list = crops, list(splits)
        elif part == "unsup3":
            base = ClassifyConfig(model=args.unsup_model, n_classes=3, **options)
            index = [crops.class_names.index(n) for n in THREE]
            sub, split_list = crops.subset(np.isin(crops.labels, index)), [None]
        elif part == "unsup8":
            base = ClassifyConfig(model=args.unsup_model, n_classes=8, **options)
            sub, split_list = crops, [None]
        else:
            raise SystemExit(f"unknown part {part!r}")
        runs: list[dict[str, Any]] = []
        doc["parts"][part] = {"config": base.to_dict(), "crops": len(sub), "runs": runs}
        print(f"== {part}: {len(sub)} crops, {base.model}", flush=True)
        earlier = None
        if args.baselines_from:
            old_doc = json.loads(Path(args.baselines_from).read_text())
            earlier = {(r["seed"], r["split_seed"]): r for r in old_doc["parts"][part]["runs"]}
            doc["parts"][part]["baselines_from"] = args.baselines_from
        _runs(sub, base, seeds, split_list, runs, save, earlier,
              Path(args.save_arrays) / part if args.save_arrays else None)
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
