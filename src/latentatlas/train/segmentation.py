"""Training of dense segmenters (:class:`latentatlas.nn.unet.UNet`).

Used to train the DCNN atom finder and the domain-wall finder. A user can fine-tune the shipped
atom finder on their own labelled images with :func:`train_segmenter`. Inference and
persistence live in :mod:`latentatlas.descriptors.segmenter` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentatlas._checks import check_array
from latentatlas.descriptors.segmenter import load_segmenter as load_segmenter
from latentatlas.descriptors.segmenter import normalize_percentile as normalize_percentile
from latentatlas.descriptors.segmenter import predict_probability as predict_probability
from latentatlas.descriptors.segmenter import save_segmenter as save_segmenter
from latentatlas.nn.unet import UNet

logger = logging.getLogger(__name__)

#: Draws one training batch: (rng, batch_size) -> (images (b, c, h, w), masks (b, out, h, w)).
BatchMaker = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]

_LOSSES = ("bce", "dice", "bce+dice")


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str = "bce+dice",
    pos_weight: float = 1.0,
    channel_weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of logits (n, out, h, w) against soft masks (n, out, h, w) in [0, 1].

    Dice is computed per channel over the whole batch, so an empty mask in one image does not
    blow up; ``pos_weight`` up-weights foreground pixels in the BCE (sparse atoms / walls).
    ``channel_weights`` (out,) weighs the channels' BCE and Dice in the average (None = equal;
    e.g. a sparse class channel that should not pull the network away from the main one).
    Returns (total, {"bce": .., "dice": ..}).
    """
    if kind not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {kind!r}")
    n_out = logits.shape[1]
    w = (torch.ones(n_out) if channel_weights is None
         else torch.as_tensor(channel_weights, dtype=torch.float32))
    if w.shape != (n_out,) or not bool((w >= 0).all()) or not float(w.sum()) > 0:
        raise ValueError(
            f"channel_weights must be {n_out} non-negative numbers, not all 0; got {channel_weights!r}"
        )
    w = (w / w.sum()).to(dtype=logits.dtype, device=logits.device)
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce_per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    bce = (bce_per.mean(dim=(0, 2, 3)) * w).sum()
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(0, 2, 3))
    denom = prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    dice = 1.0 - (((2 * inter + 1.0) / (denom + 1.0)) * w).sum()
    total = {"bce": bce, "dice": dice, "bce+dice": bce + dice}[kind]
    return total, {"bce": float(bce.detach()), "dice": float(dice.detach())}


def _dihedral(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # One of the 8 symmetries of the square; valid for any label that lives on the pixel grid.
    if k >= 4:
        x, y = x.flip(-1), y.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1)), torch.rot90(y, k % 4, dims=(-2, -1))


def _check_pair(images: object, masks: object, model: UNet) -> tuple[np.ndarray, np.ndarray]:
    x = check_array(images, "images", ndim=4)
    y = check_array(masks, "masks", ndim=4)
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(
            f"images {x.shape} and masks {y.shape} must share n, h and w: "
            "give one mask (n, out_channels, h, w) per image (n, in_channels, h, w)"
        )
    if x.shape[1] != model.in_channels or y.shape[1] != model.out_channels:
        raise ValueError(
            f"the model takes {model.in_channels} input and {model.out_channels} output "
            f"channels, got images {x.shape} and masks {y.shape}"
        )
    if y.min() < 0 or y.max() > 1:
        raise ValueError(
            f"masks must lie in [0, 1] (got range [{y.min():g}, {y.max():g}]); "
            "scale or clip them before training"
        )
    return x, y


def train_segmenter(
    model: UNet,
    images: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    make_batch: BatchMaker | None = None,
    steps_per_epoch: int | None = None,
    loss: str = "bce+dice",
    pos_weight: float = 1.0,
    channel_weights: Sequence[float] | None = None,
    augment: bool = True,
    lr_decay: bool = True,
    device: str | torch.device = "cpu",
    on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam; return the per-epoch history.

    Either fixed arrays ``images`` (n, in_channels, h, w) and ``masks`` (n, out_channels, h, w)
    in [0, 1], shuffled each epoch, or ``make_batch(rng, batch_size)`` drawing fresh generated
    data every step (then ``steps_per_epoch`` is required). ``augment`` applies a random
    dihedral symmetry (rotations by 90 degrees and flips) to each batch. ``lr_decay`` anneals
    the learning rate with a cosine to 5 % of ``lr``. Shuffling, augmentation and ``make_batch``
    draws are seeded by ``seed``; ``pos_weight`` and ``channel_weights`` go to
    :func:`segmentation_loss`. Seed torch before building the model for a fully
    reproducible run. ``on_epoch_end(epoch, history)`` is called after every epoch (e.g. to
    save a checkpoint); with ``lr_decay=False`` a run stopped after k epochs equals a k-epoch run.

    History keys: "loss", "bce", "dice", "lr" (one value per epoch).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
    if make_batch is None:
        if images is None or masks is None:
            raise ValueError("pass images and masks, or a make_batch callable with steps_per_epoch")
        x_all, y_all = _check_pair(images, masks, model)
        n = len(x_all)
        steps = int(np.ceil(n / batch_size))
    else:
        if images is not None or masks is not None:
            raise ValueError("pass either images/masks or make_batch, not both")
        if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(
                "steps_per_epoch must be a positive integer with make_batch, "
                f"got {steps_per_epoch!r}"
            )
        steps = steps_per_epoch

    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    model.to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = epochs * steps
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=0.05 * lr)
        if lr_decay
        else None
    )
    history: dict[str, list[float]] = {"loss": [], "bce": [], "dice": [], "lr": []}
    for epoch in range(epochs):
        order = rng.permutation(n) if make_batch is None else None
        sums = {"loss": 0.0, "bce": 0.0, "dice": 0.0}
        for step in range(steps):
            if make_batch is None:
                assert order is not None
                idx = order[step * batch_size : (step + 1) * batch_size]
                xb_np, yb_np = x_all[idx], y_all[idx]
            else:
                xb_np, yb_np = _check_pair(*make_batch(rng, batch_size), model)
            xb = torch.from_numpy(np.ascontiguousarray(xb_np, dtype=np.float32)).to(dev)
            yb = torch.from_numpy(np.ascontiguousarray(yb_np, dtype=np.float32)).to(dev)
            if augment:
                xb, yb = _dihedral(xb, yb, int(rng.integers(8)))
            total, parts = segmentation_loss(model(xb), yb, loss, pos_weight, channel_weights)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if sched is not None:
                sched.step()
            sums["loss"] += float(total.detach())
            sums["bce"] += parts["bce"]
            sums["dice"] += parts["dice"]
        for key, value in sums.items():
            history[key].append(value / steps)
        history["lr"].append(opt.param_groups[0]["lr"])
        logger.info(
            "segmenter epoch %d/%d loss %.4f (bce %.4f, dice %.4f)",
            epoch + 1,
            epochs,
            history["loss"][-1],
            history["bce"][-1],
            history["dice"][-1],
        )
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch, history)
            model.train()
    model.eval()
    return history
