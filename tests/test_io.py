"""latentatlas.io: every loader on the real files in ../shared/data, round trips on small
generated files, and clear errors for unknown, truncated and ambiguous input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from conftest import shared_data
from latentatlas.io import Axis, Dataset, LoadError, list_channels, load, load_all

# ---------------------------------------------------------------- real data


def test_pfm_nsid_default_channel_and_selection() -> None:
    path = shared_data("pfm_dtmicroscope", "PZT_final0001.h5")
    d = load(path)
    assert d.quantity == "HeightRetrace" and d.units == "m"
    assert d.shape == (256, 256) and d.signal_type == "IMAGE"
    with h5py.File(path) as f:
        raw = f["Measurement_000/Channel_4/Channel_4/Channel_4"][()]
        x = f["Measurement_000/Channel_4/Channel_4/x"][()]
    phase = load(path, channel="PhaseRetrace")
    assert phase.quantity == "PhaseRetrace" and phase.units == "deg"
    np.testing.assert_array_equal(phase.data, raw)
    assert load(path, channel=4).quantity == "PhaseRetrace"
    np.testing.assert_allclose(phase.axes[0].coords, x)
    assert phase.axes[0].kind == "spatial"
    # the Asylum header comes along
    assert phase.metadata["original_metadata"]["ScanSize"] == pytest.approx(2e-6, rel=0.5)
    names = list_channels(path)
    assert names[4] == "PhaseRetrace" and len(names) == 8
    everything = load_all(path)
    assert [c.quantity for c in everything] == names


def test_pfm_all_files_load() -> None:
    folder = shared_data("pfm_dtmicroscope")
    files = sorted(folder.glob("PTO_Funakubo*.h5"))
    assert files
    for f in files:
        d = load(f, channel="PhaseRetrace")
        assert d.shape == (256, 256) and np.isfinite(d.data).all()
        assert d.axes[0].scale > 0 and d.axes[0].coords.shape == (256,)


def test_beps_spectral_image_keeps_voltage_waveform() -> None:
    path = shared_data("pfm_dtmicroscope", "BEPS_PTO_50x50.h5")
    d = load(path)
    assert d.shape == (50, 50, 64) and d.signal_type == "SPECTRAL_IMAGE"
    volt = d.axes[2]
    assert volt.units == "V" and volt.kind == "spectral"
    with h5py.File(path) as f:
        expected = f["Channel_000/generic/Voltage"][()]
    # a triangular waveform is not uniform: the explicit values must be kept
    assert not volt.uniform
    np.testing.assert_allclose(volt.coords, expected)


def test_bfo_iv_cube() -> None:
    d = load(shared_data("spm_spectroscopy", "bfo_iv_final.hf5"))
    assert d.shape == (50, 50, 53) and d.quantity == "log J"
    assert "E" in d.axes[2].name and d.axes[2].kind == "spectral"
    assert d.axes[2].coords.shape == (53,)


def test_nanonis_grid_record_layout() -> None:
    path = shared_data("spm_spectroscopy", "Grid Spectroscopy002.3ds")
    d = load(path)
    assert d.shape == (20, 20, 128) and d.quantity == "Current" and d.units == "A"
    bias = d.axes[2]
    assert bias.name == "Bias" and bias.units == "V"
    assert bias.coords[0] == pytest.approx(0.2) and bias.coords[-1] == pytest.approx(-0.1)
    # The recorded bias channel must equal the sweep axis at every pixel: this fails if the
    # record length, parameter count or byte order were read wrongly.
    rec_bias = load(path, channel="Bias (V)").data
    np.testing.assert_allclose(rec_bias, np.broadcast_to(bias.coords, rec_bias.shape), atol=2e-3)
    # x varies fastest: the X parameter grows along axis 1 by the grid step
    x_param = d.metadata["parameters"]["X (m)"]
    np.testing.assert_allclose(np.diff(x_param, axis=1), d.axes[1].scale, rtol=1e-3)
    np.testing.assert_allclose(np.diff(x_param, axis=0), 0, atol=1e-12)


def test_numpy_files() -> None:
    d = load(shared_data("spm_spectroscopy", "norm_polarization.npy"))
    assert d.shape == (49, 49, 99)
    si = load(shared_data("eels", "SI_data.npz"))
    assert si.shape == (24, 22, 138)
    assert si.axes[2].name == "ev" and si.axes[2].coords[0] == pytest.approx(10.0)


def test_pickled_npy_is_refused() -> None:
    path = shared_data("stem_graphene_aicrystallographer", "AtomNet", "exp_data",
                       "G-Si-2nm-coord.npy")
    with pytest.raises(LoadError, match="pickled"):
        load(path)


def test_plain_hdf5_with_json_metadata() -> None:
    folder = shared_data("stem_graphene_aicrystallographer", "AtomNet", "exp_data")
    d = load(folder / "G-Si-2nm.hdf5")
    np.testing.assert_array_equal(d.data, np.load(folder / "G-Si-2nm.npy"))
    assert d.metadata["metadata"]["type of data"] == "HAADF"


def test_digitalmicrograph() -> None:
    pytest.importorskip("rsciio")
    d = load(shared_data("eels", "EELS_STO.dm3"))
    assert d.shape == (2048,) and d.signal_type == "EELS"
    assert d.axes[0].units == "eV" and d.axes[0].offset == pytest.approx(350.0)
    si = load(shared_data("eels", "EELS_SI.dm4"))
    # energy axis moved last: (ny, nx, channels)
    assert si.shape == (2, 2, 2048) and si.axes[-1].units == "eV"


def test_emd_and_velox_zip_signal_choice() -> None:
    pytest.importorskip("rsciio")
    pytest.importorskip("sparse")
    d = load(shared_data("eels", "EMDReader_SpectrumImage_Si.emd"))
    assert d.shape == (16, 16, 4096) and d.signal_type == "EDS_TEM"
    zpath = shared_data("eels", "velox_EELS_EDS.zip")
    default = load(zpath)
    # documented default: the first signal of highest dimensionality (the first EELS SI)
    assert default.shape == (16, 20, 2048) and default.signal_type == "EELS"
    assert default.axes[-1].offset == pytest.approx(800.0)
    names = list_channels(zpath)
    low_loss = [i for i, n in enumerate(names) if n.startswith("EELS")][-1]
    assert load(zpath, signal=low_loss).axes[-1].offset == pytest.approx(-21.5, abs=0.01)
    eds = load(zpath, signal="EDS")  # several 'EDS': the spectrum image wins
    assert eds.shape == (128, 128, 4096)
    assert eds.metadata["archive_member"].endswith(".emd")


def test_hyperspy_files() -> None:
    pytest.importorskip("rsciio")
    d = load(shared_data("stem_perovskite", "stem_abf_data.hspy"))
    assert d.shape == (512, 512) and [a.name for a in d.axes] == ["y", "x"]
    assert d.axes[0].scale == pytest.approx(0.009326, rel=1e-3)
    s = load(shared_data("stem_perovskite", "stem_abf_data_imagestack.hspy"))
    assert s.shape == (5, 512, 512) and s.axes[1].units == "nm"


# ---------------------------------------------------------------- generated round trips


def test_npy_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 9)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    d = load(tmp_path / "a.npy")
    np.testing.assert_array_equal(d.data, a)
    assert [ax.name for ax in d.axes] == ["y", "x"] and d.source == tmp_path / "a.npy"
    cube = rng.normal(size=(4, 5, 6))
    energy = np.linspace(100, 150, 6)
    np.savez(tmp_path / "c.npz", cube=cube, energy=energy, small=np.arange(3))
    c = load(tmp_path / "c.npz")
    np.testing.assert_array_equal(c.data, cube)
    assert c.axes[2].name == "energy" and c.axes[2].scale == pytest.approx(10.0)
    assert load(tmp_path / "c.npz", channel="small").shape == (3,)


def test_tiff_stack_round_trip(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    stack = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "nm", "axes": "TYX"})
    d = load(tmp_path / "s.tif")
    np.testing.assert_array_equal(d.data, stack)
    assert [a.name for a in d.axes] == ["time", "y", "x"]
    assert d.axes[2].scale == pytest.approx(0.25) and d.axes[2].units == "nm"


def _write_nsid(path: Path, channels: dict[str, tuple[np.ndarray, str]],
                axis_units: dict[str, str] | None = None, axis_step: float = 0.5) -> None:
    """Channels of an NSID file; ``axis_units`` gives some channels' scan axes another unit."""
    with h5py.File(path, "w") as f:
        for k, (data, dtype_name) in enumerate(channels.values()):
            g = f.create_group(f"Measurement_000/Channel_{k}/Channel_{k}")
            ds = g.create_dataset(f"Channel_{k}", data=data)
            ds.attrs["quantity"] = list(channels)[k]
            ds.attrs["units"] = "V"
            ds.attrs["data_type"] = dtype_name
            for i, name in enumerate(["x", "y", "z"][: data.ndim]):
                step = axis_step if k == 0 else 0.5
                sc = g.create_dataset(name, data=step * np.arange(data.shape[i]) + 1.0)
                sc.attrs["units"] = (axis_units or {}).get(list(channels)[k], "nm")
                sc.attrs["name"] = name
                sc.attrs["dimension_type"] = "SPATIAL"
                sc.make_scale(name)
                ds.dims[i].attach_scale(sc)


