"""Instance scores: hand-computed cases for SEG, V_rand, IoU; perfect and merged segmentations."""

from __future__ import annotations

import numpy as np
import pytest

from unet.errors import InputError
from unet.evaluation.instances import instance_scores, seg_score, v_rand


def test_seg_by_hand() -> None:
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 3]])
    labels = np.array([[4, 4, 4, 0, 0, 9, 9, 9]])
    # R1: S4 covers 3 of its 4 voxels -> J = |R n S| / |R u S| = 3 / 4
    # R2: S9 covers 2/2 -> J = 2/3; R3: S9 covers 1/1 -> J = 1/3
    score, n = seg_score(labels, truth)
    assert n == 3 and score == pytest.approx((0.75 + 2 / 3 + 1 / 3) / 3)


def test_perfect_segmentation_scores_one() -> None:
    truth = np.zeros((2, 6, 6), dtype=np.uint8)
    truth[:, :, :2] = 255
    truth[:, :, 3:] = 255  # binary truth: two cells per section, joined across z
    labels = np.zeros((2, 6, 6), dtype=np.uint32)
    labels[:, :, :2], labels[:, :, 3:] = 7, 3
    s = instance_scores(labels, truth)
    for key in ("v_rand", "v_info", "seg", "v_rand_3d", "v_info_3d", "seg_3d", "iou_foreground"):
        assert s[key] == pytest.approx(1.0), key
    assert s["rand_error"] == pytest.approx(0.0)
    assert s["objects"] == s["truth_objects"] == 2


def test_merge_lowers_scores_by_the_formula() -> None:
    truth = np.array([[[1, 1, 2, 2]]], dtype=np.uint32)
    merged = np.array([[[5, 5, 5, 5]]], dtype=np.uint32)
    s = instance_scores(merged, truth)
    # sum n_ij^2 = 8, sum a_i^2 = 8, sum b_j^2 = 16: P = 1/2, R = 1 -> V_rand = 2/3
    assert s["v_rand"] == pytest.approx(2 / 3) and s["rand_error"] == pytest.approx(1 / 3)
    assert s["seg"] == pytest.approx(0.5)  # S covers each R whole: J = 2/4 for both
    assert s["iou_foreground"] == 1.0 and s["objects"] == 1 and s["truth_objects"] == 2


def test_foreground_iou_of_a_binary_target() -> None:
    truth = np.zeros((1, 4, 4), dtype=np.uint8)
    truth[0, :2] = 1  # 8 voxels of mitochondria
    labels = np.zeros((1, 4, 4), dtype=np.uint32)
    labels[0, 1:3] = 1  # 8 labelled, 4 of them right
    assert instance_scores(labels, truth)["iou_foreground"] == pytest.approx(4 / 12)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="must be equal"):
        instance_scores(np.zeros((1, 2, 2), np.uint32), np.zeros((1, 2, 3), np.uint8))
    with pytest.raises(InputError, match="integer label image"):
        instance_scores(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.uint8))


@pytest.mark.parametrize("binary", [True, False])
def test_v_rand_alone_equals_the_full_scores(binary: bool) -> None:
    """The parameter search's cheap score: instance_scores' v_rand and v_rand_3d, for binary
    truth (cells = components) and instance truth, with a merge, a split and a missed cell."""
    truth = np.zeros((3, 12, 12), dtype=np.uint32)
    truth[:, 1:5, 1:5], truth[:, 1:5, 7:11], truth[:, 7:11, 1:11] = 1, 2, 3
    truth[2, 7:11, 1:11] = 0  # a cell missing from the last section
    labels = truth.copy()
    labels[0, 1:5, 1:11] = 8  # cells 1 and 2 merged in section 0
    labels[1, 7:11, 6:11] = 9  # cell 3 split in section 1
    labels[2, 1:5, 7:11] = 0  # cell 2 missed in section 2
    if binary:
        truth = np.where(truth > 0, 255, 0).astype(np.uint8)
    scores = instance_scores(labels, truth)
    assert v_rand(labels, truth) == scores["v_rand"] < 1
    assert v_rand(labels, truth, per_section=False) == scores["v_rand_3d"] < 1
