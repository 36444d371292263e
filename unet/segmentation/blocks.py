"""Worker side of blockwise segmentation: one Dask task per block and pass.

Work arrays of a run, beside the labels in ``<out>.partial`` (all removed when it finishes)::

    fragments        (z, y, x) uint32  per-block labels 1..n_b (the block's own ids)
    counts           (gz, gy, gx)      n_b, one chunk per block (written by the block's task)
    (in memory)      offsets[b] = sum of n over the blocks before b: fragment k of block b is
                     global fragment offsets[b] + k (unique per block; tasks get theirs)
    same_{lo,hi}_<a> uint8, axis a of length g_a: does the block's own segmentation (block +
                     halo) put the two voxels of each pair across its lower / upper face along
                     axis a into one object?  (a voxel plane per face, written by its block)
    edges/<b>        (m, 2) uint64     pairs of global fragments to merge, found on the faces
                                       between block b and its next neighbours (on disk, never
                                       in the scheduler); edge_counts holds m per block
    lut              (N + 1,)          global fragment -> final consecutive id (0: background)
    steps/<pass>/blocks_done           done markers of the passes fragments, edges, relabel
                                       (compacted: :mod:`unet.cluster.markers`)

Face rule: two fragments that touch across a block face are one object if, for some pair of
face-adjacent voxels, the segmentations of *both* blocks (each with its halo reaching across
the face) put the two voxels into one object.  Where both blocks' context covers every basin
that reaches the face this reproduces the whole-volume segmentation; disagreement splits
rather than merges.  In ``threshold`` mode (no halo) every touching pair of foreground voxels
joins, which is exact.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from unet.cluster import blockstate
from unet.cluster.blockstate import Layout
from unet.geometry import Box
from unet.io import ngff
from unet.segmentation.config import SegmentConfig
from unet.segmentation.kernels import probability, segment

FRAGMENTS, COUNTS, EDGES, EDGE_COUNTS, LUT = ("fragments", "counts", "edges", "edge_counts", "lut")
PASSES = ("fragments", "edges", "relabel")


def face_axes(mode: str) -> range:
    """Axes whose block faces objects cross: none along z in ``2d``."""
    return range(1, 3) if mode == "2d" else range(3)


def same_name(side: str, axis: int) -> str:
    return f"same_{side}_{axis}"


def face_slices(layout: Layout, index: int, axis: int) -> tuple[slice, ...]:
    """Where block ``index`` keeps its view of one face along ``axis`` in ``same_*_<axis>``."""
    block = layout.block(index)
    where = np.unravel_index(index, layout.grid_shape)
    out = list(block.to_slices())
    out[axis] = slice(int(where[axis]), int(where[axis]) + 1)
    return tuple(out)


@dataclass(frozen=True)
class SegmentJob:
    """One task: pass ``step`` of block ``index`` of ``layout`` into the partial output."""

    step: str
    config: SegmentConfig
    layout: Layout
    pred_path: str
    out_path: str
    index: int
    sampling: tuple[float, float, float] | None = None
    bases: tuple[int, ...] = ()  # edges: offsets of the block and its next neighbours per
    # face axis (-1: none); relabel: (offset, count) of the block


def step_path(out_path: str, step: str) -> str:
    """The group holding pass ``step``'s done markers."""
    return f"{out_path}/steps/{step}"


def _grid_index(layout: Layout, index: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(index, layout.grid_shape))


@functools.lru_cache(maxsize=64)
def _open(out_path: str, name: str, token: str) -> zarr.Array:
    """Work arrays (and ``pred``: the prediction at ``out_path``) opened once per process;
    ``token`` (the layout hash) keeps a replaced partial output's stale metadata from being
    reused."""
    if name == "pred":
        return ngff.open_array(out_path)
    if name.startswith("steps/"):
        return blockstate.open_markers(f"{out_path}/{name}")
    if name == "0":
        return ngff.open_array(out_path, 0, mode="r+")
    node = zarr.open_group(out_path, mode="r+")[name]
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{out_path}/{name} is not an array")
    return node


def _work(job: SegmentJob, name: str) -> zarr.Array:
    return _open(job.out_path, name, job.layout.hash)


def _mark(job: SegmentJob) -> None:
    blockstate.mark(_work(job, f"steps/{job.step}"), job.index, blockstate.DONE)


def fragments_block(job: SegmentJob) -> dict[str, Any]:
    """Segment block + halo in memory, keep the block, write its ids ``1..n`` and ``n``."""
    start = time.perf_counter()
    layout, cfg = job.layout, job.config
    block = layout.block(job.index)
    volume = Box.from_shape(layout.volume_shape)
    read = block.grow(cfg.halo_shape).intersect(volume)
    p = probability(_open(job.pred_path, "pred", job.layout.hash)[read.to_slices()])
    whole = segment(
        p,
        cfg.mode,
        cfg.threshold,
        cfg.seed_distance,
        cfg.merge_threshold,
        cfg.min_size,
        job.sampling,
    )
    if cfg.mode != "threshold":
        _write_faces(job, whole, read)
    labels = whole[block.to_slices(relative_to=read)]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.uint32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)  # consecutive after the crop
    _work(job, FRAGMENTS)[block.to_slices()] = lookup[labels]
    _work(job, COUNTS)[_grid_index(layout, job.index)] = len(ids)
    _mark(job)
    return {"voxels": block.size, "fragments": len(ids), "seconds": time.perf_counter() - start}


