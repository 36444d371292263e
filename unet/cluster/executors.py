"""Where blocks run: a Dask cluster (local, SLURM via dask-jobqueue, or an existing scheduler),
or this process; and (:mod:`unet.cluster.streaming`, importable from here) a bounded-memory way to
stream millions of tasks through it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from unet.cluster.credentials import worker_credentials
from unet.cluster.streaming import Outcome, Progress, map_bounded
from unet.errors import InputError

log = logging.getLogger("unet.prediction.run")

# the streaming part lives in unet.cluster.streaming; its names stay importable from here
__all__ = [
    "IN_PROCESS",
    "LOCAL",
    "LOCAL_DASHBOARD",
    "SLURM",
    "WORKER_CONFIG",
    "WORKER_ENV",
    "Outcome",
    "Progress",
    "check_cluster",
    "check_counts",
    "connect",
    "is_address",
    "map_bounded",
    "slurm_options",
]

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


def check_cluster(cluster: str) -> None:
    """The ``cluster`` setting of a blockwise run: ``local``, ``slurm``, ``none`` or an address."""
    if cluster not in ("local", "slurm", "none") and not is_address(cluster):
        raise InputError(
            "cluster must be 'local', 'slurm', 'none' or a scheduler address "
            f"(tls://host:port), got {cluster!r}"
        )


def check_counts(config: object, names: Iterable[str]) -> None:
    """Each named setting of ``config`` is ``None`` or an integer >= 1 (workers, threads, ...)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")


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
    from distributed import Client

    if is_address(cluster):
        _check_client_security(cluster)
        with Client(cluster) as client:
            yield client
        return
    with ExitStack() as stack:
        if cluster == LOCAL:
            made, security = _local_cluster(workers, blocks, processes, dashboard)
        elif cluster == SLURM:
            made, security = _slurm_cluster(stack, workers, threads, slurm, blocks, dashboard)
        else:
            raise InputError(
                f"cluster must be 'local', 'slurm', 'none' or a scheduler address, got {cluster!r}"
            )
        stack.enter_context(made)
        client = stack.enter_context(Client(made, security=security))
        log.info("Dask scheduler %s, dashboard %s", made.scheduler_address, client.dashboard_link)
        yield client


def _check_client_security(address: str) -> None:
    """Warn about a scheduler address without TLS; refuse a tls:// one without credentials."""
    from distributed.security import Security

    if not address.startswith("tls://"):
        log.warning(
            "%s: not a tls:// address: anyone who reaches that scheduler can run code "
            "as its user (docs/cluster.md)",
            address,
        )
    elif Security().get_connection_args("client").get("ssl_context") is None:
        raise InputError(
            f"{address}: no TLS credentials for the client: set distributed.comm.tls.ca-file "
            "and distributed.comm.tls.client.cert/key in the Dask config (docs/cluster.md)"
        )


def _local_cluster(workers: int, blocks: int, processes: bool, dashboard: str) -> tuple[Any, Any]:
    """A LocalCluster on 127.0.0.1 with temporary TLS credentials (threads: in-process)."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security.temporary() if processes else None
    with dask.config.set(WORKER_CONFIG):  # nannies pass it on to worker processes
        made = LocalCluster(
            n_workers=workers,
            threads_per_worker=blocks,
            processes=processes,
            host="127.0.0.1" if processes else None,
            dashboard_address=dashboard,
            security=security,
        )
    return made, security


def _slurm_cluster(
    stack: ExitStack,
    workers: int,
    threads: int,
    slurm: Mapping[str, Any] | None,
    blocks: int,
    dashboard: str,
) -> tuple[Any, Any]:
    """A dask-jobqueue SLURMCluster of ``workers`` jobs; its TLS credentials live in a shared
    temporary directory for as long as ``stack``."""
    import dask
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
    return made, security