def test_nsid_round_trip_and_channel_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(4, 5, 3))
    img = rng.normal(size=(6, 7))
    path = tmp_path / "n.h5"
    _write_nsid(path, {"Spectra": (cube, "SPECTRAL_IMAGE"), "Phase": (img, "IMAGE"),
                       "NapPhase": (img + 1, "IMAGE")})
    d = load(path)  # first IMAGE channel, not channel 0
    assert d.quantity == "Phase"
    np.testing.assert_array_equal(d.data, img)
    assert d.axes[0].scale == pytest.approx(0.5) and d.axes[0].offset == pytest.approx(1.0)
    assert d.axes[1].units == "nm"
    assert load(path, channel="napphase").quantity == "NapPhase"
    assert load(path, channel=0).shape == (4, 5, 3)
    with pytest.raises(LoadError, match="matches several"):
        load(path, channel="Phas")  # substring of two channels
    with pytest.raises(LoadError, match=r"0: Spectra, 1: Phase"):
        load(path, channel="Height")
    with pytest.raises(LoadError, match="out of range"):
        load(path, channel=7)


def test_nsid_scan_axes_labelled_with_the_data_unit_take_the_siblings_length_unit(
        tmp_path: Path) -> None:
    """The PFM files label the phase channel's x/y 'deg'; the other channels prove they are nm."""
    img = np.zeros((6, 7))
    path = tmp_path / "pfm.h5"
    _write_nsid(path, {"Height": (img, "IMAGE"), "Phase": (img, "IMAGE")},
                axis_units={"Phase": "deg"})
    assert [a.units for a in load(path, channel="Phase").axes] == ["nm", "nm"]
    # Different coordinates: nothing proves the unit, so the file's label stays.
    other = tmp_path / "other.h5"
    _write_nsid(other, {"Height": (img, "IMAGE"), "Phase": (img, "IMAGE")},
                axis_units={"Phase": "deg"}, axis_step=0.25)
    assert [a.units for a in load(other, channel="Phase").axes] == ["deg", "deg"]


