"""Out-of-core PCA, NMF and k-means: equal to the in-memory methods on data that fits, while
reading no more than a block of spectra at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from latentatlas.datasets.spectral import make_spectral_cube  # noqa: E402
from latentatlas.spectral import (  # noqa: E402
    NMF,
    PCA,
    ChunkedKMeans,
    ChunkedNMF,
    IncrementalPCA,
    KMeans,
)

BLOCK = 24 * 96 * 4  # bytes of 24 spectra of 96 channels: 1600 spectra make 67 blocks


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    s = make_spectral_cube("eels", shape=(40, 40), n_channels=96, n_components=4, counts=200,
                           seed=0, smoothness=8)
    return s.cube.astype(np.float32)


class _Counting:
    """A (ny, nx, c) array that records the rows of every read."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.shape, self.dtype = x, x.shape, x.dtype
        self.largest = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        part = self.x[key]
        self.largest = max(self.largest, int(np.prod(part.shape[:-1])))
        return part


# np.memmap routes through the out-of-core path; the counting wrapper pretends to be one
_Counting.__module__ = "zarr.counting"


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a * b).sum(1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_incremental_pca_equals_pca(cube: np.ndarray) -> None:
    X = cube.reshape(-1, 96)
    ref = PCA(5, solver="full").fit(X)
    lazy = da.from_array(cube, chunks=(3, 40, 96))  # a cube, 14 chunks of rows
    inc = IncrementalPCA(5).fit(lazy)
    np.testing.assert_allclose(inc.components_, ref.components_, atol=2e-4)
    np.testing.assert_allclose(inc.explained_variance_, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(inc.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-4)
    np.testing.assert_allclose(inc.mean_, ref.mean_, rtol=1e-5)
    scores = inc.transform(lazy)  # lazy in, lazy out
    assert isinstance(scores, da.Array) and scores.shape == (40, 40, 5)
    np.testing.assert_allclose(np.asarray(scores).reshape(-1, 5), ref.transform(X), atol=2e-2,
                               rtol=1e-3)
    # partial_fit over pieces, and the uncentred decomposition
    parts = IncrementalPCA(5)
    for piece in np.array_split(X, 3):
        parts.partial_fit(piece)
    np.testing.assert_allclose(parts.components_, ref.components_, atol=2e-4)
    unc = IncrementalPCA(3, center=False).fit(lazy)
    ref_unc = PCA(3, center=False, solver="full").fit(X)
    assert _cos(unc.components_, ref_unc.components_).min() > 1 - 1e-6


def test_chunked_nmf_equals_nmf(cube: np.ndarray, tmp_path: Path) -> None:
    X = cube.reshape(-1, 96)
    store = zarr.create_array(str(tmp_path / "c.zarr"), shape=cube.shape, chunks=(2, 40, 96),
                              dtype="float32")
    store[:] = cube
    # a fixed number of iterations (tol=0): a relative-decrease stop falls at a different
    # step when two runs differ by float rounding (two in-memory runs do too)
    for init, solver, w_tol in (("nndsvda", "hals", 1e-4), ("nndsvd", "mu", 1e-4),
                                ("spa", "hals", 2e-2)):
        ref = NMF(4, init=init, solver=solver, random_state=0, max_iter=40, tol=0.0)
        W = ref.fit_transform(X)
        est = ChunkedNMF(4, init=init, solver=solver, random_state=0, max_iter=40, tol=0.0,
                         block_bytes=BLOCK)
        W_c = est.fit_transform(store)
        assert est.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=1e-4)
        assert _cos(est.components_, ref.components_).min() > 1 - 1e-4
        np.testing.assert_allclose(W_c, W, rtol=0, atol=w_tol * np.abs(W).max())
        # the error never increases, as in memory
        hist = est.reconstruction_err_history_
        assert np.all(np.diff(hist) <= 1e-6 * hist[0])
    np.testing.assert_allclose(est.transform(store), ref.transform(X), rtol=0,
                               atol=2e-2 * np.abs(W).max())


def test_chunked_kmeans_equals_kmeans(cube: np.ndarray) -> None:
    X = cube.reshape(-1, 96)
    ref = KMeans(5, n_init=2, random_state=0).fit(X)
    est = ChunkedKMeans(5, n_init=2, random_state=0, block_bytes=BLOCK).fit(
        da.from_array(X, chunks=(100, 96)))
    np.testing.assert_array_equal(est.labels_, ref.labels_)
    np.testing.assert_allclose(est.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-4)
    assert est.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    np.testing.assert_array_equal(est.predict(da.from_array(X, chunks=(100, 96))),
                                  ref.predict(X))


def test_reads_one_block_at_a_time(cube: np.ndarray) -> None:
    src = _Counting(cube)
    IncrementalPCA(3, block_bytes=BLOCK).fit(src)
    ChunkedKMeans(3, random_state=0, block_bytes=BLOCK, max_iter=5).fit(src)
    ChunkedNMF(3, random_state=0, block_bytes=BLOCK, max_iter=5).fit(src)
    assert src.largest <= 40  # one row of the cube: 40 spectra (< 24 would split a row)


def test_bad_input_is_named(cube: np.ndarray) -> None:
    bad = cube.copy()
    bad[3, 4, 5] = -1.0
    with pytest.raises(ValueError, match="negative"):
        ChunkedNMF(2, block_bytes=BLOCK).fit(da.from_array(bad, chunks=(4, 40, 96)))
    bad[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        IncrementalPCA(2).fit(da.from_array(bad, chunks=(4, 40, 96)))
    with pytest.raises(ValueError, match="channels"):
        IncrementalPCA(2).fit(cube.reshape(-1, 96)).transform(da.zeros((4, 5), chunks=2))


@parametrize_with_checks([IncrementalPCA(2), ChunkedNMF(2, random_state=0, max_iter=50),
                          ChunkedKMeans(3, random_state=0)])
def test_sklearn_compatible(estimator: BaseEstimator, check: Any) -> None:
    check(estimator)


@pytest.mark.parametrize(("method", "options"), [
    ("pca", {}), ("pca", {"poisson": True, "crop": (10, 80)}), ("nmf", {"bin": 2}),
    ("kmeans", {"offset": "min"})])
def test_unmix_of_a_lazy_cube_equals_in_memory(cube: np.ndarray, method: str,
                                               options: dict[str, Any]) -> None:
    from latentatlas.spectral import unmix

    ref = unmix(cube, method, 3, **options)
    lazy = unmix(da.from_array(cube, chunks=(4, 40, 96)), method, 3, block_bytes=BLOCK,
                 **options)
    assert lazy.reconstruction_error == pytest.approx(ref.reconstruction_error, rel=1e-3)
    if ref.components is not None:
        assert _cos(lazy.components, ref.components).min() > 0.999
    if ref.labels is not None:
        np.testing.assert_array_equal(lazy.labels, ref.labels)
        np.testing.assert_allclose(lazy.cluster_means, ref.cluster_means, rtol=1e-5, atol=1e-3)


def test_unmix_of_a_lazy_cube_refuses_in_memory_methods(cube: np.ndarray) -> None:
    from latentatlas.spectral import unmix

    with pytest.raises(ValueError, match="in memory.*kmeans, nmf, pca"):
        unmix(da.from_array(cube, chunks=(4, 40, 96)), "gmm", 3)


def test_cli_unmix_within_a_memory_budget(cube: np.ndarray, tmp_path: Path) -> None:
    """``--memory-budget`` reads a Zarr cube in blocks of whole map rows and writes the same
    maps as the in-memory run."""
    import h5py
    from typer.testing import CliRunner

    from latentatlas.cli.app import app
    from latentatlas.io import LoadError, load, load_lazy, save_zarr
    from latentatlas.pipelines.unmix import _open_within

    store = tmp_path / "cube.zarr"
    save_zarr(cube, store, chunks=(5, 40, 96))
    runs = {}
    for name, extra in (("memory", []), ("budget", ["--memory-budget", "1 GB"])):
        res = CliRunner().invoke(app, ["unmix", str(store), "-m", "nmf", "-k", "3", "-q",
                                       "--out", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
        with h5py.File(tmp_path / name / "nmf.h5") as f:
            runs[name] = np.asarray(f["loadings"])
    np.testing.assert_allclose(runs["budget"], runs["memory"], rtol=1e-3, atol=1e-3 *
                               float(np.abs(runs["memory"]).max()))
    data, block = _open_within(str(store), None, "1 GB", 3)
    assert data.data.chunks[1:] == ((40,), (96,)) and block >= 40 * 96 * 4
    assert isinstance(load_lazy(store).data, da.Array)
    with pytest.raises(LoadError, match="memory-budget"):
        load(store, max_bytes=1000)  # load() reads a store whole only within its budget
    res = CliRunner().invoke(app, ["unmix", str(store), "-m", "pca", "--memory-budget", "100 MB",
                                   "--out", str(tmp_path / "small")])
    assert res.exit_code != 0 and "too small" in res.output
