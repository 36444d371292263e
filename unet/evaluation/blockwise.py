"""Scores of one segmentation computed slab by slab (:func:`blockwise_scores`): contingency
tables (:mod:`unet.evaluation.contingency`) of the slabs, merged by summing."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from unet.errors import InputError
from unet.evaluation.contingency import ContingencyTable, as_foreground, as_instances
from unet.geometry import Box, blocks


def blockwise_scores(
    prediction_array: Any,
    truth_array: Any,
    *,
    block_shape: int | Sequence[int] | None = None,
    threshold: float = 0.5,
    slices: Sequence[int] | None = None,
    parallel: bool = False,
) -> dict[str, float]:
    """Pixel disagreement, IoU, V_rand and V_info of one segmentation, slab by slab.

    The scores of :mod:`unet.evaluation.metrics` (no threshold sweep; the challenge's swept scores
    are
    :mod:`unet.evaluation.isbi2012`).  Only one slab of whole slices of each array is in memory at
    a time
    (numpy, Zarr or any array with ``shape`` and slicing): memory is bounded by the slab plus
    the sparse tables, whatever the volume's depth.  The result equals
    :mod:`unet.evaluation.metrics` on
    the whole stack.

    Parameters
    ----------
    prediction_array, truth_array : (Z, Y, X) maps as accepted by :func:`as_instances`.
    block_shape : slab depth, or ``(depth, Y, X)``; default: the prediction's z-chunk, else 1.
    threshold : cell where ``p > threshold`` for float predictions.
    slices : z indices to score (default: all).
    parallel : score slabs on dask's threaded scheduler and merge their tables.

    Returns
    -------
    dict with ``pixel_disagreement``, ``iou``, ``v_rand``, ``v_info`` and ``n_slices``.
    """
    shape, block_shape, zs = _checked(prediction_array, truth_array, block_shape, slices)
    jobs = []
    for block in blocks(shape, block_shape):
        wanted = [z for z in zs if block.begin[0] <= z < block.end[0]]
        if wanted:  # read the hull of the wanted slices, whole in y and x
            hull = Box((wanted[0], 0, 0), (wanted[-1] + 1 - wanted[0],) + shape[1:])
            jobs.append((prediction_array, truth_array, hull, wanted, threshold))
    if parallel:
        import dask

        score = dask.delayed(_score_block, pure=False)
        parts = list(dask.compute(*[score(*job) for job in jobs], scheduler="threads"))
    else:
        parts = [_score_block(*job) for job in jobs]
    table, counts = functools.reduce(_merge, parts)

    mismatched, intersection, union, pixels = (int(v) for v in counts)
    return {
        "pixel_disagreement": mismatched / pixels,
        "iou": intersection / union if union else 1.0,
        "v_rand": table.v_rand(),
        "v_info": table.v_info(),
        "n_slices": len(zs),
    }


def _checked(
    prediction_array: Any,
    truth_array: Any,
    block_shape: int | Sequence[int] | None,
    slices: Sequence[int] | None,
) -> tuple[tuple[int, ...], tuple[int, ...], list[int]]:
    """The volume shape, the slab shape and the sorted slices to score, checked."""
    shape = tuple(prediction_array.shape)
    if tuple(truth_array.shape) != shape:
        raise InputError(f"prediction shape {shape} != truth shape {tuple(truth_array.shape)}")
    if len(shape) != 3:
        raise InputError(f"blockwise scoring needs (Z, Y, X) arrays, got shape {shape}")
    if block_shape is None:
        block_shape = int(getattr(prediction_array, "chunks", (1,))[0])
    if isinstance(block_shape, (int, np.integer)):
        block_shape = (int(block_shape),) + shape[1:]
    if len(block_shape) != 3 or tuple(block_shape[1:]) != shape[1:] or block_shape[0] < 1:
        raise InputError(f"blocks must be whole slices {shape[1:]}, got {tuple(block_shape)}")
    zs = sorted(set(range(shape[0]) if slices is None else (int(z) for z in slices)))
    if not zs or not 0 <= zs[0] <= zs[-1] < shape[0]:
        raise InputError(f"slices must be a non-empty subset of range({shape[0]}), got {slices}")
    return shape, tuple(block_shape), zs


def _score_block(
    prediction_array: Any, truth_array: Any, box: Box, zs: Sequence[int], threshold: float
) -> tuple[ContingencyTable, np.ndarray]:
    """The table and the pixel counts (mismatched, intersection, union, all) of the slices
    ``zs`` inside ``box``."""
    pick = [z - box.begin[0] for z in zs]
    prediction = np.asarray(prediction_array[box.to_slices()])[pick]
    truth = as_instances(np.asarray(truth_array[box.to_slices()])[pick], name="truth")
    labels = as_instances(prediction, threshold=threshold, name="prediction")
    table = ContingencyTable()
    for k, z in enumerate(zs):
        table.add(labels[k], truth[k], z=z)
    pred_fg, true_fg = as_foreground(prediction, threshold=threshold), truth > 0
    counts = [pred_fg != true_fg, pred_fg & true_fg, pred_fg | true_fg, np.ones_like(pred_fg)]
    return table, np.array([np.count_nonzero(c) for c in counts])


def _merge(
    a: tuple[ContingencyTable, np.ndarray], b: tuple[ContingencyTable, np.ndarray]
) -> tuple[ContingencyTable, np.ndarray]:
    return a[0].merge(b[0]), a[1] + b[1]
