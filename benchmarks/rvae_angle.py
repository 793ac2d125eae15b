"""Does the rVAE's angle latent mean the angle for every object kind? (issue 21)

The four-shape set (``latentatlas.datasets.shapes.four_shapes``: bar, ellipse, L, triangle,
28x28, rotated uniformly in +-60 degrees, shifted in +-0.15 half-widths, noise 0.02): train on
``--n`` images (seed 1000 + s); each trained model is scored on 2,000 validation images (seed
2000 + s; what the variant was chosen on) and on 2,000 test images (seed 3000 + s; what is
reported). Latent size 2. For each decoder (transform, spatial), variant and seed it reports:

- per-shape |circular r| between the angle latent and the true angle (Fisher-Lee; the bar and
  the ellipse compared modulo 180 degrees, the triangle modulo 120: ``angle_recovery``),
- |Pearson r| of shift_x and shift_y with the true shift,
- MSE of the reconstruction against the (noisy) held-out images,
- per shape, how much of the true angle the content latents carry: R^2 of a quadratic
  least-squares fit of (cos k*angle, sin k*angle) from (z1, z2) (0 = content is rotation-free),
- training time.

Variants: ``plain`` is the rVAE with the angle one more output of the MLP encoder
(``equivariant_angle=False``); ``equivariant`` takes the angle from the rotation-equivariant
polar head and encodes the content from the de-rotated image (``equivariant_angle=True``).
Baseline ``moments``: the principal axis of each image's intensity (second central moments),
which any user can compute without a model; it is undefined for the triangle, whose second
moments are isotropic, and for the L it gives the axis modulo 180 degrees only.

    python benchmarks/rvae_angle.py --decoders transform --variants plain,equivariant --seeds 0-4
    python benchmarks/rvae_angle.py --variants moments --seeds 0-4
    python benchmarks/rvae_angle.py --decoders spatial --variants equivariant --n 1000 --epochs 30 --every 5
    python benchmarks/rvae_angle.py --table      # markdown table of what the JSON holds

``--every k`` also scores after every k epochs (the row's ``curve``), so the number of epochs
can be chosen on the validation images and the test score read at that checkpoint.

Rows are merged into benchmarks/results/rvae_angle.json (one row per decoder, variant, seed,
epochs), so the runs can be split over several processes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr

from latentatlas.analysis.pose import angle_recovery
from latentatlas.datasets.shapes import FOUR_SHAPES, FOUR_SHAPES_SYMMETRY, ShapeSet, four_shapes
from latentatlas.models import get_model

RESULTS = Path(__file__).resolve().parent / "results" / "rvae_angle.json"
VARIANTS: dict[str, dict[str, object]] = {"plain": {"equivariant_angle": False},
                                          "equivariant": {"equivariant_angle": True}}
BASELINE = "moments"
KEY = ("decoder", "variant", "seed", "epochs", "n")


def principal_axis_angle(images: np.ndarray) -> np.ndarray:
    """Angle (n,) of each image's (n, h, w) principal axis of intensity, in (-pi/2, pi/2]."""
    h, w = images.shape[1:]
    y, x = np.mgrid[:h, :w].astype(np.float64)
    mass = images.sum((1, 2))
    cx = (images * x).sum((1, 2)) / mass
    cy = (images * y).sum((1, 2)) / mass
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    mxx, myy, mxy = ((images * d).sum((1, 2)) for d in (dx * dx, dy * dy, dx * dy))
    return 0.5 * np.arctan2(2 * mxy, mxx - myy)


def content_angle_r2(z: np.ndarray, angle: np.ndarray, order: int) -> float:
    """R^2 of (cos, sin)(order * angle) (n,) explained by a quadratic in the content z (n, 2)."""
    target = np.stack([np.cos(order * angle), np.sin(order * angle)], 1)
    design = np.column_stack([np.ones(len(z)), z, z**2, z[:, :1] * z[:, 1:]])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = ((design @ coef - target) ** 2).sum()
    return float(1 - residual / ((target - target.mean(0)) ** 2).sum())


def per_shape(values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FOUR_SHAPES, values, strict=True)}


def evaluate(model: object, held_out: ShapeSet) -> dict[str, object]:
    latents = model.encode(held_out.images)  # type: ignore[attr-defined]
    r = angle_recovery(latents["angle"], held_out.angle, held_out.labels, FOUR_SHAPES_SYMMETRY)
    z = np.stack([latents["z1"], latents["z2"]], 1)
    carried = [content_angle_r2(z[held_out.labels == k], held_out.angle[held_out.labels == k], order)
               for k, order in enumerate(FOUR_SHAPES_SYMMETRY)]
    # In blocks: the spatial decoder's activations for 2,000 images at once take ~2.5 GB.
    reconstruction = model.reconstruct(held_out.images, batch_size=250)  # type: ignore[attr-defined]
    return {
        "angle_r": per_shape(r),
        "shift_r": [abs(float(pearsonr(latents[f"shift_{a}"], held_out.shift[:, i])[0]))
                    for i, a in enumerate("xy")],
        "mse": float(((reconstruction - held_out.images) ** 2).mean()),
        "content_angle_r2": per_shape(np.array(carried)),
    }


def evaluate_moments(held_out: ShapeSet) -> dict[str, object]:
    angle = principal_axis_angle(held_out.images[:, 0].astype(np.float64))  # one channel
    return {"angle_r": per_shape(angle_recovery(angle, held_out.angle, held_out.labels,
                                                FOUR_SHAPES_SYMMETRY))}


