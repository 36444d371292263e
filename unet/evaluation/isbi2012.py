"""The ISBI 2012 EM segmentation challenge's scores, computed as the challenge computed them.

Definitions: Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 9:142; the challenge's evaluation page
(brainiac2.mit.edu/isbi_challenge/evaluation) and Fiji's ``trainableSegmentation.metrics``
classes it scored with (fiji/Trainable_Segmentation: ``PixelError``, ``RandError``,
``WarpingError``, ``VariationOfInformation``, ``ClassificationStatistics``, ``Metrics``).

Conventions (ISBI): the truth is a binary map, 0 = membrane, nonzero (255) = cell; the proposal
is the probability of *cell* in [0, 1] (what :mod:`unet.prediction.tiles` writes: ``1 -
p(membrane)``),
binarised as Fiji does, ``pixel > t`` with the pixel a float32 and ``t`` a double.  Each 2D
slice is cut into 4-connected cells.  Thresholds are Fiji's loop ``for (t = 0.0; t <= max;
t += 0.1)``: 0.0 ... 0.9 (10 values) for the original metrics, 0.0 ... 1.0 (11) for the current
leaderboard's (the legacy range is the one imagej.net documents for the warping error; the
legacy script itself was not available to check whether its pixel and Rand sweeps also ran to
~1.0, a threshold that only adds a nearly all-membrane segmentation).  Each metric reports its
best value and the first threshold that reaches it.

Original ("legacy") leaderboard, the numbers of the U-Net paper's Table 1:

* **pixel error** = 1 - max_t F(t), F the F-score of the *cell* class, its true/false
  positives and negatives summed over all slices (``PixelError.getPixelErrorMaximalFScore``;
  precision = 1 when there is no false positive, recall = 1 when there is no false negative).
* **Rand error** = 1 - max_t of the F-score of the foreground-restricted Rand index
  (``RandError.getForegroundRestrictedRandIndexMaximalFScore``, N^2 normalisation): only the
  truth's cell pixels count (its membrane, label 0, is pruned); each of them the proposal calls
  membrane is its own segment.  With ``c_ij`` the overlaps of true cell ``i`` and predicted cell
  ``j``, ``a_i``, ``b_j`` their sizes and ``s`` the singletons, summed over slices:
  TP = sum c_ij^2 + s, FP = sum b_j^2 - sum c_ij^2, FN = sum a_i^2 - sum c_ij^2 - s, i.e.
  F = 2 TP / (sum a_i^2 + sum b_j^2 + s) =
  :meth:`unet.evaluation.contingency.ContingencyTable.v_rand`.
* **warping error** = min_t of the split and merger pixels after warping the truth onto the
  proposal, over all pixels (``WarpingError.getMinimumSplitsAndMergersErrorValue(0.0, 0.9,
  0.1, false)``): see :mod:`unet.evaluation.warping`.

Current leaderboard (thresholds 0.0 ... 1.0): **V_rand** and **V_info** after border thinning,
the foreground-restricted Rand and information-theoretic F-scores
(:meth:`~unet.evaluation.contingency.ContingencyTable.v_rand`, ``v_info``) of the truth and the
binarised
proposal after both have their membranes thinned to one pixel.  The thinning here follows the
paper's description (each 4-connected cell grows over the membrane until it meets its
neighbours; a one-pixel watershed line stays between them); Fiji's own thinning code was not
available to check against, so these two may differ from the leaderboard's in the last digits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from unet.errors import InputError, InputTypeError
from unet.evaluation.contingency import CROSS, ContingencyTable, as_instances
from unet.evaluation.warping import splits_and_mergers, warp_truth


def fiji_thresholds(maximum: float, step: float = 0.1) -> tuple[float, ...]:
    """Fiji's threshold loop ``for (double t = 0.0; t <= maximum; t += step)``, floating-point
    accumulation included (0.30000000000000004, ..., 0.9999999999999999)."""
    out, t = [], 0.0
    while t <= maximum:
        out.append(t)
        t += step
    return tuple(out)


LEGACY_THRESHOLDS = fiji_thresholds(0.9)
"""The original challenge's thresholds: 0.0, 0.1, ..., 0.9."""
LEADERBOARD_THRESHOLDS = fiji_thresholds(1.0)
"""The current leaderboard's (V_rand, V_info after thinning): 0.0, 0.1, ..., 1.0."""


def f_score(tp: float, fp: float, fn: float) -> float:
    """Fiji's ``ClassificationStatistics`` F-score: precision 1 without false positives,
    recall 1 without false negatives, 0 when both are 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def thin_boundaries(labels: np.ndarray) -> np.ndarray:
    """Cells (Y, X) grown over the membrane (label 0) until a one-pixel line separates them."""
    if labels.max() == 0 or labels.min() != 0:
        return labels
    distance = ndimage.distance_transform_edt(labels == 0)
    return watershed(distance, markers=labels, connectivity=1, watershed_line=True)


def _best(values: list[float], thresholds: tuple[float, ...], lowest: bool) -> tuple[float, float]:
    """(best value, first threshold reaching it), with Fiji's strict comparisons."""
    best, at = (np.inf, thresholds[0]) if lowest else (0.0, thresholds[0])
    for value, t in zip(values, thresholds, strict=True):
        if (value < best) if lowest else (value > best):
            best, at = value, t
    return float(best), float(at)