def test_pfm_phase_channel_is_calibrated_in_metres() -> None:
    path = shared_data("pfm_dtmicroscope", "PZT_final0001.h5")
    d = load(path, channel="PhaseRetrace")
    assert [a.units for a in d.axes] == ["m", "m"]
    assert d.axes[0].scale == pytest.approx(2e-6 / 255, rel=1e-3)


def test_usid_reshape(tmp_path: Path) -> None:
    """Position (x fastest, then y) x spectroscopic (bias): reshape to (y, x, bias)."""
    nx, ny, nb = 4, 3, 5
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    pos_ind = np.stack([xx.ravel(), yy.ravel()], axis=1)
    bias = np.linspace(-1, 1, nb)
    # value encodes (y, x, b) so a wrong reshape cannot pass
    raw = (100 * pos_ind[:, 1:2] + 10 * pos_ind[:, 0:1] + np.arange(nb)[None]).astype(float)
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("Measurement_000/Channel_000")
        main = g.create_dataset("Raw_Data", data=raw)
        main.attrs["quantity"] = "Current"
        main.attrs["units"] = "nA"
        pi = g.create_dataset("Position_Indices", data=pos_ind)
        pv = g.create_dataset("Position_Values", data=pos_ind * np.array([2.0, 3.0]))
        si = g.create_dataset("Spectroscopic_Indices", data=np.arange(nb)[None])
        sv = g.create_dataset("Spectroscopic_Values", data=bias[None])
        for ds, labels, units in ((pi, ["X", "Y"], ["nm", "nm"]), (pv, ["X", "Y"], ["nm", "nm"]),
                                  (si, ["Bias"], ["V"]), (sv, ["Bias"], ["V"])):
            ds.attrs["labels"] = labels
            ds.attrs["units"] = units
        for name, ds in (("Position_Indices", pi), ("Position_Values", pv),
                         ("Spectroscopic_Indices", si), ("Spectroscopic_Values", sv)):
            main.attrs[name] = ds.ref
    d = load(path)
    assert d.shape == (ny, nx, nb)
    assert [a.name for a in d.axes] == ["Y", "X", "Bias"]
    y, x, b = 2, 1, 3
    assert d.data[y, x, b] == 100 * y + 10 * x + b
    assert d.axes[1].scale == pytest.approx(2.0) and d.axes[0].scale == pytest.approx(3.0)
    np.testing.assert_allclose(d.axes[2].coords, bias)
    assert d.quantity == "Current" and d.units == "nA"


