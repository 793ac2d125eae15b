"""The Dask execution layer of the batch runner: jobs on a local cluster give what they give
one after the other, in job order, and a failing job does not stop the others."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")

from latentatlas.cli import app  # noqa: E402
from latentatlas.datasets.lattices import lattice_stack  # noqa: E402
from latentatlas.descriptors.atoms import find_atoms  # noqa: E402
from latentatlas.pipelines.parallel import Job, run_many  # noqa: E402


def _jobs() -> list[Job]:
    frames, _ = lattice_stack(4, shape=(96, 96), seed=0, kind="square", spacing=9.0,
                              gaussian_noise=0.05)
    jobs = [Job(f"frame-{i}", find_atoms, (f,), {"method": "peaks"}) for i, f in enumerate(frames)]
    jobs.insert(2, Job("broken", math.sqrt, (-1.0,)))
    return jobs


def test_local_cluster_equals_serial() -> None:
    jobs = _jobs()
    serial = run_many(jobs)
    parallel = run_many(jobs, scheduler="local", workers=2)
    assert [o.name for o in parallel] == [j.name for j in jobs]
    for s, p in zip(serial, parallel, strict=True):
        assert s.ok == p.ok
        if s.ok:
            np.testing.assert_array_equal(s.value.positions, p.value.positions)
    broken = parallel[2]
    assert not broken.ok and broken.error_type == "ValueError"
    assert broken.error.startswith("math domain error")
    assert "Traceback" in broken.traceback
    # the jobs ran in worker processes, not here
    import os

    assert all(not o.worker.endswith(f":{os.getpid()}") for o in parallel)
    assert all(o.worker.endswith(f":{os.getpid()}") for o in serial)


def test_bad_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        run_many([Job("a", abs, (1,)), Job("a", abs, (2,))])
    with pytest.raises(ValueError, match="scheduler"):
        run_many([Job("a", abs, (1,))], scheduler=3)


@pytest.mark.skipif(not os.environ.get("LATENTATLAS_SLOW"),
                    reason="a local cluster for whole unmix jobs takes ~1 min on 2 shared "
                           "cores; set LATENTATLAS_SLOW=1 (test_run_flags_choose_the_cluster "
                           "checks the wiring)")
def test_batch_runner_on_a_local_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """run_batch with scheduler='local': the rows of the serial run, a bad file reported."""
    from latentatlas.datasets.spectral import make_spectral_cube
    from latentatlas.pipelines.batch import run_batch

    for i in range(3):
        cube = make_spectral_cube("eels", shape=(12, 12), n_channels=48, n_components=2,
                                  seed=i).cube
        np.save(tmp_path / f"cube{i}.npy", cube)
    np.save(tmp_path / "cube9.npy", np.zeros(3))  # not a cube
    inputs = [str(tmp_path / "cube*.npy")]
    opts = {"method": "pca", "n_components": 2}
    serial = run_batch("unmix", inputs, tmp_path / "serial", opts)
    # the same batch from the command line, `latentatlas run CONFIG -j 2`: a local cluster
    (tmp_path / "batch.toml").write_text('command = "unmix"\ninputs = ["cube*.npy"]\n'
                                         'out = "local"\n[options]\nmethod = "pca"\n'
                                         'n_components = 2\n')
    res = CliRunner().invoke(app, ["run", str(tmp_path / "batch.toml"), "-j", "2", "-q"])
    assert res.exit_code == 1, res.output  # the bad file
    with open(tmp_path / "local" / "summary.csv", newline="") as fh:
        local = list(csv.DictReader(fh))
    assert [r["status"] for r in local] == [r["status"] for r in serial.rows]
    assert [r["input"] for r in local if r["status"] != "ok"] == [str(tmp_path / "cube9.npy")]
    for a, b in zip(serial.rows, local, strict=True):
        if a["status"] == "ok":
            assert a["reconstruction error"] == pytest.approx(float(b["reconstruction error"]),
                                                              rel=1e-5)
    assert (tmp_path / "local" / "cube1" / "index.html").exists()
    assert (tmp_path / "local" / "summary.csv").exists()


def test_run_flags_choose_the_cluster(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`run CONFIG -j N` / `--scheduler ADDRESS` replace the file's scheduler and workers;
    workers alone mean a local cluster; no flags keep the file's (serial by default)."""
    from latentatlas.pipelines import batch

    seen: list[tuple[object, int]] = []

    def fake_run_batch(*args, scheduler=None, workers=2, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((scheduler, workers))
        return batch.BatchRun("unmix", [], tmp_path)

    monkeypatch.setattr(batch, "run_batch", fake_run_batch)
    plain = tmp_path / "plain.toml"
    plain.write_text('command = "unmix"\ninputs = []\n')
    remote = tmp_path / "remote.toml"
    remote.write_text('command = "unmix"\ninputs = []\nscheduler = "tcp://h:8786"\n'
                      'workers = 8\n')
    for config, flags in ((plain, []), (plain, ["-j", "3"]), (remote, []), (remote, ["-j", "4"]),
                          (plain, ["--scheduler", "tcp://x:1"])):
        res = CliRunner().invoke(app, ["run", str(config), *flags, "-q"])
        assert res.exit_code == 0, res.output
    assert seen == [(None, 2), ("local", 3), ("tcp://h:8786", 8), ("tcp://h:8786", 4),
                    ("tcp://x:1", 2)]
    res = CliRunner().invoke(app, ["run", str(plain), "-j", "-1"])
    assert res.exit_code == 2 and "--workers must be >= 0" in res.output
