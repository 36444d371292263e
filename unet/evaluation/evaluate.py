"""The ``evaluate`` stage: score predicted cell probabilities against the truth (the PNG
overlays and the HTML report: :mod:`unet.evaluation.report`).

Two kinds of scores, under names that say which is which:

* the ISBI 2012 challenge's, on the probability map itself with the challenge's threshold
  sweeps (:mod:`unet.evaluation.isbi2012`): ``pixel_error``, ``rand_error``, ``warping_error`` (the
  original leaderboard, the U-Net paper's Table 1) and ``v_rand_thinned``, ``v_info_thinned``
  (the current leaderboard), each with the threshold that gave it;
* the project's own segmentation at ``threshold`` / ``postprocess``
  (:mod:`unet.evaluation.metrics`, slab
  by slab via :func:`unet.evaluation.blockwise.blockwise_scores`): ``pixel_disagreement`` (1 -
  accuracy),
  ``iou`` of the cells, and ``v_rand``, ``v_info`` of its cells without thinning.

Probabilities are uint8 (``round(p * 255)``) or float in [0, 1]; the truth is an ISBI binary
map (0 = membrane, 255 = cell) or an instance image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from unet.errors import InputError, InputTypeError
from unet.evaluation.blockwise import blockwise_scores
from unet.evaluation.contingency import CROSS
from unet.evaluation.isbi2012 import ChallengeScorer
from unet.settings.schema import default

PAPER_ISBI2012: dict[str, float] = {
    "warping_error": 0.000353,
    "rand_error": 0.0382,
    "pixel_error": 0.0611,
}
"""Ronneberger et al. 2015, Table 1: the U-Net's scores on the original ISBI 2012 leaderboard
(the challenge's definitions, :mod:`unet.evaluation.isbi2012`), on the challenge's 30 *test*
slices, whose
labels are private: not comparable slice for slice with held-out training slices."""


@dataclass(frozen=True)
class EvaluateConfig:
    """How to turn probabilities into cells and what to score.

    Parameters
    ----------
    threshold : cell where ``p > threshold``.
    postprocess : ``"threshold"``: 4-connected components of the cell mask; ``"watershed"``:
        seeds are the components of ``p > seed_threshold`` (plus every mask component holding
        none), flooded over ``1 - p`` within the cell mask, so a weak gap in a membrane no
        longer merges two cells.
    seed_threshold : seed level of the watershed, in ``[threshold, 1)``.
    slices : z indices to score; ``None`` scores all.
    warping : compute the challenge's warping error (the slowest score).

    ``threshold``, ``postprocess`` and ``seed_threshold`` shape the project's segmentation
    only; the challenge's scores sweep their own thresholds (:mod:`unet.evaluation.isbi2012`).
    """

    threshold: float = default("evaluate", "threshold")
    postprocess: Literal["threshold", "watershed"] = default("evaluate", "postprocess")
    seed_threshold: float = default("evaluate", "seed_threshold")
    slices: tuple[int, ...] | None = None
    warping: bool = default("evaluate", "warping")

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.postprocess not in ("threshold", "watershed"):
            raise InputError(
                f"postprocess must be 'threshold' or 'watershed', got {self.postprocess!r}"
            )
        if not self.threshold <= self.seed_threshold < 1.0:
            raise InputError(
                f"seed_threshold must be in [threshold, 1) = [{self.threshold}, 1), "
                f"got {self.seed_threshold}"
            )
        if self.slices is not None:
            slices = tuple(int(z) for z in self.slices)
            if not slices or min(slices) < 0:
                raise InputError(f"slices must be non-negative indices, got {self.slices}")
            object.__setattr__(self, "slices", slices)


def probability(array: Any) -> np.ndarray:
    """Cell probability as float32 in [0, 1]: uint8 is ``p * 255``, floats are taken as is."""
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype.kind != "f":
        raise InputTypeError(f"probabilities must be uint8 or float, got dtype {arr.dtype}")
    if arr.size and not (0.0 <= float(arr.min()) and float(arr.max()) <= 1.0):
        raise InputError(f"float probabilities must lie in [0, 1], got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.float32, copy=False)


class _Reader:
    """Reads a (Z, Y, X) probability array lazily: each read as :func:`probability`, or
    as the :func:`segment` labels of ``config`` where given."""

    def __init__(self, array: Any, config: EvaluateConfig | None = None) -> None:
        self.array, self.config = array, config
        self.shape = tuple(array.shape)
        self.chunks = tuple(getattr(array, "chunks", (1,) + self.shape[1:]))

    def __getitem__(self, index: Any) -> np.ndarray:
        p = probability(self.array[index])
        return p if self.config is None else segment(p, self.config)


def segment(probability_map: Any, config: EvaluateConfig) -> np.ndarray:
    """Instance labels (int64, 0 = boundary, unique across slices) of a (Y, X) or (Z, Y, X)
    probability map, slice by slice, as ``config.postprocess`` says."""
    p = probability(probability_map)
    if p.ndim not in (2, 3):
        raise InputError(f"probability map must be (Y, X) or (Z, Y, X), got shape {p.shape}")
    stack = p.reshape((-1,) + p.shape[-2:])
    labels = np.zeros(stack.shape, np.int64)
    offset = 0
    for z, plane in enumerate(stack):
        mask = plane > config.threshold
        cells, n_cells = ndimage.label(mask, CROSS)
        if config.postprocess == "watershed":
            seeds, n_seeds = ndimage.label(plane > config.seed_threshold, CROSS)
            seedless = mask & ~np.isin(cells, np.unique(cells[seeds > 0]))
            seeds[seedless] = cells[seedless] + n_seeds
            cells = watershed(1.0 - plane, seeds, mask=mask, connectivity=1)
            n_cells = int(cells.max())
        labels[z] = np.where(mask, cells + offset, 0)
        offset += n_cells
    return labels.reshape(p.shape)


def evaluate(probability_array: Any, truth_array: Any, config: EvaluateConfig) -> dict[str, Any]:
    """Score a predicted (Z, Y, X) or (Y, X) probability array against the truth.

    Arrays may be numpy or Zarr; they are read slab by slab and slice by slice, never whole.

    Returns
    -------
    dict with the challenge's ``pixel_error``, ``rand_error``, ``warping_error`` (``None``
    unless ``config.warping``), ``v_rand_thinned``, ``v_info_thinned``, each with its
    ``*_threshold``, and ``by_threshold`` (every score at every threshold); the segmentation's
    ``pixel_disagreement``, ``iou``, ``v_rand``, ``v_info``; ``n_slices``, ``threshold`` and
    ``postprocess``.
    """
    prob, truth = probability_array, truth_array
    if tuple(prob.shape) != tuple(truth.shape):
        raise InputError(
            f"probability shape {tuple(prob.shape)} != truth shape {tuple(truth.shape)}"
        )
    if len(prob.shape) == 2:
        prob, truth = np.asarray(prob)[None], np.asarray(truth)[None]
    if len(prob.shape) != 3:
        raise InputError(f"arrays must be (Y, X) or (Z, Y, X), got shape {tuple(prob.shape)}")
    if np.dtype(truth.dtype).kind not in "biu":
        raise InputTypeError(f"truth must be a binary or instance image, got dtype {truth.dtype}")
    view = _Reader(prob)
    if config.postprocess == "threshold":
        own = blockwise_scores(view, truth, threshold=config.threshold, slices=config.slices)
    else:  # the slabs arrive as instance labels
        own = blockwise_scores(_Reader(prob, config), truth, slices=config.slices)
    challenge = ChallengeScorer(warping=config.warping)
    for z in range(view.shape[0]) if config.slices is None else sorted(set(config.slices)):
        challenge.add(view[z], np.asarray(truth[z]))
    return {
        **challenge.result(),
        "pixel_disagreement": own["pixel_disagreement"],
        "iou": own["iou"],
        "v_rand": own["v_rand"],
        "v_info": own["v_info"],
        "n_slices": own["n_slices"],
        "threshold": config.threshold,
        "postprocess": config.postprocess,
    }
