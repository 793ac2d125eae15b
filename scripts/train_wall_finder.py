"""Train the shipped domain-wall finder (src/latentatlas/weights/wall_finder.*).

The U-Net (latentatlas.nn.unet) sees generated PFM phase images (latentatlas.datasets.domains:
random walls, stripes, bubbles, straight walls, discs; wall width and phase noise drawn per
image), projected on their domain axis and normalised exactly as ``find_walls(method="dcnn")``
does, and learns the wall band (pixels on either side of each wall). Fresh images every step,
so there is no fixed training set to overfit; a held-out generated set (another seed) gives the
wall F1 at 2-pixel tolerance stored in the JSON metadata.

Command used for the shipped weights (CPU, one thread, about 20 minutes on a busy 2-core machine):

    nice -n 10 env PYTHONPATH=src python scripts/train_wall_finder.py --epochs 12 \
        --steps 50 --batch 16 --base 8 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from latentatlas.analysis.domains import wall_f1
from latentatlas.datasets.domains import PATTERN_KINDS, make_domain_images
from latentatlas.descriptors.segmenter import save_segmenter
from latentatlas.descriptors.walls import find_walls, wall_training_pair
from latentatlas.nn.unet import UNet
from latentatlas.train.segmentation import train_segmenter

OUT = Path(__file__).resolve().parents[1] / "src" / "latentatlas" / "weights" / "wall_finder"


def make_batch(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A fresh batch of generated images: (batch, 1, 64, 64) inputs and wall-band targets."""
    data = make_domain_images(batch, (64, 64), PATTERN_KINDS, seed=rng, phase_noise=(5.0, 35.0))
    pairs = [wall_training_pair(p, d) for p, d in zip(data.phase, data.domains, strict=True)]
    return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50, help="batches per epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--base", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = UNet(in_channels=1, out_channels=1, base=args.base, depth=args.depth)
    start = time.perf_counter()
    history = train_segmenter(
        model,
        make_batch=make_batch,
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        loss="bce+dice",
        pos_weight=3.0,
    )
    train_s = time.perf_counter() - start
    command = (
        "nice -n 10 env PYTHONPATH=src python scripts/train_wall_finder.py "
        f"--epochs {args.epochs} --steps {args.steps} --batch {args.batch} --lr {args.lr} "
        f"--base {args.base} --depth {args.depth} --seed {args.seed}"
    )
    meta = {
        "task": "ferroelectric domain walls (wall band, thinned at inference)",
        "input": "normalize_signal(to_polarization(phase)): 1st-99th percentile -> [0, 1]",
        "training_data": "latentatlas.datasets.domains.make_domain_images, 64x64, all kinds, "
        "phase noise 5-35 deg",
        "command": command,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "final_loss": history["loss"][-1],
    }
    weights = save_segmenter(model, args.out, meta)
    # held-out score with the public entry point, on freshly loaded weights
    test = make_domain_images(100, (64, 64), PATTERN_KINDS, seed=12345)
    pred = np.stack(
        [find_walls(p, "dcnn", phase=True, weights=weights).mask for p in test.phase]
    )
    score = wall_f1(pred, test.walls, tolerance=2.0)
    meta["heldout_f1_2px"] = round(score.f1, 4)
    meta["heldout_precision_2px"] = round(score.precision, 4)
    meta["heldout_recall_2px"] = round(score.recall, 4)
    save_segmenter(model, args.out, meta)
    logging.info("saved %s; held-out %s", weights, json.dumps(score.as_dict()))


if __name__ == "__main__":
    main()
