"""The paper's evaluation: the ISBI 2012 EM segmentation challenge metrics, plus cell IoU.

Every function takes ``(prediction, truth)`` of equal shape, each a 2D ``(Y, X)`` image or a
``(Z, Y, X)`` stack scored slice by slice:

* binary maps (ISBI: cell = 1/True/255, boundary = 0; any nonzero integer is cell),
* float probability maps of *cell* in [0, 1] (cell where ``p > threshold``),
* or integer instance images (0 = boundary/background), see :func:`unet.contingency.as_instances`.

Binary maps become instances by 4-connected components per slice.  Stacks aggregate as the
Fiji implementation used by the challenge does: pixel and warping errors count pixels over the
whole stack (= the mean over equal slices), V_rand sums the per-slice pair counts before taking
the F-score, V_info is the mean of the per-slice F-scores.

Warping error (Jain et al. 2010, "Boundary learning by optimization with topological
constraints"): the *truth* is warped toward the prediction, as in Fiji's ``WarpingError``
("relax original labels to proposal"), by flipping mismatched pixels that are *simple* for
4-connected cells and 8-connected boundaries; what cannot be flipped is a topological error
(split, merge, hole, added or deleted object).  Outside the image counts as boundary.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from unet.contingency import CROSS, ContingencyTable, as_foreground, as_instances
from unet.errors import InputError

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Thresholds swept by :func:`rand_error` for probability maps: 0.05, 0.10, ..., 0.95."""

# neighbour k of a pixel is bit k of its 3x3 code
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _pair(prediction: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(prediction), np.asarray(truth)
    if pred.shape != true.shape:
        raise InputError(f"prediction shape {pred.shape} != truth shape {true.shape}")
    return pred, true


def pixel_error(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Fraction of pixels whose binary (cell / boundary) value differs: ``1 - accuracy``.

    >>> pixel_error(np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]))
    0.25
    """
    pred, true = _pair(prediction, truth)
    pred_fg = as_foreground(pred, threshold=threshold, name="prediction")
    true_fg = as_foreground(true, threshold=threshold, name="truth")
    return float(np.count_nonzero(pred_fg != true_fg) / pred_fg.size)


def iou(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Intersection over union of the cell (foreground) masks; 1 when both are empty."""
    pred, true = _pair(prediction, truth)
    pred_fg = as_foreground(pred, threshold=threshold, name="prediction")
    true_fg = as_foreground(true, threshold=threshold, name="truth")
    union = np.count_nonzero(pred_fg | true_fg)
    return float(np.count_nonzero(pred_fg & true_fg) / union) if union else 1.0


def _table(prediction: Any, truth: Any, threshold: float) -> ContingencyTable:
    pred, true = _pair(prediction, truth)
    return ContingencyTable.from_labels(
        as_instances(pred, threshold=threshold, name="prediction"),
        as_instances(true, name="truth"),
    )


