"""Contingency tables and slab-by-slab scoring agree with the in-memory metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr

from unet.evaluation import metrics
from unet.evaluation.blockwise import blockwise_scores
from unet.evaluation.contingency import ContingencyTable, as_foreground, as_instances


def volume(seed: int = 0, depth: int = 5, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, ISBI truth): cells of random sizes, the prediction noisy around them."""
    rng = np.random.default_rng(seed)
    truth = np.full((depth, size, size), 255, np.uint8)
    for z in range(depth):
        truth[z, rng.choice(size, 4, replace=False), :] = 0
        truth[z, :, rng.choice(size, 4, replace=False)] = 0
    noise = rng.normal(0.0, 0.25, truth.shape)
    prob = np.clip(np.where(truth > 0, 0.75, 0.25) + noise, 0.0, 1.0).astype(np.float32)
    return prob, truth


class Recording:
    """An array that records the shape of every read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, index: Any) -> np.ndarray:
        out = self.array[index]
        self.reads.append(out.shape)
        return out


def test_as_instances_per_slice() -> None:
    binary = np.array([[255, 0, 0], [0, 255, 255], [0, 0, 255]], np.uint8)
    instances = np.array([[3, 3, 0], [0, 7, 7], [0, 0, 9]], np.uint16)
    labels = as_instances(np.stack([binary, instances]))
    # binary slice: 4-connected components, the diagonal neighbours stay apart
    np.testing.assert_array_equal(labels[0], [[1, 0, 0], [0, 2, 2], [0, 0, 2]])
    np.testing.assert_array_equal(labels[1], instances)  # instance slice: kept
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(as_foreground(np.array([[0.5, 0.51]])), [[False, True]])


def test_table_by_hand_merge_and_repeated_slices() -> None:
    pred = np.array([[1, 1, 0, 2]])
    truth = np.array([[1, 1, 1, 1]])
    table = ContingencyTable.from_labels(pred, truth)
    # sum n^2 + s = 4 + 1 + 1, sum a^2 = 16, sum b^2 + s = 4 + 1 + 1
    assert table.v_rand() == pytest.approx(12 / 22)
    assert table.rand_error() == pytest.approx(10 / 22)
    # the same slice in two halves (truth background elsewhere) merges to the whole
    left, right = ContingencyTable(), ContingencyTable()
    left.add(pred, np.array([[1, 1, 0, 0]]))
    right.add(pred, np.array([[0, 0, 1, 1]]))
    assert left.merge(right).v_rand() == pytest.approx(table.v_rand())
    assert left.v_info() == pytest.approx(table.v_info())
    # different slice indices are scored apart: pooled Rand, mean info
    stack = ContingencyTable()
    stack.add(pred, truth, z=0)
    stack.add(truth, truth, z=1)
    assert stack.v_rand() == pytest.approx(2 * (6 + 16) / (16 + 6 + 16 + 16))
    assert stack.v_info() == pytest.approx((table.v_info() + 1.0) / 2)


def test_table_errors() -> None:
    ok = np.ones((2, 2), np.int32)
    table = ContingencyTable()
    with pytest.raises(ValueError, match=r"prediction shape \(2, 3\) != truth shape \(2, 2\)"):
        table.add(np.ones((2, 3), np.int32), ok)
    with pytest.raises(
        ValueError, match=r"prediction must be \(Y, X\) or \(Z, Y, X\), got shape \(4,\)"
    ):
        table.add(np.ones(4, np.int32), np.ones(4, np.int32))
    with pytest.raises(TypeError, match="prediction must hold integer labels, got dtype float"):
        table.add(ok.astype(float), ok)
    with pytest.raises(
        ValueError, match=r"truth labels must lie in \[0, 2\*\*32\), got \[4294967296, "
    ):
        table.add(ok, ok.astype(np.int64) << 32)
    with pytest.raises(ValueError, match=r"prediction labels .* got \[-1, -1\]"):
        table.add(-ok, ok)
    with pytest.raises(ValueError, match="V_info is undefined: no pixel is foreground"):
        table.v_info()


@pytest.mark.parametrize("block_shape", [1, 2, 3, (5, 24, 24), None])
def test_blockwise_equals_in_memory_metrics(block_shape: Any) -> None:
    prob, truth = volume()
    scores = blockwise_scores(prob, truth, block_shape=block_shape)
    assert scores["pixel_disagreement"] == pytest.approx(metrics.pixel_disagreement(prob, truth))
    assert scores["iou"] == pytest.approx(metrics.iou(prob, truth))
    assert scores["v_rand"] == pytest.approx(metrics.v_rand(prob, truth))
    assert scores["v_info"] == pytest.approx(metrics.v_info(prob, truth))
    assert scores["n_slices"] == 5
    assert 0 < scores["pixel_disagreement"] < 0.5 and 0.0 < scores["v_rand"] < 1.0


def test_blockwise_reads_one_slab_at_a_time() -> None:
    prob, truth = volume(depth=7)
    recorded = Recording(prob)
    blockwise_scores(recorded, truth, block_shape=3)
    assert recorded.reads == [(3, 24, 24), (3, 24, 24), (1, 24, 24)]


def test_blockwise_on_zarr_in_parallel_with_some_slices(tmp_path: Any) -> None:
    prob, truth = volume(seed=1, depth=6)
    stored = zarr.create_array(
        tmp_path / "p.zarr", shape=prob.shape, chunks=(2, 12, 24), dtype="f4"
    )
    stored[:] = prob
    picked = [4, 0, 5]
    serial = blockwise_scores(stored, truth, slices=picked, threshold=0.4)
    parallel = blockwise_scores(stored, truth, slices=picked, threshold=0.4, parallel=True)
    assert parallel == pytest.approx(serial)
    subset = (prob[sorted(picked)], truth[sorted(picked)])
    assert serial["v_rand"] == pytest.approx(metrics.v_rand(*subset, threshold=0.4))
    assert serial["v_info"] == pytest.approx(metrics.v_info(*subset, threshold=0.4))
    assert serial["n_slices"] == 3


def test_blockwise_errors() -> None:
    prob, truth = volume(depth=2)
    with pytest.raises(ValueError, match=r"prediction shape \(2, 24, 24\) != truth shape"):
        blockwise_scores(prob, truth[:1])
    with pytest.raises(ValueError, match=r"needs \(Z, Y, X\) arrays, got shape \(24, 24\)"):
        blockwise_scores(prob[0], truth[0])
    with pytest.raises(ValueError, match=r"blocks must be whole slices \(24, 24\), got \(1, 12"):
        blockwise_scores(prob, truth, block_shape=(1, 12, 24))
    with pytest.raises(ValueError, match=r"got \(0, 24, 24\)"):
        blockwise_scores(prob, truth, block_shape=0)
    with pytest.raises(ValueError, match=r"slices must be a non-empty subset of range\(2\)"):
        blockwise_scores(prob, truth, slices=[2])
