"""The merge graph's union-find (unet.segmentation.graph): the same components and the same
consecutive ids as one in-memory scipy call, whatever the batches and lookup-table chunks."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from unet.segmentation import graph


def scipy_ids(n: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """What the components pass computed before: components numbered by their first node."""
    ones = np.ones(len(pairs), dtype=np.int8)
    k, comp = connected_components(
        coo_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(n, n)), directed=False
    )
    return k - 1, comp


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batched_union_find_equals_scipy_components(
    seed: int, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    pairs = rng.integers(1, n, size=(int(rng.integers(0, 2 * n)), 2)).astype(np.uint64)
    if seed == 0:  # one long chain whose roots move at every batch
        pairs = np.stack([np.arange(n - 1, 1, -1), np.arange(n - 2, 0, -1)], 1).astype(np.uint64)
    monkeypatch.setattr(graph, "LUT_CHUNK", 7)  # many chunks, roots in earlier ones
    parent = np.arange(n, dtype=np.int32)
    for start in range(0, len(pairs), batch):
        graph.union(parent, pairs[start : start + batch])
        assert np.array_equal(parent[parent], parent)  # flat after every batch
        assert np.all(parent <= np.arange(n))  # a root is its component's smallest node
    lut = zarr.create_array(zarr.storage.MemoryStore(), shape=(n,), dtype="uint32", chunks=(7,))
    objects = graph._write_ranks(parent, lut, np.dtype("uint32"))
    expected_objects, expected = scipy_ids(n, pairs.astype(np.int64))
    assert objects == expected_objects
    assert np.array_equal(lut[:], expected)
    assert lut[0] == 0 and set(np.unique(lut[:])) == set(range(objects + 1))


def test_ids_that_do_not_fit_the_label_dtype_are_refused() -> None:
    parent = np.arange(300, dtype=np.int32)
    lut = zarr.create_array(zarr.storage.MemoryStore(), shape=(300,), dtype="uint8", chunks=(64,))
    with pytest.raises(graph.InputError, match="299 objects do not fit uint8"):
        graph._write_ranks(parent, lut, np.dtype("uint8"))
