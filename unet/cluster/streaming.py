"""A bounded-memory way to stream millions of tasks through a Dask cluster (or threads, or this
process), and the progress line of a blockwise run.

``map_bounded`` keeps at most ``max_in_flight`` futures alive and submits the next item only
when one finishes, so neither the client nor the scheduler ever holds a task per block of a
terabyte volume (the task-graph blow-up of ``map_overlap``, dask #3671).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from unet.errors import InputError

log = logging.getLogger("unet.prediction.run")


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
