"""Known answers for the scores of one segmentation on tiny hand-made images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import variation_of_information

from unet.evaluation import metrics
from unet.evaluation.contingency import CROSS


def grid(size: int = 16, period: int = 8, width: int = 1) -> np.ndarray:
    """ISBI-style binary map (255 = cell, 0 = boundary) of square cells."""
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy % period < width) | (xx % period < width), 0, 255).astype(np.uint8)


def as_kind(binary: np.ndarray, kind: str) -> np.ndarray:
    """The same segmentation as bool, ISBI uint8, float probabilities or instance labels."""
    fg = binary != 0
    if kind == "bool":
        return fg
    if kind == "uint8":
        return np.where(fg, 255, 0).astype(np.uint8)
    if kind == "float":
        return np.where(fg, 0.9, 0.1).astype(np.float32)
    labels = np.stack([ndimage.label(s, CROSS)[0] for s in fg.reshape((-1,) + fg.shape[-2:])])
    return labels.reshape(fg.shape).astype(np.int32)


@pytest.mark.parametrize("kind", ["bool", "uint8", "float", "instances"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_identical_segmentations_are_perfect(kind: str, ndim: int) -> None:
    truth = grid() if ndim == 2 else np.stack([grid(), grid(period=5), grid(period=7)])
    pred = as_kind(truth, kind)
    assert metrics.pixel_disagreement(pred, truth) == 0.0
    assert metrics.v_rand(pred, truth) == pytest.approx(1.0)
    assert metrics.v_info(pred, truth) == pytest.approx(1.0)
    assert metrics.iou(pred, truth) == 1.0


def test_pixel_error_and_iou_by_hand() -> None:
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    pred = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]])
    # differing: (0,2) (1,1) (3,2); cells: truth 5, pred 6, both 4, either 7
    assert metrics.pixel_disagreement(pred, truth) == 3 / 16
    assert metrics.iou(pred, truth) == 4 / 7
    assert metrics.iou(np.zeros((2, 2)), np.zeros((2, 2), bool)) == 1.0


def test_simple_point_table_known_neighbourhoods() -> None:
    table = metrics.simple_point_table()
    north, south = 1 << 1, 1 << 6
    assert not table[0]  # isolated pixel: deleting it deletes an object
    assert not table[255]  # interior pixel: deleting it makes a hole
    assert table[north]  # end of a line
    assert not table[north | south]  # middle of a line: deleting it splits
    assert table[0b00000111]  # on a straight border


def test_v_rand_of_a_split_by_hand() -> None:
    # one true cell of 5 pixels cut into 2 + 2, the cut pixel a singleton:
    # sum n_ij^2 + s = 9, sum a^2 = 25, sum b^2 + s = 9 -> V = 2 * 9 / (25 + 9)
    truth = np.array([[1, 1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 1, 1]])
    assert 1 - metrics.v_rand(pred, truth) == pytest.approx(1 - 18 / 34)
    assert metrics.v_info(pred, truth) == 0.0  # one true segment: I(S; T) = 0


def test_rand_and_info_of_a_merge_by_hand() -> None:
    # true cells A, B, C of 2 pixels; the prediction merges A and B through the boundary
    truth = np.array([[1, 1, 0, 1, 1, 0, 1, 1]])
    pred = np.array([[1, 1, 1, 1, 1, 0, 1, 1]])
    # on truth foreground: sum n^2 = 12, sum a^2 = 12, sum b^2 = 4^2 + 2^2 = 20
    assert 1 - metrics.v_rand(pred, truth) == pytest.approx(1 - 24 / 32)
    h_true = math.log(3)
    h_pred = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))  # = I, pred coarsens truth
    assert metrics.v_info(pred, truth) == pytest.approx(2 * h_pred / (h_true + h_pred))


def test_touching_instances_are_kept_apart() -> None:
    truth = np.array([[1, 1, 2, 2]], np.int32)  # two instances, no boundary between them
    pred = np.array([[1, 1, 1, 1]], np.int32)  # instance image with one label -> one cell
    assert metrics.pixel_disagreement(pred, truth) == 0.0
    assert 1 - metrics.v_rand(pred, truth) == pytest.approx(1 - 16 / 24)


def test_stack_pools_rand_pairs_and_averages_info_per_slice() -> None:
    truth = np.array([[[1, 1, 1, 1, 1]], [[1, 1, 1, 1, 1]]])
    pred = np.array([[[1, 1, 0, 1, 1]], [[1, 1, 1, 1, 1]]])
    # pairs summed over slices: 2 (9 + 25) / (25 + 25 + 9 + 25), not the mean of 18/34 and 1
    assert metrics.v_rand(pred, truth) == pytest.approx(68 / 84)
    assert metrics.v_info(pred, truth) == pytest.approx((0.0 + 1.0) / 2)


def test_v_rand_equals_pair_counting() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, (6, 7))
    pred = rng.integers(0, 3, (6, 7))
    # all ordered pairs of truth-foreground pixels, self-pairs included (Fiji's N^2 version);
    # a predicted-background pixel is only paired with itself
    t, p = truth[truth > 0], pred[truth > 0]
    same_true = t[:, None] == t[None, :]
    same_pred = (p[:, None] == p[None, :]) & (p[:, None] > 0) | np.eye(t.size, dtype=bool)
    both = np.count_nonzero(same_true & same_pred)
    precision, recall = both / np.count_nonzero(same_pred), both / np.count_nonzero(same_true)
    f_score = 2 * precision * recall / (precision + recall)
    assert metrics.v_rand(pred, truth) == pytest.approx(f_score)


def test_v_info_matches_skimage_conditional_entropies() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, (12, 12))
    pred = rng.integers(0, 5, (12, 12))
    fg = truth > 0
    # our singletons: give each predicted-background pixel its own label for skimage
    unique_pred = np.where(pred > 0, pred, 100 + np.arange(pred.size).reshape(pred.shape))
    # skimage returns (H(image1 | image0), H(image0 | image1)) in bits
    _, h_true_given_pred = variation_of_information(truth, unique_pred, ignore_labels=(0,))

    def entropy(labels: np.ndarray) -> float:
        p = np.unique(labels, return_counts=True)[1] / labels.size
        return float(-(p * np.log2(p)).sum())

    h_true, h_pred = entropy(truth[fg]), entropy(unique_pred[fg])
    mutual = h_true - h_true_given_pred
    assert metrics.v_info(pred, truth) == pytest.approx(2 * mutual / (h_true + h_pred))


def test_errors_name_the_bad_input() -> None:
    good = np.ones((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"prediction shape \(4, 5\) != truth shape \(4, 4\)"):
        metrics.pixel_disagreement(np.ones((4, 5)), good)
    with pytest.raises(
        ValueError, match=r"prediction is float: a probability map in \[0, 1\]; got \[2.0, 2.0\]"
    ):
        metrics.iou(np.full((4, 4), 2.0), good)
    with pytest.raises(ValueError, match=r"got \[nan, nan\]"):
        metrics.v_rand(np.full((4, 4), np.nan), good)
    with pytest.raises(ValueError, match="truth must not hold negative labels, got -1"):
        metrics.v_rand(good, -good.astype(np.int8))
    with pytest.raises(TypeError, match="prediction must be bool, integer or float"):
        metrics.v_info(good.astype(complex), good)
    with pytest.raises(ValueError, match=r"must be 2D \(Y, X\) or 3D .* got shape \(4,\)"):
        metrics.pixel_disagreement(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="V_rand is undefined: no pixel is foreground"):
        metrics.v_rand(good, np.zeros_like(good))
