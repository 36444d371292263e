"""Where blocks run: a Dask cluster (local, SLURM via dask-jobqueue, or an existing scheduler),
or this process; and a bounded-memory way to stream millions of tasks through it.

``map_bounded`` keeps at most ``max_in_flight`` futures alive and submits the next item only
when one finishes, so neither the client nor the scheduler ever holds a task per block of a
terabyte volume (the task-graph blow-up of ``map_overlap``, dask #3671).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from unet.cluster.credentials import worker_credentials
from unet.errors import InputError

log = logging.getLogger("unet.prediction.run")

LOCAL, SLURM, IN_PROCESS = "local", "slurm", "none"
LOCAL_DASHBOARD = "127.0.0.1:0"  # a free port, on localhost only (reach it by an SSH tunnel)

# Dask's statistical worker profiler samples every thread's stack every 10 ms and keeps an hour
# of samples: an 82k-block prediction peaked at 798 MB RSS with it and 595 MB without
# (bench/predict_memory.py --full, both with the since-fixed unbatched marker read), and it
# takes the GIL from the I/O threads.
# Workers started here run without it; a cluster given by address is left as it is.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
WORKER_ENV = "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"
# glibc's trim threshold is left alone in this process (Dask's nannies set
# MALLOC_TRIM_THRESHOLD_=65536 for worker processes): lowered to 64 KB through mallopt, the
# 20 GB thread-worker bench held 358 instead of 392 MB but computed blocks 2.5x slower, as
# every buffer over 128 KB then becomes an mmap/munmap pair.


def is_address(cluster: str) -> bool:
    """True for a scheduler address such as ``tls://10.0.0.1:8786``."""
    return "://" in cluster


def slurm_options(
    workers_threads: int, options: Mapping[str, Any], blocks: int = 1
) -> dict[str, Any]:
    """``dask_jobqueue.SLURMCluster`` keyword arguments: one worker per job (one GPU each) with
    ``blocks`` Dask threads and ``workers_threads`` CPUs for torch and I/O; ``options`` (queue,
    account, memory, walltime, job_extra_directives, ...) override.

    ``job_script_prologue`` gets :data:`WORKER_ENV` first; a worker's own HTTP server
    (metrics) listens on its node's localhost only.

    >>> opts = slurm_options(8, {"memory": "32GB", "job_script_prologue": ["module load cuda"]})
    >>> opts["job_cpu"], opts["job_script_prologue"][1], opts["worker_extra_args"]
    (8, 'module load cuda', ['--dashboard-address', '127.0.0.1:0'])
    """
    taken = sorted({"security", "protocol"} & set(options))
    if taken:
        raise InputError(
            f"predict.slurm must not set {taken}: every run makes its own TLS credentials"
        )
    prologue = [WORKER_ENV, *options.get("job_script_prologue", [])]
    extra = ["--dashboard-address", "127.0.0.1:0", *options.get("worker_extra_args", [])]
    return {
        "cores": blocks,
        "processes": 1,
        "job_cpu": workers_threads,
        **dict(options),
        "job_script_prologue": prologue,
        "worker_extra_args": extra,
    }


