"""Multiscale pyramid of a volume: level ``l`` halves y and x of level ``l - 1`` (2 x 2 mean),
computed blockwise from the level below so memory stays bounded by a few write blocks::

    level l-1:  [a b][c d] ..      level l:  [(a+b+e+f)/4][..]     an odd last row/column is
                [e f][g h] ..                                      averaged with itself

z is never down-sampled (EM stacks are anisotropic).  Integer levels are rounded half to even.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.cluster.streaming import map_bounded
from unet.errors import InputError
from unet.geometry import Box, Coord, blocks
from unet.io import ngff


def level_shape(shape: Sequence[int], level: int) -> Coord:
    """Shape of pyramid level ``level`` of a ``(z, y, x)`` level-0 shape.

    >>> level_shape((3, 100, 61), 2)
    (3, 25, 16)
    """
    f = 2**level
    return (int(shape[0]), -(-int(shape[1]) // f), -(-int(shape[2]) // f))


def downsample(data: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` -> ``(z, ceil(y / 2), ceil(x / 2))`` means of 2 x 2 blocks, same dtype.

    >>> downsample(np.array([[[0, 2, 9], [2, 4, 9]]], dtype=np.uint8)).tolist()
    [[[2, 9]]]
    """
    z, y, x = data.shape
    even = np.pad(data, ((0, 0), (0, y % 2), (0, x % 2)), mode="edge")
    mean = even.astype(np.float32).reshape(z, -(-y // 2), 2, -(-x // 2), 2).mean(axis=(2, 4))
    if data.dtype.kind in "ui":
        return np.round(mean).astype(data.dtype)
    return mean.astype(data.dtype)


def subsample(data: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` -> ``(z, ceil(y / 2), ceil(x / 2))``: the first voxel of each 2 x 2 block
    (nearest; for label images, whose ids must not be averaged).

    >>> subsample(np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint32)).tolist()
    [[[1, 3]]]
    """
    return data[:, ::2, ::2]


@dataclass(frozen=True)
class PyramidJob:
    """Compute box ``box`` of level ``level`` of the volume at ``path`` from level - 1
    (``method``: ``mean`` or ``nearest``)."""

    path: str
    level: int
    box: Box
    method: str = "mean"


def downsample_block(job: PyramidJob) -> int:
    """Task: write one block of a pyramid level; returns its voxel count."""
    src = ngff.open_array(job.path, job.level - 1)
    dst = ngff.open_array(job.path, job.level, mode="r+")
    b = job.box
    src_box = Box(
        (b.offset[0], 2 * b.offset[1], 2 * b.offset[2]),
        (b.shape[0], 2 * b.shape[1], 2 * b.shape[2]),
    ).intersect(Box.from_shape(src.shape))
    reduce = subsample if job.method == "nearest" else downsample
    dst[b.to_slices()] = reduce(np.asarray(src[src_box.to_slices()]))
    return b.size


def build(
    path: str | Path,
    levels: int,
    block_shape: Sequence[int],
    client: Any = None,
    max_in_flight: int = 4,
    method: str = "mean",
) -> None:
    """(Re)create levels ``1 .. levels - 1`` of the volume at ``path`` blockwise.

    ``block_shape`` must be a multiple of level 0's chunks (each level keeps those chunks), so
    blocks never share a chunk.  ``client``: a Dask client, or ``None`` to run here.
    ``method``: ``mean`` (images) or ``nearest`` (labels, :func:`subsample`).  The NGFF
    metadata then lists the levels, each placed by :func:`unet.io.ngff.level_transforms`.
    """
    if method not in ("mean", "nearest"):
        raise InputError(f"pyramid method must be 'mean' or 'nearest', got {method!r}")
    if levels < 1:
        raise InputError(f"pyramid levels must be >= 1 (level 0 included), got {levels}")
    group = zarr.open_group(str(path), mode="r+")
    for name in [k for k in group.array_keys() if k.isdigit() and int(k) > 0]:
        del group[name]  # stale levels of an earlier, interrupted finalisation
    base = ngff.open_array(path, 0)
    for level in range(1, levels):
        shape = level_shape(base.shape, level)
        chunks, shards = ngff.grid_shapes(shape, base.chunks, base.shards)
        group.create_array(
            str(level),
            shape=shape,
            chunks=chunks,
            shards=shards,
            dtype=base.dtype,
            compressors=ngff.compressor(ngff.compression_of(base)),
            fill_value=0,
            dimension_names=ngff.AXES,
        )
        jobs = (PyramidJob(str(path), level, box, method) for box in blocks(shape, block_shape))
        for outcome in map_bounded(client, downsample_block, jobs, max_in_flight):
            if outcome.error is not None:
                raise RuntimeError(
                    f"{path}: pyramid level {level}, block {outcome.item.box} failed: "
                    f"{outcome.error}"
                ) from outcome.error
    ngff.set_levels(path, levels, method)  # scale and (mean: half-voxel) translation per level
