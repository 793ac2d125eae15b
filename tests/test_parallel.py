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
    assert not broken.ok and broken.error.startswith("ValueError: math domain error")
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
