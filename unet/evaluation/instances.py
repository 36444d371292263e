"""Scores of an instance segmentation (label image) against instance or binary truth.

* V_rand, Rand error and V_info, foreground-restricted as in the ISBI 2012 challenge
  (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142; :class:`unet.evaluation.contingency.
  ContingencyTable`): per section (truth cells are the 4-connected components of a binary
  mask, or its ids) pooled over the sections as Fiji does, and in 3D (the whole volume as one
  table; a binary truth's cells are then its 6-connected components).
* SEG, the Cell Tracking Challenge's measure (Ulman et al. 2017, Nat. Methods 14:1141,
  "SEG"): for each truth object R the predicted object S covering more than half of it,
  ``J = |R n S| / |R u S|`` (0 if there is none), averaged over all truth objects; per section
  (objects of each section) and in 3D.
* Foreground IoU ``|P n T| / |P u T|`` of the labelled voxels and the truth foreground (binary
  targets such as mitochondria), and the object counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from unet.errors import InputError
from unet.evaluation.contingency import ContingencyTable, as_foreground, as_instances

FACES_3D = ndimage.generate_binary_structure(3, 1)


def seg_score(labels: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """CTC SEG of ``labels`` against instance ``truth`` (same shape, 0 = background) and the
    number of truth objects it averages over (SEG is NaN without any).

    >>> t = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> seg_score(np.array([[5, 5, 5, 0, 0, 7, 0]]), t)  # 3/4, and 1/2 is not > half
    (0.375, 2)
    """
    fg = truth > 0
    if not fg.any():
        return float("nan"), 0
    pairs, overlap = np.unique(
        np.stack([truth[fg].astype(np.int64), labels[fg].astype(np.int64)]),
        axis=1,
        return_counts=True,
    )
    true_ids, true_sizes = np.unique(truth[fg], return_counts=True)
    pred_ids, pred_sizes = np.unique(labels[labels > 0], return_counts=True)
    size_t = true_sizes[np.searchsorted(true_ids, pairs[0])]
    match = (pairs[1] > 0) & (2 * overlap > size_t)  # at most one S per R covers > half
    size_p = pred_sizes[np.searchsorted(pred_ids, pairs[1][match])]
    jaccard = overlap[match] / (size_t[match] + size_p - overlap[match])
    return float(jaccard.sum() / len(true_ids)), len(true_ids)


def _truth_3d(truth: np.ndarray) -> np.ndarray:
    """3D truth objects: the ids of an instance volume, else 6-connected components."""
    values = np.unique(truth)
    if truth.dtype.kind in "iu" and len(values[values != 0]) > 1:
        return truth.astype(np.int64)
    labels, _ = ndimage.label(as_foreground(truth, name="truth"), FACES_3D)
    return labels.astype(np.int64)


def instance_scores(labels: Any, truth: Any) -> dict[str, Any]:
    """All scores of a ``(Z, Y, X)`` label image against its truth (see the module docstring)."""
    pred = np.asarray(labels)
    true = np.asarray(truth)
    if pred.shape != true.shape or pred.ndim != 3:
        raise InputError(f"labels {pred.shape} and truth {true.shape} must be equal (Z, Y, X)")
    if pred.dtype.kind not in "iu":
        raise InputError(f"labels must be an integer label image, got dtype {pred.dtype}")
    sections = truth_objects(true, per_section=True)
    per_section = _table(pred, sections, per_section=True)
    seg_sum, seg_n = 0.0, 0
    for z in range(pred.shape[0]):
        score, n = seg_score(pred[z], sections[z])
        seg_sum, seg_n = seg_sum + (score * n if n else 0.0), seg_n + n
    true_3d = truth_objects(true, per_section=False)
    volume = _table(pred, true_3d, per_section=False)  # the 3D scores
    fg_pred, fg_true = pred > 0, as_foreground(true, name="truth")
    union = np.count_nonzero(fg_pred | fg_true)
    return {
        "v_rand": per_section.v_rand(),
        "rand_error": per_section.rand_error(),
        "v_info": per_section.v_info(),
        "seg": seg_sum / seg_n if seg_n else float("nan"),
        "v_rand_3d": volume.v_rand(),
        "v_info_3d": volume.v_info(),
        "seg_3d": seg_score(pred, true_3d)[0],
        "iou_foreground": np.count_nonzero(fg_pred & fg_true) / union if union else 1.0,
        "objects": int(len(np.unique(pred[pred > 0]))),
        "truth_objects": int(len(np.unique(true_3d[true_3d > 0]))),
    }


def truth_objects(truth: Any, *, per_section: bool = True) -> np.ndarray:
    """The truth objects the scores count: per section (``(Z, Y, X)`` ids of each section's
    cells) or the 3D objects."""
    true = np.asarray(truth)
    return as_instances(true, name="truth") if per_section else _truth_3d(true)


def v_rand(labels: np.ndarray, truth: np.ndarray, *, per_section: bool = True) -> float:
    """Only :func:`instance_scores`' ``v_rand`` (``per_section``) or ``v_rand_3d``, of
    ``(Z, Y, X)`` labels: the cheap score of a parameter search."""
    return objects_v_rand(labels, truth_objects(truth, per_section=per_section), per_section)


def objects_v_rand(labels: np.ndarray, objects: np.ndarray, per_section: bool) -> float:
    """:func:`v_rand` against the :func:`truth_objects` ``objects`` (found once when one truth
    scores many label images)."""
    return _table(labels, objects, per_section).v_rand()


def _table(labels: np.ndarray, objects: np.ndarray, per_section: bool) -> ContingencyTable:
    """The contingency table of ``labels`` and truth ``objects``: per section (pooled over the
    sections) or one table over every voxel."""
    if not per_section:
        flat = (1, -1, labels.shape[-1])
        return ContingencyTable.from_labels(_compact(labels).reshape(flat), objects.reshape(flat))
    table = ContingencyTable()
    for z in range(labels.shape[0]):
        table.add(_compact(labels[z]), objects[z], z)
    return table


def segmentation_scores(labels: Any, truth: Any, slices: Sequence[int]) -> dict[str, Any]:
    """:func:`instance_scores` of sections ``slices`` of a label image (Zarr or numpy) as
    ``segment_<score>`` (what ``evaluate`` adds to its scores)."""
    z = list(slices)
    pred = np.stack([np.asarray(labels[i]) for i in z])
    true = np.stack([np.asarray(truth[i]) for i in z])
    return {f"segment_{k}": v for k, v in instance_scores(pred, true).items()}


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered ``1..n`` (the contingency table takes ids below 2**32)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int64)
    return out if ids[0] == 0 else out + 1
