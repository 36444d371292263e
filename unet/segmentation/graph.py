"""The merge graph of a segmentation run: fragment offsets per block, and the global
connected components of the fragments that the edges pass joined (:mod:`unet.segmentation.run`).

Fragment ``k`` of block ``b`` is global fragment ``offsets[b] + k`` (``offsets``: prefix sums
of the blocks' fragment counts, 8 bytes a block in memory); node 0 is the background.  The
components are numbered by their smallest node, i.e. in block order, so the final ids are
``1..K``, consecutive and the same on every run of the same layout.
"""

from __future__ import annotations

import logging
from pathlib import Path

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
    order); returns ``K``.  Skipped when a complete ``lut`` is there."""
    group = zarr.open_group(str(partial), mode="r+")
    if LUT in group and group[LUT].attrs.get("complete"):
        return int(group[LUT].attrs["objects"])  # type: ignore[arg-type]
    counts = _batched(group[EDGE_COUNTS], layout.n_blocks)  # type: ignore[arg-type]
    edges = zarr.open_group(str(partial / EDGES), mode="r")
    parts = [np.asarray(edges[str(i)][:]) for i in np.flatnonzero(counts)]  # type: ignore[index]
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.uint64)
    n = n_fragments + 1
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    k, comp = connected_components(graph, directed=False)
    # components are numbered by their first node: background node 0 is component 0
    objects = k - 1
    if objects > np.iinfo(layout.output_dtype).max:
        raise InputError(f"{objects} objects do not fit {layout.output_dtype}; use uint64")
    if LUT in group:
        del group[LUT]
    lut = group.create_array(
        LUT, data=comp.astype(layout.output_dtype), chunks=(min(n, LUT_CHUNK),)
    )
    lut.attrs.update({"complete": True, "objects": objects, "edges": len(pairs)})
    log.info(
        "segment: %d fragments, %d merge edges -> %d objects", n_fragments, len(pairs), objects
    )
    return objects
