from __future__ import annotations

import doctest
import gc
import logging
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster
from distributed.comm.core import CommClosedError, FatalCommClosedError
from distributed.security import Security

from unet.cluster import executors

_lock = threading.Lock()
_running = {"now": 0, "peak": 0}


def _slow_square(x: int) -> int:
    with _lock:
        _running["now"] += 1
        _running["peak"] = max(_running["peak"], _running["now"])
    time.sleep(0.01)
    with _lock:
        _running["now"] -= 1
    if x == 7:
        raise ValueError("seven")
    return x * x


def test_doctests() -> None:
    assert doctest.testmod(executors).failed == 0


def test_map_bounded_in_process_reports_errors_and_stops() -> None:
    out = list(executors.map_bounded(None, _slow_square, range(10), 1))
    assert [o.value for o in out if o.error is None] == [x * x for x in range(10) if x != 7]
    assert [str(o.error) for o in out if o.error is not None] == ["seven"]
    stopped = list(executors.map_bounded(None, _slow_square, range(10), 1, stop=lambda: True))
    assert stopped == []
    with pytest.raises(ValueError, match="max_in_flight must be >= 1, got 0"):
        list(executors.map_bounded(None, _slow_square, range(3), 0))


def test_map_bounded_in_threads_caps_and_stops() -> None:
    _running["peak"] = 0
    out = list(executors.map_bounded(None, _slow_square, range(12), 3))
    assert sorted(o.item for o in out) == list(range(12)) and 1 < _running["peak"] <= 3
    assert [o.item for o in out if o.error is not None] == [7]
    failed: list[int] = []
    for o in executors.map_bounded(None, _slow_square, range(7, 40), 2, stop=lambda: bool(failed)):
        if o.error is not None:
            failed.append(o.item)
    assert failed == [7]


def test_map_bounded_dask_caps_tasks_in_flight() -> None:
    submitted = []

    def items():  # type: ignore[no-untyped-def]
        for i in range(40):
            submitted.append(i)
            yield i

    _running["peak"] = 0
    with executors.connect("local", workers=4, processes=False) as client:
        seen = 0
        for outcome in executors.map_bounded(client, _slow_square, items(), 3):
            seen += 1
            assert len(submitted) <= seen + 3  # the source is consumed lazily
            assert outcome.error is None or outcome.item == 7
        assert seen == 40 and _running["peak"] <= 3
        done: list[int] = []
        for outcome in executors.map_bounded(
            client, _slow_square, range(7, 40), 2, stop=lambda: bool(done)
        ):
            if outcome.error is not None:
                done.append(outcome.item)
        assert done == [7]


def test_cluster_choice_and_slurm_options(caplog: pytest.LogCaptureFixture) -> None:
    assert executors.is_address("tcp://10.0.0.1:8786") and not executors.is_address("local")
    opts = executors.slurm_options(8, {"memory": "32GB", "queue": "gpu"})
    assert opts == {
        "cores": 1,
        "processes": 1,
        "job_cpu": 8,
        "memory": "32GB",
        "queue": "gpu",
        "job_script_prologue": [executors.WORKER_ENV],
        "worker_extra_args": ["--dashboard-address", "127.0.0.1:0"],
    }
    with pytest.raises(ValueError, match=r"must not set \['protocol', 'security'\]: every run"):
        executors.slurm_options(1, {"security": True, "protocol": "tcp://"})
    with (
        pytest.raises(ValueError, match="cluster must be 'local', 'slurm', 'none'"),
        executors.connect("pbs"),
    ):
        pass
    progress = executors.Progress(4, interval=1e-9)
    with caplog.at_level(logging.INFO, logger="unet.prediction.run"):
        progress.update(1_000_000)
    assert "1/4 blocks (25.0%)" in caplog.text and "Mvox/s, ETA" in caplog.text


def test_slurm_job_script() -> None:
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    opts = executors.slurm_options(
        6,
        {
            "memory": "16GB",
            "queue": "gpu",
            "walltime": "01:00:00",
            "job_extra_directives": ["--gres=gpu:1"],
        },
    )
    with SLURMCluster(**opts) as cluster:
        script = cluster.job_script()
    assert "--cpus-per-task=6" in script and "--gres=gpu:1" in script
    assert "--nthreads 1" in script
    assert executors.WORKER_ENV in script  # workers run without Dask's statistical profiler


@pytest.mark.parametrize("processes", [False, True])
def test_local_workers_run_without_the_profiler(processes: bool) -> None:
    with executors.connect("local", workers=1, processes=processes) as client:
        profiled = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
    assert list(profiled.values()) == [False]


