"""Border weight maps of a whole volume, block by block in parallel with Dask, into Zarr.

Each write block (a multiple of the output chunks, so parallel writers never share a chunk) reads
its box grown by a halo of ``ceil(R / sampling)`` voxels, ``R`` the cutoff of
:func:`unet.weights.border.cutoff`, clipped to the volume::

    volume:   |..........................................|
    block:              [== write ==)
    window:        [....[== write ==)....)        (halo >= R on each side, clipped, never mirrored)

Mirroring (as for the network's input) would invent cells beyond the border, so the window is
clipped instead.  The border term of a pixel depends only on the cells within ``R`` of it
(:mod:`unet.weights.border` truncates it beyond ``R``), all of which lie inside the window: the
blocks
reproduce :func:`unet.weights.border.weight_map` on the whole volume.  Class weights come from
global
pixel counts (a first pass over all blocks), so the chunking does not change them either; with
``count_slices`` only those z slices are counted (the training slices: a class balance counted
on validation or test slices would let them shape the training).

Known limit: with ``from_mask=True`` cells are connected components *inside the window*; a cell
that leaves the window and comes back in (only possible for a cell longer than the halo) is seen
as two cells there, which adds a border term between its two parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

from unet.errors import InputError, InputTypeError
from unet.geometry import Box, Coord, as_coord, blocks, check_multiple
from unet.settings.schema import default
from unet.weights.border import (
    ClassWeights,
    cutoff,
    instances_from_mask,
    reach,
    resolve_class_weights,
    separate,
    weight_map,
)


def weight_volume(
    labels: Any,
    out: Any,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = "balanced",
    class_weight_cap: float | None = default("weights", "class_weight_cap"),
    ndim: int = 2,
    from_mask: bool = True,
    block_shape: Sequence[int] | None = None,
    sampling: float | Sequence[float] | None = None,
    count_slices: Sequence[int] | None = None,
    separation: int = 0,
) -> dict[str, Any]:
    """Write the weight map of ``labels`` into ``out``, one Dask task per write block.

    Parameters
    ----------
    labels : (Z, Y, X) Zarr or numpy array: a binary membrane mask (``from_mask=True``, cells
        nonzero) or non-negative integer instance labels (0 = background).
    out : already created (Z, Y, X) Zarr array of the same shape, receiving float32 weights.
    w0, sigma, class_weights, sampling : as for :func:`unet.weights.border.weight_map`;
    ``"balanced"``
        class weights are computed from the pixel counts of the whole volume.
    class_weight_cap : the most a ``"balanced"`` class weight may be (``None``: no cap; see
        :func:`unet.weights.border.resolve_class_weights`; default: the schema's).
    ndim : 2 for cells per (y, x) slice (halo 0 along z), 3 for 3D cells.
    from_mask : compute instances with :func:`unet.weights.border.instances_from_mask` on each
    window.
    block_shape : write-block shape, a multiple of ``out``'s chunks (default: the chunks).
    count_slices : z indices whose pixels the ``"balanced"`` class weights count (default: all).
    separation : width of the separation border between touching instances
        (:func:`unet.weights.border.separation_border`, per slice for ``ndim=2``), made
        background before the class weights are counted and the border term is computed, as in
        the training target (:class:`unet.training.sampler.PatchDataset` ``separation``, which
        must be the same); 0: none.  Instances from a mask never touch: no effect there.

    Returns
    -------
    Provenance: ``w0``, ``sigma``, ``class_weights`` used, ``counts`` (background, cell pixels
    of the counted slices), ``count_slices`` (``None``: all),
    ``halo``, ``cutoff``, ``ndim``, ``from_mask``, ``separation`` and ``block_shape``.

    The blocks run under the active Dask scheduler (threads by default, a
    ``dask.distributed.Client`` if one is active).
    """
    shape = tuple(labels.shape)
    border = {"w0": w0, "sigma": sigma, "class_weights": class_weights, "sampling": sampling}
    block = _check_arguments(labels, out, block_shape, ndim, from_mask, separation, border)
    # cells within R of a block pixel, and their separation borders (within `separation`)
    halo = (0,) * (len(shape) - ndim) + tuple(
        r + int(separation) for r in reach(sigma, ndim, sampling)
    )
    counted_z = _counted_slices(count_slices, shape)
    resolve_class_weights(class_weights, counts=(1, 1), cap=class_weight_cap)  # fail before work

    # named once (not hashed per task); unique, so that concurrent calls never share keys
    run = uuid.uuid4().hex
    source = dask.delayed(labels, name=f"weight-volume-labels-{run}")
    target = dask.delayed(out, name=f"weight-volume-out-{run}")
    grid = list(blocks(shape, block))
    volume = Box.from_shape(shape)
    counts = _class_counts(source, grid, volume, from_mask, counted_z, separation, ndim)
    used = resolve_class_weights(class_weights, counts=counts, cap=class_weight_cap)

    options = {**border, "class_weights": used, "ndim": ndim, "separation": int(separation)}
    tasks = [
        dask.delayed(_write_block)(
            source, target, b, b.grow(halo).intersect(volume), from_mask, options
        )
        for b in grid
    ]
    dask.compute(*tasks)
    return {
        "w0": float(w0),
        "sigma": float(sigma),
        "class_weights": list(used),
        "class_weight_cap": class_weight_cap,
        "counts": [int(n) for n in counts],
        "count_slices": counted_z,
        "halo": list(halo),
        "cutoff": cutoff(sigma),
        "ndim": ndim,
        "from_mask": from_mask,
        "separation": int(separation),
        "block_shape": list(block),
    }


def _check_arguments(
    labels: Any,
    out: Any,
    block_shape: Sequence[int] | None,
    ndim: int,
    from_mask: bool,
    separation: int,
    border: dict[str, Any],
) -> Coord:
    """The write-block shape, once the arrays and settings (``border``: the arguments of
    :func:`unet.weights.border.weight_map`) are known to fit, before any block is read."""
    shape = tuple(labels.shape)
    if tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}, labels have shape {shape}")
    if ndim not in (2, 3) or ndim > len(shape):
        raise InputError(f"ndim must be 2 or 3 (at most labels.ndim {len(shape)}), got {ndim}")
    chunks = tuple(out.chunks)
    block = chunks if block_shape is None else as_coord(block_shape, len(shape), "block_shape")
    check_multiple(block, chunks, "block_shape", "out's chunks")
    weight_map(np.zeros((1,) * ndim, np.int32), **border)  # with weight_map's own messages
    if not isinstance(separation, int | np.integer) or separation < 0:
        raise InputError(f"separation must be an integer >= 0, got {separation!r}")
    if not from_mask and not np.issubdtype(np.dtype(labels.dtype), np.integer):
        raise InputTypeError(f"labels must be integer instance labels, got dtype {labels.dtype}")
    return block


def _counted_slices(count_slices: Sequence[int] | None, shape: Coord) -> list[int] | None:
    """The sorted z indices that the class weights count (None: all), checked."""
    counted_z = None if count_slices is None else sorted({int(z) for z in count_slices})
    if counted_z is not None and not (
        len(shape) == 3 and counted_z and 0 <= counted_z[0] <= counted_z[-1] < shape[0]
    ):
        raise InputError(
            f"count_slices must be a non-empty subset of range({shape[0]}), got {count_slices}"
        )
    return counted_z


def _class_counts(
    source: Any,
    grid: list[Box],
    volume: Box,
    from_mask: bool,
    counted_z: list[int] | None,
    separation: int,
    ndim: int,
) -> tuple[int, int]:
    """(background, cell) pixels of the counted slices, one task per block; a mask must have
    two values."""
    # the separation border of a voxel depends on the voxels within `separation` of it
    near = (0,) * (volume.ndim - ndim) + (int(separation),) * ndim
    counted = dask.compute(
        *(
            dask.delayed(_count)(
                source, b, b.grow(near).intersect(volume), from_mask, counted_z, separation, ndim
            )
            for b in grid
        )
    )
    counts = (sum(c[0] for c in counted), sum(c[1] for c in counted))
    if from_mask:
        values = sorted(set().union(*(c[2] for c in counted)))
        if len(values) > 2:
            raise InputError(f"labels must be a binary mask for from_mask=True, found {values}")
    return counts


def _count(
    labels: Any,
    box: Box,
    window: Box,
    from_mask: bool,
    count_slices: Sequence[int] | None,
    separation: int,
    ndim: int,
) -> tuple[int, int, set[Any]]:
    """Background and cell pixel counts of one block (of its slices in ``count_slices``,
    where given; instances less their separation border, read with its context ``window``),
    and the values of the whole block for a mask."""
    if from_mask or not separation:
        data = np.asarray(labels[box.to_slices()])
    else:
        data = separate(np.asarray(labels[window.to_slices()]), separation, ndim)
        data = data[box.to_slices(relative_to=window)]
    values = set(np.unique(data).tolist()) if from_mask else set()
    if count_slices is not None:
        z0 = box.begin[0]
        data = data[[z - z0 for z in count_slices if z0 <= z < box.end[0]]]
    background = int(np.count_nonzero(data == 0))
    return background, data.size - background, values


def _write_block(
    labels: Any, out: Any, block: Box, window: Box, from_mask: bool, options: dict[str, Any]
) -> None:
    data = np.asarray(labels[window.to_slices()])
    if from_mask:
        data = instances_from_mask(data)
    weights = weight_map(data, **options)
    out[block.to_slices()] = weights[block.to_slices(relative_to=window)]
