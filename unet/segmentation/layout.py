"""The layout of a segmentation run and its partial output (:mod:`unet.segmentation.run`):
``<out>.partial`` with the labels, the work arrays of :mod:`unet.segmentation.blocks` and the
done markers of every pass, created once and kept by a resumed run of the same layout."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import zarr

from unet.cluster import blockstate
from unet.cluster.blockstate import Layout
from unet.errors import InputError
from unet.io import ngff, outputs
from unet.segmentation.blocks import (
    COUNTS,
    EDGE_COUNTS,
    EDGES,
    FRAGMENTS,
    PASSES,
    face_axes,
    same_name,
    step_path,
)
from unet.segmentation.config import SegmentConfig

log = logging.getLogger("unet.segmentation.run")


def make_layout(pred_path: str | Path, config: SegmentConfig) -> Layout:
    """The run's layout: the prediction (and when it was completed) plus the kernel settings
    take the places of raw volume and model checksum."""
    ngff.check_role(pred_path, "prediction")
    pred = ngff.open_array(pred_path)
    if pred.ndim != 3 or np.dtype(pred.dtype).kind not in "uf":
        raise InputError(
            f"{pred_path}: need a (z, y, x) probability volume, got shape {pred.shape} and "
            f"dtype {pred.dtype}"
        )
    stamp = str(ngff.attributes(pred_path).get("completed", ""))
    identity = hashlib.sha256(f"{config.kernel_hash()}:{stamp}".encode()).hexdigest()
    return Layout(
        str(Path(pred_path).resolve()),
        pred.shape,
        str(pred.dtype),
        (0, pred.shape[0]),
        config.block_shape,
        config.block_shape,
        config.chunks,
        config.output_dtype,
        identity,
        config.mode,
    )


def prepare_output(pred_path: str | Path, out_path: str | Path, config: SegmentConfig) -> Layout:
    """Create ``<out>.partial`` (labels, work arrays, markers of every pass), or keep the one
    there if it has the same layout and ``config.resume``."""
    outputs.check_writable(out_path, config.overwrite)
    layout = make_layout(pred_path, config)
    partial = outputs.partial_path(out_path)
    if partial.exists():
        stored = blockstate.stored_layout(step_path(str(partial), PASSES[-1]))
        if stored is not None and stored.hash == layout.hash and config.resume:
            return layout
        log.warning("%s: %s; starting over", partial, "no matching layout or resume disabled")
        outputs.remove(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    attrs = {
        "stage": "segment",
        "prediction": layout.raw_path,
        "z_range": ngff.attributes(pred_path).get("z_range") or [0, layout.volume_shape[0]],
        "config": config.record(),
        "layout": layout.record(),
        "layout_hash": layout.hash,
    }
    labels = ngff.create(
        partial,
        layout.volume_shape,
        config.output_dtype,
        config.chunks,
        ngff.voxel_size(pred_path),
        attrs=attrs,
        name=Path(out_path).stem,
        compression=config.compression,
        translation=ngff.translation(pred_path),  # e.g. the z offset of a slice range
    )
    create_work_arrays(partial, labels, layout, config)
    log.info("%s: prepared %d blocks of %s", partial, layout.n_blocks, layout.block_shape)
    return layout


def create_work_arrays(
    partial: Path, labels: zarr.Array, layout: Layout, config: SegmentConfig
) -> None:
    """The work arrays beside ``labels`` (:mod:`unet.segmentation.blocks`) and every pass's
    (pending) done markers."""
    group = zarr.open_group(str(partial), mode="r+")
    group.create_array(
        FRAGMENTS,
        shape=labels.shape,
        chunks=labels.chunks,
        dtype=np.uint32,
        fill_value=0,
        compressors=ngff.compressor("zstd:1"),
    )
    for name in (COUNTS, EDGE_COUNTS):
        group.create_array(
            name,
            shape=layout.grid_shape,
            chunks=(1, 1, 1),
            dtype=np.uint64,
            fill_value=0,
            compressors=None,
        )
    for axis in face_axes(config.mode) if config.mode != "threshold" else ():
        shape, chunks = list(layout.volume_shape), list(layout.block_shape)
        shape[axis], chunks[axis] = layout.grid_shape[axis], 1
        for side in ("lo", "hi"):
            group.create_array(
                same_name(side, axis),
                shape=tuple(shape),
                chunks=tuple(chunks),
                dtype=np.uint8,
                fill_value=0,
                compressors=ngff.compressor("zstd:1"),
            )
    group.create_group(EDGES)
    for step in PASSES:  # the last pass's markers, which resume checks, are created last
        sub = group.create_group(f"steps/{step}")
        sub.attrs["unet"] = {"layout": layout.record()}
        blockstate.create_markers(sub, layout.grid_shape)
