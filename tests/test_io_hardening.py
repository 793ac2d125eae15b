"""latentatlas.io does not trust what a file declares (issue 15): every reproduction of the
probe as a test. Files that once hung, exhausted memory or raised a raw exception load in a
worker process under an address-space cap and a time limit (tests/io_fuzzer.py), so a
regression fails the test instead of hanging or killing the test run."""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from io_fuzzer import SHARED_DATA, Worker, apply_edits
from latentatlas.io import LoadError, load, load_all

REGRESSIONS = Path(__file__).parent / "data" / "io_regressions"
MiB = 1 << 20


@pytest.fixture(scope="module")
def worker() -> Worker:
    """A loader under RLIMIT_AS = start-up size + 1 GiB, 10 s per call."""
    w = Worker(extra_bytes=1 << 30, time_limit=10.0)
    yield w
    w.stop()


def _write_3ds(path: Path, n_params: int | str = 4, nx: int = 3, ny: int = 2,
               points: int = 8) -> None:
    header = (
        f'Grid dim="{nx} x {ny}"\r\nGrid settings=0;0;1e-9;1e-9;0\r\n'
        'Sweep Signal="Bias (V)"\r\nFixed parameters="Sweep Start;Sweep End"\r\n'
        f'Experiment parameters="X (m);Y (m)"\r\n# Parameters (4 byte)={n_params}\r\n'
        f'Points={points}\r\nChannels="Current (A);Bias (V)"\r\n:HEADER_END:\r\n'
    )
    body = np.zeros(nx * ny * (4 + 2 * points), ">f4").tobytes()
    path.write_bytes(header.encode("latin-1") + body)


def test_nanonis_declaring_a_billion_parameters(tmp_path: Path, worker: Worker) -> None:
    """It used to build 10^9 parameter names before checking the file's size."""
    path = tmp_path / "g.3ds"
    _write_3ds(path, n_params=10**9)
    outcome = worker.load(path)
    assert outcome.kind == "loaderror", outcome
    assert outcome.extra < 64 * MiB
    _write_3ds(path, n_params=4)
    assert worker.load(path).kind == "dataset"


def test_npz_reads_only_the_selected_member(tmp_path: Path) -> None:
    """A 64 MiB member (64 kB on disk) stays unread when a small one is selected: the budget,
    smaller than the big member, would refuse it."""
    small = np.arange(12.0).reshape(3, 4)
    np.savez_compressed(tmp_path / "a.npz", data=small, big=np.zeros((8 * MiB,)))
    d = load(tmp_path / "a.npz", channel="data", max_bytes=MiB)
    np.testing.assert_array_equal(d.data, small)
    with pytest.raises(LoadError, match=r"a\.npz.*'big'.*memory budget"):
        load(tmp_path / "a.npz", channel="big", max_bytes=MiB)


def test_npz_member_declaring_more_than_it_holds(tmp_path: Path) -> None:
    """A member whose .npy header declares 3.2 TB but which holds 32 bytes."""
    member = tmp_path / "data.npy"
    with open(member, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (400_000_000_000,)})
        f.write(bytes(32))
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as zf:
        zf.write(member, "data.npy")
    with pytest.raises(LoadError, match=r"b\.npz.*more than its .* bytes hold"):
        load(tmp_path / "b.npz")
    member.rename(tmp_path / "c.npy")  # the same lie in a plain .npy
    with pytest.raises(LoadError, match=r"c\.npy: truncated"):
        load(tmp_path / "c.npy")


def test_hdf5_declaring_320_gb(tmp_path: Path, worker: Worker) -> None:
    """A chunked dataset never written reads as its fill value: 320 GB from a tiny file."""
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("image_data", shape=(200_000, 200_000), dtype="f8", chunks=(64, 64))
    assert path.stat().st_size < 8192
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "memory budget" in outcome.detail, outcome
    assert outcome.extra < 64 * MiB
    with pytest.raises(LoadError, match=r"big\.h5.*dataset /image_data .*max_bytes="):
        load(path)


