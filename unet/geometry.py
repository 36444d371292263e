"""Boxes, tiles and mirror extrapolation: every piece of slicing in the project lives here.

Overlap-tile policy (one policy, used by training, prediction and the Snakefile)::

    volume axis:      |0 ..................................................... V)
    write blocks:     [ block 0 )[ block 1 )[ block 2 )[ block 3 )[ b4 )..(clipped at V)
    net output box:  [~ block 0 ~]                                     (block grown by e)
    read box:     [.... block 1 grown by m ....]                   (m = e + context / 2)
                  ^ outside [0, V): mirror-extrapolated (symmetric, repeated for thin axes)

* The volume is cut into a regular grid of *write blocks* starting at 0.  Write blocks are whole
  multiples of the storage chunks, so concurrent writers never touch the same chunk; only the last
  block per axis is clipped by the volume.
* A valid-convolution net maps an input of shape ``I`` to an output of shape ``O = I - context``.
  The network output box is the (unclipped) write block grown by ``e = (O - W) / 2`` on each side,
  the read box is the write block grown by ``m = (I - W) / 2``; ``e`` pixels of output on each side
  are discarded.  Because every read box starts at ``k * W - m`` and ``W`` is a multiple of the
  net's down-sampling factor, all tiles share the same max-pool phase: the stitched result equals
  one forward pass over the whole (mirrored) volume, with no blending and no seams.
* Mirror extrapolation happens only at the *global* border: interior tiles read real neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from unet.errors import InputError

Coord = tuple[int, ...]
T = TypeVar("T")


def as_coord(value: int | Sequence[int], ndim: int, name: str = "value") -> Coord:
    """Broadcast an int or a sequence to an ``ndim``-tuple of ints.

    >>> as_coord(3, 2)
    (3, 3)
    """
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise InputError(f"{name} must have {ndim} entries, got {len(out)}: {tuple(value)}")
    return out


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``[offset, offset + shape)`` in voxel coordinates.

    >>> Box((0, 0), (4, 6)).grow(1).to_slices()
    (slice(-1, 5, None), slice(-1, 7, None))
    """

    offset: Coord
    shape: Coord

    def __post_init__(self) -> None:
        offset = tuple(int(v) for v in self.offset)
        shape = tuple(int(v) for v in self.shape)
        if len(offset) != len(shape):
            raise InputError(f"Box offset {offset} and shape {shape} differ in length")
        if any(s < 0 for s in shape):
            raise InputError(f"Box shape must be non-negative, got {shape}")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "shape", shape)

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> Box:
        """The box ``[0, shape)``."""
        return cls((0,) * len(shape), tuple(shape))

    @classmethod
    def from_bounds(cls, begin: Sequence[int], end: Sequence[int]) -> Box:
        """The box ``[begin, end)``; an inverted axis gives an empty box."""
        return cls(tuple(begin), tuple(max(e - b, 0) for b, e in zip(begin, end, strict=True)))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def begin(self) -> Coord:
        return self.offset

    @property
    def end(self) -> Coord:
        return tuple(o + s for o, s in zip(self.offset, self.shape, strict=True))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def empty(self) -> bool:
        return self.size == 0

    def grow(self, before: int | Sequence[int], after: int | Sequence[int] | None = None) -> Box:
        """Grow by ``before`` at the start and ``after`` (default: ``before``) at the end of each
        axis; negative values shrink."""
        b = as_coord(before, self.ndim, "before")
        a = b if after is None else as_coord(after, self.ndim, "after")
        shape = tuple(s + x + y for s, x, y in zip(self.shape, b, a, strict=True))
        if any(s < 0 for s in shape):
            raise InputError(f"cannot shrink {self} by {b} / {a}: shape would be {shape}")
        return Box(tuple(o - x for o, x in zip(self.offset, b, strict=True)), shape)

    def shift(self, delta: int | Sequence[int]) -> Box:
        d = as_coord(delta, self.ndim, "delta")
        return Box(tuple(o + x for o, x in zip(self.offset, d, strict=True)), self.shape)

    def intersect(self, other: Box) -> Box:
        self._same_ndim(other)
        begin = tuple(max(a, b) for a, b in zip(self.begin, other.begin, strict=True))
        end = tuple(min(a, b) for a, b in zip(self.end, other.end, strict=True))
        return Box.from_bounds(begin, end)

    def contains(self, other: Box) -> bool:
        self._same_ndim(other)
        return all(b0 <= b1 for b0, b1 in zip(self.begin, other.begin, strict=True)) and all(
            e1 <= e0 for e0, e1 in zip(self.end, other.end, strict=True)
        )

    def to_slices(self, relative_to: Box | None = None) -> tuple[slice, ...]:
        """Slices selecting this box, in global coordinates or inside ``relative_to``."""
        origin = (0,) * self.ndim if relative_to is None else relative_to.offset
        if relative_to is not None:
            self._same_ndim(relative_to)
        return tuple(
            slice(b - o, e - o) for b, e, o in zip(self.begin, self.end, origin, strict=True)
        )

    def _same_ndim(self, other: Box) -> None:
        if other.ndim != self.ndim:
            raise InputError(f"boxes differ in dimensionality: {self} vs {other}")