def run(decoder: str, variant: str, seed: int, epochs: int, n: int,
        every: int = 0) -> dict[str, object]:
    validation = four_shapes(2000, seed=2000 + seed)
    test = four_shapes(2000, seed=3000 + seed)
    row: dict[str, object] = {"decoder": decoder, "variant": variant, "seed": seed,
                              "epochs": epochs, "n": n}
    if variant == BASELINE:
        return {**row, "decoder": "-", "epochs": 0, "n": 0, "train_s": 0.0,
                "validation": evaluate_moments(validation), "test": evaluate_moments(test)}
    train = four_shapes(n, seed=1000 + seed)
    model = get_model("rvae", (28, 28), latent_dim=2, decoder=decoder, seed=seed,
                      **VARIANTS[variant])
    curve: list[dict[str, object]] = []
    scoring = 0.0

    def checkpoint(epoch: int, _: dict[str, float]) -> None:
        # Scores after epochs every, 2 every, ...: the budget is chosen on the validation part.
        nonlocal scoring
        if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            begin = time.perf_counter()
            curve.append({"epoch": epoch + 1, "validation": evaluate(model, validation),
                          "test": evaluate(model, test)})
            scoring += time.perf_counter() - begin

    start = time.perf_counter()
    model.fit(train.images, epochs=epochs, batch_size=64, lr=1e-3, seed=seed, progress=False,
              on_epoch_end=checkpoint)
    seconds = time.perf_counter() - start - scoring
    return {**row, "train_s": seconds, "validation": evaluate(model, validation),
            "test": evaluate(model, test), "curve": curve}


def store(path: Path, row: dict) -> None:
    """Add ``row`` to the JSON at ``path``, replacing a row of the same run; other processes
    of this benchmark may write the same file, hence the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored = json.loads(path.read_text()) if path.exists() else {"rows": []}
        stored["rows"] = [r for r in stored["rows"]
                          if [r[k] for k in KEY] != [row[k] for k in KEY]] + [row]
        path.write_text(json.dumps(stored, indent=1))


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def table(rows: list[dict], split: str) -> str:
    """Markdown table of the rows' ``split`` scores, then the spread over seeds per setting."""
    lines = [f"{split}:", "", "| decoder | variant | epochs | seed | "
             + " | ".join(f"{s} r" for s in FOUR_SHAPES)
             + " | shift r (x, y) | MSE | content R^2 (L, triangle) | train s |",
             "|---" * 11 + "|"]
    order = [*VARIANTS, BASELINE]
    rows = sorted(rows, key=lambda r: (r["decoder"], order.index(r["variant"]), r["epochs"],
                                       r["seed"]))
    for r in rows:
        s = r[split]
        a = s["angle_r"]
        model_cols = (f"{s['shift_r'][0]:.3f}, {s['shift_r'][1]:.3f} | {s['mse']:.5f} | "
                      f"{s['content_angle_r2']['L']:.2f}, {s['content_angle_r2']['triangle']:.2f}"
                      if "mse" in s else "- | - | -")
        lines.append(f"| {r['decoder']} | {r['variant']} | {r['epochs']} | {r['seed']} | "
                     + " | ".join(f"{a[name]:.3f}" for name in FOUR_SHAPES)
                     + f" | {model_cols} | {r['train_s']:.0f} |")
    lines.append("")
    settings = sorted({(r["decoder"], r["variant"], r["epochs"]) for r in rows},
                      key=lambda t: (t[0], order.index(t[1]), t[2]))
    for decoder, variant, epochs in settings:
        sel = [r[split] for r in rows if (r["decoder"], r["variant"], r["epochs"]) ==
               (decoder, variant, epochs)]
        per = {name: [s["angle_r"][name] for s in sel] for name in FOUR_SHAPES}
        text = ", ".join(f"{name} {np.mean(v):.3f} +- {np.std(v):.3f} (min {min(v):.3f})"
                         for name, v in per.items())
        if "mse" in sel[0]:
            mse = [s["mse"] for s in sel]
            text += f"; MSE {np.mean(mse):.5f} +- {np.std(mse):.5f}"
        lines.append(f"- {decoder} / {variant} / {epochs} epochs, {len(sel)} seeds: {text}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decoders", default="transform,spatial")
    parser.add_argument("--variants", default="plain,equivariant")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--n", type=int, default=2000, help="training images")
    parser.add_argument("--every", type=int, default=0,
                        help="also score after every this many epochs (0: only at the end)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="only print the tables of --out")
    args = parser.parse_args()
    if args.table:
        rows = json.loads(args.out.read_text())["rows"]
        print(table(rows, "validation") + "\n\n" + table(rows, "test"))
        return
    torch.set_num_threads(args.threads)
    for decoder in args.decoders.split(","):
        for variant in args.variants.split(","):
            if variant not in (*VARIANTS, BASELINE):
                parser.error(f"--variants: each of {[*VARIANTS, BASELINE]}, got {variant!r}")
            for seed in seeds_of(args.seeds):
                row = run(decoder, variant, seed, args.epochs, args.n, args.every)
                row.update(date=time.strftime("%Y-%m-%d %H:%M"), load_average=os.getloadavg(),
                           machine=f"{platform.machine()}, {args.threads} torch thread(s)",
                           torch=torch.__version__)
                print(json.dumps(row), flush=True)
                store(args.out, row)


if __name__ == "__main__":
    main()
