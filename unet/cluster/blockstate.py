"""Block layout of a prediction run, its hash, and the per-block done markers that make it
resumable.

A run writes the volume in a regular grid of write blocks (see :mod:`unet.geometry`).  Its
*layout* is everything that decides what a finished block contains: the raw volume, the slice
range, block/tile/chunk shapes, output dtype, model checksum and precision.  The partial output
stores the layout and its hash in ``attrs["unet"]`` and one marker per block in a small uint8
array ``blocks_done`` (:mod:`unet.cluster.markers`: one chunk per block, so concurrent workers
never share a marker chunk, compacted into one file per driver range as blocks finish)::

    out.zarr.partial/0             the prediction (level 0)
    out.zarr.partial/blocks_done   (gz, gy, gx) uint8: 0 pending/orphaned, 1 done, 2 failed

A block's marker is set to 1 only after all of its data was written, so a killed run resumes
with exactly the blocks that were not finished; a run with another layout hash never reuses them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.cluster.markers import (  # noqa: F401  (re-exported: the run's block state)
    DONE,
    FAILED,
    MARKERS,
    PENDING,
    Compactor,
    block_failure,
    count,
    create_markers,
    located,
    mark,
    mark_failed,
    marker_files,
    open_markers,
    read_states,
)
from unet.errors import InputError, StageError
from unet.geometry import Box, Coord

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Layout:
    """What decides the content of every write block of one prediction run.

    ``volume_shape`` (the output) is the raw shape with z restricted to ``z_range``.

    >>> lay = Layout("raw.zarr", (5, 100, 100), "uint8", (1, 5), (2, 64, 64), (2, 64, 64),
    ...              (1, 64, 64), "uint8", "abc", "fp32")
    >>> lay.volume_shape, lay.grid_shape, lay.block(3)
    ((4, 100, 100), (2, 2, 2), Box(offset=(0, 64, 64), shape=(2, 36, 36)))
    """

    raw_path: str
    raw_shape: Coord
    raw_dtype: str
    z_range: tuple[int, int]
    block_shape: Coord
    tile_shape: Coord
    chunks: Coord
    output_dtype: str
    model_checksum: str
    precision: str
    version: int = LAYOUT_VERSION
    tta: bool = False

    def __post_init__(self) -> None:
        for name in ("raw_shape", "z_range", "block_shape", "tile_shape", "chunks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def volume_shape(self) -> Coord:
        z0, z1 = self.z_range
        return (z1 - z0, *self.raw_shape[1:])

    @property
    def grid_shape(self) -> Coord:
        return tuple(-(-v // b) for v, b in zip(self.volume_shape, self.block_shape, strict=True))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid_shape)

    def block(self, flat_index: int) -> Box:
        """The write box of block ``flat_index`` (C order), clipped to the volume."""
        index = np.unravel_index(flat_index, self.grid_shape)
        begin = tuple(int(i) * b for i, b in zip(index, self.block_shape, strict=True))
        return Box(begin, self.block_shape).intersect(Box.from_shape(self.volume_shape))

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists); ``tta`` only when set, so that the layouts of
        runs without it keep the hash they had before the setting existed."""
        record = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not record["tta"]:
            del record["tta"]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Layout:
        return cls(**record)

    @property
    def hash(self) -> str:
        text = json.dumps(self.record(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def diff(self, other: Layout) -> str:
        """A readable list of the fields that differ (for log and error messages)."""
        a, b = self.record(), other.record()
        return ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b.get(k))


class BlockError(StageError):
    """Blocks failed or are not done; ``failed`` lists (some of) their flat indices."""

    def __init__(self, message: str, failed: Sequence[int] | np.ndarray = ()) -> None:
        super().__init__(message)
        self.failed = [int(i) for i in failed]


def stored_layout(path: str | Path) -> Layout | None:
    """The layout recorded in a partial output, or ``None`` if ``path`` holds no complete one."""
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs: dict[str, Any] = group.attrs.asdict()
        record = attrs["unet"]["layout"]
        if MARKERS not in group:  # creation was interrupted before the markers existed
            return None
        return Layout.from_record(dict(record))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError, TypeError, ValueError):
        return None


def require_layout(path: str | Path, layout: Layout) -> None:
    """Raise unless ``path`` is a partial output prepared for exactly ``layout``."""
    stored = stored_layout(path)
    if stored is None:
        raise FileNotFoundError(f"{path}: no prepared (partial) output; run prepare_output")
    if stored.hash != layout.hash:
        raise InputError(
            f"{path}: prepared for another layout ({stored.diff(layout)}); run prepare_output again"
        )


def require_done(path: str | Path) -> Layout:
    """The layout of the partial output at ``path``; raise :class:`BlockError` naming the
    failed and never-finished blocks unless every block is done."""
    layout = stored_layout(path)
    if layout is None:
        raise FileNotFoundError(f"{path}: no blockwise run in progress to finalise")
    states = read_states(open_markers(path, "r"), 0, layout.n_blocks)
    counts = count(states)
    if counts["done"] != layout.n_blocks:
        raise BlockError(
            f"{path}: {layout.n_blocks - counts['done']} of {layout.n_blocks} blocks not done "
            f"({counts['failed']} failed, {counts['pending']} never finished); run the shards "
            "again (they resume)",
            np.flatnonzero(states != DONE)[:100],
        )
    return layout


def shard_range(n_blocks: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous flat block range ``[start, stop)`` of shard ``shard`` of ``n_shards``.

    >>> [shard_range(10, i, 3) for i in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise InputError(f"shard must be in [0, n_shards), got shard {shard} of {n_shards}")
    return shard * n_blocks // n_shards, (shard + 1) * n_blocks // n_shards
