"""Scores of one segmentation (no threshold sweep): pixel disagreement, cell IoU, V_rand, V_info.

These describe the project's own post-processed segmentation; the ISBI 2012 challenge's
scores (pixel, Rand and warping error with their threshold sweeps, V_rand / V_info after
thinning) are :mod:`unet.evaluation.isbi2012`.  Every function takes ``(prediction, truth)`` of
equal
shape, each a 2D ``(Y, X)`` image or a ``(Z, Y, X)`` stack scored slice by slice:

* binary maps (ISBI: cell = 1/True/255, boundary = 0; any nonzero integer is cell),
* float probability maps of *cell* in [0, 1] (cell where ``p > threshold``),
* or integer instance images (0 = boundary/background), see
  :func:`unet.evaluation.contingency.as_instances`.

Binary maps become instances by 4-connected components per slice.  Stacks aggregate as the
Fiji implementation used by the challenge does: pixel counts over the whole stack, V_rand sums
the per-slice pair counts before taking the F-score, V_info is the mean of the per-slice
F-scores (:class:`unet.evaluation.contingency.ContingencyTable`).

:func:`simple_point_table` is the 2D simple-point test (4-connected cells, 8-connected
boundary) used by the challenge's warping error (:mod:`unet.evaluation.warping`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy import ndimage

from unet.errors import InputError
from unet.evaluation.contingency import CROSS, ContingencyTable, as_foreground, as_instances

# neighbour k of a pixel is bit k of its 3x3 code
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _pair(prediction: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(prediction), np.asarray(truth)
    if pred.shape != true.shape:
        raise InputError(f"prediction shape {pred.shape} != truth shape {true.shape}")
    return pred, true


def pixel_disagreement(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Fraction of pixels whose binary (cell / boundary) value differs at one threshold:
    ``1 - accuracy`` (not the challenge's pixel error, see :mod:`unet.evaluation.isbi2012`).

    >>> pixel_disagreement(np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]))
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
    :meth:`unet.evaluation.contingency.ContingencyTable.v_rand`: only truth-foreground pixels
    count, and
    each one the prediction calls boundary is a singleton segment."""
    return _table(prediction, truth, threshold).v_rand()


def v_info(prediction: Any, truth: Any, *, threshold: float = 0.5) -> float:
    """Foreground-restricted information-theoretic F-score (1 = perfect), see
    :meth:`unet.evaluation.contingency.ContingencyTable.v_info`."""
    return _table(prediction, truth, threshold).v_info()


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
