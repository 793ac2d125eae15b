"""Chunked atom finding (tiles read with a border, Dask map_overlap) equals whole-image
finding: same atoms, positions within 0.01 px, none lost or doubled at tile edges."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from latentatlas.datasets.lattices import generate_lattice, lattice_stack  # noqa: E402
from latentatlas.descriptors import chunked  # noqa: E402
from latentatlas.descriptors.atoms import find_atoms  # noqa: E402
from latentatlas.descriptors.chunked import find_atoms_chunked, peak_halo  # noqa: E402


def _image() -> np.ndarray:
    lat = generate_lattice((300, 410), kind="perovskite", spacing=11.0, angle=17.0,
                           second_intensity=0.5, gaussian_noise=0.08, background=0.3, seed=3)
    return lat.image.astype(np.float32)


def _near_edges(pos: np.ndarray, tile: tuple[int, int], margin: float) -> int:
    """Atoms within ``margin`` pixels of an internal tile edge."""
    dr = np.abs(((pos[:, 0] + 0.5) % tile[0]) - 0.5)
    dc = np.abs(((pos[:, 1] + 0.5) % tile[1]) - 0.5)
    return int(((np.minimum(dr, tile[0] - dr) < margin) | (np.minimum(dc, tile[1] - dc) < margin))
               .sum())


def test_tiles_give_the_whole_image_atoms() -> None:
    img = _image()
    whole = find_atoms(img, "peaks")
    tiles = find_atoms_chunked(da.from_array(img, chunks=(64, 96)), "peaks")
    assert len(whole) > 700
    # the tiling cuts through many atoms' neighbourhoods
    assert _near_edges(whole.positions, (64, 96), 3.0) > 100
    assert len(tiles) == len(whole)
    np.testing.assert_allclose(tiles.positions, whole.positions, atol=0.01, rtol=0)
    assert tiles.params["halo"] == peak_halo(whole.params["spacing"])


def test_stack_tiles_with_intensity_classes() -> None:
    stack, _ = lattice_stack(3, shape=(160, 200), seed=1, kind="perovskite", spacing=10.0,
                             second_intensity=0.45, gaussian_noise=0.05)
    whole = find_atoms(stack, "peaks", n_classes=2)
    x = da.from_array(stack, chunks=(2, 50, 64))
    tiles = find_atoms_chunked(x, "peaks", n_classes=2)
    assert len(tiles) == len(whole) > 300
    np.testing.assert_array_equal(tiles.frame, whole.frame)
    np.testing.assert_allclose(tiles.positions, whole.positions, atol=0.01, rtol=0)
    np.testing.assert_array_equal(tiles.classes, whole.classes)
    assert set(np.unique(tiles.classes)) == {0, 1}


def test_given_spacing_and_threshold() -> None:
    img = _image()
    whole = find_atoms(img, "peaks", spacing=11.0, threshold=0.35)
    tiles = find_atoms_chunked(img, "peaks", chunks=(100, 100), spacing=11.0, threshold=0.35)
    np.testing.assert_allclose(tiles.positions, whole.positions, atol=0.01, rtol=0)


def test_a_border_too_narrow_loses_or_moves_atoms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality above is not automatic: with a 2-pixel border the tiles disagree."""
    img = _image()
    whole = find_atoms(img, "peaks")
    monkeypatch.setattr(chunked, "peak_halo", lambda *a, **k: 2)
    tiles = find_atoms_chunked(da.from_array(img, chunks=(64, 96)), "peaks")
    same = len(tiles) == len(whole) and np.allclose(tiles.positions, whole.positions, atol=0.01)
    assert not same


def test_whole_frame_chunks_work_for_every_method() -> None:
    stack, _ = lattice_stack(3, shape=(96, 96), seed=2, kind="square", spacing=9.0,
                             gaussian_noise=0.05)
    for method in ("peaks", "log"):
        whole = find_atoms(stack, method)
        chunks = find_atoms_chunked(da.from_array(stack, chunks=(2, -1, -1)), method)
        np.testing.assert_array_equal(chunks.frame, whole.frame)
        np.testing.assert_allclose(chunks.positions, whole.positions, atol=0.01, rtol=0)


def test_tiles_refused_where_the_method_needs_whole_frames() -> None:
    img = _image()
    with pytest.raises(ValueError, match="whole frames"):
        find_atoms_chunked(da.from_array(img, chunks=(100, 100)), "log")
    with pytest.raises(ValueError, match="NaN"):
        bad = img.copy()
        bad[5, 5] = np.nan
        find_atoms_chunked(da.from_array(bad, chunks=(100, 100)), "peaks", spacing=11.0)
