"""Benchmark ``unet.weights.border.weight_map`` against the naive per-cell recipe on ISBI 2012
labels.

The naive recipe computes one full-image ``distance_transform_edt`` per cell and keeps the two
smallest distances per pixel: ``O(cells * pixels)``, i.e. quadratic in the image area.  Ours is one
distance transform per cell inside its bounding box grown by the cutoff (linear in the area).

Images: one 512 x 512 slice (1x), a 2 x 2 mosaic of 4 slices (4x) and a 4 x 4 mosaic of 16
slices (16x, 2048 x 2048); instances are connected components per slice, numbered across slices.

    .venv/bin/python bench/weights.py --out bench/out/weights.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from unet.weights.border import class_weights, instances_from_mask, weight_map

ROOT = Path(__file__).resolve().parents[1]


def naive_weight_map(labels: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """Eq. 2 of the paper with one full-image distance transform per cell (no cutoff)."""
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for cell in np.unique(labels[labels > 0]):
        dist = ndi.distance_transform_edt(labels != cell)
        np.minimum(d2, np.maximum(d1, dist), out=d2)
        np.minimum(d1, dist, out=d1)
    w_bg, w_fg = class_weights(labels)
    border = w0 * np.exp(-np.square(d1 + d2) / (2 * sigma**2))
    return np.where(labels == 0, w_bg + border, w_fg).astype(np.float32)


def mosaic(slices: np.ndarray, side: int) -> np.ndarray:
    """(side^2, Y, X) -> (side * Y, side * X), slices in row-major order."""
    _, y, x = slices.shape
    return slices.reshape(side, side, y, x).transpose(0, 2, 1, 3).reshape(side * y, side * x)


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[list[float], np.ndarray]:
    """Wall-clock times in ms of ``repeats`` calls, and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times, result


def main(
    labels_path: Path,
    out: Path,
    repeats: int,
    naive_scales: list[int],
    naive_budget_s: float,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> dict:
    stack = tifffile.imread(labels_path)
    rows = []
    naive_ms_per_cell_px: float | None = None
    for scale in (1, 4, 16):
        side = math.isqrt(scale)
        labels = mosaic(instances_from_mask(stack[:scale]), side)
        cells = len(np.unique(labels)) - 1
        ours_times, ours = timed(lambda lab=labels: weight_map(lab, w0=w0, sigma=sigma), repeats)
        row = {
            "scale": scale,
            "pixels": int(labels.size),
            "cells": int(cells),
            "ours_ms": statistics.median(ours_times),
            "ours_times_ms": ours_times,
            "naive_ms": None,
            "naive_times_ms": [],
            "ratio": None,
            "max_abs_diff": None,
        }
        if scale in naive_scales:
            # the naive cost is ~ cells * pixels: estimate it from the previous naive run
            estimate_s = (
                naive_ms_per_cell_px * cells * labels.size / 1e3 if naive_ms_per_cell_px else 0.0
            )
            runs = 1 if estimate_s * repeats > naive_budget_s else repeats
            naive_times, naive = timed(lambda lab=labels: naive_weight_map(lab, w0, sigma), runs)
            naive_ms_per_cell_px = statistics.median(naive_times) / (cells * labels.size)
            row.update(
                naive_ms=statistics.median(naive_times),
                naive_times_ms=naive_times,
                ratio=statistics.median(naive_times) / row["ours_ms"],
                max_abs_diff=float(np.abs(naive - ours).max()),
            )
        rows.append(row)

    result = {
        "benchmark": "weight_map vs naive per-cell distance transforms",
        "labels": str(labels_path),
        "w0": w0,
        "sigma": sigma,
        "repeats": repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "numpy": np.__version__,
        "rows": rows,
    }
    print_table(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'scale':>5} {'pixels':>9} {'cells':>6} {'naive ms':>12} {'(runs)':>6} "
        f"{'ours ms':>9} {'ratio':>8} {'max |diff|':>11}"
    )
    print(header)
    print("-" * len(header))
    base = rows[0]["ours_ms"]
    for r in rows:
        naive = f"{r['naive_ms']:12.1f}" if r["naive_ms"] is not None else f"{'-':>12}"
        ratio = f"{r['ratio']:7.1f}x" if r["ratio"] is not None else f"{'-':>8}"
        diff = f"{r['max_abs_diff']:11.2e}" if r["max_abs_diff"] is not None else f"{'-':>11}"
        print(
            f"{r['scale']:>4}x {r['pixels']:>9} {r['cells']:>6} {naive} "
            f"{len(r['naive_times_ms']):>6} {r['ours_ms']:9.1f} {ratio} {diff}"
        )
    print(
        "ours vs 1x: "
        + ", ".join(f"{r['scale']}x area -> {r['ours_ms'] / base:.1f}x time" for r in rows)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--labels", type=Path, default=ROOT / "data" / "isbi2012" / "train-labels.tif"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "weights.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--naive-scales",
        type=lambda s: [int(v) for v in s.split(",") if v],
        default=[1, 16],
        help="areas (1, 4, 16) at which to time the naive recipe",
    )
    parser.add_argument(
        "--naive-budget-s",
        type=float,
        default=120.0,
        help="time the naive recipe once, not --repeats times, where that would exceed this",
    )
    args = parser.parse_args()
    main(args.labels, args.out, args.repeats, args.naive_scales, args.naive_budget_s)