def _write_faces(job: SegmentJob, labels: np.ndarray, read: Box) -> None:
    """Store, per inner face of the block, whether its halo segmentation ``labels`` (of box
    ``read``) joins the two voxels of each pair across it."""
    layout = job.layout
    block = layout.block(job.index)
    for axis in face_axes(job.config.mode):
        for side, inner, outer in (
            ("lo", block.begin[axis], block.begin[axis] - 1),
            ("hi", block.end[axis] - 1, block.end[axis]),
        ):
            if not 0 <= outer < layout.volume_shape[axis]:
                continue
            planes = []
            for pos in (inner, outer):
                face = list(block.to_slices(relative_to=read))
                face[axis] = slice(pos - read.offset[axis], pos - read.offset[axis] + 1)
                planes.append(labels[tuple(face)])
            same = (planes[0] == planes[1]) & (planes[0] > 0)
            target = _work(job, same_name(side, axis))
            target[face_slices(layout, job.index, axis)] = same.astype(np.uint8)


def face_pairs(lower: np.ndarray, upper: np.ndarray, agree: np.ndarray | None) -> np.ndarray:
    """Unique pairs ``(m, 2)`` of global fragment ids to merge across one face, from the ids of
    the two facing planes (0: background) and where both blocks join the voxels (``agree``;
    ``None`` in ``threshold`` mode: every foreground pair).

    >>> face_pairs(np.array([1, 1, 2, 2]), np.array([7, 8, 8, 0]), None).tolist()
    [[1, 7], [1, 8], [2, 8]]
    """
    keep = (lower > 0) & (upper > 0)
    if agree is not None:
        keep &= agree.astype(bool)
    lo, up = lower[keep].astype(np.uint64), upper[keep].astype(np.uint64)
    # neighbouring voxels of a face mostly repeat a pair: drop those runs before the sort
    new = np.ones(len(lo), dtype=bool)
    new[1:] = (lo[1:] != lo[:-1]) | (up[1:] != up[:-1])
    pairs = np.stack([lo[new], up[new]], axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def edges_block(job: SegmentJob) -> dict[str, Any]:
    """Merge pairs on the faces between block ``index`` and its next neighbour along each
    axis (along y and x only in ``2d``), stored as ``edges/<index>``."""
    start = time.perf_counter()
    layout, cfg = job.layout, job.config
    block = layout.block(job.index)
    frags = _work(job, FRAGMENTS)
    where = _grid_index(layout, job.index)
    found = []
    for axis in face_axes(cfg.mode):
        if block.end[axis] >= layout.volume_shape[axis]:
            continue
        nxt = list(where)
        nxt[axis] += 1
        neighbour = int(np.ravel_multi_index(nxt, layout.grid_shape))
        face = list(block.to_slices())
        planes = []
        for pos, base in (
            (block.end[axis] - 1, job.bases[0]),
            (block.end[axis], job.bases[1 + axis]),
        ):
            face[axis] = slice(pos, pos + 1)
            ids = np.asarray(frags[tuple(face)]).astype(np.uint64)
            planes.append(np.where(ids > 0, ids + np.uint64(base), np.uint64(0)))
        agree = None
        if cfg.mode != "threshold":
            mine = _work(job, same_name("hi", axis))[face_slices(layout, job.index, axis)]
            theirs = _work(job, same_name("lo", axis))[face_slices(layout, neighbour, axis)]
            agree = np.asarray(mine) & np.asarray(theirs)
        found.append(face_pairs(planes[0], planes[1], agree))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.uint64)
    if len(pairs):
        group = zarr.open_group(f"{job.out_path}/{EDGES}", mode="r+")
        name = str(job.index)
        if name in group:  # written by a killed earlier attempt: the same content
            del group[name]
        group.create_array(name, data=pairs, chunks=(len(pairs), 2), compressors=None)
    _work(job, EDGE_COUNTS)[where] = len(pairs)
    _mark(job)
    return {"voxels": block.size, "edges": len(pairs), "seconds": time.perf_counter() - start}


def relabel_block(job: SegmentJob) -> dict[str, Any]:
    """Write the final ids of block ``index``: ``lut[offsets[b] + k]`` for its fragment ``k``."""
    start = time.perf_counter()
    layout = job.layout
    block = layout.block(job.index)
    base, n = job.bases
    lookup = np.zeros(n + 1, dtype=layout.output_dtype)
    if n:
        lookup[1:] = _work(job, LUT)[base + 1 : base + n + 1]
    frags = np.asarray(_work(job, FRAGMENTS)[block.to_slices()])
    _work(job, "0")[block.to_slices()] = lookup[frags]
    _mark(job)
    return {"voxels": block.size, "seconds": time.perf_counter() - start}


TASKS = {"fragments": fragments_block, "edges": edges_block, "relabel": relabel_block}


def run_job(job: SegmentJob) -> dict[str, Any]:
    """Task entry point: pass ``job.step`` of block ``job.index``."""
    return TASKS[job.step](job)
