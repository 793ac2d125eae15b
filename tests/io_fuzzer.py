"""Byte-mutation fuzzing of ``latentatlas.io.load``, shared by tests/test_io_fuzz.py and
benchmarks/io_fuzz.py (not a test module itself).

Each format starts from seed files (small generated ones, plus the real files in ../shared/data
when present), mutates them (bit flips, random bytes, "interesting" integers written over
header fields, truncation, deleted and duplicated chunks, numbers in text headers replaced by
huge or negative ones) and loads every mutant in a worker process whose address space is
capped (RLIMIT_AS) and whose every call has a time limit. Outcomes:

- ``dataset``: load returned a Dataset;  ``loaderror``: it raised LoadError (what we want for a
  damaged file);
- ``other``: any other exception (a bug: raw tracebacks must not reach the user);
- ``hang``: no answer within the time limit (the worker is killed and restarted);
- ``crash``: the worker died (a segfault or abort inside a C library).

Mutants can be replayed: every one is named by (format, run seed, index).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
SHARED_DATA = TESTS_DIR.parents[1] / "shared" / "data"

FORMATS = ("npy", "npz", "tif", "h5", "3ds", "zip", "dm3", "dm4", "emd", "hspy")

# Real seed files per format (paths under ../shared/data); small ones, so a mutant loads fast.
_REAL = {
    "npy": ["spm_spectroscopy/norm_polarization.npy",
            "stem_graphene_aicrystallographer/AtomNet/exp_data/G-Si-2nm.npy",
            "stem_graphene_aicrystallographer/AtomNet/exp_data/G-Si-2nm-coord.npy"],
    "npz": ["eels/SI_data.npz"],
    "tif": [],
    "h5": ["pfm_dtmicroscope/BEPS_PTO_50x50.h5", "pfm_dtmicroscope/PTO_Funakubo0001.h5",
           "spm_spectroscopy/bfo_iv_final.hf5",
           "stem_graphene_aicrystallographer/AtomNet/exp_data/G-Si-2nm.hdf5",
           "stem_graphene_aicrystallographer/LibraryNet/library_test/Si1C3/test-1.hdf5"],
    "3ds": ["spm_spectroscopy/Grid Spectroscopy002.3ds"],
    "zip": ["eels/velox_EELS_EDS.zip"],
    "dm3": ["eels/EELS_STO.dm3"],
    "dm4": ["eels/EELS_SI.dm4"],
    "emd": ["eels/EMDReader_SpectrumImage_Si.emd"],
    "hspy": ["stem_perovskite/stem_abf_data.hspy"],
}

# Markers of metadata inside the formats: mutations cluster around them, where a changed
# byte changes what the reader believes rather than a pixel value.
_SIGNATURES = (b"\x89HDF", b"OHDR", b"OCHK", b"TREE", b"HEAP", b"SNOD", b"BTHD", b"BTIN",
               b"BTLF", b"FRHP", b"FHDB", b"FHIB", b"GCOL", b"FSHD", b"FSSE", b"PK\x03\x04",
               b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"\x93NUMPY", b"{'descr'",
               b":HEADER_END:", b"Grid dim", b"Points=", b"# Parameters", b"II*\x00",
               b"MM\x00*", b"%%%%", b"TagGroup", b"DataType", b"Dimensions")

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                0x80000000, 0xFFFFFFFF, 10**9, 2**40, 2**62, 2**63 - 1, 2**64 - 1)
_NUMBERS = (b"0", b"-1", b"1", b"65536", b"999999999", b"1000000000000", b"1e9", b"nan", b"",
            b"-999999999", b"18446744073709551615")


def hot_offsets(data: bytes) -> list[int]:
    """Offsets of format metadata: the start, the end, and every signature found."""
    hot = [0, max(len(data) - 256, 0)]
    for sig in _SIGNATURES:
        for m in re.finditer(re.escape(sig), data[:4_000_000]):
            hot.append(m.start())
            if len(hot) > 4000:
                return hot
    return hot


Edit = tuple[int, int, bytes]  # buf[start:end] = new


def apply_edits(data: bytes, edits: list[Edit]) -> bytes:
    buf = bytearray(data)
    for a, b, new in edits:
        buf[a:b] = new
    return bytes(buf)


def mutate(data: bytes, rng: np.random.Generator, hot: list[int]) -> list[Edit]:
    """1-4 random edits of ``data``, most of them near a metadata offset in ``hot``; applied
    in order by ``apply_edits``."""
    buf = bytearray(data)
    edits: list[Edit] = []

    def splice(a: int, b: int, new: bytes) -> None:
        b = min(b, len(buf))
        edits.append((a, b, bytes(new)))
        buf[a:b] = new

    for _ in range(int(rng.integers(1, 5))):
        if not buf:
            splice(0, 0, rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
        n = len(buf)
        if rng.random() < 0.7 and hot:
            pos = int(np.clip(hot[int(rng.integers(len(hot)))] + int(rng.integers(-64, 512)), 0,
                              n - 1))
        else:
            pos = int(rng.integers(n))
        op = int(rng.integers(8))
        if op == 0:  # flip one bit
            splice(pos, pos + 1, bytes([buf[pos] ^ (1 << int(rng.integers(8)))]))
        elif op == 1:  # random bytes
            k = int(rng.integers(1, 9))
            splice(pos, pos + k, rng.integers(0, 256, k, dtype=np.uint8).tobytes())
        elif op in (2, 3):  # an interesting integer over a 1/2/4/8-byte field
            width = int(rng.choice([1, 2, 4, 8]))
            value = _INTERESTING[int(rng.integers(len(_INTERESTING)))] % (1 << (8 * width))
            order = "little" if rng.random() < 0.5 else "big"
            splice(pos, pos + width, value.to_bytes(width, order))
        elif op == 4:  # truncate
            splice(pos, n, b"")
        elif op == 5:  # delete a chunk
            splice(pos, pos + int(rng.integers(1, 256)), b"")
        elif op == 6:  # duplicate a chunk from elsewhere
            src = int(rng.integers(n))
            splice(pos, pos, bytes(buf[src:src + int(rng.integers(1, 256))]))
        else:  # a number in a text header replaced by an extreme one
            m = re.compile(rb"-?\d+(\.\d+)?").search(bytes(buf[pos:pos + 4096]))
            if m is not None:
                splice(pos + m.start(), pos + m.end(), _NUMBERS[int(rng.integers(len(_NUMBERS)))])
    return edits


# ------------------------------------------------------------------ seed files


def _write_3ds(path: Path, nx: int = 3, ny: int = 2, points: int = 8) -> None:
    channels = ["Current (A)", "Bias (V)"]
    header = (
        f'Grid dim="{nx} x {ny}"\r\nGrid settings=0;0;{nx * 1e-9};{ny * 1e-9};0\r\n'
        'Sweep Signal="Bias (V)"\r\nFixed parameters="Sweep Start;Sweep End"\r\n'
        'Experiment parameters="X (m);Y (m)"\r\n# Parameters (4 byte)=4\r\n'
        f'Points={points}\r\nChannels="{";".join(channels)}"\r\n:HEADER_END:\r\n'
    )
    rng = np.random.default_rng(2)
    body = rng.normal(size=(ny, nx, 4 + 2 * points)).astype(">f4").tobytes()
    path.write_bytes(header.encode("latin-1") + body)


def generated_seeds(fmt: str, folder: Path) -> list[Path]:
    """Small valid files of format ``fmt`` written with numpy/h5py/tifffile (none for the
    formats only rosettasciio reads, except .hspy)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(24, 20)).astype(np.float32)
    out: list[Path] = []
    if fmt == "npy":
        np.save(folder / "a.npy", img)
        np.save(folder / "b.npy", np.arange(60, dtype=">i8").reshape(3, 4, 5))
        out += [folder / "a.npy", folder / "b.npy"]
    elif fmt == "npz":
        np.savez(folder / "a.npz", data=img, energy=np.linspace(0, 1, 20))
        np.savez_compressed(folder / "b.npz", cube=rng.normal(size=(4, 5, 6)), x=np.arange(6.0))
        out += [folder / "a.npz", folder / "b.npz"]
    elif fmt == "tif":
        import tifffile

        tifffile.imwrite(folder / "a.tif", (img * 100).astype(np.uint16))
        tifffile.imwrite(folder / "b.tif", np.stack([img, img]), imagej=True,
                         resolution=(4.0, 4.0), metadata={"unit": "nm", "axes": "ZYX"})
        tifffile.imwrite(folder / "c.tif", img, compression="zlib", tile=(16, 16))
        out += [folder / "a.tif", folder / "b.tif", folder / "c.tif"]
    elif fmt == "h5":
        import h5py

        with h5py.File(folder / "plain.h5", "w") as f:
            f.create_dataset("image_data", data=img)
            f.create_dataset("small", data=np.arange(5.0))
            f["image_data"].attrs["metadata"] = json.dumps({"a": 1})
        with h5py.File(folder / "chunked.h5", "w", libver="latest") as f:
            g = f.create_group("Measurement_000/Channel_0")
            ds = g.create_dataset("Channel_0", data=img, chunks=(8, 8), compression="gzip")
            ds.attrs["quantity"] = "Phase"
            ds.attrs["data_type"] = "IMAGE"
            for i, name in enumerate("yx"):
                sc = g.create_dataset(name, data=np.arange(img.shape[i], dtype=float))
                sc.make_scale(name)
                ds.dims[i].attach_scale(sc)
        out += [folder / "plain.h5", folder / "chunked.h5"]
    elif fmt == "3ds":
        _write_3ds(folder / "g.3ds")
        out.append(folder / "g.3ds")
    elif fmt == "zip":
        np.save(folder / "inner.npy", img)
        with zipfile.ZipFile(folder / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(folder / "inner.npy", "inner.npy")
        out.append(folder / "a.zip")
    elif fmt == "hspy":
        try:
            from rsciio.hspy import file_writer
        except ImportError:
            return out
        signal_dict = {
            "data": img,
            "axes": [{"name": "y", "size": 24, "scale": 0.1, "offset": 0.0, "units": "nm",
                      "navigate": False},
                     {"name": "x", "size": 20, "scale": 0.1, "offset": 0.0, "units": "nm",
                      "navigate": False}],
            "metadata": {"General": {"title": "img"}, "Signal": {"signal_type": ""}},
            "original_metadata": {},
            "tmp_parameters": {},
            "attributes": {"_lazy": False},
            "package_info": {"name": "latentatlas", "version": "0"},
            "learning_results": {},
            "models": {},
        }
        file_writer(str(folder / "a.hspy"), signal_dict)
        out.append(folder / "a.hspy")
    return out


def real_seeds(fmt: str) -> list[Path]:
    return [SHARED_DATA / p for p in _REAL.get(fmt, []) if (SHARED_DATA / p).exists()]


# ------------------------------------------------------------------ the worker process


def _peak_rss() -> int:
    text = Path("/proc/self/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) * 1024 if m else 0


def _vm_size() -> int:
    m = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def _rss() -> int:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS (Linux), which is returned."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _rss()


def serve(reply_fd: int, extra_bytes: int) -> None:
    """Worker loop: read one JSON request per line on stdin, answer on ``reply_fd``."""
    import resource

    from latentatlas.io import LoadError, load

    for module in ("h5py", "tifffile", "rsciio.digitalmicrograph", "rsciio.emd", "rsciio.hspy"):
        try:
            __import__(module)
        except ImportError:
            pass
    limit = _vm_size() + extra_bytes
    if extra_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    reply = os.fdopen(reply_fd, "w", buffering=1)
    reply.write(json.dumps({"ready": True, "baseline": _peak_rss()}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        before = _reset_peak()
        start = time.perf_counter()
        try:
            kwargs = {} if request.get("max_bytes") is None else {"max_bytes": request["max_bytes"]}
            d = load(request["path"], **kwargs)
            kind, detail = "dataset", f"{d.data.dtype} {d.shape}"
        except LoadError as exc:
            kind, detail = "loaderror", str(exc)[:300]
        except BaseException as exc:  # noqa: BLE001  everything else is what we look for
            tb = traceback.extract_tb(exc.__traceback__)[-3:]
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb))
            kind, detail = "other", f"{type(exc).__module__}.{type(exc).__name__}: " \
                                    f"{str(exc)[:200]} [{where}]"
        peak = _peak_rss()
        reply.write(json.dumps({"kind": kind, "detail": detail, "peak": peak,
                                "extra": max(peak - before, 0),
                                "seconds": time.perf_counter() - start,
                                "room": limit - _vm_size()}) + "\n")


@dataclass
class Outcome:
    """kind and detail (see the module docstring); seconds the call took; peak: the worker's
    peak RSS during the call; extra: that peak above the RSS before the call."""

    kind: str
    detail: str = ""
    seconds: float = 0.0
    peak: int = 0
    extra: int = 0


class Worker:
    """A process that loads files under an address-space cap of ``extra_bytes`` above its
    start-up size; ``load`` kills and restarts it when a call exceeds ``time_limit``, and
    restarts it when less than a quarter of that room is left."""

    def __init__(self, extra_bytes: int = 1 << 30, time_limit: float = 10.0) -> None:
        self.extra_bytes = extra_bytes
        self.time_limit = time_limit
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self.baseline = 0  # peak RSS of the worker once started, before any load

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        # a PYTHONPATH given first wins (to fuzz another checkout of the package)
        env["PYTHONPATH"] = os.pathsep.join([p for p in (env.get("PYTHONPATH", ""),
                                                         str(SRC_DIR), str(TESTS_DIR)) if p])
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   MALLOC_ARENA_MAX="2")
        code = f"import io_fuzzer; io_fuzzer.serve({write_fd}, {self.extra_bytes})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(write_fd,), env=env,
        )
        os.close(write_fd)
        self._fd = read_fd
        self._buf = b""
        first = self._read_line(120.0)
        if not first:
            raise RuntimeError("the fuzz worker did not start")
        self.baseline = int(json.loads(first)["baseline"])

    def _read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    return ""
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except BrokenPipeError:
                    pass
            os.close(self._fd)
            self.proc = None

    def ensure_started(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()

    def load(self, path: Path, max_bytes: int | None = None) -> Outcome:
        self.ensure_started()
        assert self.proc is not None and self.proc.stdin is not None
        start = time.perf_counter()
        self.proc.stdin.write((json.dumps({"path": str(path), "max_bytes": max_bytes}) + "\n")
                              .encode())
        self.proc.stdin.flush()
        line = self._read_line(self.time_limit)
        if line is None:
            self.stop()
            return Outcome("hang", f"no answer in {self.time_limit:.0f} s",
                           time.perf_counter() - start)
        if line == "":
            code = self.proc.wait()
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            self.stop()
            return Outcome("crash", name, time.perf_counter() - start)
        r = json.loads(line)
        if r["room"] < self.extra_bytes // 4:
            # The address space fragments over thousands of loads (malloc arenas, numba, dask);
            # a fresh worker keeps every input judged under the same cap.
            self.stop()
        return Outcome(r["kind"], r["detail"], r["seconds"], r["peak"], r["extra"])

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ a fuzz run


@dataclass
class Failure:
    name: str
    outcome: Outcome
    data: bytes
    source: Path
    edits: list[Edit]


@dataclass
class Report:
    fmt: str
    n: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    worst_peak: int = 0
    worst_extra: int = 0
    worst_peak_input: str = ""
    slowest: float = 0.0
    baseline: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "format": self.fmt, "inputs": self.n, "outcomes": dict(self.counts),
            "peak_rss_bytes_worst": self.worst_peak,
            "extra_rss_bytes_worst": self.worst_extra, "worst_extra_input": self.worst_peak_input,
            "worker_baseline_rss_bytes": self.baseline,
            "slowest_call_s": round(self.slowest, 3),
            "failures": [f"{f.name}: {f.outcome.kind}: {f.outcome.detail}"
                         for f in self.failures[:20]],
        }


