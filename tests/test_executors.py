from __future__ import annotations

import doctest
import logging
import threading
import time

import pytest

from unet import executors

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
        done = []
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
    }
    with (
        pytest.raises(ValueError, match="cluster must be 'local', 'slurm', 'none'"),
        executors.connect("pbs"),
    ):
        pass
    progress = executors.Progress(4, interval=1e-9)
    with caplog.at_level(logging.INFO, logger="unet.predict"):
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
