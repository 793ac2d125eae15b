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
Images are normalised with :func:`latentatlas.descriptors.segmenter.normalize_percentile`, which
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

from latentatlas.analysis.matching import MatchCounts
from latentatlas.datasets.graphene import graphene_sheets, random_graphene
from latentatlas.datasets.lattices import atom_mask, random_lattice
from latentatlas.descriptors.segmenter import load_segmenter, normalize_percentile, save_segmenter
from latentatlas.nn.unet import UNet
from latentatlas.train.segmentation import train_segmenter

logger = logging.getLogger("train_atom_finder")

DATA_DESCRIPTION = {
    "lattices": "generated lattices (latentatlas.datasets.lattices.random_lattice), a fixed pool",
    "graphene": "generated low-dose graphene with Si dopant complexes "
    "(latentatlas.datasets.graphene.random_graphene over graphene_sheets), fresh every step; "
    "targets: channel 0 every atom, channel 1 the Si atoms",
}


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


def graphene_validation(n: int, seed: int, size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n held-out generated graphene images (image, positions, classes), from sheets and draws
    seeded apart from training, with at least one Si each (so Si recall is measured often)."""
    rng = np.random.default_rng(seed)
    sheets = [s for s in graphene_sheets(max(8, n // 2), rng, size=size + 48) if s.classes.any()]
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while len(out) < n:
        img, pos, cls = random_graphene(rng, sheets, size)
        if cls.any():
            out.append((img, pos, cls))
    return out


def validate(model: UNet, images: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Carbon F1, Si recall and Si precision at 1.5 px (Si counted only when labelled Si),
    pooled over ``images``; the images are at the network's own scale (8.5-13.5 px per bond)."""
    from latentatlas.analysis.matching import match_counts, scores_from_counts
    from latentatlas.descriptors.atoms import find_atoms

    c_counts = np.zeros(4)
    si_counts = np.zeros(4)
    for img, pos, cls in images:
        at = find_atoms(img, "dcnn", model=model, scale=1.0)
        shape = img.shape
        c_counts += np.asarray(match_counts(at.positions, pos, 1.5, shape=shape, border=3.0), float)
        si = match_counts(at.positions[at.classes == 1], pos[cls == 1], 1.5, shape=shape, border=3.0)
        si_counts += np.asarray(si, float)
    c = scores_from_counts(MatchCounts(*(int(v) for v in c_counts[:3]), c_counts[3]))
    si_s = scores_from_counts(MatchCounts(*(int(v) for v in si_counts[:3]), si_counts[3]))
    return {
        "atoms_f1": round(c.f1, 4),
        "si_recall": round(si_s.recall, 4),
        "si_precision": round(si_s.precision, 4),
        "n_si": int(si_counts[2]),
    }


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
    p.add_argument(
        "--si-weight",
        type=float,
        default=1.0,
        help="graphene: weight of the Si channel in the loss, relative to the atom channel's 1",
    )
    p.add_argument(
        "--val",
        type=int,
        default=48,
        help="graphene: generated validation images (seed + 1000) scored after every epoch",
    )
    p.add_argument(
        "--init",
        default=None,
        help="weights (.safetensors) to start from instead of a random initialisation, e.g. to "
        "continue a stopped run (same --base, --depth and --data); its training record is kept",
    )
    p.add_argument(
        "--draw-seed",
        type=int,
        default=None,
        help="graphene: seed of the per-step crop draws and augmentation (default --seed + 1); "
        "give a new one when continuing a run with --init so the crops are not those already seen",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # find_atoms logs every call; the per-epoch validation makes hundreds
    logging.getLogger("latentatlas.descriptors.atoms").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    graphene = args.data == "graphene"
    torch.manual_seed(args.seed)
    t0 = time.time()
    if graphene:
        sheets = graphene_sheets(args.pool, np.random.default_rng(args.seed))

        def graphene_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            # target channel 0: every atom; channel 1: the Si atoms
            x = np.empty((n, 1, args.size, args.size), dtype=np.float32)
            y = np.empty((n, 2, args.size, args.size), dtype=np.float32)
            for k in range(n):
                img, pos, cls = random_graphene(rng, sheets, args.size)
                x[k, 0] = normalize_percentile(img.astype(np.float32))
                y[k, 0] = atom_mask((args.size, args.size), pos, args.mask_width)
                y[k, 1] = atom_mask((args.size, args.size), pos[cls == 1], args.mask_width)
            return x, y

        logger.info("generated %d graphene sheets in %.0f s", len(sheets), time.time() - t0)
    else:
        images, masks = make_pool(args.pool, args.size, args.seed, args.mask_width)
        logger.info("generated %d images in %.0f s", args.pool, time.time() - t0)
    model = UNet(in_channels=1, out_channels=2 if graphene else 1, base=args.base, depth=args.depth)
    # What find_atoms reads at inference time (also during the per-epoch validation).
    inference: dict[str, object] = {
        "task": "atom_finder",
        "normalization": "percentile",
        "normalization_params": {"low": 1.0, "high": 99.0, "clip": [-0.5, 1.5]},
        "mask_width": args.mask_width,
        "threshold": 0.5,
        # Frames are resampled so their column spacing becomes input_spacing before the
        # network sees them; the general model is never enlarged (it was trained on 6-22).
        "spacing_range": [8.5, 13.5] if graphene else [6.0, 22.0],
        "input_spacing": 11.0 if graphene else 8.5,
        "upsample": graphene,
        **({"classes": ["C", "Si"], "class_threshold": 0.5} if graphene else {}),
    }
    init_training: object = None
    if args.init is not None:
        start = load_segmenter(args.init)
        if (start.config.base, start.config.depth, start.config.out_channels) != (
            model.config.base, model.config.depth, model.config.out_channels
        ):
            raise SystemExit(
                f"--init {args.init}: U-Net base {start.config.base}, depth {start.config.depth}, "
                f"{start.config.out_channels} output channels; this run builds base {args.base}, "
                f"depth {args.depth}, {model.config.out_channels} channels: match --base/--depth/--data"
            )
        model.load_state_dict(start.state_dict())
        init_training = start.metadata.get("training")
    model.metadata = dict(inference)
    validation_set = graphene_validation(args.val, args.seed + 1000, args.size) if graphene else []

    def meta(history: dict[str, list[float]]) -> dict[str, object]:
        done = len(history["loss"])
        argv = {**vars(args), "epochs": done}
        cmd = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in argv.items())
        return {
            **inference,
            "training": {
                "command": f"python scripts/train_atom_finder.py {cmd}",
                "data": DATA_DESCRIPTION[args.data],
                "date": time.strftime("%Y-%m-%d"),
                "epochs_done": done,
                "loss_per_epoch": [round(x, 5) for x in history["loss"]],
                "validation_per_epoch": validation_history,
                **({"init_training": init_training} if args.init is not None else {}),
                "seconds": round(time.time() - t0),
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        }

    validation_history: list[dict[str, float]] = []

    def checkpoint(epoch: int, history: dict[str, list[float]]) -> None:
        if validation_set:
            validation_history.append(validate(model, validation_set))
            logger.info("epoch %d generated validation %s", epoch + 1, validation_history[-1])
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

    if graphene:
        # Fresh data every step cannot be memorised; a cosine learning-rate decay then helps.
        train_segmenter(
            model,
            make_batch=graphene_batch,
            steps_per_epoch=args.steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed + 1 if args.draw_seed is None else args.draw_seed,
            channel_weights=(1.0, args.si_weight),
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
