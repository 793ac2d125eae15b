"""Fuzzing every reader (issue 15): for a few seconds per format, mutants of small generated
files (and of the real files in ../shared/data when present) are loaded in a worker under an
address-space cap and a time limit; every outcome must be a Dataset or a LoadError.

LATENTATLAS_FUZZ_SECONDS sets the time per format (default 3; the CI total stays under a
minute), LATENTATLAS_FUZZ_SEED the stream of mutants (default 0: the same stream every run, so
CI cannot turn red by chance; a faster machine only goes further along it; set a seed to
explore, as benchmarks/io_fuzz.py's long campaign does). A failure names its
mutant (format:seed:index:seed file), which ``io_fuzzer.mutants`` replays."""

from __future__ import annotations

import os

import pytest

import io_fuzzer

SECONDS = float(os.environ.get("LATENTATLAS_FUZZ_SECONDS", "3"))


@pytest.fixture(scope="module")
def worker() -> io_fuzzer.Worker:
    w = io_fuzzer.Worker(extra_bytes=1 << 30, time_limit=10.0)
    yield w
    w.stop()


@pytest.mark.parametrize("fmt", io_fuzzer.FORMATS)
def test_every_mutant_is_a_dataset_or_a_load_error(fmt: str, worker: io_fuzzer.Worker) -> None:
    seed = int(os.environ.get("LATENTATLAS_FUZZ_SEED", "0"))
    report = io_fuzzer.fuzz(fmt, SECONDS, seed=seed, worker=worker)
    if report.n == 0:
        pytest.skip(f"no seed files for .{fmt} (its real files live in ../shared/data)")
    assert report.n >= 5, report.summary()
    assert report.counts["dataset"] + report.counts["loaderror"] == report.n, \
        "\n".join(f"{f.name}: {f.outcome.kind}: {f.outcome.detail}" for f in report.failures)