def _tiff_declaring(path: Path, width: int, height: int) -> None:
    """A valid 16 x 16 TIFF whose image width and height tags are then rewritten."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tf.pages.first.tags["ImageWidth"].overwrite(width)
        tf.pages.first.tags["ImageLength"].overwrite(height)


def test_tiff_declaring_3_gib(tmp_path: Path, worker: Worker) -> None:
    path = tmp_path / "big.tif"
    _tiff_declaring(path, 65_536, 49_152)  # 3 GiB of uint8 in a file of a few hundred bytes
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "memory budget" in outcome.detail, outcome
    assert outcome.extra < 64 * MiB


def test_tiff_data_past_the_end(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(LoadError, match=r"cut\.tif.*past the end of the file"):
        load(path)


def test_tiff_directory_loop(tmp_path: Path, worker: Worker) -> None:
    """A TIFF whose second image directory points at itself made tifffile loop forever."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "loop.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    raw = bytearray(path.read_bytes())
    (first,) = struct.unpack_from("<I", raw, 4)
    (n_tags,) = struct.unpack_from("<H", raw, first)
    looped = len(raw)  # an empty directory at the end that names itself as the next one
    struct.pack_into("<I", raw, first + 2 + 12 * n_tags, looped)
    raw += struct.pack("<HI", 0, looped)
    path.write_bytes(bytes(raw))
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "loops back" in outcome.detail, outcome


