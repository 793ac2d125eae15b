"""Many jobs at once: in this process, on a local Dask cluster, or on any Dask cluster.

:func:`run_many` is the execution layer of batch runs (``run_batch(..., scheduler=...)`` in
:mod:`latentatlas.pipelines.batch`, ``scheduler``/``workers`` in a ``latentatlas run`` TOML
file): it takes a list of :class:`Job` (a function and its arguments, e.g. ``analyze`` of
one file into its own results folder) and runs them

- ``scheduler=None``: one after the other in this process;
- ``scheduler="local"``: on a local Dask cluster of ``workers`` processes with
  ``threads_per_worker`` threads each (torch, BLAS and OpenMP limited to that many), so
  ``workers`` files are analysed at the same time;
- ``scheduler="tcp://host:8786"`` (any Dask distributed scheduler address) or a
  ``distributed.Client``: on that cluster. Under SLURM, ``dask-jobqueue`` starts one::

      from dask_jobqueue import SLURMCluster
      from distributed import Client
      cluster = SLURMCluster(cores=8, memory="32GB", walltime="02:00:00",
                             job_extra_directives=["--gres=gpu:1"])
      cluster.scale(jobs=10)                  # ten SLURM jobs, one Dask worker each
      outcomes = run_many(jobs, scheduler=Client(cluster))

  (``dask-scheduler`` and ``dask-worker`` started by hand work the same way: pass the
  scheduler's address.) Training one model on many GPUs is not a batch job: it stays on
  Lightning Fabric (``devices``, ``num_nodes``, ``strategy="ddp"``; see
  :mod:`latentatlas.train.plan`).

A job that fails does not stop the others: its :class:`JobOutcome` carries the error. The
function must be importable on the workers (a library function such as
``latentatlas.pipelines.analyze.analyze``), and what it returns travels back to this process,
so jobs that write results folders should return something small (the folder's path).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Job", "JobOutcome", "run_many"]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """One unit of work: ``func(*args, **kwargs)``, known by ``name`` (unique in a batch)."""

    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What became of a job: its value, or the error (message, exception type, traceback)."""

    name: str
    ok: bool
    value: Any = None
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    seconds: float = 0.0
    worker: str = ""


def _execute(job: Job, threads: int | None) -> JobOutcome:
    """Run one job, catching its failure (runs on a worker, or here when serial)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    where = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        value = job.func(*job.args, **job.kwargs)
    except Exception as exc:  # the batch goes on; the outcome says what failed
        return JobOutcome(job.name, False, error=str(exc), error_type=type(exc).__name__,
                          traceback=traceback.format_exc(),
                          seconds=time.perf_counter() - start, worker=where)
    return JobOutcome(job.name, True, value=value, seconds=time.perf_counter() - start,
                      worker=where)


def _check_jobs(jobs: Sequence[Job]) -> None:
    names = [j.name for j in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"job names must be unique; repeated: {', '.join(dupes[:5])}")
    for j in jobs:
        if not callable(j.func):
            raise ValueError(f"job {j.name!r}: func must be callable, got {type(j.func).__name__}")


def run_many(
    jobs: Sequence[Job],
    scheduler: str | Any | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    *,
    progress: bool = False,
) -> list[JobOutcome]:
    """Run ``jobs``; the outcomes come back in the order of ``jobs``.

    scheduler : ``None`` (serial, in this process), ``"local"`` (a local Dask cluster of
        ``workers`` processes, started and stopped here), a Dask scheduler address
        (``"tcp://10.0.0.5:8786"``) or a ``distributed.Client``.
    workers, threads_per_worker : size of the local cluster; ``threads_per_worker`` also
        limits torch's threads in every job (also when serial).
    progress : a progress bar over finished jobs.
    """
    jobs = list(jobs)
    _check_jobs(jobs)
    if workers < 1 or threads_per_worker < 1:
        raise ValueError(f"workers and threads_per_worker must be >= 1, got {workers}, "
                         f"{threads_per_worker}")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="jobs", disable=not progress, leave=False)
    if scheduler is None:
        outcomes = []
        for job in jobs:
            outcomes.append(_execute(job, threads_per_worker))
            bar.update(1)
        bar.close()
        return outcomes

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("running jobs on a Dask cluster needs distributed: "
                          "pip install 'latentatlas[scale]'") from exc
    cluster = None
    own_client = True
    if isinstance(scheduler, Client):
        client, own_client = scheduler, False
    elif scheduler == "local":
        env = {var: str(threads_per_worker) for var in _THREAD_VARS}
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                               processes=True, dashboard_address=None, env=env)
        client = Client(cluster)
    elif isinstance(scheduler, str):
        client = Client(scheduler)
    else:
        raise ValueError(f"scheduler must be None, 'local', a scheduler address or a "
                         f"distributed.Client, got {scheduler!r}")
    try:
        log.info("running %d jobs on %s", len(jobs), client)
        futures = [client.submit(_execute, job, threads_per_worker, key=f"latentatlas-{i}-"
                                 f"{job.name}", pure=False) for i, job in enumerate(jobs)]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[JobOutcome | None] = [None] * len(jobs)
        for future in as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker died or the job could not be sent
                results[i] = JobOutcome(jobs[i].name, False, error=str(exc),
                                        error_type=type(exc).__name__,
                                        traceback=traceback.format_exc())
            bar.update(1)
        return [r for r in results if r is not None]
    finally:
        bar.close()
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
