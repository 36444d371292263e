"""Mirror extrapolation at a volume's global border, and windows onto sub-volumes."""

from __future__ import annotations

from typing import Any

import numpy as np

from unet.errors import InputError
from unet.geometry.boxes import Box


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
