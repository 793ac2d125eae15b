"""HyperSpy both ways: signals in with the array's axis order and calibration, results out as
calibrated signals and .hspy files that hs.load opens. Skipped when hyperspy is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data
from latentatlas.io import LoadError, list_channels, load
from latentatlas.io.hyperspy import save_hspy, signal_dict, to_signal

hs = pytest.importorskip("hyperspy.api")


def _spectrum_image() -> object:
    """x = 5 px at 1 nm, y = 3 px at 2 nm, 7 energy channels at 0.5 eV from 100 eV."""
    data = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    sig = hs.signals.Signal1D(data)
    x, y = sig.axes_manager.navigation_axes
    x.name, x.scale, x.offset, x.units = "x", 1.0, 10.0, "nm"
    y.name, y.scale, y.offset, y.units = "y", 2.0, -4.0, "nm"
    e = sig.axes_manager.signal_axes[0]
    e.name, e.scale, e.offset, e.units = "Energy loss", 0.5, 100.0, "eV"
    sig.metadata.General.title = "SI"
    return sig


def test_signal_in_keeps_array_order_and_calibration() -> None:
    d = load(_spectrum_image())
    assert d.shape == (3, 5, 7)
    assert [(a.name, a.size, a.scale, a.offset, a.units) for a in d.axes] == [
        ("y", 3, 2.0, -4.0, "nm"), ("x", 5, 1.0, 10.0, "nm"),
        ("Energy loss", 7, 0.5, 100.0, "eV")]
    assert [a.kind for a in d.axes] == ["spatial", "spatial", "spectral"]
    assert d.name == "SI"


def test_image_stack_and_unnamed_axes() -> None:
    sig = hs.signals.Signal2D(np.zeros((4, 6, 8)))
    sig.axes_manager.signal_axes[0].scale = 0.25  # x
    d = load(sig)
    assert [a.name for a in d.axes] == ["axis_0", "y", "x"]
    assert [a.kind for a in d.axes] == ["frame", "spatial", "spatial"]
    assert d.axes[2].scale == 0.25 and d.axes[1].scale == 1.0
    assert all(a.units == "" for a in d.axes)


def test_non_uniform_axes() -> None:
    spectrum = hs.signals.Signal1D(np.ones((2, 3, 4)), axes=[
        {"name": "y", "size": 2}, {"name": "x", "size": 3},
        {"name": "E", "size": 4, "axis": np.array([1.0, 2.0, 4.0, 8.0]), "units": "eV"}])
    d = load(spectrum)
    np.testing.assert_allclose(d.axes[-1].coords, [1, 2, 4, 8])
    scan = hs.signals.Signal1D(np.ones((2, 3, 4)), axes=[
        {"name": "y", "size": 2}, {"name": "x", "size": 3, "axis": np.array([0.0, 1.0, 3.0])},
        {"name": "E", "size": 4}])
    with pytest.raises(LoadError, match="axis 'x' is not uniform.*interpolate"):
        load(scan)


def test_velox_offsets_stay_on_their_axes() -> None:
    pytest.importorskip("sparse")
    path = shared_data("eels", "velox_EELS_EDS.zip")
    ours = load(path)
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as zf:
        zf.extractall(tmp)
        emd = next(Path(tmp).glob("*.emd"))
        signals = hs.load(emd)
        theirs = next(s for s in signals if s.data.shape == ours.shape
                      and s.axes_manager.signal_axes[0].offset == ours.axes[-1].offset)
        d = load(theirs)
    x_axis = theirs.axes_manager.navigation_axes[0]
    assert d.axes[1].offset == pytest.approx(x_axis.offset)
    assert d.axes[1].size == x_axis.size == 20
    for a, b in zip(d.axes, ours.axes, strict=True):
        assert (a.size, a.units) == (b.size, b.units)
        assert a.scale == pytest.approx(b.scale) and a.offset == pytest.approx(b.offset)


def test_velox_spectrum_images_have_unique_names() -> None:
    pytest.importorskip("sparse")
    path = shared_data("eels", "velox_EELS_EDS.zip")
    names = list_channels(path)
    assert len(set(names)) == len(names)
    eels = [n for n in names if n.startswith("EELS (16, 20, 2048)")]
    assert len(eels) == 3
    offsets = sorted(load(path, channel=n).axes[-1].offset for n in eels)
    assert offsets == pytest.approx([-21.5, 480.0, 800.0], abs=0.1)


def test_signal_dict_round_trips_through_hspy(tmp_path: Path) -> None:
    d = load(_spectrum_image())
    doc = signal_dict(d.data, d.axes, 1, "round trip", quantity="counts",
                      metadata={"method": "none"})
    path = save_hspy(tmp_path / "si.hspy", doc)
    back = hs.load(path)
    assert isinstance(back, hs.signals.Signal1D)
    np.testing.assert_array_equal(back.data, d.data)
    assert back.metadata.General.title == "round trip"
    again = load(back)
    assert [(a.name, a.scale, a.offset, a.units) for a in again.axes] == [
        (a.name, a.scale, a.offset, a.units) for a in d.axes]
    same = to_signal(doc)
    assert same.axes_manager.navigation_shape == (5, 3)  # HyperSpy order: x first
    assert load(path).shape == d.shape  # our reader opens it too


def test_unmix_of_a_signal_keeps_energy_axis_and_calibration(tmp_path: Path) -> None:
    from latentatlas.spectral import UnmixResult, unmix

    sig = _spectrum_image()
    sig.data = np.random.default_rng(0).random(sig.data.shape).astype(np.float32)
    res = unmix(sig, "nmf", 2)
    assert res.energy_name == "Energy loss" and res.energy_units == "eV"
    np.testing.assert_allclose(res.energy, 100.0 + 0.5 * np.arange(7))
    assert res.calibration.units == "nm" and res.calibration.scale == (2.0, 1.0)
    assert res.calibration.offset == (-4.0, 10.0)
    out = res.to_signals()
    loadings, factors = out["loadings"], out["factors"]
    assert isinstance(loadings, hs.signals.Signal2D) and isinstance(factors, hs.signals.Signal1D)
    x, y = loadings.axes_manager.signal_axes
    assert (x.size, x.scale, x.offset, x.units) == (5, 1.0, 10.0, "nm")
    assert (y.size, y.scale, y.offset, y.units) == (3, 2.0, -4.0, "nm")
    assert loadings.axes_manager.navigation_shape == (2,)
    e = factors.axes_manager.signal_axes[0]
    assert (e.name, e.size, e.scale, e.offset, e.units) == ("Energy loss", 7, 0.5, 100.0, "eV")
    assert res.loadings is not None and res.components is not None
    np.testing.assert_allclose(loadings.data[1], res.loadings[..., 1])
    np.testing.assert_allclose(factors.data, res.components)
    # written as .hspy, read back by HyperSpy with the same axes
    paths = res.save_hspy(tmp_path)
    back = hs.load(tmp_path / "nmf_loadings.hspy")
    assert [p.name for p in paths] == ["nmf_loadings.hspy", "nmf_factors.hspy"]
    assert back.axes_manager.signal_axes[1].offset == -4.0
    np.testing.assert_allclose(back.data, loadings.data)
    # and the calibration survives our own HDF5 round trip
    again = UnmixResult.load(res.save(tmp_path / "r.h5"))
    assert again.calibration == res.calibration


def test_line_scan_and_4d_signals(tmp_path: Path) -> None:
    from latentatlas.spectral import unmix

    rng = np.random.default_rng(1)
    line = hs.signals.Signal1D(rng.random((9, 6)))
    line.axes_manager.navigation_axes[0].scale = 0.5
    line.axes_manager.navigation_axes[0].units = "nm"
    res = unmix(line, "pca", 2)
    loadings = res.to_signals()["loadings"]
    assert isinstance(loadings, hs.signals.Signal1D)
    assert loadings.axes_manager.signal_axes[0].scale == 0.5
    assert loadings.axes_manager.signal_axes[0].units == "nm"
    movie = hs.signals.Signal1D(rng.random((2, 3, 4, 6)))
    res4 = unmix(movie, "kmeans", 2)
    assert res4.navigation_shape == (2, 3, 4)
    labels = res4.to_signals()["labels"]
    assert labels.data.shape == (2, 3, 4)
    assert labels.axes_manager.navigation_shape == (2,)


def test_unmix_pipeline_writes_hspy_and_survives_mathtext_labels(tmp_path: Path) -> None:
    """bfo_iv_final.hf5's axis is named ``$\\sqrt E$``: invalid mathtext that made every
    figure (and the command) fail."""
    from latentatlas.pipelines.unmix import run_unmix

    path = shared_data("spm_spectroscopy", "bfo_iv_final.hf5")
    for method in ("pca", "nmf", "kmeans"):
        run = run_unmix(path, method, 3, tmp_path / method, offset="min" if method == "nmf"
                        else None)
        names = {p.name for p in run.files}
        assert f"{method}_loadings.hspy" in names and "index.html" in names
        back = hs.load(tmp_path / method / f"{method}_loadings.hspy")
        assert back.axes_manager.signal_axes[0].units == "m"


def test_analysis_and_walls_maps_as_signals(tmp_path: Path) -> None:
    from latentatlas.datasets.lattices import two_site_lattice
    from latentatlas.io import Axis, Dataset
    from latentatlas.pipelines.analyze import analyze
    from latentatlas.pipelines.walls import run_walls

    img = two_site_lattice(shape=(96, 128)).image
    data = Dataset(img, [Axis("y", 0.02, 1.0, "nm"), Axis("x", 0.01, 2.0, "nm")])
    res = analyze(data, epochs=1, train_samples=64, progress=False, out=tmp_path / "a")
    sig = res.to_signals()
    latents, labels = sig["latents"], sig["labels"]
    assert latents.axes_manager.navigation_shape == (len(res.maps.names),)
    x, y = latents.axes_manager.signal_axes
    assert (x.size, x.scale, x.offset, x.units) == (128, 0.01, 2.0, "nm")
    assert (y.size, y.scale, y.offset, y.units) == (96, 0.02, 1.0, "nm")
    # the class map holds the classes at the atoms (NaN between them)
    found = np.unique(labels.data[np.isfinite(labels.data)]).astype(int)
    assert set(found) == set(range(res.labels.n_components))
    back = hs.load(tmp_path / "a" / "latents.hspy")
    assert back.axes_manager.signal_axes[1].scale == 0.02
    np.testing.assert_allclose(back.data, latents.data)

    np.save(tmp_path / "phase.npy", np.where(np.arange(40)[:, None] < 20, 90.0, -90.0)
            * np.ones((40, 30)))
    run = run_walls(tmp_path / "phase.npy", "canny", tmp_path / "w", phase=True)
    walls = hs.load(tmp_path / "w" / "walls.hspy")
    np.testing.assert_array_equal(walls.data.astype(bool), run.walls.mask)
    assert run.to_signals()["walls"].axes_manager.signal_shape == (30, 40)