def _write_3ds(path: Path, nx: int, ny: int, points: int, truncate: int = 0) -> np.ndarray:
    channels = ["Current (A)", "Bias (V)"]
    header = (
        f'Grid dim="{nx} x {ny}"\r\nGrid settings=0;0;{nx * 1e-9};{ny * 1e-9};0\r\n'
        'Sweep Signal="Bias (V)"\r\nFixed parameters="Sweep Start;Sweep End"\r\n'
        'Experiment parameters="X (m);Y (m)"\r\n# Parameters (4 byte)=4\r\n'
        f'Points={points}\r\nChannels="{";".join(channels)}"\r\n:HEADER_END:\r\n'
    )
    rng = np.random.default_rng(2)
    current = rng.normal(size=(ny, nx, points)).astype(np.float32)
    bias = np.linspace(1.0, -1.0, points, dtype=np.float32)
    recs = []
    for j in range(ny):
        for i in range(nx):
            recs.append(np.concatenate([[1.0, -1.0, i * 1e-9, j * 1e-9], current[j, i], bias]))
    body = np.asarray(recs, dtype=">f4").tobytes()
    path.write_bytes(header.encode("latin-1") + body[: len(body) - truncate])
    return current


def test_nanonis_round_trip_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "g.3ds"
    current = _write_3ds(path, nx=3, ny=2, points=8)
    d = load(path)
    assert d.shape == (2, 3, 8)
    np.testing.assert_array_equal(d.data, current)
    assert d.axes[1].scale == pytest.approx(1e-9) and d.axes[2].coords[-1] == pytest.approx(-1)
    assert list_channels(path) == ["Current (A)", "Bias (V)"]
    _write_3ds(path, nx=3, ny=2, points=8, truncate=10)
    with pytest.raises(LoadError, match="truncated"):
        load(path)


