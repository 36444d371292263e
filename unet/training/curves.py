"""Training metrics: one CSV row per step, and the training curve as a PNG.

``metrics.csv`` columns: ``step`` (1-based), ``loss`` (the step's batch loss), ``lr`` (the
learning rate the step used), ``seconds`` (training time so far, summed over resumed jobs,
excluding queue waits and start-up) and ``val_pixel_error`` (held-out pixel error after the step,
empty where none was computed).  "Time to pixel error <= X" is :func:`time_to_error`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

COLUMNS = ("step", "loss", "lr", "seconds", "val_pixel_error")

Row = dict[str, Any]


def write_csv(path: str | Path, rows: Sequence[Row]) -> None:
    """Write the metrics rows atomically (tmp + rename); missing values become empty cells."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    os.replace(tmp, path)


def time_to_error(rows: Sequence[Row], threshold: float) -> float | None:
    """Training seconds until the validation pixel error first fell to ``threshold`` or below
    (``None`` if it never did).

    >>> time_to_error([{"seconds": 5.0, "val_pixel_error": 0.2},
    ...                {"seconds": 9.0, "val_pixel_error": 0.1}], 0.15)
    9.0
    """
    for row in rows:
        err = row.get("val_pixel_error")
        if err is not None and err <= threshold:
            return float(row["seconds"])
    return None


def plot(path: str | Path, rows: Sequence[Row]) -> None:
    """Loss (per step and smoothed) and validation pixel error against the step, as a PNG."""
    path = Path(path)
    steps = np.array([r["step"] for r in rows], dtype=float)
    loss = np.array([r["loss"] for r in rows], dtype=float)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    window = max(1, len(rows) // 50)
    faint = window > 1  # the smoothed curve carries the trend
    ax.plot(
        steps,
        loss,
        color="tab:blue",
        alpha=0.3 if faint else 1.0,
        linewidth=0.5 if faint else 1.5,
        label="loss (step)",
    )
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"loss (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted cross-entropy")
    if len(loss) and np.all(loss > 0) and loss.max() / loss.min() > 10:
        ax.set_yscale("log")
    val = [(r["step"], r["val_pixel_error"]) for r in rows if r.get("val_pixel_error") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if val:
        twin = ax.twinx()
        (line,) = twin.plot(*zip(*val, strict=True), "o-", color="tab:red", markersize=3)
        twin.set_ylabel("validation pixel error", color="tab:red")
        best = min(v for _, v in val)
        handles.append(line)
        labels.append(f"val pixel error (best {best:.4f})")
    ax.legend(handles, labels, loc="upper right", fontsize="small")
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
