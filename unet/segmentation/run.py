"""Blockwise instance segmentation of a probability volume, with globally consistent ids.

Runs on the block layout and Dask executors of prediction, one task per block and pass, each
pass resumable by its done markers (:mod:`unet.cluster.blockstate`; compacted into one file per
pass as the pass runs, as prediction's: :mod:`unet.cluster.markers`)::

    prepare_output(pred, out, config)    <out>.partial: labels, work arrays, markers (.layout)
    1. fragments   per block + halo: kernel (unet.segmentation.kernels), crop, ids 1..n_b, n_b
       offsets     prefix sums of n_b: ids unique per block (here, in memory: 8 B a block)
    2. edges       per block: fragment pairs to merge across its upper faces -> edges/<b>
    3. components  global connected components of the merge graph (scipy.sparse.csgraph,
                   ~12 bytes per fragment and edge), numbered in block order -> lut
    4. relabel     per block: labels = lut[offsets[b] + fragments]  (consecutive ids 1..K)
    finalize       nearest pyramid, NGFF image-label metadata, work arrays removed, rename

A sharded run (``segment.shards`` > 1, separate SLURM jobs) prepares once, runs pass 1 (the
watershed: nearly all of the time) as :func:`run_shard` jobs on contiguous block ranges, then
:func:`finish_shards` checks every block's fragments and runs passes 2-4 and the finalisation.

An object that crosses block faces gets one id.  The ``threshold`` mode equals one
whole-volume call exactly (up to relabelling); ``2d`` / ``3d`` fragments see ``halo`` voxels of
context, and equal the whole-volume call where no watershed basin reaches further than that.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.cluster import blockstate, executors
from unet.cluster.blockstate import BlockError, Layout
from unet.io import ngff, outputs, pyramid
from unet.segmentation.blocks import LUT, PASSES, SegmentJob, run_job, step_path
from unet.segmentation.config import SegmentConfig
from unet.segmentation.graph import Bases, components, fragment_counts
from unet.segmentation.layout import make_layout, prepare_output

__all__ = [
    "SegmentConfig",
    "finalize_output",
    "finish_shards",
    "prepare_output",
    "run_shard",
    "segment_volume",
]

log = logging.getLogger("unet.segmentation.run")


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
    blocks: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run pass ``step`` on every block of the flat range ``blocks`` (all: None) not yet done;
    raise :class:`BlockError` on failures."""
    start = time.perf_counter()
    first_block, stop = blocks or (0, layout.n_blocks)
    markers = blockstate.open_markers(step_path(str(partial), step))
    states = blockstate.read_states(markers, first_block, stop)
    todo = first_block + np.flatnonzero(states != blockstate.DONE)
    compactor = blockstate.Compactor(
        markers, first_block, stop, settled=first_block + np.flatnonzero(states == blockstate.DONE)
    )
    jobs = _jobs(step, pred_path, partial, layout, config, bases, todo)
    done, failed, first = _run_blocks(step, jobs, len(todo), markers, compactor, config, client)
    compactor.flush()
    if first is not None:
        raise BlockError(
            f"{partial}: pass {step}: {len(failed)} block(s) failed (first: {failed[:10]}); "
            f"{len(todo) - done - len(failed)} not started; rerun to resume. "
            f"First failure: {first}",
            failed,
        )
    seconds = time.perf_counter() - start
    skipped = stop - first_block - len(todo)
    log.info("segment %s: %d blocks computed, %d were done, %.1f s", step, done, skipped, seconds)
    return {"computed": done, "skipped": skipped, "seconds": seconds}


def _jobs(
    step: str,
    pred_path: str | Path,
    partial: Path,
    layout: Layout,
    config: SegmentConfig,
    bases: Bases | None,
    todo: np.ndarray,
) -> Iterator[SegmentJob]:
    """The tasks of pass ``step`` for the blocks ``todo``."""
    sampling = ngff.voxel_size(pred_path) if config.mode == "3d" else None
    pred = str(Path(pred_path).resolve())
    for i in todo:
        index = int(i)
        offsets = () if bases is None else bases(step, index)
        yield SegmentJob(step, config, layout, pred, str(partial), index, sampling, offsets)


