"""Readers for the real graphene reference data used by the atom-finding benchmark and tests.

The AICrystallographer ``*-coord.npy`` files are pickled dicts ``{0: array (n, 3)}`` of
(row, col, class). They are read with a restricted unpickler that only rebuilds NumPy arrays,
so a tampered file cannot run code. Their class column is 0 for every atom in all three
frames, so the Si columns are picked out by intensity (:func:`si_by_intensity`): G-Si-2nm
holds one, the two grain-boundary frames none.

The LibraryNet crops (``library_refined_dev/<CLASS>/<n>.hdf5``) list the atoms of their Si
complex in ``defect_coord_<k>`` datasets (rows of bytes x, y, element), read by
:func:`load_librarynet`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

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


#: A reference column is Si when its smoothed intensity above the local background exceeds
#: this multiple of the median column's. In the three AtomNet frames one column stands at 8.8x
#: (G-Si-2nm); every other column is below 3x.
SI_INTENSITY_RATIO = 4.0


def si_by_intensity(image: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Boolean (n,) mask of the reference columns that are Si by their HAADF intensity.

    image: (h, w); positions: (n, 2) (row, col). The bond length is the median
    nearest-neighbour distance of the positions. The image is smoothed over a third of a bond;
    the background is the median, over about 3 bonds, of the image smoothed over 2/3 of a bond
    (hexagon centres and columns alike).
    """
    from scipy.spatial import cKDTree

    bond = float(np.median(cKDTree(positions).query(positions, k=2)[0][:, 1]))
    img = np.asarray(image, dtype=np.float64)
    sm = ndimage.gaussian_filter(img, bond / 3)
    bg = ndimage.median_filter(ndimage.gaussian_filter(img, 2 * bond / 3), size=int(3 * bond) | 1)
    r, c = np.round(positions).astype(np.int64).T
    above = sm[r, c] - bg[r, c]
    return above > SI_INTENSITY_RATIO * np.median(above)


#: The Si columns of the two G-dimtrimSi frames (no reference lists), marked by eye on the
#: image smoothed over 3 px and moved to the brightest pixel within 15 px: (row, col). Each
#: stands at about 3x the median of the smoothed frame; the carbon columns do not pass 1.6x.
SI_BY_EYE = {
    "G-dimSi": ((307.0, 300.0), (297.0, 389.0)),
    "G-trimSi": ((238.0, 286.0), (276.0, 332.0), (293.0, 276.0)),
}


LIBRARYNET_DEV = ("stem_graphene_aicrystallographer", "LibraryNet", "library_refined_dev")
#: C-C bond length of graphene in pm (what the crops' ``scan size`` is measured in).
BOND_PM = 142.0


@dataclass(frozen=True)
class LibraryCrop:
    """One LibraryNet crop: image (h, w) float32, its complex class (folder name), file name,
    bond length in pixels (142 pm over the pixel size from ``scan size``), and the reference
    atoms of its complex(es): positions (n, 2) (row, col), elements (n,) ("C" or "Si") and
    defect (n,) the k of the ``defect_coord_<k>`` each atom is listed in."""

    image: np.ndarray
    complex_class: str
    name: str
    bond: float
    positions: np.ndarray
    elements: np.ndarray
    defect: np.ndarray

    @property
    def si(self) -> np.ndarray:
        """(k, 2) (row, col) of the reference Si atoms of every listed complex."""
        return self.positions[self.elements == "Si"]

    @property
    def si_first(self) -> np.ndarray:
        """(k, 2) (row, col) of the reference Si atoms of ``defect_coord_0`` only (the labelled
        complex; seven crops have none)."""
        return self.positions[(self.elements == "Si") & (self.defect == 0)]


def load_librarynet(root: Path) -> list[LibraryCrop]:
    """Every crop of ``root/stem_graphene_aicrystallographer/LibraryNet/library_refined_dev``,
    sorted by class and number. All ``defect_coord_<k>`` datasets are read (seven files have
    no ``defect_coord_0``, only higher k; a few have several complexes)."""
    import h5py

    folder = root.joinpath(*LIBRARYNET_DEV)
    files = sorted(folder.glob("*/*.hdf5"), key=lambda f: (f.parent.name, int(f.stem)))
    crops = []
    for f in files:
        with h5py.File(f, "r") as h:
            x = h["nn_input"]
            image = np.asarray(x[0, :, :, 0], dtype=np.float32)
            pixel_pm = float(x.attrs["scan size"]) / image.shape[1]
            listed = [
                (int(k.removeprefix("defect_coord_")), r)
                for k in sorted(h)
                if k.startswith("defect_coord_")
                for r in h[k][()]
            ]
        xy = np.array([[float(r[0]), float(r[1])] for _, r in listed]).reshape(-1, 2)
        elements = np.array([r[2].decode() for _, r in listed], dtype=object)
        defect = np.array([k for k, _ in listed], dtype=np.int64)
        crops.append(
            LibraryCrop(
                image, f.parent.name, f.stem, BOND_PM / pixel_pm, xy[:, ::-1].copy(), elements, defect
            )
        )
    return crops


def si_scores(
    positions: np.ndarray, classes: np.ndarray, si_ref: np.ndarray, radius: float = 1.5
) -> dict[str, int]:
    """Counts for Si recall: ``n_si`` reference Si columns, ``detected`` of them matched (one
    to one, within ``radius`` px) by any found atom, ``labelled`` matched by an atom the finder
    labelled Si (class 1), and ``si_found`` atoms labelled Si in all.

    positions: (n, 2) found atoms; classes: (n,); si_ref: (k, 2) reference Si (row, col).
    """
    from latentatlas.analysis.matching import match_indices

    si_ref = np.asarray(si_ref, dtype=np.float64).reshape(-1, 2)
    labelled = positions[np.asarray(classes) == 1]
    det = match_indices(positions, si_ref, radius)[1] if len(positions) else np.zeros(0)
    lab = match_indices(labelled, si_ref, radius)[1] if len(labelled) else np.zeros(0)
    return {"n_si": len(si_ref), "detected": len(det), "labelled": len(lab), "si_found": len(labelled)}
