"""MNIST readers for the standard IDX files (optionally gzipped), e.g. ../shared/data/mnist.

Only the IDX format is read here (a big-endian header of sizes, then raw bytes); pickled copies
of MNIST are never opened by library code.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_DTYPES: dict[int, str] = {
    0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"
}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` is decompressed), in its stored dtype and shape.

    Raises ValueError for a file that is not IDX or is truncated.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(
            f"{path} is not an IDX file (bad magic number); expected MNIST-style "
            "idx1/idx3 files such as t10k-images-idx3-ubyte.gz"
        )
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape)) if shape else 0
    if len(raw) - header < count * dtype.itemsize:
        raise ValueError(
            f"{path} is truncated: the header promises shape {shape} but only "
            f"{len(raw) - header} bytes of data follow; download the file again"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def load_mnist_idx(directory: str | Path, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) float32 in [0, 1] and labels (n,) int64 of one MNIST split.

    directory: a folder holding ``<split>-images-idx3-ubyte[.gz]`` and
    ``<split>-labels-idx1-ubyte[.gz]``; split: "t10k" (test) or "train".
    """
    directory = Path(directory)

    def find(kind: str) -> Path:
        for name in (f"{split}-{kind}", f"{split}-{kind}.gz"):
            if (directory / name).exists():
                return directory / name
        raise FileNotFoundError(f"no {split}-{kind}[.gz] in {directory}")

    images = read_idx(find("images-idx3-ubyte"))
    labels = read_idx(find("labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"MNIST files in {directory} disagree: images {images.shape}, labels {labels.shape}"
        )
    return (images.astype(np.float32) / 255.0), labels.astype(np.int64)
