"""Patches around points, sliding windows and per-pixel spectra: bookkeeping and errors."""

from __future__ import annotations

import numpy as np
import pytest

from latentatlas.descriptors.patches import extract_patches
from latentatlas.descriptors.spectra import cube_to_spectra
from latentatlas.descriptors.windows import sliding_windows


def _coded_stack(n: int = 3, h: int = 20, w: int = 24) -> np.ndarray:
    """Pixel value encodes (frame, row, col), so every patch says where it was cut."""
    f, r, c = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    return (10000 * f + 100 * r + c).astype(np.float32)


def test_frame_bookkeeping_on_a_stack() -> None:
    stack = _coded_stack()
    centers = np.array([[5.2, 6.7], [10, 10], [14, 3], [7, 17]])
    frames = np.array([2, 0, 1, 1])
    p = extract_patches(stack, centers, window=5, frames=frames, classes=[1, 0, 1, 0],
                        normalize="none")
    assert p.data.shape == (4, 1, 5, 5) and p.data.dtype == np.float32
    for k in range(4):
        r, c = np.rint(centers[k]).astype(int)
        # the centre pixel of each patch comes from the right frame and position
        assert p.data[k, 0, 2, 2] == 10000 * frames[k] + 100 * r + c
        np.testing.assert_array_equal(p.data[k, 0], stack[frames[k], r - 2:r + 3, c - 2:c + 3])
    np.testing.assert_array_equal(p.frames, frames)
    np.testing.assert_array_equal(p.classes, [1, 0, 1, 0])
    np.testing.assert_allclose(p.centers, centers)  # sub-pixel centres kept exactly
    np.testing.assert_array_equal(p.index, np.arange(4))


def test_multichannel_stack_and_class_column() -> None:
    stack = _coded_stack(2)
    mc = np.stack([stack, -stack], axis=1)  # (n, c=2, h, w)
    pts = np.array([[8, 8, 3], [9, 12, 4]])
    p = extract_patches(mc, pts, window=4, frames=[1, 0], normalize="none")
    assert p.data.shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(p.data[:, 1], -p.data[:, 0])
    np.testing.assert_array_equal(p.classes, [3, 4])
    # even window: centre pixel at index window // 2
    assert p.data[0, 0, 2, 2] == 10000 + 800 + 8


def test_border_policy() -> None:
    img = _coded_stack(1)[0]
    pts = np.array([[1, 1], [10, 10], [18, 22], [-3, 5], [10, 30]])
    dropped = extract_patches(img, pts, window=7, border="drop", normalize="none")
    np.testing.assert_array_equal(dropped.index, [1])
    assert dropped.n_dropped == 4 and dropped.summary()["border"] == "drop"
    padded = extract_patches(img, pts, window=7, border="pad", normalize="none")
    # points inside the image are kept, points outside are always dropped
    np.testing.assert_array_equal(padded.index, [0, 1, 2])
    assert padded.border == "pad" and padded.extra["pad_mode"] == "reflect"
    np.testing.assert_array_equal(padded.data[1], dropped.data[0])
    # mirror padding: the patch at (1, 1) covers rows/cols -2..4 of the mirrored image
    np.testing.assert_array_equal(padded.data[0, 0], np.pad(img, 3, mode="reflect")[1:8, 1:8])
    assert padded.data[0, 0, 0, 3] == img[2, 1]  # row -2 mirrors row 2


def test_normalisation_options() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(40, 40)).astype(np.float32)
    img[:20] *= 5  # bright top half
    pts = np.array([[8, 20], [30, 20]])
    raw = extract_patches(img, pts, 9, normalize="none")
    per_patch = extract_patches(img, pts, 9, normalize="patch")
    per_image = extract_patches(img, pts, 9, normalize="image")
    for k in range(2):
        assert per_patch.data[k].min() == pytest.approx(0) and per_patch.data[k].max() == 1
    # image normalisation keeps the contrast difference between the two patches
    ratio_raw = np.ptp(raw.data[0]) / np.ptp(raw.data[1])
    ratio_img = np.ptp(per_image.data[0]) / np.ptp(per_image.data[1])
    assert ratio_img == pytest.approx(ratio_raw, rel=1e-5)
    assert 0 <= per_image.data.min() and per_image.data.max() <= 1


def test_clear_errors() -> None:
    img = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match="window 32 is larger than the image"):
        extract_patches(img, [[8, 8]], window=32)
    with pytest.raises(ValueError, match="coordinate list is empty"):
        extract_patches(img, np.empty((0, 2)), window=4)
    bad = img.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        extract_patches(bad, [[8, 8]], window=4)
    with pytest.raises(ValueError, match="pass frames"):
        extract_patches(np.zeros((2, 16, 16)), [[8, 8]], window=4)
    with pytest.raises(ValueError, match=r"frames must lie in \[0, 1\]"):
        extract_patches(np.zeros((2, 16, 16)), [[8, 8]], window=4, frames=[2])
    with pytest.raises(ValueError, match="border='pad'"):
        extract_patches(img, [[0, 0]], window=6)
    with pytest.raises(ValueError, match="border must be"):
        extract_patches(img, [[8, 8]], window=4, border="wrap")  # type: ignore[arg-type]


def test_sliding_windows_grid() -> None:
    stack = _coded_stack(2, 20, 26)
    p = sliding_windows(stack, window=6, stride=4, normalize="none")
    rows, cols = (20 - 6) // 4 + 1, (26 - 6) // 4 + 1
    assert p.grid_shape == (rows, cols) and len(p) == 2 * rows * cols
    k = 1 * rows * cols + 2 * cols + 3  # frame 1, grid row 2, grid col 3
    np.testing.assert_array_equal(p.data[k, 0], stack[1, 8:14, 12:18])
    assert p.frames[k] == 1
    np.testing.assert_allclose(p.centers[k], [8 + 2.5, 12 + 2.5])
    # a per-window value reshapes into the dense map in grid order
    dense = p.centers[:, 0].reshape(2, rows, cols)
    assert np.all(np.diff(dense, axis=1) == 4)
    with pytest.raises(ValueError, match="larger than the image"):
        sliding_windows(stack, window=21)


def test_cube_to_spectra_round_trip() -> None:
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(4, 5, 7))
    s = cube_to_spectra(cube)
    assert s.data.shape == (20, 7)
    np.testing.assert_allclose(s.data[7], cube[1, 2])
    np.testing.assert_allclose(s.to_map(s.data), cube, rtol=1e-6)
    mask = np.zeros((4, 5), bool)
    mask[2, 3] = True
    sm = cube_to_spectra(cube, mask=mask)
    assert len(sm) == 1 and tuple(sm.positions[0]) == (2, 3)
    m = sm.to_map(np.array([5.0]))
    assert m[2, 3] == 5 and np.isnan(m[0, 0])
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        cube_to_spectra(np.zeros((4, 5)))
