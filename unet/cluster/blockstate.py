"""Block layout of a prediction run, its hash, and the per-block done markers that make it
resumable.

A run writes the volume in a regular grid of write blocks (see :mod:`unet.geometry`).  Its
*layout* is everything that decides what a finished block contains: the raw volume, the slice
range, block/tile/chunk shapes, output dtype, model checksum and precision.  The partial output
stores the layout and its hash in ``attrs["unet"]`` and one marker per block in a small uint8
array ``blocks_done`` (one chunk per block, so concurrent workers never share a marker chunk)::

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

from unet.errors import InputError, StageError
from unet.geometry import Box, Coord

LAYOUT_VERSION = 1
MARKERS = "blocks_done"
PENDING, DONE, FAILED = 0, 1, 2


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


def block_failure(index: int, box: Box, error: BaseException) -> str:
    """One line naming a failed block, its write box and its error.

    >>> err = OSError(28, "No space left on device", "o/0")
    >>> block_failure(3, Box((0, 16, 0), (1, 16, 32)), err)
    "block 3 (z 0:1, y 16:32, x 0:32): OSError: [Errno 28] No space left on device: 'o/0'"
    """
    where = ", ".join(f"{a} {b}:{e}" for a, b, e in zip("zyx", box.begin, box.end, strict=True))
    return f"block {index} ({where}): {type(error).__name__}: {error}"


def mark_failed(markers: zarr.Array, index: int, box: Box, error: BaseException) -> str:
    """Mark block ``index`` failed; return :func:`block_failure`'s line, plus the marker's own
    error if that write failed too (a full disk): the block is reported either way, and a
    block without a marker is simply computed again."""
    what = block_failure(index, box, error)
    try:
        mark(markers, index, FAILED)
    except OSError as err:
        what += f"; its failed marker was not written either: {err}"
    return what


def located(error: OSError, array: zarr.Array, chunk: Sequence[int] | None = None) -> OSError:
    """``error`` naming the folder of ``array`` (or the file of its chunk ``chunk``) unless it
    names a file already: a ``write()`` that fails on a full disk names none."""
    if error.filename is not None or error.errno is None:
        return error
    where = str(array.store_path).removeprefix("file://")
    if chunk is not None:
        where = f"{where}/{array.metadata.encode_chunk_key(tuple(chunk))}"
    return OSError(error.errno, error.strerror, where)


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
        raise FileNotFoundError(f"{path}: no prepared prediction output; run prepare_output")
    if stored.hash != layout.hash:
        raise InputError(
            f"{path}: prepared for another layout ({stored.diff(layout)}); run prepare_output again"
        )


def require_done(path: str | Path) -> Layout:
    """The layout of the partial output at ``path``; raise :class:`BlockError` naming the
    failed and never-finished blocks unless every block is done."""
    layout = stored_layout(path)
    if layout is None:
        raise FileNotFoundError(f"{path}: no prediction in progress to finalise")
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


def create_markers(group: zarr.Group, grid_shape: Sequence[int]) -> zarr.Array:
    """The (all pending) marker array of a new partial output: one chunk per block."""
    return group.create_array(
        MARKERS,
        shape=tuple(grid_shape),
        chunks=(1,) * len(grid_shape),
        dtype=np.uint8,
        fill_value=PENDING,
        compressors=None,
    )


def open_markers(path: str | Path, mode: str = "r+") -> zarr.Array:
    """The marker array of the partial output at ``path``."""
    node = zarr.open_group(str(path), mode="r" if mode == "r" else "r+")[MARKERS]
    if not isinstance(node, zarr.Array):
        raise InputError(f"{path}/{MARKERS} is not an array")
    return node


def shard_range(n_blocks: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous flat block range ``[start, stop)`` of shard ``shard`` of ``n_shards``.

    >>> [shard_range(10, i, 3) for i in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise InputError(f"shard must be in [0, n_shards), got shard {shard} of {n_shards}")
    return shard * n_blocks // n_shards, (shard + 1) * n_blocks // n_shards


# Marker chunks per read.  Zarr fetches all chunks of one selection concurrently, about 2 KB of
# buffers and bookkeeping each: one read of the 81,920 markers of a 20 GB run peaked 178 MB
# above its start, in batches of 4096 it stayed within 11 MB.
READ_BATCH = 4096


def read_states(markers: zarr.Array, start: int, stop: int, batch: int = READ_BATCH) -> np.ndarray:
    """Marker values of flat blocks ``[start, stop)``, reading only the z-planes that hold them,
    a batch of whole y-rows (about ``batch`` markers) at a time."""
    if stop <= start:
        return np.zeros(0, dtype=np.uint8)
    _, gy, gx = markers.shape
    plane, rows = gy * gx, max(1, batch // gx)
    z0, z1 = start // plane, -(-stop // plane)
    parts = [
        np.asarray(markers[z, y : y + rows]).reshape(-1)
        for z in range(z0, z1)
        for y in range(0, gy, rows)
    ]
    return np.concatenate(parts)[start - z0 * plane : stop - z0 * plane]


def mark(markers: zarr.Array, flat_index: int, state: int) -> None:
    """Set the marker of one block (its own chunk: safe from concurrent workers); an
    ``OSError`` names the marker's file."""
    index = tuple(int(i) for i in np.unravel_index(flat_index, markers.shape))
    try:
        markers[index] = state
    except OSError as err:
        raise located(err, markers, index) from err


def count(states: np.ndarray) -> dict[str, int]:
    """Counts of done, failed and pending (never finished) blocks."""
    return {
        "done": int(np.count_nonzero(states == DONE)),
        "failed": int(np.count_nonzero(states == FAILED)),
        "pending": int(np.count_nonzero(states == PENDING)),
    }
