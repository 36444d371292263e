"""Random training patches from (z, y, x) volumes; sample ``i`` is a pure function of ``(seed, i)``.

One sample, for a net with input ``I`` and output ``O`` (``I - O`` = the context)::

    slice z (2D net) / z-range (3D net)     output box O: uniform position, inside the volume
    +------------------------------+        input box I = output box grown by (I - O) / 2,
    |   .........                  |        read with mirroring where it leaves the volume
    |   : +---+ :                  |        (raw, labels and weights: the same box), then
    |   : | O | :  I               |        augmented together; the loss crops labels and
    |   : +---+ :                  |        weights back to the output box
    |   :.......:                  |
    +------------------------------+

Because the random generator of sample ``i`` is ``np.random.default_rng([seed, i])``, the position
of the sampler is just the sample counter: a resumed run draws the same patches as an
uninterrupted one, and DataLoader worker processes return the same batches as the main process.

A 2D net draws its slice from ``slices`` (any set).  A 3D net draws its z-range inside
``[min(slices), max(slices) + 1)``, which must be contiguous; that sub-volume is mirrored at its
own z-borders, so context never reaches into held-out (validation) slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unet.errors import InputError
from unet.geometry import Box, Window, read_mirrored
from unet.io.normalize import to_unit
from unet.training.augment import AugmentConfig, augment
from unet.training.state import ignore_signals
from unet.weights.border import separate

Source = str | PathLike[str] | Any
"""A volume: a path to an OME-Zarr volume / Zarr array, or an opened (z, y, x) array."""

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def open_volume(source: Source) -> Any:
    """Open a path with :func:`unet.io.ngff.open_array`; pass arrays through."""
    if isinstance(source, (str, PathLike)):
        # imported here: the training step (and bench/) must run where zarr is not installed
        from unet.io.ngff import open_array

        return open_array(Path(source))
    return source


def open_volumes(raw: Source, labels: Source, weights: Source) -> tuple[Any, Any, Any]:
    """Open the three training volumes; ``ValueError`` naming them unless they share one
    (z, y, x) shape."""
    arrays = tuple(open_volume(s) for s in (raw, labels, weights))
    shapes = [tuple(a.shape) for a in arrays]
    if len(shapes[0]) != 3 or len(set(shapes)) != 1:
        names = [
            source_name(s, n)
            for s, n in zip((raw, labels, weights), ("raw", "labels", "weights"), strict=True)
        ]
        detail = ", ".join(f"{n} {s}" for n, s in zip(names, shapes, strict=True))
        raise InputError(f"training volumes must share one (z, y, x) shape, got {detail}")
    return arrays[0], arrays[1], arrays[2]


def source_name(source: Source, default: str) -> str:
    """The path of a volume, or ``"<default> array"`` for an in-memory one (for messages)."""
    return str(source) if isinstance(source, (str, PathLike)) else f"{default} array"


def check_region(slices: Sequence[int], ndim: int, n_slices: int) -> None:
    """Raise ``ValueError`` unless ``slices`` is a non-empty set of z indices in
    ``[0, n_slices)``, and one ascending range for a 3D net."""
    if not slices or any(not 0 <= z < n_slices for z in slices):
        raise InputError(f"training slices {list(slices)} empty or outside [0, {n_slices})")
    if ndim == 3 and list(slices) != list(range(slices[0], slices[0] + len(slices))):
        raise InputError(f"a 3D net trains on one ascending z range, got {list(slices)}")


class PatchDataset(Dataset[Sample]):
    """Training samples ``i = 0, 1, ...`` (map-style: any index, any order, any process).

    Parameters
    ----------
    raw, labels, weights : (z, y, x) volumes of one shape (paths are opened lazily, once per
        process).  Classes are ``labels > 0`` less the separation border between touching
        instances (:func:`unet.weights.border.separation_border`).
    input_shape, output_shape : the net's spatial input / output shape, ``ndim`` entries.
    slices : z indices to sample from.
    seed : base seed; sample ``i`` uses ``np.random.default_rng([seed, i])``.
    augment_config : augmentation, or ``None`` for none.
    separation : width of the separation border made background between touching instances
        (1, the default, is the least that keeps them apart; 0: none).  A binary mask has one
        id and no border.  The weight map should be made with the same width
        (:func:`unet.weights.border.weight_map` ``separation``) so that the border term weights it.

    ``dataset[i]`` is ``(image (1, *I) float32, classes (*I) int64, weights (*I) float32)``.
    """

    def __init__(
        self,
        raw: Source,
        labels: Source,
        weights: Source,
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        slices: Sequence[int],
        seed: int,
        augment_config: AugmentConfig | None,
        separation: int = 1,
    ) -> None:
        self.sources = (raw, labels, weights)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        self.ndim = len(self.input_shape)
        self.slices = tuple(int(z) for z in slices)
        self.seed = int(seed)
        self.augment_config = augment_config
        if separation < 0:
            raise InputError(f"separation must be >= 0, got {separation}")
        self.separation = int(separation)
        self._arrays: tuple[Any, Any, Any] | None = None
        self.shape = tuple(self.arrays[0].shape)
        if self.ndim not in (2, 3) or len(self.output_shape) != self.ndim:
            raise InputError(
                f"input {self.input_shape} and output {self.output_shape} must both be 2D or "
                "both 3D"
            )
        if seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        check_region(self.slices, self.ndim, self.shape[0])
        extent = (len(self.slices), *self.shape[1:]) if self.ndim == 3 else self.shape[1:]
        if any(o > e for o, e in zip(self.output_shape, extent, strict=True)):
            raise InputError(
                f"output tile {self.output_shape} does not fit in the training region "
                f"{extent} of the volume {self.shape}"
            )

    @property
    def arrays(self) -> tuple[Any, Any, Any]:
        if self._arrays is None:
            self._arrays = open_volumes(*self.sources)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        # worker processes reopen paths themselves instead of pickling open stores
        state = dict(self.__dict__)
        if isinstance(self.sources[0], (str, PathLike)):
            state["_arrays"] = None
        return state

    def box(self, index: int) -> tuple[int, Box, np.random.Generator]:
        """The z origin of the training region, the input box inside it, and the generator
        (positioned after the draw) for sample ``index``."""
        rng = np.random.default_rng([self.seed, int(index)])
        margin = [(i - o) // 2 for i, o in zip(self.input_shape, self.output_shape, strict=True)]
        if self.ndim == 2:
            z0 = self.slices[int(rng.integers(len(self.slices)))]
            yx = [
                int(rng.integers(s - o + 1))
                for s, o in zip(self.shape[1:], self.output_shape, strict=True)
            ]
            out = Box((0, *yx), (1, *self.output_shape))
            return z0, out.grow((0, *margin)), rng
        z0 = min(self.slices)
        region = (len(self.slices), *self.shape[1:])
        zyx = [int(rng.integers(s - o + 1)) for s, o in zip(region, self.output_shape, strict=True)]
        return z0, Box(tuple(zyx), self.output_shape).grow(margin), rng

    def __getitem__(self, index: int) -> Sample:
        z0, box, rng = self.box(index)
        region = len(self.slices) if self.ndim == 3 else 1
        raw, labels, weights = (
            read_mirrored(Window(a, Box((z0, 0, 0), (region, *a.shape[1:]))), box).reshape(
                self.input_shape
            )
            for a in self.arrays
        )
        image = to_unit(raw)
        # the input box reaches context / 2 >= separation beyond the output box, so the border
        # is exact wherever the loss looks
        classes = (separate(labels, self.separation) > 0).astype(np.uint8)
        weights = weights.astype(np.float32, copy=False)
        if self.augment_config is not None:
            image, classes, weights = augment(image, classes, weights, rng, self.augment_config)
        return (
            torch.from_numpy(np.ascontiguousarray(image))[None],
            torch.from_numpy(classes.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(weights)),
        )


def patch_loader(
    dataset: PatchDataset,
    first: int,
    last: int,
    batch_size: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader[Sample]:
    """Batches of samples ``first, first + 1, ..., last - 1``, in order, prefetched by
    ``workers`` processes (0: in this process) into pinned memory if ``pin_memory``.

    The loader has its own generator, so creating it leaves the global torch RNG untouched
    (it would otherwise draw a worker base seed from it and shift the dropout masks of a
    resumed run).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(first, last),
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        worker_init_fn=ignore_signals if workers else None,
        generator=torch.Generator(),
    )