@pytest.fixture
def short_connect_timeout() -> Iterator[None]:
    """A refused connection fails at once; this only bounds a test that would hang."""
    with dask.config.set({"distributed.comm.timeouts.connect": "5s"}):
        yield


def _assert_refused_without_credentials(address: str) -> None:
    """Plain TCP, other TLS credentials, no credentials: every client is turned away.

    ``set_as_default=False``: a refused Client is never closed, and when the garbage collector
    closes it later (in whichever test is running then) it would put back the
    ``scheduler: dask.distributed`` it saw at its creation, pointing at no cluster (seen twice in
    CI, in tests/io/test_sources.py)."""
    assert address.startswith("tls://")
    with pytest.raises(CommClosedError, match="Connection reset by peer|closed"):
        Client(address.replace("tls://", "tcp://"), timeout=5, set_as_default=False)
    with pytest.raises(FatalCommClosedError, match="TLS certificate does not match"):
        Client(address, security=Security.temporary(), timeout=5, set_as_default=False)
    with pytest.raises(TypeError, match="TLS expects a `ssl_context` argument"):
        Client(address, timeout=5, set_as_default=False)


def test_local_worker_processes_accept_only_clients_with_the_run_credentials(
    short_connect_timeout: None,
) -> None:
    with executors.connect("local", workers=1, processes=True) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(pow, 3, 2).result() == 9
        workers = client.scheduler_info()["workers"]
        assert [w.split(":")[:2] for w in workers] == [["tls", "//127.0.0.1"]]
        with Client(address, security=client.security, timeout=5) as other:
            assert other.submit(pow, 2, 5).result() == 32  # the credentials are all it takes
        _assert_refused_without_credentials(address)
        with pytest.raises(ValueError, match=f"{address}: no TLS credentials for the client"):
            with executors.connect(address):
                pass
    gc.collect()  # closes the refused clients now, as it would in some later test
    assert dask.config.get("scheduler", None) is None  # none of them put back a dead scheduler


def test_local_threads_open_no_port() -> None:
    with executors.connect("local", workers=1, processes=False) as client:
        assert client.scheduler.address.startswith("inproc://")
        assert client.submit(pow, 3, 2).result() == 9


def test_slurm_scheduler_takes_tls_workers_read_private_files_removed_after(
    tmp_path: Path, short_connect_timeout: None
) -> None:
    """No worker job is submitted (workers=0): the scheduler, its job script and the files."""
    pytest.importorskip("dask_jobqueue")
    slurm = {
        "memory": "1GB",
        "shared_temp_directory": str(tmp_path),
        "scheduler_options": {"host": "127.0.0.1"},  # this test's traffic stays on loopback
    }
    with executors.connect("slurm", workers=0, slurm=slurm) as client:
        address = client.scheduler.address
        (folder,) = tmp_path.iterdir()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert sorted(p.name for p in folder.iterdir()) == ["ca_file.pem", "cert.pem", "key.pem"]
        assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
        assert "PRIVATE KEY" in (folder / "key.pem").read_text()
        script = client.cluster.job_script()
        assert f"--tls-key {folder}/key.pem" in script and "--protocol tls://" in script
        assert f"--tls-ca-file {folder}/ca_file.pem" in script
        assert "PRIVATE KEY" not in script  # the key travels as a file, never in the script
        assert "--dashboard-address 127.0.0.1:0" in script
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.scheduler_info()["address"] == address
        _assert_refused_without_credentials(address)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError), executors.connect("slurm", workers=0, slurm=slurm):
        raise KeyError("failed inside the run")
    assert list(tmp_path.iterdir()) == []  # removed after an error too


def test_a_scheduler_address_without_tls_is_used_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with LocalCluster(
        n_workers=1, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        with (
            caplog.at_level(logging.WARNING, logger="unet.prediction.run"),
            executors.connect(cluster.scheduler_address) as client,
        ):
            assert client.submit(pow, 2, 3).result() == 8
    assert f"{cluster.scheduler_address}: not a tls:// address: anyone who reaches" in caplog.text


@pytest.mark.parametrize("value", ["8787", "127.0.0.1", "localhost:port"])
def test_dashboard_address_must_be_host_and_port(value: str) -> None:
    from unet.prediction.config import PredictConfig

    assert PredictConfig(dashboard_address=":8787").dashboard_address == ":8787"
    with pytest.raises(ValueError, match=f"dashboard_address must be host:port .*got '{value}'"):
        PredictConfig(dashboard_address=value)
