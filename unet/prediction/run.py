"""Overlap-tile prediction of terabyte-scale Zarr volumes: blockwise, exact, resumable.

One Dask task per write block reads its own input box (block + context) straight from the raw
Zarr volume (mirrored only at the volume's border, never ``map_overlap``) and writes whole output
chunks, so concurrent writes never meet and need no locks.  Tasks stream through the cluster in
bounded waves (:func:`unet.cluster.executors.map_bounded`).  The result equals one pass of the net
over
the whole volume (up to floating-point summation order).  A run has three steps, which a
Snakemake workflow runs as separate jobs (``run_shard`` as a SLURM array)::

    prepare_output(...)              create <out>.partial with the layout hash and done markers
    run_shard(..., shard=i, n_shards=N)   blocks [i * n / N, (i + 1) * n / N) not yet done
    finalize_output(out, config)     all blocks done? -> pyramid, provenance, rename to <out>

:func:`predict_volume` runs all three.  A killed or failed run resumes with the unfinished blocks.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.checkpoint import resolve
from unet.cluster import blockstate, executors
from unet.cluster.blockstate import BlockError, Layout
from unet.io import ngff, outputs, pyramid
from unet.prediction import blocks as engine
from unet.prediction.config import PredictConfig
from unet.prediction.prepare import make_layout, prepare_output

__all__ = [
    "BlockError",
    "PredictConfig",
    "finalize_output",
    "make_layout",
    "predict_volume",
    "prepare_output",
    "run_shard",
]

log = logging.getLogger("unet.prediction.run")


def _connect(config: PredictConfig) -> Any:
    return executors.connect(
        config.cluster,
        config.workers,
        config.threads,
        config.processes,
        config.slurm,
        config.concurrent_blocks,
        config.dashboard_address,
    )


def _in_flight(config: PredictConfig) -> int:
    if config.cluster == "none":
        return config.concurrent_blocks
    return config.max_in_flight or 2 * config.workers * config.concurrent_blocks


def _run(
    model_path: str | Path,
    out_path: str | Path,
    layout: Layout,
    config: PredictConfig,
    shard: int,
    n_shards: int,
    client: Any,
) -> dict[str, Any]:
    partial = outputs.partial_path(out_path)
    blockstate.require_layout(partial, layout)
    start, stop = blockstate.shard_range(layout.n_blocks, shard, n_shards)
    markers = blockstate.open_markers(partial)
    states = blockstate.read_states(markers, start, stop)
    todo = start + np.flatnonzero(states != blockstate.DONE)
    before = blockstate.count(states)
    compactor = blockstate.Compactor(
        markers, start, stop, settled=start + np.flatnonzero(states == blockstate.DONE)
    )
    log.info(
        "shard %d/%d: blocks [%d, %d): %d done, %d to compute (%d failed before)",
        shard,
        n_shards,
        start,
        stop,
        before["done"],
        len(todo),
        before["failed"],
    )
    spec = _spec(model_path, layout, config)
    jobs = (
        engine.BlockJob(spec, layout, str(partial), int(i), config.tiles_per_batch, config.prefetch)
        for i in todo
    )
    progress = executors.Progress(len(todo), config.progress_seconds)
    failed, first = _compute(client, jobs, config, markers, layout, compactor, progress)
    seconds = time.perf_counter() - progress.start
    summary = {
        "blocks": stop - start,
        "computed": progress.blocks,
        "skipped": before["done"],
        "failed": len(failed),
        "voxels": progress.voxels,
        "seconds": seconds,
        "mvox_per_s": progress.voxels / max(seconds, 1e-9) / 1e6,
    }
    if first is not None:
        raise BlockError(
            f"{partial}: {len(failed)} block(s) failed (first: {failed[:10]}); "
            f"{len(todo) - progress.blocks - len(failed)} not started; rerun to resume. "
            f"First failure: {first}",
            failed,
        )
    return summary


def _spec(model_path: str | Path, layout: Layout, config: PredictConfig) -> engine.EngineSpec:
    """How every block worker loads and runs the model."""
    return engine.EngineSpec(
        str(Path(model_path).resolve()),
        layout.model_checksum,
        config.device,
        config.precision,
        config.channels_last,
        config.compile,
        config.threads,
        config.io_threads,
        cuda_graphs=config.cuda_graphs,
        tta=config.tta,
    )


def _compute(
    client: Any,
    jobs: Iterator[engine.BlockJob],
    config: PredictConfig,
    markers: Any,
    layout: Layout,
    compactor: blockstate.Compactor,
    progress: executors.Progress,
) -> tuple[list[int], str | None]:
    """Run the block jobs, marking each block done or failed; no new job starts once
    ``config.max_failures`` blocks failed.  The failed blocks and what the first failure was."""
    failed: list[int] = []
    first: str | None = None
    for outcome in executors.map_bounded(
        client,
        engine.predict_block,
        jobs,
        _in_flight(config),
        stop=lambda: len(failed) >= config.max_failures,
    ):
        if outcome.error is None:
            progress.update(outcome.value["voxels"])
            compactor.finished(outcome.item.index)
            continue
        index, error = outcome.item.index, outcome.error
        failed.append(index)
        what = blockstate.mark_failed(markers, index, layout.block(index), error)
        compactor.finished(index)
        first = first or what
        log.error("%s", what, exc_info=None if isinstance(error, OSError) else error)
    compactor.flush()
    progress.report()
    return failed, first


def run_shard(
    model_path: str | Path,
    raw_path: str | Path,
    out_path: str | Path,
    config: PredictConfig,
    *,
    shard: int = 0,
    n_shards: int = 1,
    z_range: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Predict the unfinished blocks of contiguous shard ``shard`` of ``n_shards`` into the
    prepared ``<out>.partial``; raises :class:`BlockError` if any block failed.

    Returns counts (``blocks``, ``computed``, ``skipped``, ``failed``), ``voxels``, ``seconds``
    and ``mvox_per_s``.
    """
    model_path = resolve(model_path)
    layout = make_layout(model_path, raw_path, config, z_range)
    with _connect(config) as client:
        return _run(model_path, out_path, layout, config, shard, n_shards, client)


