"""The training loop's bookkeeping: its clock (training seconds summed over resumed jobs,
validation excluded), losses read back from the device, and the progress log line."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

log = logging.getLogger("unet.training.loop")


def every(step: int, period: int) -> bool:
    """Whether ``step`` is a multiple of ``period`` (0: never)."""
    return period > 0 and step % period == 0


def synchronise(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Read the losses of ``pending`` rows from the device (waits for the GPU) and hand the
    rows over; ``FloatingPointError`` if training diverged."""
    rows = [{**row, "loss": float(row["loss"])} for row in pending]
    pending.clear()
    for row in rows:
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(
                f"training diverged: loss {row['loss']} at step "
                f"{row['step']} (lr {row['lr']:.3g}); lower the lr"
            )
    return rows


class Clock:
    """Training seconds (summed over resumed jobs, validation excluded), log and save timers."""

    def __init__(self, seconds: float, step: int) -> None:
        self.offset = seconds
        self.began = self.last_save = time.monotonic()
        self.last_log = (self.began, step)

    def seconds(self) -> float:
        return self.offset + time.monotonic() - self.began

    def since_save(self) -> float:
        return time.monotonic() - self.last_save

    def saved(self) -> None:
        self.last_save = time.monotonic()

    @contextmanager
    def paused(self) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.offset -= time.monotonic() - t0


def log_progress(rows: list[dict[str, Any]], steps: int, clock: Clock) -> None:
    """One log line: the mean loss and the rate since the previous line, and the ETA."""
    now, step = time.monotonic(), rows[-1]["step"]
    then, then_step = clock.last_log
    clock.last_log = (now, step)
    n = step - then_step
    rate = n / (now - then) if now > then else float("nan")
    eta = (steps - step) / rate if rate > 0 else float("nan")
    hms = (
        "?"
        if not math.isfinite(eta)
        else (f"{int(eta) // 3600}:{int(eta) // 60 % 60:02d}:{int(eta) % 60:02d}")
    )
    val = rows[-1]["val_pixel_error"]
    log.info(
        "step %d/%d  loss %.4f  lr %.3g  %.2f steps/s  ETA %s%s",
        step,
        steps,
        float(np.mean([r["loss"] for r in rows[-max(n, 1) :]])),
        rows[-1]["lr"],
        rate,
        hms,
        f"  val pixel error {val:.4f}" if val is not None else "",
    )
