"""Training data streamed from a store too large for memory: random access by blocks of
samples, a shuffled buffer.

The in-memory path of :func:`latentatlas.train.plan.train` keeps the whole dataset on the
device. :class:`PatchStream` is the other data path: the samples stay in a chunked array on
disk (a Zarr array, an HDF5 dataset, a memory map; anything sliced as ``x[i:j]``), read one
block (a storage chunk) at a time. Each epoch visits the training blocks in a seeded random
order, ``buffer_blocks`` at a time: their samples are shuffled together and cut into batches,
the remainder carried into the next buffer. The next block is read in a background thread
while the current buffer trains. Memory: ``buffer_blocks + 1`` blocks, whatever the size of
the store. The test set is whole blocks, chosen by the seed, never trained on.

Every draw derives from (seed, epoch), so a run is reproducible and resumable from an epoch
checkpoint; with several processes each rank reads its own blocks and all ranks run the
same number of full batches (DDP needs equal step counts).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["PatchStream"]


def _storage_chunk(x: Any) -> int | None:
    chunks = getattr(x, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], int):
        return int(chunks[0])  # Zarr, HDF5
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], tuple):
        return int(chunks[0][0])  # Dask
    return None


class PatchStream:
    """Samples ``x`` of shape ``(n, *sample_shape)`` read from a chunked store in blocks.

    Parameters
    ----------
    x : array-like with ``shape``, ``dtype`` and slicing along the first axis (Zarr array,
        h5py dataset, NumPy memory map, Dask array).
    block : samples per read; default the store's chunk along the first axis (4096 when it
        has none), made smaller when the store has fewer than 16 blocks so that the shuffle
        and the test split have some to choose from.
    buffer_blocks : blocks shuffled together (memory: this many blocks plus one being read).
    test_fraction : fraction of the blocks held out for the test loss (at least one block
        when > 0).
    seed : for the split and every epoch's order.
    """

    def __init__(self, x: Any, block: int | None = None, buffer_blocks: int = 8,
                 test_fraction: float = 0.1, seed: int = 0) -> None:
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) < 2 or shape[0] < 2:
            raise ValueError(f"a PatchStream needs samples (n >= 2, ...), got shape {shape}")
        if np.dtype(x.dtype).kind not in "biuf":
            raise ValueError(f"samples must be numeric, got dtype {x.dtype}")
        if buffer_blocks < 1:
            raise ValueError(f"buffer_blocks must be >= 1, got {buffer_blocks}")
        if not 0 <= test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        n = int(shape[0])
        size: int = block or _storage_chunk(x) or 4096
        if block is None and math.ceil(n / size) < 16:
            size = max(1, math.ceil(n / 16))
        if size < 1:
            raise ValueError(f"block must be >= 1 samples, got {block}")
        self.x = x
        self.n_samples = n
        self.sample_shape = tuple(int(s) for s in shape[1:])
        self.block = int(size)
        self.buffer_blocks = int(buffer_blocks)
        self.seed = int(seed)
        self._blocks = [(s, min(s + self.block, n)) for s in range(0, n, self.block)]
        order = np.random.default_rng(seed).permutation(len(self._blocks))
        n_test = int(round(len(self._blocks) * test_fraction))
        if test_fraction > 0 and len(self._blocks) > 1:
            n_test = max(1, n_test)
        if n_test >= len(self._blocks):
            raise ValueError(f"{len(self._blocks)} blocks leave none for training at "
                             f"test_fraction={test_fraction}")
        self.test_blocks = sorted(int(i) for i in order[:n_test])
        self.train_blocks = sorted(int(i) for i in order[n_test:])

    def _count(self, blocks: list[int]) -> int:
        return sum(self._blocks[i][1] - self._blocks[i][0] for i in blocks)

    @property
    def n_train(self) -> int:
        return self._count(self.train_blocks)

    @property
    def n_test(self) -> int:
        return self._count(self.test_blocks)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of samples held at once (the buffer and the block being read), as float32."""
        per = int(np.prod(self.sample_shape)) * 4
        return (self.buffer_blocks + 1) * self.block * per

    def __repr__(self) -> str:
        return (f"PatchStream({self.n_samples} samples {self.sample_shape}, blocks of "
                f"{self.block}, {len(self.train_blocks)} train / {len(self.test_blocks)} test "
                f"blocks, buffer {self.buffer_blocks} blocks)")

    def reshaped(self, sample_shape: tuple[int, ...]) -> PatchStream:
        """The same stream with every sample read as ``sample_shape`` (same size), e.g.
        ``(1, w, w)`` for a store of ``(n, w, w)`` patches."""
        if int(np.prod(sample_shape)) != int(np.prod(self.sample_shape)):
            raise ValueError(f"samples of shape {self.sample_shape} cannot be read as "
                             f"{tuple(sample_shape)}")
        out = copy.copy(self)
        out.sample_shape = tuple(int(s) for s in sample_shape)
        return out

    def _read(self, i: int) -> np.ndarray:
        start, stop = self._blocks[i]
        part = self.x[start:stop]
        part = part.compute() if hasattr(part, "compute") else part
        part = np.ascontiguousarray(part, dtype=np.float32)
        return part.reshape(len(part), *self.sample_shape)

    def _prefetched(self, blocks: list[int]) -> Iterator[np.ndarray]:
        """The blocks' samples in order, the next one read while the current is used."""
        if not blocks:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[np.ndarray] = pool.submit(self._read, blocks[0])
            for nxt in blocks[1:]:
                current = pending.result()
                pending = pool.submit(self._read, nxt)
                yield current
            yield pending.result()

    def rank_blocks(self, epoch: int, rank: int, world: int) -> list[int]:
        """Training blocks of ``rank`` in ``epoch``, in reading order."""
        rng = np.random.default_rng([self.seed, epoch, 7])
        order = [self.train_blocks[i] for i in rng.permutation(len(self.train_blocks))]
        return order[rank::world]

    def steps(self, epoch: int, world: int, batch_size: int) -> int:
        """Batches every rank runs in ``epoch``: all samples with one process, else the full
        batches of the rank with the fewest samples."""
        if world == 1:
            return math.ceil(self.n_train / batch_size)
        return min(self._count(self.rank_blocks(epoch, r, world)) for r in range(world)) \
            // batch_size

    def train_batches(self, epoch: int, rank: int, world: int, batch_size: int,
                      device: torch.device | str = "cpu") -> Iterator[dict[str, Tensor]]:
        """The batches of one epoch for ``rank``: shuffled buffers of ``buffer_blocks``
        blocks, the remainder of each carried into the next."""
        steps = self.steps(epoch, world, batch_size)
        rng = np.random.default_rng([self.seed, epoch, rank, 11])
        carry = np.zeros((0, *self.sample_shape), dtype=np.float32)
        buffer: list[np.ndarray] = [carry]
        done = 0

        def flush(final: bool) -> Iterator[dict[str, Tensor]]:
            nonlocal carry, done
            pool = np.concatenate(buffer)
            pool = pool[rng.permutation(len(pool))]
            n_full = len(pool) // batch_size
            for b in range(n_full):
                if done == steps:
                    return
                done += 1
                yield {"x": torch.from_numpy(pool[b * batch_size:(b + 1) * batch_size]
                                             ).to(device)}
            carry = pool[n_full * batch_size:]
            if final and len(carry) and done < steps:
                done += 1
                yield {"x": torch.from_numpy(carry).to(device)}

        blocks = self.rank_blocks(epoch, rank, world)
        for part in self._prefetched(blocks):
            buffer.append(part)
            if len(buffer) > self.buffer_blocks:
                yield from flush(False)
                buffer = [carry]
            if done == steps:
                return
        yield from flush(True)

    def test_batches(self, batch_size: int, device: torch.device | str = "cpu"
                     ) -> Iterator[dict[str, Tensor]]:
        """The held-out blocks in order, in batches of up to ``batch_size``."""
        for part in self._prefetched(self.test_blocks):
            for i in range(0, len(part), batch_size):
                yield {"x": torch.from_numpy(part[i:i + batch_size]).to(device)}
