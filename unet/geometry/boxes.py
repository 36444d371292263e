"""Boxes in voxel coordinates: :class:`Box`, the regular grid of blocks over a shape, checks of
chunk multiples and centred crops."""

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


def check_multiple(shape: Sequence[int], of: Sequence[int], what: str, of_what: str) -> None:
    """Raise unless every entry of ``shape`` is a positive multiple of ``of``."""
    if any(c <= 0 for c in of):
        raise InputError(f"{of_what} {tuple(of)} must be positive")
    for s, c in zip(shape, of, strict=True):
        if s <= 0 or s % c:
            raise InputError(f"{what} {tuple(shape)} must be a multiple of {of_what} {tuple(of)}")


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
