"""Why the classes of the AtomNet graphene frames do not follow the defects (issue 13).

    PYTHONPATH=src python benchmarks/graphene_probe.py

No model is trained: the question is whether the atom patches carry the information at all.
For every frame, the reference of ``real_data.py graphene`` (atom on a ring that is not a
hexagon, from the ring analysis of the published coordinates) and, for windows of 2, 3 and 4
atomic spacings and both normalisations:

* k-means (2 classes) on the first 5 PCA scores of the patches: ARI against the reference
  (what the benchmark's PCA baseline does, at other windows);
* the best single PCA score as a detector of defect atoms: ROC AUC (0.5 = no information);
* a diagnostic that uses the reference labels (never a setting): 5-fold cross-validated
  logistic regression on the patch pixels, ROC AUC. If even this stays near 0.5, no
  unsupervised method on these patches can find the defects.

Writes benchmarks/results/graphene_probe.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from latentatlas.analysis.latent_maps import typical_spacing
from latentatlas.descriptors.patches import extract_patches
from latentatlas.descriptors.rings import analyze_rings

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "data" / "stem_graphene_aicrystallographer" / "AtomNet" / "exp_data"


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    a = float(roc_auc_score(y, score))
    return max(a, 1.0 - a)  # a score may rank the defects low instead of high


def probe(name: str) -> dict[str, Any]:
    img = np.load(FOLDER / f"{name}.npy").astype(np.float64)
    pos = np.load(FOLDER / f"{name}-coord.npy", allow_pickle=True)[()][0][:, :2]
    sizes = analyze_rings(pos).atom_ring_sizes
    defect = ((sizes > 0) & (sizes != 6)).any(axis=1).astype(np.int64)
    spacing = typical_spacing(pos)
    row: dict[str, Any] = {"frame": name, "atoms": len(pos), "image": list(img.shape),
                           "spacing_px": round(spacing, 1),
                           "defect_atoms": int(defect.sum()), "windows": []}
    if defect.sum() == 0:
        row["note"] = "no atom on a non-hexagonal ring: ARI against the reference is 0 by definition"
        return row
    for mult in (2, 3, 4):
        window = int(2 * np.ceil(mult * spacing / 2))
        for norm in ("background", "image"):
            p = extract_patches(img, pos, window, normalize=norm, background_sigma=window)
            y = defect[p.index]
            x = p.data.reshape(len(p), -1).astype(np.float64)
            scores = PCA(5, random_state=0).fit_transform(x)
            km = KMeans(2, n_init=4, random_state=0).fit_predict(scores)
            folds = StratifiedKFold(5, shuffle=True, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter of the diagnostic fit
                prob = cross_val_predict(LogisticRegression(C=0.1, max_iter=500), x, y, cv=folds,
                                         method="predict_proba")[:, 1]
            row["windows"].append({
                "window": window, "spacings": mult, "normalize": norm, "patches": len(p),
                "pca_kmeans_ari": round(float(adjusted_rand_score(y, km)), 3),
                "best_pc_auc": round(max(_auc(y, scores[:, i]) for i in range(5)), 3),
                "supervised_cv_auc": round(float(roc_auc_score(y, prob)), 3)})
    return row


def main() -> None:
    out = {"command": "PYTHONPATH=src python benchmarks/graphene_probe.py",
           "machine": f"{os.cpu_count()} cores shared, CPU only",
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "frames": [probe(n) for n in ("G-Si-2nm", "G-GrainBoundary-4nm", "G-GrainBoundary-6nm")]}
    path = ROOT / "benchmarks" / "results" / "graphene_probe.json"
    path.write_text(json.dumps(out, indent=1))
    for f in out["frames"]:
        print(f["frame"], f["defect_atoms"], "of", f["atoms"], f.get("note", ""))
        for w in f["windows"]:
            print("  ", w)


if __name__ == "__main__":
    main()
