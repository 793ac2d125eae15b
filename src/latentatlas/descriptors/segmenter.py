"""Inference and persistence of dense segmenters (:class:`latentatlas.nn.unet.UNet`).

The DCNN atom finder and the domain-wall finder run shipped networks through this module;
training lives above it, in :mod:`latentatlas.train.segmentation`, so descriptors never import
the trainer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentatlas._checks import check_array
from latentatlas._files import write_atomic, write_text_atomic
from latentatlas.nn.unet import UNet, UNetConfig


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
                "by latentatlas.descriptors.segmenter.save_segmenter"
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