def mutants(fmt: str, seeds: list[Path], seed: int) -> Iterator[tuple[str, Path, list[Edit]]]:
    """Endless stream of (name, seed file, edits): mutants of the seed files, round robin."""
    rng = np.random.default_rng(seed)
    originals = [p.read_bytes() for p in seeds]
    hots = [hot_offsets(data) for data in originals]
    i = 0
    while True:
        k = i % len(originals)
        yield f"{fmt}:{seed}:{i}:{seeds[k].name}", seeds[k], mutate(originals[k], rng, hots[k])
        i += 1


def fuzz(fmt: str, seconds: float, seed: int = 0, worker: Worker | None = None,
         seeds: list[Path] | None = None, keep: int = 50) -> Report:
    """Load mutants of ``fmt`` for ``seconds``; returns counts and up to ``keep`` failures of
    each kind."""
    report = Report(fmt)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{fmt}-") as tmp:
        folder = Path(tmp)
        if seeds is None:
            seeds = generated_seeds(fmt, folder / "seeds") + real_seeds(fmt)
        if not seeds:
            return report
        own = worker is None
        w = worker or Worker()
        try:
            w.stop()  # every format starts in a fresh worker
            w.ensure_started()  # not on the clock
            deadline = time.monotonic() + seconds
            originals = {p: p.read_bytes() for p in seeds}
            for name, source, edits in mutants(fmt, seeds, seed):
                if time.monotonic() > deadline:
                    break
                data = apply_edits(originals[source], edits)
                path = folder / f"mutant{source.suffix}"
                path.write_bytes(data)
                outcome = w.load(path)
                report.baseline = max(report.baseline, w.baseline)
                report.n += 1
                report.counts[outcome.kind] += 1
                report.slowest = max(report.slowest, outcome.seconds)
                report.worst_peak = max(report.worst_peak, outcome.peak)
                if outcome.extra > report.worst_extra:
                    report.worst_extra, report.worst_peak_input = outcome.extra, name
                if outcome.kind not in ("dataset", "loaderror") and \
                        sum(f.outcome.kind == outcome.kind for f in report.failures) < keep:
                    report.failures.append(Failure(name, outcome, data, source, edits))
        finally:
            if own:
                w.stop()
    return report
