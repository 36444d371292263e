"""Benchmark ``unet.training.augment.augment`` against the reference recipe it replaced.

The reference (kept below, as it was) builds float64 coordinates for every pixel, upsamples the
coarse elastic grid with ``ndi.zoom`` on the full field, and calls ``ndi.map_coordinates`` once
per array (order 3 with its own float64 spline prefilter for the image, order 0 for labels and
weights).  Both draw the same random numbers in the same order, so for one seed they compute the
same transform: the table also gives the largest image difference and the number of label and
weight pixels that differ.

Old and new run alternately on the same inputs and seeds (timings on a shared machine are noisy:
medians of ``--repeats`` calls, one core, one sample per call).

    .venv/bin/python bench/augment.py --out bench/out/augment.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import ndimage as ndi

from unet.training.augment import AugmentConfig, augment

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("2D paper tile", (572, 572), AugmentConfig()),
    ("2D rotation + shift only", (572, 572), AugmentConfig(elastic=False, shift=10.0)),
    ("3D, y-x field", (20, 132, 132), AugmentConfig()),
    ("3D, 3D field", (20, 132, 132), AugmentConfig(elastic_3d=True)),
]


def reference_augment(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The previous ``augment``: full-field ``ndi.zoom`` and three ``ndi.map_coordinates``."""
    image, weights = image.astype(np.float32), weights.astype(np.float32)
    if config.flips:
        for axis in (-2, -1):
            if rng.random() < 0.5:
                image, labels, weights = (np.flip(a, axis) for a in (image, labels, weights))
    coords = _reference_coordinates(image.shape, rng, config)
    if coords is not None:
        image = ndi.map_coordinates(image, coords, order=3, mode="mirror", output=np.float32)
        labels = ndi.map_coordinates(labels, coords, order=0, mode="mirror")
        weights = ndi.map_coordinates(weights, coords, order=0, mode="mirror")
    image = _reference_grey_values(image, rng, config)
    return np.array(image, order="C"), np.array(labels, order="C"), np.array(weights, order="C")


def _reference_coordinates(
    shape: tuple[int, ...], rng: np.random.Generator, config: AugmentConfig
) -> np.ndarray | None:
    angle = math.radians(rng.uniform(-config.rotation, config.rotation)) if config.rotation else 0
    shift = rng.uniform(-config.shift, config.shift, size=2) if config.shift else np.zeros(2)
    elastic = config.elastic and config.elastic_sigma > 0
    if angle == 0 and not shift.any() and not elastic:
        return None
    coords = np.indices(shape, dtype=np.float64)
    cy, cx = ((s - 1) / 2 for s in shape[-2:])
    y, x = coords[-2] - cy, coords[-1] - cx
    cos, sin = math.cos(angle), math.sin(angle)
    coords[-2] = cos * y - sin * x + cy + shift[0]
    coords[-1] = sin * y + cos * x + cx + shift[1]
    if elastic:
        field_shape = shape if config.elastic_3d else shape[-2:]
        grid = (config.elastic_grid,) * len(field_shape)
        zoom = [s / g for s, g in zip(field_shape, grid, strict=True)]
        for axis in range(len(shape) - len(field_shape), len(shape)):
            coarse = rng.normal(0.0, config.elastic_sigma, size=grid)
            coords[axis] += ndi.zoom(coarse, zoom, order=3)
    return coords


def _reference_grey_values(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig
) -> np.ndarray:
    if config.gamma != (1.0, 1.0):
        image = np.clip(image, 0.0, 1.0) ** np.float32(rng.uniform(*config.gamma))
    if config.contrast != (1.0, 1.0):
        mean = image.mean(dtype=np.float64)
        image = (image - mean) * rng.uniform(*config.contrast) + mean
    if config.brightness != (0.0, 0.0):
        image = image + rng.uniform(*config.brightness)
    return image.astype(np.float32, copy=False)


def sample(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random image in [0, 1], its thresholded instance labels and random weights."""
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(rng.random(shape), 3).astype(np.float32)
    image = (image - image.min()) / np.ptp(image)
    labels = ndi.label(image > 0.5)[0].astype(np.int32)
    return image, labels, (1 + 9 * rng.random(shape)).astype(np.float32)


def main(out: Path, repeats: int) -> dict:
    rows = []
    for name, shape, config in CASES:
        image, labels, weights = sample(shape, seed=0)
        times: dict[str, list[float]] = {"old": [], "new": []}
        diff, label_diff, weight_diff = 0.0, 0, 0
        for seed in range(-1, repeats):  # seed -1: warm-up, not timed
            results = {}
            for key, fn in (("old", reference_augment), ("new", augment)):
                start = time.perf_counter()
                results[key] = fn(image, labels, weights, np.random.default_rng(seed + 1), config)
                if seed >= 0:
                    times[key].append((time.perf_counter() - start) * 1e3)
            (old_i, old_l, old_w), (new_i, new_l, new_w) = results["old"], results["new"]
            diff = max(diff, float(np.abs(old_i - new_i).max()))
            label_diff += int(np.count_nonzero(old_l != new_l))
            weight_diff += int(np.count_nonzero(old_w != new_w))
        old_ms, new_ms = statistics.median(times["old"]), statistics.median(times["new"])
        rows.append(
            {
                "case": name,
                "shape": list(shape),
                "config": {k: getattr(config, k) for k in ("rotation", "shift", "elastic")}
                | {"elastic_3d": config.elastic_3d, "flips": config.flips},
                "old_ms": old_ms,
                "new_ms": new_ms,
                "ratio": old_ms / new_ms,
                "new_samples_per_s": 1e3 / new_ms,
                "old_times_ms": times["old"],
                "new_times_ms": times["new"],
                "max_abs_image_diff": diff,
                "label_pixels_differing": label_diff,
                "weight_pixels_differing": weight_diff,
                "pixels_compared": int(np.prod(shape)) * (repeats + 1),
            }
        )
    result = {
        "benchmark": "augment vs the previous zoom + map_coordinates recipe, one core",
        "repeats": repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "rows": rows,
    }
    print_table(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'case':<26} {'shape':>14} {'ms old':>8} {'ms new':>8} {'ratio':>7} "
        f"{'new /s':>7} {'max|dimg|':>10} {'label/weight px differing':>26}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        differing = (
            f"{r['label_pixels_differing']}/{r['weight_pixels_differing']} "
            f"of {r['pixels_compared']}"
        )
        print(
            f"{r['case']:<26} {shape:>14} {r['old_ms']:8.1f} {r['new_ms']:8.1f} "
            f"{r['ratio']:6.1f}x {r['new_samples_per_s']:7.0f} {r['max_abs_image_diff']:10.1e} "
            f"{differing:>26}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "augment.json")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    main(args.out, args.repeats)