@dataclass(frozen=True)
class Tile:
    """One overlap tile: read ``read`` (context included), keep ``write``.

    ``output`` is the box the network's output covers (``write`` plus discarded extra)."""

    index: Coord
    read: Box
    output: Box
    write: Box


@dataclass(frozen=True)
class TilePlan:
    """A lazy, regular overlap-tile plan over a volume (see the module docstring).

    Parameters
    ----------
    volume_shape : the array's shape, e.g. ``(Z, Y, X)``.
    block_shape : write-block shape ``W`` (a multiple of the storage chunks and of the net factor).
    input_shape : network input shape ``I`` for one tile.
    output_shape : network output shape ``O`` for that input (``W <= O <= I``).

    >>> plan = TilePlan((1, 100), (1, 48), (1, 236), (1, 52))
    >>> len(plan), plan[1].write, plan[1].read
    (3, Box(offset=(0, 48), shape=(1, 48)), Box(offset=(0, -46), shape=(1, 236)))
    """

    volume_shape: Coord
    block_shape: Coord
    input_shape: Coord
    output_shape: Coord

    def __post_init__(self) -> None:
        nd = len(self.volume_shape)
        for name in ("block_shape", "input_shape", "output_shape"):
            object.__setattr__(self, name, as_coord(getattr(self, name), nd, name))
        object.__setattr__(self, "volume_shape", as_coord(self.volume_shape, nd, "volume_shape"))
        for ax, (w, o, i) in enumerate(
            zip(self.block_shape, self.output_shape, self.input_shape, strict=True)
        ):
            if w <= 0:
                raise InputError(f"block shape must be positive, got {self.block_shape}")
            if not w <= o <= i:
                raise InputError(
                    f"axis {ax}: need block {w} <= net output {o} <= net input {i} "
                    f"(block {self.block_shape}, output {self.output_shape}, "
                    f"input {self.input_shape})"
                )
            if (o - w) % 2 or (i - w) % 2:
                raise InputError(
                    f"axis {ax}: net input {i} and output {o} must exceed the block {w} by an "
                    "even number, so the tile can be centred on it"
                )
        if any(v <= 0 for v in self.volume_shape):
            raise InputError(f"volume shape must be positive, got {self.volume_shape}")

    @property
    def volume(self) -> Box:
        return Box.from_shape(self.volume_shape)

    @property
    def grid_shape(self) -> Coord:
        """Number of write blocks per axis."""
        return tuple(-(-v // w) for v, w in zip(self.volume_shape, self.block_shape, strict=True))

    @property
    def extra(self) -> Coord:
        """Output pixels discarded on each side of a block, ``(O - W) / 2``."""
        return tuple((o - w) // 2 for o, w in zip(self.output_shape, self.block_shape, strict=True))

    @property
    def margin(self) -> Coord:
        """Read margin on each side of a block, ``(I - W) / 2``."""
        return tuple((i - w) // 2 for i, w in zip(self.input_shape, self.block_shape, strict=True))

    def __len__(self) -> int:
        return math.prod(self.grid_shape)

    def __getitem__(self, flat_index: int) -> Tile:
        if not 0 <= flat_index < len(self):
            raise IndexError(f"tile {flat_index} out of range for a plan of {len(self)} tiles")
        index = tuple(int(i) for i in np.unravel_index(flat_index, self.grid_shape))
        return self.tile(index)

    def __iter__(self) -> Iterator[Tile]:
        for flat in range(len(self)):
            yield self[flat]

    def tile(self, index: Sequence[int]) -> Tile:
        """The tile of the write block at grid position ``index``."""
        block = Box(
            tuple(i * w for i, w in zip(index, self.block_shape, strict=True)), self.block_shape
        )
        return Tile(
            index=tuple(index),
            read=block.grow(self.margin),
            output=block.grow(self.extra),
            write=block.intersect(self.volume),
        )


def check_multiple(shape: Sequence[int], of: Sequence[int], what: str, of_what: str) -> None:
    """Raise unless every entry of ``shape`` is a positive multiple of ``of``."""
    if any(c <= 0 for c in of):
        raise InputError(f"{of_what} {tuple(of)} must be positive")
    for s, c in zip(shape, of, strict=True):
        if s <= 0 or s % c:
            raise InputError(f"{what} {tuple(shape)} must be a multiple of {of_what} {tuple(of)}")


def mirror_indices(begin: int, end: int, n: int) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``[begin, end)``, mirror-extrapolated
    (symmetric: the edge voxel is repeated; repeated reflection for any distance).

    >>> mirror_indices(-3, 6, 3).tolist()
    [2, 1, 0, 0, 1, 2, 2, 1, 0]
    """
    if n <= 0:
        raise InputError(f"cannot mirror an empty axis (length {n})")
    pos = np.arange(begin, end) % (2 * n)
    return np.where(pos < n, pos, 2 * n - 1 - pos)


def read_mirrored(array: Any, box: Box) -> np.ndarray:
    """Read ``box`` from ``array`` (numpy, Zarr, anything sliceable with a ``shape``), mirroring
    the array at its global border wherever the box reaches outside it.

    Only the hull of the needed in-bounds voxels is read, once.
    """
    volume = Box.from_shape(array.shape)
    if box.ndim != volume.ndim:
        raise InputError(f"box {box} does not match array of shape {array.shape}")
    if volume.contains(box):
        return np.asarray(array[box.to_slices()])
    hull_box = box.intersect(volume)
    before = [max(0, -b) for b in box.begin]
    after = [max(0, e - n) for e, n in zip(box.end, volume.shape, strict=True)]
    if not hull_box.empty and all(
        p <= s for p, s in zip(before + after, hull_box.shape * 2, strict=True)
    ):
        # the mirrored margins fit inside the hull: numpy's pad is ~10x faster than a gather
        data = np.asarray(array[hull_box.to_slices()])
        return np.pad(data, list(zip(before, after, strict=True)), mode="symmetric")
    index = [
        mirror_indices(b, e, n) for b, e, n in zip(box.begin, box.end, volume.shape, strict=True)
    ]
    hull = tuple(slice(int(i.min()), int(i.max()) + 1) if i.size else slice(0, 0) for i in index)
    data = np.asarray(array[hull])
    return data[np.ix_(*[i - h.start for i, h in zip(index, hull, strict=True)])]


class Window:
    """A read-only view of ``array`` restricted to ``box``, indexed in the box's own coordinates
    (ints and unit-step slices), so code written for whole arrays runs on a sub-volume without
    loading it.

    >>> w = Window(np.arange(10), Box((4,), (3,)))
    >>> w.shape, w[1:].tolist(), int(w[-1])
    ((3,), [5, 6], 6)
    """

    def __init__(self, array: Any, box: Box) -> None:
        if not Box.from_shape(array.shape).contains(box):
            raise InputError(f"window {box} is not inside the array of shape {array.shape}")
        self.array, self.box = array, box
        self.shape, self.ndim = box.shape, box.ndim
        self.dtype = getattr(array, "dtype", None)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        out: list[int | slice] = []
        for i, n, o in zip(index, self.shape, self.box.offset, strict=True):
            if isinstance(i, slice):
                start, stop, step = i.indices(n)
                if step != 1:
                    raise InputError(f"Window supports unit-step slices only, got {i}")
                out.append(slice(start + o, max(start, stop) + o))
            else:
                k = int(i) + n if int(i) < 0 else int(i)
                if not 0 <= k < n:
                    raise IndexError(f"index {i} out of range for window axis of length {n}")
                out.append(k + o)
        return np.asarray(self.array[tuple(out)])


def center_crop(array: T, shape: Sequence[int]) -> T:
    """Crop the trailing ``len(shape)`` axes of a numpy array or torch tensor to ``shape``,
    centred (as the skip connections and the loss need). Differences must be even."""
    arr: Any = array
    spatial = tuple(arr.shape[-len(shape) :])
    lead = tuple(arr.shape[: arr.ndim - len(shape)])
    diff = [s - t for s, t in zip(spatial, shape, strict=True)]
    if any(d < 0 or d % 2 for d in diff):
        raise InputError(
            f"cannot centre-crop shape {spatial} to {tuple(shape)}: "
            "each axis must shrink by a non-negative even amount"
        )
    inner = Box(tuple(d // 2 for d in diff), tuple(shape))
    return arr[(slice(None),) * len(lead) + inner.to_slices()]  # type: ignore[no-any-return]


def blocks(shape: Sequence[int], block_shape: Sequence[int]) -> Iterator[Box]:
    """Iterate the regular grid of blocks covering ``shape`` (last blocks clipped), C order."""
    plan_shape = tuple(-(-s // b) for s, b in zip(shape, block_shape, strict=True))
    volume = Box.from_shape(shape)
    for index in np.ndindex(*plan_shape):
        yield Box(
            tuple(i * b for i, b in zip(index, block_shape, strict=True)), tuple(block_shape)
        ).intersect(volume)
