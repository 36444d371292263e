"""Blockwise instance segmentation of a probability volume, with globally consistent ids.

Runs on the block layout and Dask executors of prediction, one task per block and pass, each
pass resumable by its done markers (:mod:`unet.cluster.blockstate`; compacted into one file per
pass as the pass runs, as prediction's: :mod:`unet.cluster.markers`)::

    prepare_output(pred, out, config)    <out>.partial: labels, work arrays, markers
    1. fragments   per block + halo: kernel (unet.segmentation.kernels), crop, ids 1..n_b, n_b
       offsets     prefix sums of n_b: ids unique per block (here, in memory: 8 B a block)
    2. edges       per block: fragment pairs to merge across its upper faces -> edges/<b>
    3. components  global connected components of the merge graph (scipy.sparse.csgraph,
                   ~12 bytes per fragment and edge), numbered in block order -> lut
    4. relabel     per block: labels = lut[offsets[b] + fragments]  (consecutive ids 1..K)
    finalize       nearest pyramid, NGFF image-label metadata, work arrays removed, rename

An object that crosses block faces gets one id.  The ``threshold`` mode equals one
whole-volume call exactly (up to relabelling); ``2d`` / ``3d`` fragments see ``halo`` voxels of
context, and equal the whole-volume call where no watershed basin reaches further than that.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.cluster import blockstate, executors
from unet.cluster.blockstate import BlockError, Layout
from unet.errors import InputError
from unet.io import ngff, outputs, pyramid
from unet.segmentation.blocks import (
    COUNTS,
    EDGE_COUNTS,
    EDGES,
    FRAGMENTS,
    LUT,
    PASSES,
    SegmentJob,
    face_axes,
    run_job,
    same_name,
    step_path,
)
from unet.segmentation.config import SegmentConfig
from unet.segmentation.graph import Bases, components, fragment_counts

__all__ = ["SegmentConfig", "finalize_output", "prepare_output", "segment_volume"]

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
    log.info("%s: prepared %d blocks of %s", partial, layout.n_blocks, layout.block_shape)
    return layout


def _in_flight(config: SegmentConfig) -> int:
    if config.cluster == "none":
        return config.concurrent_blocks
    return config.max_in_flight or 2 * config.workers * config.concurrent_blocks


def _run_pass(
    step: str,
    pred_path: str | Path,
    partial: Path,
    layout: Layout,
    config: SegmentConfig,
    client: Any,
    bases: Bases | None = None,
) -> dict[str, Any]:
    """Run pass ``step`` on every block not yet done; raise :class:`BlockError` on failures."""
    markers = blockstate.open_markers(step_path(str(partial), step))
    states = blockstate.read_states(markers, 0, layout.n_blocks)
    todo = np.flatnonzero(states != blockstate.DONE)
    compactor = blockstate.Compactor(
        markers, 0, layout.n_blocks, settled=np.flatnonzero(states == blockstate.DONE)
    )
    sampling = ngff.voxel_size(pred_path) if config.mode == "3d" else None
    jobs = (
        SegmentJob(
            step,
            config,
            layout,
            str(Path(pred_path).resolve()),
            str(partial),
            int(i),
            sampling,
            () if bases is None else bases(step, int(i)),
        )
        for i in todo
    )
    start = last = time.perf_counter()
    done, failed, first = 0, list[int](), None
    for outcome in executors.map_bounded(
        client, run_job, jobs, _in_flight(config), stop=lambda: len(failed) >= config.max_failures
    ):
        if outcome.error is not None:
            index, error = outcome.item.index, outcome.error
            failed.append(index)
            # the marker write may fail too (a full disk): the block is reported either way
            what = blockstate.mark_failed(markers, index, layout.block(index), error)
            compactor.finished(index)
            first = first or what
            log.error(
                "segment %s: %s", step, what, exc_info=None if isinstance(error, OSError) else error
            )
            continue
        done += 1
        compactor.finished(outcome.item.index)
        if time.perf_counter() - last >= config.progress_seconds:
            last = time.perf_counter()
            log.info("segment %s: %d/%d blocks", step, done, len(todo))
    compactor.flush()
    if first is not None:
        raise BlockError(
            f"{partial}: pass {step}: {len(failed)} block(s) failed (first: {failed[:10]}); "
            f"{len(todo) - done - len(failed)} not started; rerun to resume. "
            f"First failure: {first}",
            failed,
        )
    seconds = time.perf_counter() - start
    log.info(
        "segment %s: %d blocks computed, %d were done, %.1f s",
        step,
        done,
        layout.n_blocks - len(todo),
        seconds,
    )
    return {"computed": done, "skipped": layout.n_blocks - len(todo), "seconds": seconds}


def _finalize(
    pred_path: str | Path,
    out_path: str | Path,
    config: SegmentConfig,
    client: Any,
    objects: int,
) -> None:
    partial = outputs.partial_path(out_path)
    layout = blockstate.require_done(step_path(str(partial), "relabel"))
    with outputs.staging(out_path, overwrite=config.overwrite, keep_partial=True) as tmp:
        group = zarr.open_group(str(tmp), mode="r+")
        for name in list(group.keys()):
            if name != "0":  # work arrays
                del group[name]
        pyramid.build(
            tmp,
            config.pyramid_levels,
            layout.block_shape,
            client,
            _in_flight(config),
            method="nearest",
        )
        attrs: dict[str, Any] = group.attrs.asdict()
        source = os.path.relpath(Path(pred_path).resolve(), Path(out_path).resolve())
        group.attrs["ome"] = ngff.label_image(
            ngff.voxel_size(tmp),
            config.pyramid_levels,
            Path(out_path).stem,
            source,
            ngff.translation(tmp),
        )
        prov = dict(attrs["unet"])
        prov.update(
            completed=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            objects=objects,
            pyramid_levels=config.pyramid_levels,
        )
        group.attrs["unet"] = prov
    log.info("%s: finished, %d objects", out_path, objects)


def _connect(config: SegmentConfig) -> Any:
    return executors.connect(
        config.cluster,
        config.workers,
        config.threads,
        config.processes,
        config.slurm,
        config.concurrent_blocks,
    )


def finalize_output(
    pred_path: str | Path, out_path: str | Path, config: SegmentConfig
) -> dict[str, Any]:
    """Nearest pyramid, label metadata, rename; raises :class:`BlockError` unless every block
    was relabelled."""
    lut = zarr.open_group(str(outputs.partial_path(out_path)), mode="r")[LUT]
    objects = int(lut.attrs["objects"])  # type: ignore[arg-type]
    with _connect(config) as client:
        _finalize(pred_path, out_path, config, client, objects)
    return {"out": str(out_path), "objects": objects}


def segment_volume(
    pred_path: str | Path, out_path: str | Path, config: SegmentConfig
) -> dict[str, Any]:
    """Segment the probability volume ``pred_path`` into the OME-Zarr label image
    ``out_path``: prepare (or resume), the four passes, finalise.  Returns a summary."""
    start = time.perf_counter()
    layout = prepare_output(pred_path, out_path, config)
    partial = outputs.partial_path(out_path)
    summary: dict[str, Any] = {"blocks": layout.n_blocks}
    with _connect(config) as client:
        summary["fragments"] = _run_pass("fragments", pred_path, partial, layout, config, client)
        bases = fragment_counts(partial, layout)
        n_fragments = int(bases.counts.sum())
        summary["edges"] = _run_pass("edges", pred_path, partial, layout, config, client, bases)
        objects = components(partial, layout, n_fragments)
        summary["relabel"] = _run_pass("relabel", pred_path, partial, layout, config, client, bases)
        _finalize(pred_path, out_path, config, client, objects)
    seconds = time.perf_counter() - start
    voxels = int(np.prod(layout.volume_shape))
    summary.update(
        out=str(out_path),
        fragments_total=n_fragments,
        objects=objects,
        voxels=voxels,
        seconds=seconds,
        mvox_per_s=voxels / max(seconds, 1e-9) / 1e6,
    )
    return summary
