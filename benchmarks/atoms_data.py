"""Readers for the real graphene reference data used by the atom-finding benchmark and tests.

The AICrystallographer ``*-coord.npy`` files are pickled dicts ``{0: array (n, 3)}`` of
(row, col, class). They are read with a restricted unpickler that only rebuilds NumPy arrays,
so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

ATOMNET = ("stem_graphene_aicrystallographer", "AtomNet", "exp_data")
IMAGES = ("G-GrainBoundary-4nm", "G-GrainBoundary-6nm", "G-Si-2nm")
# The reference lists omit columns within ~5 px of the edge (min coordinate 5.0 in every file);
# unmatched points closer than this to the edge are not counted.
REFERENCE_BORDER = 6.0

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "dict"),
    # Python 2 era pickles store raw bytes through codecs.encode (a pure function).
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def load_reference_coordinates(path: Path) -> np.ndarray:
    """(n, 3) float64 (row, col, class) from an AICrystallographer ``*-coord.npy`` file."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype != np.dtype(object):
            raise ValueError(f"{path} is not a pickled coordinate dict")
        obj = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
    data = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(data, dict) or 0 not in data:
        raise ValueError(f"{path} does not hold the expected {{0: array (n, 3)}} dict")
    return np.asarray(data[0], dtype=np.float64).reshape(-1, 3)


def load_graphene(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Image (h, w) float32 and reference positions (n, 2) (row, col) of one real frame."""
    folder = root.joinpath(*ATOMNET)
    image = np.load(folder / f"{name}.npy").astype(np.float32)
    coords = load_reference_coordinates(folder / f"{name}-coord.npy")
    return image, coords[:, :2]
