"""Train the DCNN atom finder shipped as src/latentatlas/weights/atom_finder.safetensors.

Reproducible command (CPU; seeded, so a rerun with the same torch/numpy versions and thread
count gives the same weights; a checkpoint is written after every epoch and the JSON config
records the exact command and the epochs done)::

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_atom_finder.py \
        --out src/latentatlas/weights/atom_finder --seed 0 --pool 3000 --size 96 --epochs 12 \
        --batch-size 16 --lr 0.001 --base 8 --depth 3 --mask-width 1.5 --threads 1

The shipped weights came from exactly this (12 epochs, 31 minutes wall on 2 shared cores,
final loss 0.860). Use one torch thread: on an oversubscribed CPU two OpenMP threads made
each step ~9x slower.

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

from latentatlas.datasets.lattices import atom_mask, random_lattice
from latentatlas.nn.unet import UNet
from latentatlas.train.segmentation import normalize_percentile, save_segmenter, train_segmenter

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
    p.add_argument("--pool", type=int, default=3000, help="generated training images")
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
            "spacing_range": [6.0, 22.0],
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
        # Constant learning rate (lr_decay=False), so the weights after epoch k are exactly
        # those of a run with --epochs k: every checkpoint is reproducible on its own.
        path = save_segmenter(model, args.out, metadata=meta(history))
        logger.info(
            "epoch %d loss %.4f saved %s (%.0f s)",
            epoch + 1,
            history["loss"][-1],
            path,
            time.time() - t0,
        )

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