def _finalize(out_path: str | Path, config: PredictConfig, client: Any) -> dict[str, Any]:
    partial = outputs.partial_path(out_path)
    layout = blockstate.require_done(partial)
    inputs = (layout.raw_path, ngff.attributes(partial).get("model"))
    with outputs.staging(out_path, config.overwrite, keep_partial=True, inputs=inputs) as tmp:
        pyramid.build(tmp, config.pyramid_levels, layout.block_shape, client, _in_flight(config))
        group = zarr.open_group(str(tmp), mode="r+")
        attrs: dict[str, Any] = group.attrs.asdict()  # pyramid.build wrote the levels' metadata
        prov = dict(attrs["unet"])
        prov.update(
            completed=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            pyramid_levels=config.pyramid_levels,
        )
        group.attrs["unet"] = prov
        del group[blockstate.MARKERS]
    log.info(
        "%s: finished (%d blocks, %d pyramid levels)",
        out_path,
        layout.n_blocks,
        config.pyramid_levels,
    )
    return {"out": str(out_path), "total_blocks": layout.n_blocks}


def finalize_output(out_path: str | Path, config: PredictConfig) -> dict[str, Any]:
    """Check every block is done, build the pyramid, record completion and rename
    ``<out>.partial`` to ``out``.  Raises :class:`BlockError` naming unfinished blocks."""
    with _connect(config) as client:
        return _finalize(out_path, config, client)


def predict_volume(
    model_path: str | Path,
    raw_path: str | Path,
    out_path: str | Path,
    config: PredictConfig,
    *,
    z_range: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Predict ``raw_path`` (or its slices ``z_range``) into the OME-Zarr volume ``out_path``:
    prepare (or resume), run all blocks, finalise.  Returns the run summary.

    ``model_path``: a model.pt, a bioimage.io package or a shipped model's name (isbi2012)."""
    model_path = resolve(model_path)
    layout = prepare_output(model_path, raw_path, out_path, config, z_range=z_range)
    with _connect(config) as client:
        summary = _run(model_path, out_path, layout, config, 0, 1, client)
        summary.update(_finalize(out_path, config, client))
    return summary
