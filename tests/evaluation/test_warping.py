"""The challenge's warping error (Fiji's WarpingError): hand cases and a literal reference."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from unet.evaluation import metrics
from unet.evaluation.contingency import CROSS
from unet.evaluation.warping import (
    _OFFSETS,
    fiji_simple_table,
    splits_and_mergers,
    splits_and_mergers_per_threshold,
    warp_truth,
)


def square(size: int = 16) -> np.ndarray:
    """One cell (rows/cols 2..13) inside membrane, ISBI 0/255."""
    out = np.zeros((size, size), np.uint8)
    out[2:14, 2:14] = 255
    return out


def as_prob(mask: np.ndarray) -> np.ndarray:
    return np.where(mask != 0, 0.9, 0.1).astype(np.float32)


def reference_warp(truth: np.ndarray, prob: np.ndarray, t: float) -> np.ndarray:
    """Fiji's simplePointWarp2d written out pixel by pixel (no shortcuts)."""
    table = metrics.simple_point_table()  # the independently derived 2D table
    src = np.pad(truth != 0, 1)
    tgt = np.pad(prob.astype(np.float64) > t, 1)
    real = np.pad(prob.astype(np.float32), 1)
    before = -1
    while True:
        diff = int(np.count_nonzero(src != tgt))
        if diff in (0, before):
            return src[1:-1, 1:-1]
        before = diff
        points = [
            (x, y, np.float32(abs(float(real[y, x]) - t)))
            for x in range(1, src.shape[1] - 1)
            for y in range(1, src.shape[0] - 1)
            if src[y, x] != tgt[y, x]
        ]

        def compare(a, b):  # Java: (int)((o2.z - o1.z) * 10000)
            return int(np.float32(b[2] - a[2]) * np.float32(10000))

        for x, y, _ in sorted(points, key=functools.cmp_to_key(compare)):
            code = sum(int(src[y + dy, x + dx]) << k for k, (dy, dx) in enumerate(_OFFSETS))
            if table[code]:
                src[y, x] = not src[y, x]


def reference_splits_and_mergers(warped: np.ndarray, proposal: np.ndarray) -> int:
    """Fiji's classifyMismatches2d with a full relabelling per doubtful pixel."""
    cells = ndimage.label(warped, CROSS)[0]
    count = 0
    h, w = cells.shape

    def around(lab, y, x):
        return {
            int(lab[y + dy, x + dx]) for dy, dx in _OFFSETS if 0 <= y + dy < h and 0 <= x + dx < w
        }

    for y, x in zip(*np.nonzero(warped != proposal), strict=True):
        ids = around(cells, y, x)
        if len(ids) == 2 and cells[y, x] != 0:
            cut = warped.copy()
            cut[y, x] = False
            count += len(around(ndimage.label(cut, CROSS)[0], y, x)) > 2
        elif len(ids) > 2:
            count += 1
    return count


def test_fiji_simple_points_are_the_2d_topological_ones() -> None:
    # Fiji's 3D test on the embedded patch == T4(cells) = T8(membrane) = 1, derived directly
    assert np.array_equal(fiji_simple_table(), metrics.simple_point_table())
    assert fiji_simple_table().sum() == 116


def test_identical_and_shifted_boundaries_cost_nothing() -> None:
    truth = square()
    assert splits_and_mergers(warp_truth(truth, as_prob(truth), 0.5), truth > 0) == (0, 0)
    shifted = np.roll(truth, 1, axis=1)
    warped = warp_truth(truth, as_prob(shifted), 0.5)
    assert np.array_equal(warped, shifted > 0)  # a one-pixel shift warps away completely


def test_a_cut_through_a_cell_is_one_split_pixel() -> None:
    truth = square()
    cut = truth.copy()
    cut[7, 2:14] = 0  # a membrane across the cell, 12 pixels
    # flipped from the left (column-major order): all but the last pixel are simple
    warped = warp_truth(truth, as_prob(cut), 0.5)
    assert np.count_nonzero(warped != (cut > 0)) == 1
    assert splits_and_mergers(warped, cut > 0) == (1, 0)


def test_a_missing_membrane_is_a_merger_of_every_pixel() -> None:
    two = square()
    two[2:14, 7] = 0  # two cells, a 12-pixel membrane between them
    one = square()
    # each membrane pixel touches both cells: none can flip, all 12 are mergers
    assert splits_and_mergers(warp_truth(two, as_prob(one), 0.5), one > 0) == (0, 12)
    # p > 0.9 is nowhere: both cells shrink to a pixel (object deletions, not counted)
    assert splits_and_mergers_per_threshold(two, as_prob(one), [0.5, 0.9]) == [12, 0]


def test_a_hole_is_not_a_split_or_merger() -> None:
    truth = square()
    holed = truth.copy()
    holed[7, 7] = 0
    warped = warp_truth(truth, as_prob(holed), 0.5)
    assert np.count_nonzero(warped != (holed > 0)) == 1  # the hole cannot be warped in
    assert splits_and_mergers(warped, holed > 0) == (0, 0)


def test_most_confident_mismatches_flip_first() -> None:
    truth = square(8)
    truth[2:6, 2:6] = 255
    prob = np.full(truth.shape, 0.1, np.float32)
    prob[2:6, 2:6] = 0.9
    prob[3, 2:6] = 0.45  # a cut, weakly: one pixel of it must stay a split
    prob[3, 4] = 0.2  # the most confident pixel of the cut flips first, its order matters
    warped = warp_truth(truth, prob, 0.5)
    assert np.array_equal(warped, reference_warp(truth, prob, 0.5))
    assert splits_and_mergers(warped, prob > 0.5) == (1, 0)


@pytest.mark.parametrize("seed", range(6))
def test_fast_warp_and_classification_equal_the_literal_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = ndimage.binary_opening(rng.random((20, 24)) < 0.65).astype(np.uint8) * 255
    noise = ndimage.gaussian_filter(rng.random(truth.shape), 1.0)
    prob = (np.round(np.clip(0.7 * (truth > 0) + noise - 0.2, 0, 1) * 255) / 255).astype(np.float32)
    for t in (0.0, 0.30000000000000004, 0.5, 0.7999999999999999):
        warped = warp_truth(truth, prob, t)
        assert np.array_equal(warped, reference_warp(truth, prob, t))
        assert sum(splits_and_mergers(warped, prob > t)) == reference_splits_and_mergers(
            warped, prob > t
        )


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"need two 2D images of one shape, got \(4, 4\), \(4,"):
        warp_truth(np.ones((4, 4)), np.ones((4, 5), np.float32), 0.5)