def v_rand(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Foreground-restricted Rand F-score (1 = perfect), see
    :meth:`unet.contingency.ContingencyTable.v_rand`: only truth-foreground pixels count, and
    each one the prediction calls boundary is a singleton segment."""
    return _table(prediction, truth, threshold).v_rand()


def v_info(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Foreground-restricted information-theoretic F-score (1 = perfect), see
    :meth:`unet.contingency.ContingencyTable.v_info`."""
    return _table(prediction, truth, threshold).v_info()


def rand_error(prediction: Any, truth: Any, thresholds: Sequence[float] | None = None) -> float:
    """``1 -`` the maximal foreground-restricted Rand F-score (the challenge's "Rand error").

    A float ``prediction`` is a probability map: it is thresholded at each of ``thresholds``
    (default :data:`DEFAULT_THRESHOLDS`) and the best score wins, as the challenge did.
    Binary and instance predictions give ``1 - v_rand`` (``thresholds`` do not apply).
    """
    pred, true = _pair(prediction, truth)
    sweep = DEFAULT_THRESHOLDS if thresholds is None else tuple(float(t) for t in thresholds)
    if not sweep or not all(0.0 <= t < 1.0 for t in sweep):
        raise InputError(f"thresholds must be a non-empty list in [0, 1), got {thresholds}")
    if pred.dtype.kind != "f":
        sweep = (0.5,)
    true_labels = as_instances(true, name="truth")
    best = max(
        ContingencyTable.from_labels(
            as_instances(pred, threshold=t, name="prediction"), true_labels
        ).v_rand()
        for t in sweep
    )
    return 1.0 - best


@functools.cache
def simple_point_table() -> np.ndarray:
    """Lookup table ``(256,) bool``: is a pixel with this 3x3 neighbour code simple?

    A pixel is simple when flipping it changes neither the 4-connected cells nor the
    8-connected boundary: exactly one 4-connected cell component of its 8 neighbours touches it
    4-adjacently, and its boundary neighbours form exactly one 8-connected component
    (Bertrand & Malandain 1994, topological numbers T4 = T8bar = 1).  It does not depend on the
    pixel's own value.
    """
    table = np.zeros(256, bool)
    four_neighbours = ((0, 1), (1, 0), (1, 2), (2, 1))
    for code in range(256):
        cell = np.zeros((3, 3), bool)
        for bit, (dy, dx) in enumerate(_OFFSETS):
            cell[1 + dy, 1 + dx] = bool(code >> bit & 1)
        cell_labels, _ = ndimage.label(cell, CROSS)
        t4 = len({int(cell_labels[p]) for p in four_neighbours} - {0})
        boundary = ~cell
        boundary[1, 1] = False
        _, t8 = ndimage.label(boundary, np.ones((3, 3), bool))
        table[code] = t4 == 1 and t8 == 1
    return table


def simple_point_warp(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Warp the binary ``source`` (Y, X) toward ``target`` by flipping simple pixels only.

    Mismatched pixels are visited in 9 interleaved sub-grids (``y % 3, x % 3``): pixels of one
    sub-grid lie outside each other's 3x3 neighbourhoods, so flipping all simple ones at once is
    the same as flipping them one by one.  Sweeps repeat until one flips nothing.  The result
    has the topology of ``source`` and differs from ``target`` only at topological errors.
    """
    if source.shape != target.shape or source.ndim != 2:
        raise InputError(f"need two 2D masks of one shape, got {source.shape}, {target.shape}")
    table = simple_point_table()
    warped = np.pad(source.astype(bool), 1)  # the outside is boundary in both
    goal = np.pad(target.astype(bool), 1).ravel()
    flat = warped.ravel()  # a view: flips land in ``warped``
    width = warped.shape[1]
    offsets = np.array([dy * width + dx for dy, dx in _OFFSETS])
    weights = 1 << np.arange(8)
    while True:
        mismatched = np.flatnonzero(flat != goal)  # never on the padding, so neighbours exist
        rows, cols = np.divmod(mismatched, width)
        phase = rows % 3 * 3 + cols % 3
        flipped = 0
        for p in range(9):
            candidates = mismatched[phase == p]
            codes = flat[candidates[:, None] + offsets] @ weights
            simple = candidates[table[codes]]
            flat[simple] = ~flat[simple]
            flipped += simple.size
        if flipped == 0:
            return warped[1:-1, 1:-1]


def warping_error(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Topological errors per pixel after warping the truth onto the prediction (Jain 2010).

    Both are binarised (cell vs boundary); per slice the truth is warped by
    :func:`simple_point_warp` and the remaining mismatches are counted; the stack's error is
    their sum over all pixels.  A boundary shifted by a pixel costs nothing; a cut through a
    cell (split), a gap in a boundary (merge) or a hole costs at least one pixel.
    """
    pred, true = _pair(prediction, truth)
    pred_fg = as_foreground(pred, threshold=threshold, name="prediction")
    true_fg = as_foreground(true, threshold=threshold, name="truth")
    stack = zip(
        true_fg.reshape((-1,) + true_fg.shape[-2:]),
        pred_fg.reshape((-1,) + pred_fg.shape[-2:]),
        strict=True,
    )
    errors = sum(np.count_nonzero(simple_point_warp(t, p) != p) for t, p in stack)
    return float(errors / pred_fg.size)
