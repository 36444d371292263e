"""Choose the segmentation's kernel settings on labelled validation slices (rule
``segment_tune``, :func:`unet.stages.tune.tune_stage`): a grid search scored by the
foreground-restricted V_rand (:func:`unet.evaluation.instances.v_rand`).

The watershed mask ``threshold``, ``seed_distance`` and ``merge_threshold`` follow the
calibration of the model that predicted ``p``: on ISBI validation slices 21-22 one demo model
chose 0.8 / 16 / 0.05 and its successor 0.05 / 8 / 0.4, and each one's choice segmented the
other's predictions worse than plain thresholding (bench/segment_isbi.py).  So a run whose
dataset has labels and ``val_slices`` chooses them for its own model, on slices that neither
trained it nor are scored at the end, and records the grid.

Scores: ``2d`` per-section V_rand (objects never span sections); ``3d`` and ``threshold`` the
V_rand of the 3D objects.  ``threshold`` searches the level only.  Thresholding's best level
(``2d``: 4-connected components per section, else 6-connected in 3D) is recorded beside the
choice, so that a user sees what the watershed gained.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unet.errors import InputError
from unet.evaluation.instances import objects_v_rand, truth_objects
from unet.segmentation.kernels import (
    SECTION,
    agglomerate_levels,
    fragments,
    threshold_components,
)

GRID: dict[str, tuple[float, ...]] = {
    "threshold": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "seed_distance": (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0),
    "merge_threshold": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
}
"""The searched values: 11 x 10 x 9 = 990 points (``threshold`` mode: the 11 levels).  The
``seed_distance`` values are voxels; in ``3d``, where the run measures distances in the voxel
size, :func:`choose` scales them by the finest axis's (``sampling``)."""

# y, x extent of the central crop that is searched: bounds the search's time on large sections
MAX_EXTENT = 1024


def crop(shape: Sequence[int], extent: int = MAX_EXTENT) -> tuple[slice, ...]:
    """The central ``extent``-wide y, x window of a ``(z, y, x)`` shape, every section.

    >>> crop((2, 3000, 500), 1024)
    (slice(0, 2, None), slice(988, 2012, None), slice(0, 500, None))
    """
    if len(shape) != 3 or extent < 1:
        raise InputError(f"crop needs a (z, y, x) shape and an extent >= 1, got {shape}, {extent}")
    z, *yx = shape
    # an axis longer than extent loses (n - extent) // 2 voxels before the window
    starts = [max(0, (n - extent) // 2) for n in yx]
    return (slice(0, z), *(slice(s, s + min(n, extent)) for s, n in zip(starts, yx, strict=True)))


def scorer(truth: np.ndarray, mode: str) -> Callable[[np.ndarray], float]:
    """The V_rand of label images against ``truth``: per section in ``2d``, of the 3D objects
    otherwise (the truth's objects are found once, not per grid point)."""
    per_section = mode == "2d"
    objects = truth_objects(truth, per_section=per_section)
    return lambda labels: objects_v_rand(labels, objects, per_section)


def components(p: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    """Thresholding's objects: 4-connected per section in ``2d``, 6-connected in 3D else."""
    if mode == "2d":
        labels, _ = ndimage.label(p > threshold, SECTION)
        return np.asarray(labels)
    return threshold_components(p, threshold)


def sweep(
    p: np.ndarray,
    truth: np.ndarray,
    mode: str,
    grid: Mapping[str, Sequence[float]] = GRID,
    sampling: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """The V_rand of every grid point of ``2d`` / ``3d`` (``threshold``, then ``seed_distance``,
    then ``merge_threshold`` varying fastest); ``threshold`` mode: of every level."""
    v_rand = scorer(truth, mode)
    if mode == "threshold":
        return [
            {"threshold": t, "v_rand": v_rand(threshold_components(p, t))}
            for t in grid["threshold"]
        ]
    rows = []
    levels = grid["merge_threshold"]  # ascending: one waterz pass merges through them
    for t, sd in itertools.product(grid["threshold"], grid["seed_distance"]):
        frags = fragments(p, mode, t, sd, sampling)
        for m, labels in zip(levels, agglomerate_levels(frags, p, levels, mode), strict=True):
            score = v_rand(labels)
            rows.append(
                {"threshold": t, "seed_distance": sd, "merge_threshold": m, "v_rand": score}
            )
    return rows


def choose(
    p: np.ndarray,
    truth: np.ndarray,
    mode: str,
    grid: Mapping[str, Sequence[float]] = GRID,
    sampling: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The best grid point of ``p`` (float ``(z, y, x)``) against ``truth`` (instance ids, or a
    binary mask whose cells are its components) and thresholding's best level, with the grid.

    Ties keep the earlier point in :func:`sweep`'s order (lower thresholds, then lower seed
    distances, then lower merge thresholds).  ``sampling``: the voxel size in ``3d`` (the run's
    distances), whose finest axis scales the grid's ``seed_distance`` voxels.
    """
    if p.shape != truth.shape or p.ndim != 3:
        raise InputError(
            f"probabilities {p.shape} and truth {truth.shape} must have one (z, y, x) shape"
        )
    needed = ("threshold",) if mode == "threshold" else tuple(GRID)
    if any(not grid.get(k) for k in needed):
        raise InputError(f"the {mode} grid needs values of {', '.join(needed)}, got {dict(grid)}")
    if mode == "3d" and sampling is not None:
        grid = {**grid, "seed_distance": [sd * min(sampling) for sd in grid["seed_distance"]]}
    rows = sweep(p, truth, mode, grid, sampling if mode == "3d" else None)
    best = max(rows, key=lambda r: r["v_rand"])  # max keeps the first of equal ones
    if mode == "threshold":  # the sweep is thresholding
        levels = [(r["threshold"], r["v_rand"]) for r in rows]
    else:
        v_rand = scorer(truth, mode)
        levels = [(t, v_rand(components(p, t, mode))) for t in grid["threshold"]]
    level, level_score = max(levels, key=lambda item: item[1])
    return {
        "chosen": {k: v for k, v in best.items() if k != "v_rand"},
        "v_rand": best["v_rand"],
        "thresholding": {"threshold": level, "v_rand": level_score},
        "grid": rows,
    }


def chosen_settings(path: str | Path) -> dict[str, float]:
    """The kernel settings a ``segment_tune`` JSON chose (``threshold``, and in ``2d`` / ``3d``
    ``seed_distance`` and ``merge_threshold``)."""
    try:
        chosen = json.loads(Path(path).read_text()).get("chosen")
    except (json.JSONDecodeError, AttributeError):
        chosen = None
    if not isinstance(chosen, dict) or not chosen or not set(chosen) <= set(GRID):
        raise InputError(
            f"{path}: not a segment_tune result (no 'chosen' settings of {', '.join(GRID)})"
        )
    return {str(k): float(v) for k, v in chosen.items()}
