"""The merge graph of a segmentation run: fragment offsets per block, and the global
connected components of the fragments that the edges pass joined (:mod:`unet.segmentation.run`).

Fragment ``k`` of block ``b`` is global fragment ``offsets[b] + k`` (``offsets``: prefix sums
of the blocks' fragment counts, 8 bytes a block in memory); node 0 is the background.  The
components are numbered by their smallest node, i.e. in block order, so the final ids are
``1..K``, consecutive and the same on every run of the same layout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from unet.cluster import blockstate
from unet.cluster.blockstate import Layout
from unet.errors import InputError
from unet.segmentation.blocks import COUNTS, EDGE_COUNTS, EDGES, LUT

log = logging.getLogger("unet.segmentation.run")
LUT_CHUNK = 1 << 16  # a relabel task reads its block's stretch of the lookup table
EDGE_BATCH = 1 << 18  # merge edges joined at a time (4 MB of pairs)


class Bases:
    """Offsets of every block's fragments (prefix sums of the counts), for the tasks."""

    def __init__(self, counts: np.ndarray, layout: Layout) -> None:
        self.counts = counts.astype(np.int64)
        self.offsets = np.cumsum(self.counts) - self.counts
        self.layout = layout

    def __call__(self, step: str, index: int) -> tuple[int, ...]:
        if step == "relabel":
            return int(self.offsets[index]), int(self.counts[index])
        where = np.unravel_index(index, self.layout.grid_shape)
        out = [int(self.offsets[index])]
        for axis in range(3):
            nxt = list(where)
            nxt[axis] += 1
            inside = nxt[axis] < self.layout.grid_shape[axis]
            flat = int(np.ravel_multi_index(nxt, self.layout.grid_shape)) if inside else -1
            out.append(int(self.offsets[flat]) if inside else -1)
        return tuple(out)


def _batched(array: zarr.Array, n: int) -> np.ndarray:
    """All values of a per-block array, read a batch of markers' worth at a time."""
    return blockstate.read_states(array, 0, n).astype(np.uint64)  # type: ignore[arg-type]


def fragment_counts(partial: Path, layout: Layout) -> Bases:
    """The fragment counts of all blocks (after the fragments pass) and their prefix sums."""
    group = zarr.open_group(str(partial), mode="r")
    return Bases(_batched(group[COUNTS], layout.n_blocks), layout)  # type: ignore[arg-type]


def components(partial: Path, layout: Layout, n_fragments: int) -> int:
    """Connected components of the merge graph -> ``lut`` (0 stays 0, ids 1..K in block
    order); returns ``K``.  Skipped when a complete ``lut`` is there.

    Memory: one parent index per fragment (4 bytes below 2**31 fragments) and a batch of
    :data:`EDGE_BATCH` edges; the edge lists stay on disk and are read block by block."""
    group = zarr.open_group(str(partial), mode="r+")
    if LUT in group and group[LUT].attrs.get("complete"):
        return int(group[LUT].attrs["objects"])  # type: ignore[arg-type]
    counts = _batched(group[EDGE_COUNTS], layout.n_blocks)  # type: ignore[arg-type]
    n = n_fragments + 1
    parent = np.arange(n, dtype=np.int32 if n < np.iinfo(np.int32).max else np.int64)
    n_edges = 0
    for pairs in _edge_batches(partial, counts):
        union(parent, pairs)
        n_edges += len(pairs)
    if LUT in group:
        del group[LUT]
    lut = group.create_array(LUT, shape=(n,), dtype=layout.output_dtype, chunks=(LUT_CHUNK,))
    objects = _write_ranks(parent, lut, layout.output_dtype)
    lut.attrs.update({"complete": True, "objects": objects, "edges": n_edges})
    log.info("segment: %d fragments, %d merge edges -> %d objects", n_fragments, n_edges, objects)
    return objects


def _edge_batches(partial: Path, counts: np.ndarray) -> Iterator[np.ndarray]:
    """The edge lists of every block with edges, about :data:`EDGE_BATCH` pairs at a time."""
    edges = zarr.open_group(str(partial / EDGES), mode="r")
    batch: list[np.ndarray] = []
    size = 0
    for i in np.flatnonzero(counts):
        batch.append(np.asarray(edges[str(i)][:]))  # type: ignore[index]
        size += len(batch[-1])
        if size >= EDGE_BATCH:
            yield np.concatenate(batch)
            batch, size = [], 0
    if batch:
        yield np.concatenate(batch)


def find(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The roots of ``nodes`` (pointer jumping, vectorised)."""
    roots = parent[nodes]
    while True:
        up = parent[roots]
        if np.array_equal(up, roots):
            return roots
        roots = up


def union(parent: np.ndarray, pairs: np.ndarray) -> None:
    """Join the two nodes of each of the ``(m, 2)`` ``pairs`` in the union-find forest
    ``parent`` (in place): every component's root is its smallest node, and every node points
    straight at its root afterwards.

    >>> parent = np.arange(6); union(parent, np.array([[4, 2], [5, 4], [1, 3]])); parent.tolist()
    [0, 1, 2, 1, 2, 2]
    """
    if not len(pairs):
        return
    a = find(parent, pairs[:, 0].astype(parent.dtype))
    b = find(parent, pairs[:, 1].astype(parent.dtype))
    joined = a != b
    a, b = a[joined], b[joined]
    if len(a):
        # the roots this batch joins, as a small graph of its own
        roots, index = np.unique(np.concatenate([a, b]), return_inverse=True)
        m = len(a)
        graph = coo_matrix(
            (np.ones(m, dtype=np.int8), (index[:m], index[m:])), shape=(len(roots), len(roots))
        )
        _, comp = connected_components(graph, directed=False)
        # roots ascend, so each component's first root is its smallest
        _, first = np.unique(comp, return_index=True)
        parent[roots] = roots[first][comp]
    while True:  # flatten: no node more than one step from its root
        up = parent[parent]
        if np.array_equal(up, parent):
            return
        parent[:] = up


def _write_ranks(parent: np.ndarray, lut: zarr.Array, dtype: Any) -> int:
    """``lut[g]`` = the rank of fragment ``g``'s root among the roots (node 0: 0), one chunk
    at a time, in place of ``parent`` (a root precedes every node below it); returns ``K``."""
    n = len(parent)
    seen = 0  # roots before the chunk, background node 0 included
    for start in range(0, n, LUT_CHUNK):
        stop = min(n, start + LUT_CHUNK)
        part = parent[start:stop]
        is_root = part == np.arange(start, stop, dtype=parent.dtype)
        ranks = seen + np.cumsum(is_root) - 1
        parent[start:stop][is_root] = ranks[is_root]  # a root's entry becomes its rank
        part = parent[start:stop]
        out = np.where(is_root, part, parent[part])  # a non-root: its (earlier) root's rank
        seen += int(is_root.sum())
        if seen - 1 > np.iinfo(np.dtype(dtype)).max:
            raise InputError(f"{seen - 1} objects do not fit {dtype}; use uint64")
        parent[start:stop] = out
        lut[start:stop] = out.astype(dtype)
    return seen - 1
