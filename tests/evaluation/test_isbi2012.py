"""The ISBI 2012 challenge's scores: answers computed by hand, and skimage's counting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import adapted_rand_error, contingency_table

from unet.evaluation.contingency import CROSS, ContingencyTable
from unet.evaluation.isbi2012 import (
    LEADERBOARD_THRESHOLDS,
    LEGACY_THRESHOLDS,
    ChallengeScorer,
    challenge_scores,
    f_score,
    fiji_thresholds,
    thin_boundaries,
)
from unet.evaluation.warping import splits_and_mergers_per_threshold


def test_thresholds_are_fijis_accumulated_loop() -> None:
    assert len(LEGACY_THRESHOLDS) == 10 and len(LEADERBOARD_THRESHOLDS) == 11
    assert LEGACY_THRESHOLDS[3] == 0.30000000000000004
    assert LEGACY_THRESHOLDS[-1] == 0.8999999999999999
    assert LEADERBOARD_THRESHOLDS[-1] == 0.9999999999999999
    assert fiji_thresholds(0.25, 0.125) == (0.0, 0.125, 0.25)


def test_f_score_conventions() -> None:
    assert f_score(3, 1, 0) == pytest.approx(6 / 7)
    assert f_score(0, 0, 5) == 0.0  # precision 1 (no false positive), recall 0
    assert f_score(0, 0, 0) == 1.0


def test_pixel_error_is_one_minus_the_best_cell_f_score_by_hand() -> None:
    truth = np.array([[255, 255, 0, 0], [255, 0, 0, 0]], np.uint8)
    prob = np.array([[0.95, 0.35, 0.65, 0.05], [0.55, 0.05, 0.05, 0.05]], np.float32)
    scores = challenge_scores([prob], [truth], warping=False)
    # t = 0.0: 8 cells, TP 3 FP 5 -> F = 6/11;  t = 0.1 .. 0.3: TP 3 FP 1 -> 6/7 (best);
    # t = 0.4, 0.5: TP 2 FP 1 FN 1 -> 2/3;  t = 0.6: TP 1 FP 1 FN 2 -> 2/5;  t >= 0.7: 1/2
    expected_f = [6 / 11] + [6 / 7] * 3 + [2 / 3] * 2 + [2 / 5] + [1 / 2] * 3
    assert scores["by_threshold"]["pixel_error"] == pytest.approx([1 - f for f in expected_f])
    assert scores["pixel_error"] == pytest.approx(1 / 7)
    assert scores["pixel_threshold"] == 0.1


def test_rand_error_by_hand_and_fijis_float_comparison() -> None:
    truth = np.array([[255, 255, 0, 255, 255]], np.uint8)
    prob = np.array([[0.9, 0.9, 0.6, 0.9, 0.9]], np.float32)
    rand = challenge_scores([prob], [truth], warping=False)["by_threshold"]["rand_error"]
    # merged (t <= 0.6: float32(0.6) > 0.6 in double): sum c^2 = 8, sum a^2 = 8, sum b^2 = 16
    # -> F = 16 / 24;  separated (0.7, 0.8): F = 1;  t = 0.9 > float32(0.9): all membrane,
    # 4 singletons -> F = 2 * 4 / (8 + 0 + 4)
    assert rand == pytest.approx([1 / 3] * 7 + [0.0, 0.0] + [1 / 3])
    scores = challenge_scores([prob], [truth], warping=False)
    assert (scores["rand_error"], scores["rand_threshold"]) == (0.0, 0.7)


def test_slices_pool_their_counts() -> None:
    truth = np.array([[255, 255, 0, 255, 255]], np.uint8)
    merged = np.array([[0.9, 0.9, 0.9, 0.9, 0.9]], np.float32)
    scores = challenge_scores([merged, truth / 255], [truth, truth], warping=False)
    # pooled pairs at t = 0.5: 2 (8 + 8) / (8 + 16 + 8 + 8), not the mean of 2/3 and 1
    assert scores["by_threshold"]["rand_error"][5] == pytest.approx(1 - 32 / 40)
    # pooled pixels: TP 8, FP 1 -> F = 16/17
    assert scores["by_threshold"]["pixel_error"][5] == pytest.approx(1 - 16 / 17)


def test_warping_error_is_the_minimum_over_thresholds() -> None:
    truth = np.zeros((16, 16), np.uint8)
    truth[2:14, 2:14] = 255
    truth[2:14, 7] = 0  # two cells
    prob = np.where(truth > 0, 0.95, 0.05).astype(np.float32)
    prob[2:14, 7] = 0.35  # a weak membrane: merged below 0.35
    scores = challenge_scores([prob], [truth])
    # t = 0.0: the outer membrane is cell too, the two cells meet along all 16 rows
    assert scores["by_threshold"]["warping_error"][:4] == [16 / 256] + [12 / 256] * 3
    assert scores["by_threshold"]["warping_error"][4:] == [0.0] * 6
    # the weak membrane is missed below 0.35: every error pixel there is a merger
    assert scores["by_threshold"]["mergers"][:4] == [16, 12, 12, 12]
    assert scores["by_threshold"]["splits"] == [0] * 10
    assert (scores["warping_error"], scores["warping_threshold"]) == (0.0, 0.4)
    assert challenge_scores([prob], [truth], warping=False)["warping_error"] is None


def test_thinning_leaves_one_pixel_lines() -> None:
    labels = np.array([[1, 1, 0, 0, 0, 2, 2]])
    assert thin_boundaries(labels).tolist() == [[1, 1, 1, 0, 2, 2, 2]]
    assert thin_boundaries(np.ones((2, 2), int)).tolist() == [[1, 1], [1, 1]]


def test_thinned_scores_ignore_membrane_width_the_legacy_rand_error_does_not() -> None:
    truth = np.full((12, 12), 255, np.uint8)
    truth[:, 6] = 0  # a one-pixel membrane
    prob = np.full(truth.shape, 0.9, np.float32)
    prob[:, 5:8] = 0.1  # the same membrane, three pixels wide
    scores = challenge_scores([prob], [truth], warping=False)
    assert scores["v_rand_thinned"] == pytest.approx(1.0)
    assert scores["v_info_thinned"] == pytest.approx(1.0)
    assert scores["rand_error"] > 0.05  # 24 truth-cell pixels are singletons here
    assert scores["pixel_error"] > 0.0


def test_rand_f_score_counts_pairs_as_skimage_does() -> None:
    rng = np.random.default_rng(4)
    truth = ndimage.label(ndimage.binary_opening(rng.random((30, 30)) < 0.7), CROSS)[0]
    pred = rng.integers(1, 6, truth.shape)  # no predicted background: no singletons
    table = ContingencyTable.from_labels(pred, truth)
    counts = contingency_table(truth, pred, ignore_labels=[0]).tocsr()
    n = float(counts.sum())
    c2 = float((counts.data**2).sum())
    a2 = float((np.asarray(counts.sum(axis=1)).ravel() ** 2).sum())
    b2 = float((np.asarray(counts.sum(axis=0)).ravel() ** 2).sum())
    assert table.v_rand() == pytest.approx(2 * c2 / (a2 + b2))  # Fiji's N^2 pairs
    # skimage counts pairs without self-pairs (n (n - 1)): the same sums, minus n each
    # (and calls c / a, over the true sizes, its precision)
    error, precision, recall = adapted_rand_error(truth, pred, ignore_labels=(0,))
    assert precision == pytest.approx((c2 - n) / (a2 - n))
    assert recall == pytest.approx((c2 - n) / (b2 - n))
    assert error == pytest.approx(1 - 2 * (c2 - n) / (a2 + b2 - 2 * n))


def test_scorer_errors() -> None:
    scorer = ChallengeScorer()
    with pytest.raises(ValueError, match="no slice was scored"):
        scorer.result()
    with pytest.raises(ValueError, match=r"need two 2D slices of one shape, got \(2, 2\), \(2,"):
        scorer.add(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.uint8))
    with pytest.raises(TypeError, match="probability must be float in"):
        scorer.add(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))


def test_split_merger_pixels_by_slice_are_each_slices_own_count() -> None:
    truth = np.full((12, 12), 255, np.uint8)
    truth[:, 5:7] = 0  # two cells
    perfect = (truth > 0).astype(np.float32)
    gap = perfect.copy()
    gap[4:6, 5:7] = 0.95  # a confident gap merges the two cells at every threshold
    scores = challenge_scores([perfect, gap], [truth, truth])
    by = scores["by_threshold"]
    by_slice = by["split_merger_pixels_by_slice"]
    thresholds = list(LEGACY_THRESHOLDS)
    assert by_slice == [  # what warping each slice alone gives
        splits_and_mergers_per_threshold(truth, p, thresholds) for p in (perfect, gap)
    ]
    assert by_slice[0] == [0] * 10 and min(by_slice[1]) > 0
    assert [a + b for a, b in zip(*by_slice, strict=True)] == [
        s + m for s, m in zip(by["splits"], by["mergers"], strict=True)
    ]
    assert (
        challenge_scores([gap], [truth], warping=False)["by_threshold"][
            "split_merger_pixels_by_slice"
        ]
        is None
    )
