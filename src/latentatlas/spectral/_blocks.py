"""The spectra of ``X`` as blocks of rows, so one implementation of each iterative method runs
in memory (one block: the whole matrix) and out of core (blocks read from a Dask, Zarr, HDF5
or memory-mapped array, the next one read in a background thread while the current one is
computed on).

Every method written against :class:`RowBlocks` makes one pass over the blocks per step and
keeps only what is as small as ``n`` (per-spectrum values: weights, labels, distances) or as
small as ``c`` (components, sums); the data itself is never held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

#: default bytes of spectra per block read from an out-of-core array
BLOCK_BYTES = 64 * 2**20


def is_out_of_core(X: Any) -> bool:
    """Arrays that are read in blocks rather than converted whole: Dask, Zarr, HDF5 arrays
    and NumPy memory maps."""
    if isinstance(X, np.memmap):
        return True
    module = type(X).__module__
    return module.startswith(("dask.", "zarr.", "h5py."))


class RowBlocks:
    """Rows of ``X`` (``(n, c)``, or any ``(..., c)``: leading axes are flattened) in blocks.

    source : a 2-D tensor (one block, used as is) or an array-like read block by block along
        its first axis (Dask arrays by their chunks, merged up to ``block_bytes``).
    dtype : float32 or float64 tensors (float64 only when the source is float64, as the
        in-memory estimators keep it).
    """

    def __init__(self, source: Any, device: torch.device, block_bytes: int = BLOCK_BYTES,
                 nonnegative: bool = False) -> None:
        self.device = device
        self.nonnegative = nonnegative
        if isinstance(source, torch.Tensor):
            if source.ndim != 2:
                raise ValueError(f"expected (n, c) spectra, got shape {tuple(source.shape)}")
            self._tensor: torch.Tensor | None = source
            self.n, self.c = int(source.shape[0]), int(source.shape[1])
            self.dtype = source.dtype
            self._edges = [0, self.n]
            self._rows_per_slice = 1
            return
        shape = tuple(int(s) for s in source.shape)
        if len(shape) < 2:
            raise ValueError(f"expected spectra (n, c) or a cube (..., c), got shape {shape}")
        kind = np.dtype(source.dtype).kind
        if kind not in "biuf":
            raise ValueError(f"spectra must be numeric, got dtype {source.dtype}")
        self._tensor = None
        self.source = source
        self.c = shape[-1]
        self._rows_per_slice = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        self.n = shape[0] * self._rows_per_slice
        self.dtype = torch.float64 if np.dtype(source.dtype) == np.float64 else torch.float32
        per_slice = self._rows_per_slice * self.c * (8 if self.dtype == torch.float64 else 4)
        step = max(1, block_bytes // max(per_slice, 1))
        chunks = getattr(source, "chunks", None)
        if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], tuple):
            # Dask: whole chunks, merged while they fit the block size
            edges, size = [0], 0
            for n in chunks[0]:
                if size and size + n > step:
                    edges.append(edges[-1] + size)
                    size = 0
                size += n
            edges.append(edges[-1] + size)
        else:
            if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], int):
                # Zarr/HDF5 storage chunks: blocks on chunk boundaries
                step = max(chunks[0], (step // chunks[0]) * chunks[0])
            edges = list(range(0, shape[0], step)) + [shape[0]]
        self._edges = edges

    @property
    def n_blocks(self) -> int:
        return len(self._edges) - 1

    def _read(self, i: int) -> torch.Tensor:
        lo, hi = self._edges[i], self._edges[i + 1]
        part = self.source[lo:hi]
        part = part.compute() if hasattr(part, "compute") else part
        arr = np.ascontiguousarray(part, dtype=np.float64 if self.dtype == torch.float64
                                   else np.float32).reshape(-1, self.c)
        if not arr.flags.writeable:  # a read-only memory map: torch wants its own copy
            arr = arr.copy()
        if not np.isfinite(arr).all():
            raise ValueError(f"the spectra contain NaN or infinite values (rows "
                             f"{lo * self._rows_per_slice}-{hi * self._rows_per_slice}); "
                             "fill or remove them first")
        if self.nonnegative and arr.size and arr.min() < 0:
            raise ValueError(f"negative values in the spectra (rows {lo * self._rows_per_slice}-"
                             f"{hi * self._rows_per_slice}); NMF needs non-negative data: clip "
                             "or offset it first")
        return torch.from_numpy(arr).to(self.device)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, (m, c) tensor)`` for every block, in order."""
        if self._tensor is not None:
            yield 0, self._tensor
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[torch.Tensor] = pool.submit(self._read, 0)
            for i in range(self.n_blocks):
                current = pending.result()
                if i + 1 < self.n_blocks:
                    pending = pool.submit(self._read, i + 1)
                yield self._edges[i] * self._rows_per_slice, current

    def map_rows(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` of every block (per-row results), concatenated: ``(n, ...)``."""
        if self._tensor is not None:
            return fn(self._tensor)
        return torch.cat([fn(xb) for _, xb in self])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The spectra at ``index`` ``(m,)``, as ``(m, c)`` (each block holding one is read
        once)."""
        if self._tensor is not None:
            return self._tensor[index]
        idx = index.cpu().numpy().astype(np.int64)
        out = torch.empty((len(idx), self.c), dtype=self.dtype, device=self.device)
        starts = np.asarray(self._edges) * self._rows_per_slice
        block_of = np.searchsorted(starts, idx, side="right") - 1
        for b in np.unique(block_of).tolist():
            take = np.flatnonzero(block_of == b)
            xb = self._read(b)
            out[torch.from_numpy(take).to(self.device)] = xb[torch.from_numpy(
                idx[take] - starts[b]).to(self.device)]
        return out

    def sums(self) -> tuple[torch.Tensor, float]:
        """Column sums ``(c,)`` in float64 and the total sum of squares, in one pass."""
        from latentatlas.spectral._base import sum_squares

        total = torch.zeros(self.c, dtype=torch.float64, device=self.device)
        ss = 0.0
        for _, xb in self:
            total += xb.sum(0, dtype=torch.float64)
            ss += sum_squares(xb)
        return total, ss

    def blockwise_mean(self) -> float:
        """Mean of all entries (``x.mean()`` for one block)."""
        if self._tensor is not None:
            return float(self._tensor.mean())
        total, _ = self.sums()
        return float(total.sum()) / (self.n * self.c)


def as_blocks(X: Any, device: torch.device, block_bytes: int = BLOCK_BYTES,
              nonnegative: bool = False) -> RowBlocks:
    """``RowBlocks`` over an out-of-core array, checking what ``validate_data`` would."""
    blocks = RowBlocks(X, device, block_bytes, nonnegative)
    if blocks.n < 1 or blocks.c < 1:
        raise ValueError(f"found an array with {blocks.n} spectra of {blocks.c} channels")
    return blocks

