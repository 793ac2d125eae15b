"""Train the DCNN atom finder shipped as src/latentatlas/weights/atom_finder.safetensors.

Reproducible command (CPU; seeded, so a rerun with the same torch/numpy versions and thread
count gives the same weights; a checkpoint is written after every epoch and the JSON config
records the exact command and the epochs done)::

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_atom_finder.py \
        --out src/latentatlas/weights/atom_finder --seed 0 --pool 3000 --size 96 --epochs 12 \
        --batch-size 16 --lr 0.001 --base 8 --depth 3 --mask-width 1.5 --threads 1

The shipped weights came from exactly this (12 epochs, 31 minutes wall on 2 shared cores,
final loss 0.860). The graphene finder (``find_atoms(..., model="graphene")``) came from::

    nice -n 5 env OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_atom_finder.py \
        --data graphene --out src/latentatlas/weights/graphene_atom_finder --seed 0 --pool 150 \
        --size 96 --epochs 20 --steps 100 --batch-size 16 --lr 0.002 --base 12 --depth 3 \
        --mask-width 1.5 --threads 1

(generated low-dose graphene only, see :func:`latentatlas.datasets.graphene.random_graphene`;
frames are resampled to 11 pixels per C-C bond before the network sees them; 20 epochs, 31
minutes wall on 2 shared cores, final loss 0.681). Use one torch thread: on an oversubscribed
CPU two OpenMP threads made each step ~9x slower.

The network is a small U-Net (:class:`latentatlas.nn.unet.UNet`) trained on generated lattices
(:func:`latentatlas.datasets.lattices.random_lattice`: square, hexagonal, honeycomb and
perovskite lattices at any rotation, 6-22 pixel spacing, dopants, vacancies, scan distortion,
background, blur, shot/read noise down to a contrast-to-noise below one, contamination
patches). The target is a Gaussian bump of ``--mask-width`` pixels at every visible column.
Images are normalised with :func:`latentatlas.train.segmentation.normalize_percentile`, which
the finder applies again at inference time (the choice is stored in the JSON config).

To fine-tune on your own labelled images instead, load the shipped model with
``load_segmenter`` and call ``train_segmenter`` with your images and
``atom_mask(shape, positions)`` targets.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from latentatlas.datasets.graphene import graphene_sheets, random_graphene
from latentatlas.datasets.lattices import atom_mask, random_lattice
from latentatlas.descriptors.segmenter import normalize_percentile, save_segmenter
from latentatlas.nn.unet import UNet
from latentatlas.train.segmentation import train_segmenter

logger = logging.getLogger("train_atom_finder")


def make_pool(n: int, size: int, seed: int, mask_width: float) -> tuple[np.ndarray, np.ndarray]:
    """n generated training images (n, 1, size, size) and their atom masks, seeded."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        lat = random_lattice(rng, (size, size))
        images[i, 0] = normalize_percentile(lat.image)
        masks[i, 0] = atom_mask((size, size), lat.positions, mask_width)
    return images, masks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="src/latentatlas/weights/atom_finder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data",
        choices=["lattices", "graphene"],
        default="lattices",
        help="lattices: the broad general-purpose set (fixed pool of --pool images); graphene: "
        "low-dose honeycomb and grain-boundary crops drawn fresh every step from --pool sheets",
    )
    p.add_argument("--pool", type=int, default=3000, help="generated training images (graphene: sheets)")
    p.add_argument("--steps", type=int, default=100, help="graphene: optimiser steps per epoch")
    p.add_argument("--size", type=int, default=96, help="training image side, pixels")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--base", type=int, default=8, help="U-Net width of the first level")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--mask-width", type=float, default=1.5)
    p.add_argument(
        "--threads", type=int, default=1, help="1 is fastest on a shared, oversubscribed CPU"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    if args.data == "graphene":
        sheets = graphene_sheets(args.pool, np.random.default_rng(args.seed))

        def graphene_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            x = np.empty((n, 1, args.size, args.size), dtype=np.float32)
            y = np.empty_like(x)
            for k in range(n):
                img, pos = random_graphene(rng, sheets, args.size)
                x[k, 0] = normalize_percentile(img.astype(np.float32))
                y[k, 0] = atom_mask((args.size, args.size), pos, args.mask_width)
            return x, y

        logger.info("generated %d graphene sheets in %.0f s", len(sheets), time.time() - t0)
    else:
        images, masks = make_pool(args.pool, args.size, args.seed, args.mask_width)
        logger.info("generated %d images in %.0f s", args.pool, time.time() - t0)
    model = UNet(in_channels=1, out_channels=1, base=args.base, depth=args.depth)

    def meta(history: dict[str, list[float]]) -> dict[str, object]:
        done = len(history["loss"])
        argv = {**vars(args), "epochs": done}
        cmd = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in argv.items())
        return {
            "task": "atom_finder",
            "normalization": "percentile",
            "normalization_params": {"low": 1.0, "high": 99.0, "clip": [-0.5, 1.5]},
            "mask_width": args.mask_width,
            "threshold": 0.5,
            # Frames are resampled so their column spacing becomes input_spacing before the
            # network sees them; the general model is never enlarged (it was trained on 6-22).
            "spacing_range": [8.5, 13.5] if args.data == "graphene" else [6.0, 22.0],
            "input_spacing": 11.0 if args.data == "graphene" else 8.5,
            "upsample": args.data == "graphene",
            "training": {
                "command": f"python scripts/train_atom_finder.py {cmd}",
                "epochs_done": done,
                "loss_per_epoch": [round(x, 5) for x in history["loss"]],
                "seconds": round(time.time() - t0),
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        }

    def checkpoint(epoch: int, history: dict[str, list[float]]) -> None:
        # lattices: constant learning rate, so the weights after epoch k are exactly those of a
        # run with --epochs k. graphene: cosine decay, so only the last checkpoint is the run's.
        path = save_segmenter(model, args.out, metadata=meta(history))
        logger.info(
            "epoch %d loss %.4f saved %s (%.0f s)",
            epoch + 1,
            history["loss"][-1],
            path,
            time.time() - t0,
        )

    if args.data == "graphene":
        # Fresh data every step cannot be memorised; a cosine learning-rate decay then helps.
        train_segmenter(
            model,
            make_batch=graphene_batch,
            steps_per_epoch=args.steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed + 1,
            on_epoch_end=checkpoint,
        )
        return 0
    train_segmenter(
        model,
        images,
        masks,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        lr_decay=False,
        on_epoch_end=checkpoint,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