def test_truncated_and_unknown_files(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    _write_nsid(good, {"Phase": (np.ones((32, 32)), "IMAGE")})
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(LoadError, match=r"cut\.h5.*supported formats: .*\.npy"):
        load(cut)
    np.save(tmp_path / "a.npy", np.ones((50, 50)))
    (tmp_path / "b.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:300])
    with pytest.raises(LoadError, match=r"b\.npy.*truncated"):
        load(tmp_path / "b.npy")
    (tmp_path / "x.xyz123").write_text("hello")
    with pytest.raises(LoadError, match=r"x\.xyz123.*unknown file format.*\.3ds"):
        load(tmp_path / "x.xyz123")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npy")
    with pytest.raises(LoadError, match="folder"):
        load(tmp_path)


def test_zip_archive(tmp_path: Path) -> None:
    a = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "inner.npy", a)
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        zf.write(tmp_path / "inner.npy", "inner.npy")
    np.testing.assert_array_equal(load(tmp_path / "z.zip").data, a)
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("notes.txt", "nothing here")
    with pytest.raises(LoadError, match="no file of a supported format"):
        load(tmp_path / "bad.zip")


def test_arrays_and_hyperspy_like_objects() -> None:
    a = np.zeros((2, 3, 4))
    d = load(a)
    assert d.data is a and len(d.axes) == 3 and d.source is None
    assert load(d) is d
    axes = [SimpleNamespace(name="y", scale=0.1, offset=0.0, units="nm", navigate=False),
            SimpleNamespace(name="x", scale=0.2, offset=1.0, units="nm", navigate=False)]
    md = SimpleNamespace(as_dictionary=lambda: {"Signal": {"signal_type": "HAADF"},
                                                 "General": {"title": "t"}})
    sig = SimpleNamespace(data=np.ones((5, 6)), metadata=md,
                          axes_manager=SimpleNamespace(_axes=axes))
    h = load(sig)
    assert h.signal_type == "HAADF" and h.name == "t"
    assert h.axes[1].scale == pytest.approx(0.2) and h.axes[1].coords[0] == pytest.approx(1.0)
    with pytest.raises(LoadError, match="file path, a NumPy array"):
        load(12)


def test_dataset_validates_axes() -> None:
    with pytest.raises(ValueError, match="one Axis per data dimension"):
        Dataset(data=np.zeros((2, 3)), axes=[Axis("x")])
    with pytest.raises(ValueError, match="size 5"):
        Dataset(data=np.zeros((2, 3)), axes=[Axis("y", size=5), Axis("x")])
    d = Dataset(data=np.zeros((2, 3)), axes=[Axis("y"), Axis("x", scale=2.0)])
    np.testing.assert_allclose(d.axis("X").coords, [0, 2, 4])
    assert json.dumps({"repr": repr(d)})


def test_scan_size_calibrates_plain_hdf5(tmp_path: Path) -> None:
    # LibraryNet crops: nn_input (1, h, w, 1) with the field of view in pm as "scan size"
    path = tmp_path / "crop.hdf5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("nn_input", data=np.zeros((1, 128, 128, 1), np.float32))
        ds.attrs["scan size"] = "2000.0"
    d = load(path)
    assert [a.name for a in d.axes][1:3] == ["y", "x"]
    for ax in d.axes[1:3]:
        assert ax.units == "pm" and ax.kind == "spatial" and ax.scale == pytest.approx(2000 / 128)
    assert d.axes[0].units == "" and d.axes[3].units == ""
    # no number, or not one image: left uncalibrated
    with h5py.File(path, "a") as f:
        f["nn_input"].attrs["scan size"] = "unknown"
    assert all(a.units == "" for a in load(path).axes)
    with h5py.File(path, "w") as f:
        f.create_dataset("stack", data=np.zeros((3, 16, 16), np.float32)).attrs["scan size"] = 100
    assert all(a.units == "" for a in load(path).axes)


def test_scan_size_of_real_crops() -> None:
    folder = shared_data("stem_graphene_aicrystallographer", "LibraryNet", "library_refined_dev")
    d = load(folder / "Si1C4" / "53.hdf5")  # 256 px over 3100 pm
    assert d.shape == (1, 256, 256, 1)
    assert d.axes[2].scale == pytest.approx(3100 / 256) and d.axes[2].units == "pm"
