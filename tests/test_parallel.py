"""The Dask execution layer of the batch runner: jobs on a local cluster give what they give
one after the other, in job order, and a failing job does not stop the others."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("distributed")

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
    local = run_batch("unmix", inputs, tmp_path / "local", opts, scheduler="local", workers=2)
    assert [r["status"] for r in local.rows] == [r["status"] for r in serial.rows]
    assert len(local.failed) == 1 and "cube9" in local.failed[0]["input"]
    for a, b in zip(serial.rows, local.rows, strict=True):
        if a["status"] == "ok":
            assert a["reconstruction error"] == pytest.approx(b["reconstruction error"],
                                                              rel=1e-5)
    assert (tmp_path / "local" / "cube1" / "index.html").exists()
    assert (tmp_path / "local" / "summary.csv").exists()