def _zip_of_zeros(path: Path, n_bytes: int) -> None:
    inner = path.parent / "inner.npy"
    with open(inner, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (n_bytes // 8,)})
        chunk = bytes(MiB)
        for _ in range(n_bytes // MiB):
            f.write(chunk)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(inner, "inner.npy")
    inner.unlink()


def test_zip_expansion_is_capped_and_cleaned_up(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64 MiB member (64 kB zipped) under a 16 MiB budget: refused before extraction; a member
    expanding past what it declares: refused while streaming. No temporary file stays."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = tmp_path / "bomb.zip"
    _zip_of_zeros(path, 64 * MiB)
    with pytest.raises(LoadError, match=r"bomb\.zip.*'inner\.npy'.*memory budget"):
        load(path, max_bytes=16 * MiB)
    assert load(path, max_bytes=256 * MiB).shape == (8 * MiB,)
    original = path.read_bytes()

    def declare(n_bytes: int) -> None:
        raw = bytearray(original)
        struct.pack_into("<I", raw, raw.rfind(b"PK\x01\x02") + 24, n_bytes)
        struct.pack_into("<I", raw, raw.find(b"PK\x03\x04") + 22, n_bytes)
        path.write_bytes(bytes(raw))

    declare(2_600_000_000)  # 2.6 GB declared: refused under a 1 GiB budget, before extraction
    with pytest.raises(LoadError, match=r"bomb\.zip.*2\.4 GiB.*memory budget"):
        load(path, max_bytes=1 << 30)
    assert load(path, max_bytes=4 << 30).shape == (8 * MiB,)  # only the 64 MiB there are is read
    declare(MiB)  # 1 MiB declared: the copy stops there and the checksum fails
    with pytest.raises(LoadError, match=r"bomb\.zip"):
        load(path)
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_and_devices_are_refused_without_blocking(tmp_path: Path, worker: Worker) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    outcome = worker.load(fifo)  # an open() for reading would block until a writer comes
    assert outcome.kind == "loaderror" and "FIFO" in outcome.detail, outcome
    if Path("/dev/zero").exists():
        link = tmp_path / "zero.3ds"
        link.symlink_to("/dev/zero")
        outcome = worker.load(link)
        assert outcome.kind == "loaderror" and "device" in outcome.detail, outcome
    with pytest.raises(LoadError, match=r"pipe\.npy is a FIFO"):
        load(fifo)


def test_hdf5_external_storage_is_refused(tmp_path: Path) -> None:
    """A dataset whose bytes live in another local file must not load them as image data."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(64, dtype="<f8").tobytes())
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("image_data", shape=(8, 8), dtype="<f8",
                         external=[(str(secret), 0, 8 * 64)])
    with pytest.raises(LoadError, match=r"ext\.h5.*/image_data keeps its data in other files"):
        load(path)


def test_hdf5_external_link_and_virtual_dataset_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.ones((4, 4)))
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f.create_dataset("image_data", data=np.zeros((4, 4)))
        f["elsewhere"] = h5py.ExternalLink(str(other), "/data")
    with pytest.raises(LoadError, match=r"linked\.h5: /elsewhere is an external link"):
        load(linked)
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(4, 4))
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("image_data", layout)
    with pytest.raises(LoadError, match=r"virtual\.h5.*other files"):
        load(virtual)


def _h5_with_string(path: Path) -> tuple[bytearray, int]:
    """A plain HDF5 file with a variable-length string, and the offset of its global heap."""
    with h5py.File(path, "w") as f:
        f.create_dataset("image_data", data=np.ones((4, 4)))
        f["image_data"].attrs["metadata"] = '{"a": 1}'
    raw = bytearray(path.read_bytes())
    return raw, raw.find(b"GCOL")


def test_hdf5_global_heap_that_hangs_libhdf5(tmp_path: Path, worker: Worker) -> None:
    """A free-space object of size 0 in a global heap: libhdf5 spins forever reading the
    string (found by the fuzzer; the files it found are in tests/data/io_regressions)."""
    path = tmp_path / "heap.h5"
    raw, at = _h5_with_string(path)
    # heap header (16 bytes), object 1 (16-byte header + 8 bytes of text), then free space
    free = at + 16 + 16 + 8
    assert struct.unpack_from("<H", raw, free)[0] == 0
    struct.pack_into("<Q", raw, free + 8, 0)
    path.write_bytes(bytes(raw))
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "global heap" in outcome.detail, outcome
    raw, at = _h5_with_string(path)
    struct.pack_into("<Q", raw, at + 8, 1 << 40)  # a collection of 1 TiB
    path.write_bytes(bytes(raw))
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "global heap" in outcome.detail, outcome


def test_hdf5_variable_length_item_declaring_700_mb(tmp_path: Path, worker: Worker) -> None:
    """libhdf5 allocates the length a variable-length item declares before it reads the item
    (found by the fuzzer: a 700 MB rise in one call)."""
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("image_data", data=np.ones((4, 4)))
        f.create_dataset("metadata", data='{"a": 1}', dtype=h5py.string_dtype())
        offset = f["metadata"].id.get_offset()
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, offset, 700_000_000)
    path.write_bytes(bytes(raw))
    outcome = worker.load(path)
    assert outcome.kind == "loaderror" and "variable-length item" in outcome.detail, outcome
    assert outcome.extra < 64 * MiB


def test_budget_counts_every_channel_of_load_all(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.zeros((256, 256)))  # 512 kiB each
        f.create_dataset("b", data=np.zeros((256, 256)))
    assert load(path, max_bytes=600_000).shape == (256, 256)
    with pytest.raises(LoadError, match="memory budget"):
        load_all(path, max_bytes=600_000)
    with pytest.raises(ValueError, match="max_bytes"):
        load(path, max_bytes=-1)


def test_raw_exceptions_become_load_errors(tmp_path: Path) -> None:
    """zlib.error, h5py's RuntimeError/KeyError and the like name the file and the format."""
    path = tmp_path / "a.npz"
    np.savez_compressed(path, data=np.arange(1000.0))
    raw = bytearray(path.read_bytes())
    start = raw.find(b"data.npy") + len(b"data.npy")
    raw[start + 20:start + 60] = bytes(range(40))  # garbage inside the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(LoadError, match=r"a\.npz as NumPy archive") as info:
        load(path)
    assert info.value.__cause__ is not None  # the original exception stays chained


def _regressions(tmp: Path) -> list[Path]:
    """The stored mutants of generated files, and the mutants of real files rebuilt from their
    edits (the real files are not ours to redistribute, even mutated)."""
    files = sorted(p for p in REGRESSIONS.iterdir() if p.suffix not in (".txt", ".json", ".md"))
    for i, entry in enumerate(json.loads((REGRESSIONS / "real_mutants.json").read_text())):
        source = SHARED_DATA / entry["source"]
        if source.exists():
            edits = [(a, b, bytes.fromhex(new)) for a, b, new in entry["edits"]]
            path = tmp / f"real{i}{source.suffix}"
            path.write_bytes(apply_edits(source.read_bytes(), edits))
            files.append(path)
    return files


def test_fuzz_regressions_never_fail_raw(worker: Worker, tmp_path: Path) -> None:
    """Inputs the fuzzer found hanging, exhausting memory or raising raw exceptions (on the
    code before issue 15; tests/data/io_regressions/README.md)."""
    files = _regressions(tmp_path)
    assert len(files) >= 15
    bad = []
    for path in files:
        outcome = worker.load(path)
        if outcome.kind not in ("dataset", "loaderror") or outcome.extra > 512 * MiB:
            bad.append(f"{path.name}: {outcome.kind} {outcome.detail} "
                       f"peak +{outcome.extra / MiB:.0f} MiB")
    assert not bad, "\n".join(bad)


def test_memory_error_inside_a_reader_is_a_load_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import latentatlas.io._simple as simple

    def boom(*args: object, **kwargs: object) -> None:
        raise MemoryError(math.inf)

    np.save(tmp_path / "a.npy", np.zeros(3))
    monkeypatch.setattr(simple.np, "fromfile", boom)
    with pytest.raises(LoadError, match=r"a\.npy.*more memory than there is"):
        load(tmp_path / "a.npy")
