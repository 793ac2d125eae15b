"""Lazy inputs: load(path, lazy=True) opens files as Dask arrays without reading the data."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import tifffile

da = pytest.importorskip("dask.array")
pytest.importorskip("zarr")

from latentatlas.io import Axis, Dataset, LazyDataset, LoadError, load, save_zarr  # noqa: E402


def _stack(n: int = 6, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(0).random((n, h, w), dtype=np.float32)


@pytest.mark.parametrize("fmt", ["npy", "h5", "tif", "zarr"])
def test_a_large_file_opens_without_reading(tmp_path: Path, fmt: str) -> None:
    shape = (64, 512, 512)  # 64 MiB of float32
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32,
                                    shape=shape)
    big[-1, -1, -1] = 7.0
    path = tmp_path / f"big.{fmt}"
    if fmt == "h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=big, chunks=(1, 512, 512))
    elif fmt == "tif":
        tifffile.imwrite(path, big)
    elif fmt == "zarr":
        save_zarr(da.from_array(big, chunks=(8, 512, 512)), path)
    big.flush()
    del big
    tracemalloc.start()
    d = load(path, lazy=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(d, LazyDataset) and d.shape == shape
    assert peak < 2**20, f"opening lazily allocated {peak} bytes"
    # stacks come in whole frames per chunk
    assert d.data.chunksize[1:] == (512, 512)
    assert float(d.data[-1, -1, -1].compute()) == 7.0


@pytest.mark.parametrize("suffix", ["npy", "h5", "tif", "tif-zlib"])
def test_lazy_equals_eager(tmp_path: Path, suffix: str) -> None:
    x = _stack()
    path = tmp_path / f"x.{suffix.split('-')[0]}"
    if suffix == "npy":
        np.save(path, x)
    elif suffix == "h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("other", data=np.zeros(3))
            f.create_dataset("grp/data", data=x, chunks=(2, 40, 56))
    else:
        tifffile.imwrite(path, x, compression="zlib" if "zlib" in suffix else None)
    lazy = load(path, lazy=True)
    eager = load(path)
    assert isinstance(lazy.data, da.Array) and lazy.shape == eager.shape
    np.testing.assert_array_equal(lazy.compute().data, eager.data)
    np.testing.assert_array_equal(np.asarray(lazy), x)
    if suffix == "h5":
        assert lazy.data.chunksize == (2, 40, 56)  # the file's own chunks


def test_zarr_round_trip_keeps_axes_and_chunks(tmp_path: Path) -> None:
    x = _stack()
    ds = Dataset(x, [Axis("frame", kind="frame"), Axis("y", 0.02, 0.0, "nm", kind="spatial"),
                     Axis("x", 0.02, 1.0, "nm", kind="spatial")], quantity="HAADF", name="movie")
    save_zarr(ds, tmp_path / "m.zarr", chunks=(4, -1, -1))
    d = load(tmp_path / "m.zarr", lazy=True)
    assert d.data.chunks == ((4, 2), (40,), (56,))
    assert [a.name for a in d.axes] == ["frame", "y", "x"]
    assert d.axes[2].scale == 0.02 and d.axes[2].offset == 1.0 and d.axes[1].units == "nm"
    assert d.quantity == "HAADF" and d.name == "movie"
    np.testing.assert_array_equal(d.compute().data, x)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_zarr(x, tmp_path / "m.zarr")
    # a Dask array is written chunk by chunk
    save_zarr(da.from_array(x, chunks=(1, 40, 56)) * 2, tmp_path / "m.zarr", overwrite=True)
    np.testing.assert_array_equal(load(tmp_path / "m.zarr", lazy=True).compute().data, 2 * x)
    # overwrite replaces a Zarr array or a file, never another folder
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a Zarr array"):
        save_zarr(x, tmp_path / "user", overwrite=True)
    assert (tmp_path / "user" / "notes.txt").read_text() == "keep"


def test_hdf5_channel_by_name_and_dimension_scales(tmp_path: Path) -> None:
    x = _stack(2, 8, 10)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("a", data=x)
        big = f.create_dataset("b", data=np.zeros((3, 8, 10)))
        e = f.create_dataset("energy", data=np.linspace(1.0, 1.9, 10))
        e.make_scale("energy")
        e.attrs["units"] = "eV"
        f["a"].dims[2].attach_scale(e)
        del big
    assert load(tmp_path / "c.h5", lazy=True).name == "b"  # default: the largest
    d = load(tmp_path / "c.h5", "a", lazy=True)
    assert d.name == "a" and d.axes[2].units == "eV" and d.axes[2].scale == pytest.approx(0.1)
    with pytest.raises(LoadError, match="no dataset 'zz'"):
        load(tmp_path / "c.h5", "zz", lazy=True)


def _unreadable(shape: tuple[int, ...]) -> da.Array:
    """A Dask array that fails the test if anything computes it."""
    import dask

    def read() -> np.ndarray:
        raise AssertionError("the lazy signal was computed")

    return da.from_delayed(dask.delayed(read)(), shape=shape, dtype=np.float32)


def test_lazy_hyperspy_like_signal_is_not_computed() -> None:
    axes = [SimpleNamespace(name="y", scale=0.1, offset=0.0, units="nm", navigate=False),
            SimpleNamespace(name="x", scale=0.2, offset=1.0, units="nm", navigate=False)]
    md = SimpleNamespace(as_dictionary=lambda: {"Signal": {"signal_type": "HAADF"},
                                                 "General": {"title": "t"}})
    sig = SimpleNamespace(data=_unreadable((50, 60)), metadata=md,
                          axes_manager=SimpleNamespace(_axes=axes))
    d = load(sig, lazy=True)
    assert d.data is sig.data and d.shape == (50, 60)
    assert d.signal_type == "HAADF" and d.name == "t" and d.axes[1].scale == 0.2


def test_real_hyperspy_lazy_signal() -> None:
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal2D(_unreadable((3, 32, 48))).as_lazy()
    s.axes_manager[2].units = "nm"
    d = load(s, lazy=True)
    assert isinstance(d.data, da.Array) and d.shape == (3, 32, 48)
    assert any(a.units == "nm" for a in d.axes)


def test_lazy_hdf5_refuses_external_links(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((4, 4)))
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["data"] = h5py.ExternalLink(str(tmp_path / "target.h5"), "/data")
    with pytest.raises(LoadError, match="external link"):
        load(tmp_path / "link.h5", lazy=True)


def test_lazy_refuses_formats_it_cannot_stream(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", data=np.zeros((4, 4)))
    with pytest.raises(LoadError, match="save_zarr"):
        load(tmp_path / "a.npz", lazy=True)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npy", lazy=True)
