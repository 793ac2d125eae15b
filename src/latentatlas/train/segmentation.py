"""Training, inference and persistence for dense segmenters (:class:`latentatlas.nn.unet.UNet`).

Used by the DCNN atom finder and by domain-wall detection. A user can fine-tune the shipped
atom finder on their own labelled images with :func:`train_segmenter`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentatlas._checks import check_array
from latentatlas._files import write_atomic, write_text_atomic
from latentatlas.nn.unet import UNet, UNetConfig

logger = logging.getLogger(__name__)

#: Draws one training batch: (rng, batch_size) -> (images (b, c, h, w), masks (b, out, h, w)).
BatchMaker = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]

_LOSSES = ("bce", "dice", "bce+dice")


def normalize_percentile(
    image: np.ndarray, low: float = 1.0, high: float = 99.0, clip: tuple[float, float] = (-0.5, 1.5)
) -> np.ndarray:
    """Scale each frame so its ``low`` / ``high`` percentiles map to 0 / 1, then clip.

    image: (..., h, w) -> float32 of the same shape. Percentiles (not min/max) keep hot pixels
    and saturated contamination from squashing the lattice contrast; the clip bounds what the
    network sees whatever the detector's units. A flat frame maps to zeros.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (h, w), got shape {arr.shape}")
    lo, hi = np.percentile(arr, [low, high], axis=(-2, -1), keepdims=True)
    scale = np.where(hi - lo > 0, hi - lo, 1.0)
    return np.clip((arr - lo) / scale, *clip).astype(np.float32)


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "bce+dice", pos_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of logits (n, out, h, w) against soft masks (n, out, h, w) in [0, 1].

    Dice is computed per channel over the whole batch, so an empty mask in one image does not
    blow up; ``pos_weight`` up-weights foreground pixels in the BCE (sparse atoms / walls).
    Returns (total, {"bce": .., "dice": ..}).
    """
    if kind not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {kind!r}")
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(0, 2, 3))
    denom = prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    dice = 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
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
    draws are seeded by ``seed``; seed torch before building the model for a fully
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
            total, parts = segmentation_loss(model(xb), yb, loss, pos_weight)
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


def _tile_starts(size: int, tile: int, margin: int) -> list[int]:
    # Starts of the central (kept) regions, each ``tile - 2 * margin`` wide.
    core = tile - 2 * margin
    return list(range(0, size, core))


@torch.no_grad()
def predict_probability(
    model: UNet,
    image: np.ndarray,
    batch_size: int = 4,
    tile: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Per-pixel probabilities (sigmoid of the logits) for one image or a stack of frames.

    image: (h, w) or (in_channels, h, w) -> (out_channels, h, w); a stack (n, in_channels, h, w),
    or (n, h, w) when the model takes one channel and n != 1, -> (n, out_channels, h, w).
    Images larger than ``tile`` are processed in overlapping tiles (a margin of 48 pixels, more
    than the network's receptive radius) so memory stays bounded for any image size; the result
    equals whole-image inference up to floating-point error.
    """
    arr = check_array(image, "image", ndim=(2, 3, 4))
    c_in = model.in_channels
    single = True
    if arr.ndim == 2:
        if c_in != 1:
            raise ValueError(f"a 2-D image needs a one-channel model; this one takes {c_in}")
        batch = arr[None, None]
    elif arr.ndim == 3:
        if arr.shape[0] == c_in:
            batch = arr[None]
        elif c_in == 1:
            batch, single = arr[:, None], False
        else:
            raise ValueError(
                f"image of shape {arr.shape} does not match the model's {c_in} input channels; "
                "pass (channels, h, w) or (n, channels, h, w)"
            )
    else:
        if arr.shape[1] != c_in:
            raise ValueError(f"stack of shape {arr.shape} must be (n, {c_in}, h, w) for this model")
        batch, single = arr, False
    if tile < 128:
        raise ValueError(f"tile must be >= 128 pixels, got {tile}")
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    model.to(dev)
    n, _, h, w = batch.shape
    out = np.empty((n, model.out_channels, h, w), dtype=np.float32)
    margin = 48
    if h <= tile and w <= tile:
        windows = [(0, h, 0, w, 0, h, 0, w)]
    else:
        windows = []
        for r0 in _tile_starts(h, tile, margin):
            for c0 in _tile_starts(w, tile, margin):
                r1, c1 = min(r0 + tile - 2 * margin, h), min(c0 + tile - 2 * margin, w)
                a0, a1 = max(r0 - margin, 0), min(r1 + margin, h)
                b0, b1 = max(c0 - margin, 0), min(c1 + margin, w)
                windows.append((a0, a1, b0, b1, r0, r1, c0, c1))
    for a0, a1, b0, b1, r0, r1, c0, c1 in windows:
        for s in range(0, n, batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(batch[s : s + batch_size, :, a0:a1, b0:b1]))
            prob = torch.sigmoid(model(xb.to(dev))).cpu().numpy()
            kept = prob[:, :, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
            out[s : s + batch_size, :, r0:r1, c0:c1] = kept
    if was_training:
        model.train()
    return out[0] if single else out


def _config_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _weights_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")


def save_segmenter(
    model: UNet, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as ``<path>.safetensors`` plus ``<path>.json`` (architecture + metadata).

    ``metadata`` (JSON-serialisable, e.g. the normalisation used in training) is stored in the
    config and restored as ``model.metadata`` by :func:`load_segmenter`. Both files are written
    to temporary names and renamed, so an interrupted save leaves no half-written file.
    Returns the weights path.
    """
    from safetensors.torch import save

    weights = _weights_path(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(getattr(model, "metadata", {}) or {})
    meta.update(metadata or {})
    config = {"architecture": "UNet", "config": model.config.to_dict(), "metadata": meta}
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = save(state)
    write_atomic(weights, lambda tmp: tmp.write_bytes(payload))
    write_text_atomic(_config_path(weights), text)
    return weights


def load_segmenter(path: str | os.PathLike[str]) -> UNet:
    """Load a segmenter written by :func:`save_segmenter` (weights + JSON config), in eval mode."""
    from safetensors.torch import load_file

    weights = _weights_path(path)
    cfg_path = _config_path(weights)
    for p in (weights, cfg_path):
        if not p.exists():
            raise FileNotFoundError(
                f"{p} not found; a segmenter is saved as NAME.safetensors plus NAME.json "
                "by latentatlas.train.segmentation.save_segmenter"
            )
    try:
        config = json.loads(cfg_path.read_text())
        arch = UNetConfig(**config["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{cfg_path} is not a valid segmenter config: {exc}") from exc
    model = UNet(**arch.to_dict())
    model.load_state_dict(load_file(str(weights)))
    model.metadata = dict(config.get("metadata", {}))
    model.eval()
    return model
