"""Helpers shared by the torch-backed estimators: devices, dtypes, seeded generators."""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (cuda when available) to a device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for but CUDA is not available; use device='cpu'"
        )
    return dev


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of ``x`` (no copy on CPU when possible).

    Read-only arrays (memmaps, broadcast views) are copied, because torch warns on them and
    an in-place update would otherwise be undefined.
    """
    if not x.flags.writeable or not x.flags.c_contiguous:
        x = np.array(x, order="C", copy=True)
    return torch.from_numpy(x).to(device)


def torch_generator(random_state: int | np.random.RandomState | None, device: torch.device
                    ) -> torch.Generator:
    """A torch generator seeded from a scikit-learn style ``random_state``."""
    if isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(0, 2**31 - 1))
    elif random_state is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    else:
        seed = int(random_state)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def check_n_components(n_components: int, n_samples: int, n_features: int, name: str) -> int:
    """Validate ``n_components`` against the data size, with a message naming the fix."""
    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"{name}: n_components must be a positive integer, got {n_components!r}")
    limit = min(n_samples, n_features)
    if n_components > limit:
        raise ValueError(
            f"{name}: n_components={n_components} is larger than min(n_samples, n_channels)="
            f"{limit} (n_samples={n_samples} spectra of {n_features} channels); "
            "ask for fewer components"
        )
    return int(n_components)


def sum_squares(x: torch.Tensor, block: int = 2048) -> float:
    """``sum(x**2)`` accumulated in float64, a block of rows at a time.

    ``(x.double() ** 2).sum()`` would materialise two float64 copies of the cube (4x its
    float32 size); blocks keep the extra memory at one ``block``-row square.
    """
    total = 0.0
    for i in range(0, x.shape[0], block):
        xb = x[i:i + block]
        total += float(torch.sum(xb * xb, dtype=torch.float64))
    return total


def row_sq_norms(x: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """``(x * x).sum(1)`` of shape ``(n,)`` without an ``(n, c)`` temporary."""
    return torch.cat([(x[i:i + block] * x[i:i + block]).sum(1)
                      for i in range(0, x.shape[0], block)])
