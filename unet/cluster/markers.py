"""Per-block done markers of a blockwise run, few files however many blocks.

A worker marks its block in the uint8 array ``blocks_done`` (one chunk, so one small file, per
block: concurrent workers never share a file, and a kill leaves every marker whole)::

    <partial>/blocks_done/zarr.json                   the (gz, gy, gx) array
    <partial>/blocks_done/c/<z>/<y>/<x>               a block marked since the last compaction
    <partial>/blocks_done/done-<start>-<stop>.npy     the compacted markers of flat blocks
                                                      [start, stop) (one file per driver range)

The run's driver (one process per block range; SLURM shard jobs have disjoint ranges) folds the
markers of settled blocks (finished in this run, or done before it) into its range's summary
file every :data:`COMPACT_EVERY` blocks (:class:`Compactor`) and then deletes their chunk files,
so the folder holds about ``COMPACT_EVERY`` files instead of one per block (81,920 for a 20 GB
volume).  The summary is written to a temporary file and renamed, and chunk files are deleted
only after that, so a kill at any point leaves each marker in a chunk file, a summary or both.
A block's state is the strongest of all its records: done > failed > pending.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import zarr

from unet.errors import InputError
from unet.geometry import Box

MARKERS = "blocks_done"
PENDING, DONE, FAILED = 0, 1, 2
COMPACT_EVERY = 512
"""Settled blocks per compaction: the marker folder holds about this many chunk files."""
_RANK = np.array([0, 2, 1], dtype=np.uint8)  # state -> strength: pending < failed < done
_SUMMARY = re.compile(r"done-([0-9]+)-([0-9]+)\.npy")

log = logging.getLogger("unet.cluster.markers")


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


def folder(markers: zarr.Array) -> Path:
    """The folder of a (local) marker array."""
    return Path(str(markers.store_path).removeprefix("file://"))


def located(error: OSError, array: zarr.Array, chunk: Sequence[int] | None = None) -> OSError:
    """``error`` naming the folder of ``array`` (or the file of its chunk ``chunk``) unless it
    names a file already: a ``write()`` that fails on a full disk names none."""
    if error.filename is not None or error.errno is None:
        return error
    where = str(folder(array))
    if chunk is not None:
        where = f"{where}/{array.metadata.encode_chunk_key(tuple(chunk))}"
    return OSError(error.errno, error.strerror, where)


def mark(markers: zarr.Array, flat_index: int, state: int) -> None:
    """Set the marker of one block (its own chunk: safe from concurrent workers); an
    ``OSError`` names the marker's file."""
    index = tuple(int(i) for i in np.unravel_index(flat_index, markers.shape))
    try:
        markers[index] = state
    except OSError as err:
        raise located(err, markers, index) from err


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


# Marker chunks per read.  Zarr fetches all chunks of one selection concurrently, about 2 KB of
# buffers and bookkeeping each: one read of the 81,920 markers of a 20 GB run peaked 178 MB
# above its start, in batches of 4096 it stayed within 11 MB.
READ_BATCH = 4096


def read_states(markers: zarr.Array, start: int, stop: int, batch: int = READ_BATCH) -> np.ndarray:
    """Marker values of flat blocks ``[start, stop)``, from the chunks (reading only the z-planes
    that hold them, a batch of whole y-rows, about ``batch`` markers, at a time) and from the
    summaries of compacted blocks."""
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
    states = np.concatenate(parts)[start - z0 * plane : stop - z0 * plane]
    for (a, b), path in _summaries(markers):
        lo, hi = max(a, start), min(b, stop)
        if lo < hi:
            stored = np.load(path)[lo - a : hi - a]
            here = states[lo - start : hi - start]
            states[lo - start : hi - start] = np.where(_RANK[stored] > _RANK[here], stored, here)
    return states


def count(states: np.ndarray) -> dict[str, int]:
    """Counts of done, failed and pending (never finished) blocks."""
    return {
        "done": int(np.count_nonzero(states == DONE)),
        "failed": int(np.count_nonzero(states == FAILED)),
        "pending": int(np.count_nonzero(states == PENDING)),
    }


def marker_files(markers: zarr.Array) -> list[Path]:
    """Every file of the marker array (metadata, chunks and summaries)."""
    return [Path(root, name) for root, _, names in os.walk(folder(markers)) for name in names]


class Compactor:
    """Folds the markers of settled blocks of one driver's range ``[start, stop)`` into the
    range's summary file and deletes their chunk files (see the module docstring).

    ``settled``: blocks whose markers no longer change in this run (done before it); every
    block reported to :meth:`finished` joins them.  Failing to compact (a full disk) only logs a
    warning: the markers then stay in their chunk files.
    """

    def __init__(
        self,
        markers: zarr.Array,
        start: int,
        stop: int,
        settled: Iterable[int] = (),
        every: int | None = None,
    ) -> None:
        self.markers, self.start, self.stop = markers, start, stop
        self.every = COMPACT_EVERY if every is None else every  # None: the module's, now
        self.settled = {int(i) for i in settled}
        self.new = 0

    def finished(self, index: int) -> None:
        """Block ``index`` was marked done or failed: compact once ``every`` have been."""
        self.settled.add(int(index))
        self.new += 1
        if self.new >= self.every:
            self.flush()

    def flush(self) -> None:
        """Fold the settled blocks' chunk files into the range's summary (written whole, then
        renamed), then delete those chunk files; reads only the chunk files that exist."""
        self.new = 0
        where = folder(self.markers)
        try:
            mine = {
                i: path
                for i, path in _chunk_files(self.markers).items()
                if i in self.settled and self.start <= i < self.stop
            }
            if not mine:
                return
            path = where / f"done-{self.start}-{self.stop}.npy"
            states = np.load(path) if path.exists() else np.zeros(self.stop - self.start, np.uint8)
            for i in mine:
                coords = tuple(int(c) for c in np.unravel_index(i, self.markers.shape))
                value = int(np.asarray(self.markers[coords]))
                if _RANK[value] > _RANK[states[i - self.start]]:
                    states[i - self.start] = value
            _write_atomic(path, states)
            for chunk in mine.values():
                chunk.unlink(missing_ok=True)
        except OSError as err:
            log.warning("%s: markers not compacted (%s); they stay one file per block", where, err)


def _summaries(markers: zarr.Array) -> list[tuple[tuple[int, int], Path]]:
    try:
        names = os.listdir(folder(markers))
    except FileNotFoundError:
        return []
    found = [(_SUMMARY.fullmatch(name), name) for name in names]
    return [((int(m[1]), int(m[2])), folder(markers) / name) for m, name in found if m]


def _chunk_files(markers: zarr.Array) -> dict[int, Path]:
    """Flat block index -> chunk file, for every block marked since the last compaction."""
    root = folder(markers) / "c"
    out: dict[int, Path] = {}
    for here, _, names in os.walk(root):
        parts = Path(here).relative_to(root).parts
        for name in names:
            if not name.isdigit():  # zarr's temporary ``<i>.<hex>.partial``: a write a kill cut
                continue
            index = tuple(int(p) for p in (*parts, name))
            if len(index) == markers.ndim:
                out[int(np.ravel_multi_index(index, markers.shape))] = Path(here, name)
    return out


def _write_atomic(path: Path, states: np.ndarray) -> None:
    """``np.save`` to a temporary file, ``fsync``, rename: a kill leaves the old or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, states)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