@contextmanager
def connect(
    cluster: str,
    workers: int = 1,
    threads: int = 1,
    processes: bool = True,
    slurm: Mapping[str, Any] | None = None,
    blocks: int = 1,
    dashboard: str = LOCAL_DASHBOARD,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``cluster`` (``None`` for ``"none"``: run here).

    ``local`` starts ``workers`` workers of ``blocks`` threads each (``processes=False``:
    threads of this process); ``slurm`` submits ``workers`` SLURM jobs; anything with ``://``
    connects to a running scheduler, whose workers are left alone on exit.

    A cluster started here accepts only clients and workers that hold its temporary TLS
    credentials (mutual TLS: any other connection is refused), and its dashboard listens on
    ``dashboard`` (``host:port``; default: a free port on localhost).  Local worker
    processes also listen on 127.0.0.1 only; local threads talk in-process (``inproc://``).
    A scheduler given by address is protected by what it was started with: the client uses
    Dask's configured TLS settings (``distributed.comm.tls.*``).
    """
    if cluster == IN_PROCESS:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster
    from distributed.security import Security

    if is_address(cluster):
        if not cluster.startswith("tls://"):
            log.warning(
                "%s: not a tls:// address: anyone who reaches that scheduler can run code "
                "as its user (docs/cluster.md)",
                cluster,
            )
        elif Security().get_connection_args("client").get("ssl_context") is None:
            raise InputError(
                f"{cluster}: no TLS credentials for the client: set distributed.comm.tls.ca-file "
                "and distributed.comm.tls.client.cert/key in the Dask config (docs/cluster.md)"
            )
        with Client(cluster) as client:
            yield client
        return
    with ExitStack() as stack:
        if cluster == LOCAL:
            security = Security.temporary() if processes else None
            with dask.config.set(WORKER_CONFIG):  # nannies pass it on to worker processes
                made: Any = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=blocks,
                    processes=processes,
                    host="127.0.0.1" if processes else None,
                    dashboard_address=dashboard,
                    security=security,
                )
        elif cluster == SLURM:
            from dask_jobqueue import SLURMCluster

            options = slurm_options(threads, slurm or {}, blocks)
            shared = options.get("shared_temp_directory") or dask.config.get(
                "jobqueue.slurm.shared-temp-directory"
            )
            parent = os.path.expandvars(os.path.expanduser(shared)) if shared else os.getcwd()
            security = stack.enter_context(worker_credentials(parent))
            options["scheduler_options"] = {
                "dashboard_address": dashboard,
                **options.get("scheduler_options", {}),
            }
            with dask.config.set(WORKER_CONFIG):
                made = SLURMCluster(**options, security=security)
            made.scale(n=workers)
            log.info("submitted %d SLURM worker jobs:\n%s", workers, made.job_script())
        else:
            raise InputError(
                f"cluster must be 'local', 'slurm', 'none' or a scheduler address, got {cluster!r}"
            )
        stack.enter_context(made)
        client = stack.enter_context(Client(made, security=security))
        log.info("Dask scheduler %s, dashboard %s", made.scheduler_address, client.dashboard_link)
        yield client


@dataclass(frozen=True)
class Outcome:
    """The result of one item: ``value`` or the ``error`` it raised."""

    item: Any
    value: Any = None
    error: BaseException | None = None


def map_bounded(
    client: Any,
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    max_in_flight: int,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Outcome]:
    """Run ``fn`` on each item and yield outcomes as they finish, with at most ``max_in_flight``
    tasks submitted at any time (``client=None``: in this process, in threads if more than 1).

    ``stop()`` is asked before each new submission; once true, the tasks in flight finish and
    the rest are not started.  Errors are yielded, never raised, so the caller can mark them.
    """
    if max_in_flight < 1:
        raise InputError(f"max_in_flight must be >= 1, got {max_in_flight}")
    if client is None and max_in_flight == 1:
        for item in items:
            if stop():
                return
            try:
                yield Outcome(item, fn(item))
            except Exception as err:  # reported per item by the caller
                yield Outcome(item, error=err)
        return
    if client is None:
        yield from _map_threads(fn, iter(items), max_in_flight, stop)
        return

    from distributed import as_completed

    source = iter(items)
    running = as_completed()
    owner: dict[str, Any] = {}

    def submit_next() -> bool:
        for item in source:
            future = client.submit(fn, item, pure=False)
            owner[future.key] = item
            running.add(future)
            return True
        return False

    for _ in range(max_in_flight):
        if not submit_next():
            break
    for future in running:
        item = owner.pop(future.key)
        try:
            outcome = Outcome(item, future.result())
        except Exception as err:  # the task's error, or its cancellation (lost worker)
            outcome = Outcome(item, error=err)
        future.release()
        yield outcome
        if not stop():
            submit_next()


def _map_threads(
    fn: Callable[[Any], Any], source: Iterator[Any], width: int, stop: Callable[[], bool]
) -> Iterator[Outcome]:
    """``map_bounded`` in a pool of ``width`` threads of this process."""
    with ThreadPoolExecutor(width, thread_name_prefix="unet-block") as pool:
        owner: dict[Future[Any], Any] = {}

        def submit_next() -> None:
            for item in source:
                owner[pool.submit(fn, item)] = item
                return

        for _ in range(width):
            submit_next()
        while owner:
            done, _ = wait(owner, return_when=FIRST_COMPLETED)
            for future in done:
                item = owner.pop(future)
                try:
                    yield Outcome(item, future.result())
                except Exception as err:  # reported per item by the caller
                    yield Outcome(item, error=err)
                if not stop():
                    submit_next()


class Progress:
    """Log lines ``blocks done/total, Mvox/s, ETA`` every ``interval`` seconds and at the end."""

    def __init__(self, total: int, interval: float) -> None:
        self.total, self.interval = total, interval
        self.blocks = self.voxels = 0
        self.start = self.last = time.perf_counter()

    def update(self, voxels: int) -> None:
        self.blocks += 1
        self.voxels += voxels
        if time.perf_counter() - self.last >= self.interval:
            self.report()

    def report(self) -> None:
        self.last = now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        eta = (self.total - self.blocks) * elapsed / max(self.blocks, 1)
        log.info(
            "predict: %d/%d blocks (%.1f%%), %.2f Mvox/s, ETA %s",
            self.blocks,
            self.total,
            100 * self.blocks / max(self.total, 1),
            self.voxels / elapsed / 1e6,
            _dt.timedelta(seconds=round(eta)),
        )