class ChallengeScorer:
    """Accumulates the challenge's counts slice by slice; :meth:`result` gives the scores.

    Parameters
    ----------
    warping : also compute the warping error (by far the slowest part: the truth is warped
        once per threshold and slice).
    """

    def __init__(self, *, warping: bool = True) -> None:
        self.warping = warping
        n = len(LEGACY_THRESHOLDS)
        self._pixels = np.zeros((n, 3), np.int64)  # tp, fp, fn per threshold
        self._rand = [ContingencyTable() for _ in LEGACY_THRESHOLDS]
        self._thinned = [ContingencyTable() for _ in LEADERBOARD_THRESHOLDS]
        self._split_merge: list[np.ndarray] = []  # each slice's split, merger px per threshold
        self._n_pixels = 0
        self._n_slices = 0

    def add(self, probability: Any, truth: Any) -> None:
        """Count one (Y, X) slice: ``probability`` of cell (float in [0, 1]), ``truth`` a
        binary map (nonzero = cell) or an instance image (0 = membrane)."""
        prob, true = np.asarray(probability), np.asarray(truth)
        if prob.ndim != 2 or prob.shape != true.shape:
            raise InputError(f"need two 2D slices of one shape, got {prob.shape}, {true.shape}")
        if prob.dtype.kind != "f":
            raise InputTypeError(f"probability must be float in [0, 1], got dtype {prob.dtype}")
        pixels = prob.astype(np.float32)  # Fiji: float pixels, compared with a double threshold
        p = pixels.astype(np.float64)
        true_labels = as_instances(true, name="truth")
        true_cell = true_labels != 0
        z = self._n_slices
        split_merge = np.zeros((len(LEGACY_THRESHOLDS), 2), np.int64)
        for k, t in enumerate(LEGACY_THRESHOLDS):
            cell = p > t
            self._pixels[k] += (
                np.count_nonzero(cell & true_cell),
                np.count_nonzero(cell & ~true_cell),
                np.count_nonzero(~cell & true_cell),
            )
            self._rand[k].add(ndimage.label(cell, CROSS)[0], true_labels, z=z)
            if self.warping:
                warped = warp_truth(true_cell, pixels, t)
                split_merge[k] = splits_and_mergers(warped, cell)
        thinned_truth = thin_boundaries(true_labels)
        for k, t in enumerate(LEADERBOARD_THRESHOLDS):
            thinned = thin_boundaries(ndimage.label(p > t, CROSS)[0])
            self._thinned[k].add(thinned, thinned_truth, z=z)
        self._split_merge.append(split_merge)
        self._n_pixels += p.size
        self._n_slices += 1

    def result(self) -> dict[str, Any]:
        """The best value and threshold of each metric, and each metric per threshold."""
        if self._n_slices == 0:
            raise InputError("no slice was scored")
        pixel_f = [f_score(*map(float, row)) for row in self._pixels]
        rand_f = [_score(t, "v_rand") for t in self._rand]
        v_rand = [_score(t, "v_rand") for t in self._thinned]
        v_info = [_score(t, "v_info") for t in self._thinned]
        out: dict[str, Any] = {}
        f, out["pixel_threshold"] = _best(pixel_f, LEGACY_THRESHOLDS, lowest=False)
        out["pixel_error"] = 1.0 - f
        f, out["rand_threshold"] = _best(rand_f, LEGACY_THRESHOLDS, lowest=False)
        out["rand_error"] = 1.0 - f
        split_merge = np.sum(self._split_merge, axis=0)  # the stack's, per threshold
        warping = [float(c) / self._n_pixels for c in split_merge.sum(axis=1)]
        if self.warping:
            out["warping_error"], out["warping_threshold"] = _best(
                warping, LEGACY_THRESHOLDS, lowest=True
            )
        else:
            out["warping_error"] = out["warping_threshold"] = None
        out["v_rand_thinned"], out["v_rand_thinned_threshold"] = _best(
            v_rand, LEADERBOARD_THRESHOLDS, lowest=False
        )
        out["v_info_thinned"], out["v_info_thinned_threshold"] = _best(
            v_info, LEADERBOARD_THRESHOLDS, lowest=False
        )
        out["by_threshold"] = {
            "legacy_thresholds": [round(t, 1) for t in LEGACY_THRESHOLDS],
            "pixel_error": [1.0 - v for v in pixel_f],
            "rand_error": [1.0 - v for v in rand_f],
            "warping_error": warping if self.warping else None,
            "splits": split_merge[:, 0].tolist() if self.warping else None,
            "mergers": split_merge[:, 1].tolist() if self.warping else None,
            "split_merger_pixels_by_slice": (
                [c.sum(axis=1).tolist() for c in self._split_merge] if self.warping else None
            ),
            "leaderboard_thresholds": [round(t, 1) for t in LEADERBOARD_THRESHOLDS],
            "v_rand_thinned": v_rand,
            "v_info_thinned": v_info,
        }
        out["n_slices"] = self._n_slices
        return out


def _score(table: ContingencyTable, which: str) -> float:
    """V_rand / V_info of a table; 0 when the truth has no cell pixel (nothing to score)."""
    try:
        return float(getattr(table, which)())
    except InputError:
        return 0.0


def challenge_scores(
    probability_slices: Iterable[Any], truth_slices: Iterable[Any], *, warping: bool = True
) -> dict[str, Any]:
    """The challenge's scores of paired (Y, X) slices (see the module docstring).

    >>> truth = np.full((4, 4), 255, np.uint8); truth[:, 1] = 0
    >>> s = challenge_scores([np.where(truth > 0, 0.9, 0.1)], [truth])
    >>> s["pixel_error"], s["rand_error"], s["warping_error"], s["v_rand_thinned"]
    (0.0, 0.0, 0.0, 1.0)
    """
    scorer = ChallengeScorer(warping=warping)
    for prob, true in zip(probability_slices, truth_slices, strict=True):
        scorer.add(prob, true)
    return scorer.result()
