"""The overlap-tile plan (see :mod:`unet.geometry`): per write block, the box to read (context
included), the box the net's output covers and the box to keep."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from unet.errors import InputError
from unet.geometry.boxes import Box, Coord, as_coord


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