def _run_blocks(
    step: str,
    jobs: Iterator[SegmentJob],
    n_jobs: int,
    markers: zarr.Array,
    compactor: blockstate.Compactor,
    config: SegmentConfig,
    client: Any,
) -> tuple[int, list[int], str | None]:
    """Run ``jobs``, mark failed blocks (a worker marks its finished block) and report both
    to ``compactor``; return the number done, the failed blocks and the first failure."""
    last = time.perf_counter()
    done, failed, first = 0, list[int](), None
    for outcome in executors.map_bounded(
        client, run_job, jobs, _in_flight(config), stop=lambda: len(failed) >= config.max_failures
    ):
        index, error = outcome.item.index, outcome.error
        if error is not None:
            failed.append(index)
            # the marker write may fail too (a full disk): the block is reported either way
            what = blockstate.mark_failed(markers, index, outcome.item.layout.block(index), error)
            first = first or what
            log.error(
                "segment %s: %s", step, what, exc_info=None if isinstance(error, OSError) else error
            )
        else:
            done += 1
        compactor.finished(index)
        if time.perf_counter() - last >= config.progress_seconds:
            last = time.perf_counter()
            log.info("segment %s: %d/%d blocks", step, done, n_jobs)
    return done, failed, first


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
        _merge_and_relabel(pred_path, out_path, layout, config, client, summary)
    return _summary(summary, out_path, layout, time.perf_counter() - start)


def run_shard(
    pred_path: str | Path,
    out_path: str | Path,
    config: SegmentConfig,
    *,
    shard: int = 0,
    n_shards: int = 1,
) -> dict[str, Any]:
    """Pass 1 (fragments) on the unfinished blocks of contiguous shard ``shard`` of
    ``n_shards`` (one job of a sharded run); :class:`BlockError` if any block failed."""
    layout, partial = _prepared(pred_path, out_path, config)
    blocks = blockstate.shard_range(layout.n_blocks, shard, n_shards)
    with _connect(config) as client:
        result = _run_pass("fragments", pred_path, partial, layout, config, client, blocks=blocks)
    return {"shard": shard, "n_shards": n_shards, "blocks": list(blocks), **result}


def finish_shards(
    pred_path: str | Path, out_path: str | Path, config: SegmentConfig
) -> dict[str, Any]:
    """Passes 2-4 and the finalisation of a sharded run, once every block's fragments are
    done (:class:`BlockError` naming the blocks that are not)."""
    start = time.perf_counter()
    layout, partial = _prepared(pred_path, out_path, config)
    blockstate.require_done(step_path(str(partial), "fragments"))
    summary: dict[str, Any] = {"blocks": layout.n_blocks}
    with _connect(config) as client:
        _merge_and_relabel(pred_path, out_path, layout, config, client, summary)
    return _summary(summary, out_path, layout, time.perf_counter() - start)


def _prepared(
    pred_path: str | Path, out_path: str | Path, config: SegmentConfig
) -> tuple[Layout, Path]:
    """The layout and ``<out>.partial`` of a run that :func:`prepare_output` prepared."""
    layout = make_layout(pred_path, config)
    partial = outputs.partial_path(out_path)
    blockstate.require_layout(step_path(str(partial), PASSES[-1]), layout)
    return layout, partial


def _merge_and_relabel(
    pred_path: str | Path,
    out_path: str | Path,
    layout: Layout,
    config: SegmentConfig,
    client: Any,
    summary: dict[str, Any],
) -> None:
    """Passes 2-4 and the finalisation, after every block's fragments; fills ``summary``."""
    partial = outputs.partial_path(out_path)
    bases = fragment_counts(partial, layout)
    summary["fragments_total"] = int(bases.counts.sum())
    summary["edges"] = _run_pass("edges", pred_path, partial, layout, config, client, bases)
    summary["objects"] = components(partial, layout, summary["fragments_total"])
    summary["relabel"] = _run_pass("relabel", pred_path, partial, layout, config, client, bases)
    _finalize(pred_path, out_path, config, client, summary["objects"])


def _summary(
    summary: dict[str, Any], out_path: str | Path, layout: Layout, seconds: float
) -> dict[str, Any]:
    voxels = int(np.prod(layout.volume_shape))
    summary.update(
        out=str(out_path),
        voxels=voxels,
        seconds=seconds,
        mvox_per_s=voxels / max(seconds, 1e-9) / 1e6,
    )
    return summary
