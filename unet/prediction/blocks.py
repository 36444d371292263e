"""Worker side of blockwise prediction: compute one write block per call.

The model is loaded once per process (cached by checksum and settings).  Within a block the
tiles of the *global* plan ``tile_plan(model, volume, tile_shape)`` run in C order,
``tiles_per_batch`` per forward pass (all tiles of a plan share one read shape, so they stack)::

    block of 2 x 3 tiles:   [t0][t1][t2]    batch k+1.. are read from Zarr by a thread pool
                            [t3][t4][t5]    while batch k runs; each finished row of tiles
                                            that completes whole chunks along z is written in
                                            the background while the next row computes

On a GPU all CUDA work of a process runs in one engine thread, so several blocks may be in
flight per worker (their reads and writes overlap the forward passes of the others) while GPU
memory holds one batch at a time.  Reads mirror only at the raw volume's border
(``read_mirrored``), so every tile equals the same tile of one whole-volume pass.  The block's
done marker is written after all of its writes returned; a block that raises is never marked.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from unet.checkpoint import checksum, load_model
from unet.cluster import blockstate
from unet.cluster.blockstate import Layout
from unet.errors import InputError
from unet.geometry import Box, Tile, TilePlan
from unet.io import ngff
from unet.prediction.tiles import (
    CudaGraphs,
    Precision,
    Predictor,
    read_batch,
    resolve_device,
    tile_outputs,
    tile_plan,
)

log = logging.getLogger("unet.prediction.run")


@dataclass(frozen=True)
class EngineSpec:
    """How a worker runs the model (one cached engine per distinct spec and process)."""

    model_path: str
    model_checksum: str
    device: str
    precision: Precision
    channels_last: bool
    compile: bool
    threads: int
    io_threads: int
    cuda_graphs: bool = False
    tta: bool = False


@dataclass(frozen=True)
class BlockJob:
    """One Dask task: predict block ``index`` of ``layout`` into the partial output."""

    spec: EngineSpec
    layout: Layout
    out_path: str
    index: int
    tiles_per_batch: int
    prefetch: int


def quantise(prob: torch.Tensor, dtype: str) -> torch.Tensor:
    """Foreground probability -> stored values: uint8 ``round(p * 255)``, float16 or float32."""
    if dtype == "uint8":
        return torch.round(prob * 255).to(torch.uint8)
    if dtype == "float16":
        return prob.half()
    return prob.float()


def block_tiles(plan: TilePlan, layout: Layout, index: int) -> tuple[list[Tile], int]:
    """The plan's tiles inside block ``index`` in C order, and the number per z-row of tiles."""
    per = [b // t for b, t in zip(layout.block_shape, layout.tile_shape, strict=True)]
    where = np.unravel_index(index, layout.grid_shape)
    ranges = [
        range(int(i) * p, min((int(i) + 1) * p, g))
        for i, p, g in zip(where, per, plan.grid_shape, strict=True)
    ]
    tiles = [plan.tile(idx) for idx in itertools.product(*ranges)]
    return tiles, len(ranges[1]) * len(ranges[2])


@functools.lru_cache(maxsize=16)
def _open(path: str, level: int | None, mode: str, token: str) -> zarr.Array:
    """Zarr arrays opened once per process; ``token`` (the layout hash) keeps stale metadata of
    a replaced partial output from being reused."""
    if level is None:
        return blockstate.open_markers(path, mode)
    return ngff.open_array(path, level, mode=mode)


class Engine:
    """A loaded model plus its read and write thread pools (``io_threads`` each) and one GPU
    thread (one engine per process and spec)."""

    def __init__(self, spec: EngineSpec) -> None:
        if checksum(spec.model_path) != spec.model_checksum:
            raise InputError(
                f"{spec.model_path}: model file changed since the run was prepared "
                f"(checksum {spec.model_checksum[:12]}...); prepare the output again"
            )
        self.device = resolve_device(spec.device)
        if self.device.type == "cpu":
            torch.set_num_threads(spec.threads)
        else:
            torch.backends.cudnn.benchmark = True
        self.predictor = Predictor(
            load_model(spec.model_path),
            self.device,
            spec.precision,
            spec.channels_last,
            tta=spec.tta,
        )
        if spec.compile:
            self.predictor.model = torch.compile(self.predictor.model)  # type: ignore[assignment]
        # the whole batch -> stored values as one CUDA graph per batch shape (fixed tiles)
        self.graphs: CudaGraphs | None = None
        if spec.cuda_graphs and self.device.type == "cuda":
            self.predictor.autocast_cache = False
            self.graphs = CudaGraphs(self._values, self.device)
        self.readers = ThreadPoolExecutor(spec.io_threads, thread_name_prefix="unet-read")
        self.writer = ThreadPoolExecutor(spec.io_threads, thread_name_prefix="unet-write")
        # every CUDA call runs in one persistent thread: forward passes take turns (one batch in
        # GPU memory at a time) and reuse that thread's cuDNN handle and autotuned algorithms
        self.gpu = ThreadPoolExecutor(1, thread_name_prefix="unet-gpu")
        self._local = threading.local()
        self._plans: dict[str, TilePlan] = {}

    def close(self) -> None:
        """Let the engine's threads end once idle (it is being replaced)."""
        for pool in (self.readers, self.writer, self.gpu):
            pool.shutdown(wait=False)

    def plan(self, layout: Layout) -> TilePlan:
        if layout.hash not in self._plans:
            self._plans[layout.hash] = tile_plan(
                self.predictor.model, layout.volume_shape, layout.tile_shape
            )
        return self._plans[layout.hash]

    def _slots(
        self, shape: tuple[int, ...], n: int, dtype: torch.dtype
    ) -> list[torch.Tensor] | None:
        """``n`` pinned host buffers per thread and batch shape (CUDA only).  Slot ``k % n`` is
        refilled for batch ``k + n``, which is read only after batch ``k`` finished, so
        ``n = prefetch + 2`` never overwrites a buffer still being copied."""
        if self.device.type != "cuda":
            return None
        cache = self._local.__dict__.setdefault("slots", {})
        if (shape, n, dtype) not in cache:
            cache[(shape, n, dtype)] = [
                torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(n)
            ]
        return list(cache[(shape, n, dtype)])

    def run(self, job: BlockJob) -> dict[str, Any]:
        """Predict, write and mark one block; returns its voxel count and timings."""
        start = time.perf_counter()
        layout = job.layout
        plan = self.plan(layout)
        raw = _open(layout.raw_path, 0, "r", layout.hash)
        out = _open(job.out_path, 0, "r+", layout.hash)
        block = layout.block(job.index)
        tiles, row = block_tiles(plan, layout, job.index)
        n = job.tiles_per_batch
        batches = [tiles[i : i + n] for i in range(0, len(tiles), n)]
        two_d = self.predictor.model.ndim == 2
        per_tile = plan.input_shape[0] if two_d else 1
        shape = (n * per_tile, 1, *plan.input_shape[3 - self.predictor.model.ndim :])
        host = torch.uint8 if layout.raw_dtype == "uint8" else torch.float32
        slots = self._slots(shape, job.prefetch + 2, host)
        z0 = layout.z_range[0]

        def read(k: int) -> Future[torch.Tensor]:
            dest = None if slots is None else slots[k % len(slots)]
            return self.readers.submit(read_batch, raw, batches[k], two_d, z0, dest)

        pending = deque(read(k) for k in range(min(job.prefetch + 1, len(batches))))
        unit_z = (out.shards or out.chunks)[0]  # partial writes only ever cover whole shards
        buffer = np.empty(block.shape, dtype=layout.output_dtype)
        writes: list[Future[None]] = []
        written = done = 0
        log.debug("block %d: start", job.index)
        for k, batch in enumerate(batches):
            x = pending.popleft().result()
            if k + job.prefetch + 1 < len(batches):
                pending.append(read(k + job.prefetch + 1))
            values = self._forward(x, layout.output_dtype)
            for tile, part in tile_outputs(values, batch, two_d):
                buffer[tile.write.to_slices(relative_to=block)] = part
            done += len(batch)
            ready = _ready_rows(done // row, plan.block_shape[0], block.shape[0], unit_z)
            if ready > written:
                slab = Box(
                    (block.offset[0] + written, *block.offset[1:]),
                    (ready - written, *block.shape[1:]),
                )
                part = buffer[slab.to_slices(relative_to=block)]
                writes.append(self.writer.submit(out.__setitem__, slab.to_slices(), part))
                written = ready
        try:
            for w in writes:
                w.result()
        except OSError as err:  # a full disk: name the array (mark names the marker's file)
            raise blockstate.located(err, out) from err
        markers = _open(job.out_path, None, "r+", layout.hash)
        blockstate.mark(markers, job.index, blockstate.DONE)
        log.debug("block %d: done", job.index)
        return {"index": job.index, "voxels": block.size, "seconds": time.perf_counter() - start}

    def _forward(self, x: torch.Tensor, dtype: str) -> np.ndarray:
        """Batch ``(B, 1, *S_in)`` -> per-sample stored values ``(B, *S_out)`` on the host."""
        if self.device.type == "cuda":
            return self.gpu.submit(self._forward_here, x, dtype).result()
        return self._forward_here(x, dtype)

    def _forward_here(self, x: torch.Tensor, dtype: str) -> np.ndarray:
        if self.graphs is not None:
            values = self.graphs(x, dtype)
        else:
            values = self._values(x.to(self.device, non_blocking=True), dtype)
        return values.cpu().numpy()  # type: ignore[no-any-return]

    def _values(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        """Batch on the device -> stored values on the device (quantised there: the copy to
        the host moves uint8, a quarter of float32's bytes)."""
        return quantise(self.predictor.forward(x), dtype)


def _ready_rows(rows_done: int, tile_z: int, block_z: int, chunk_z: int) -> int:
    """How many z-slices of the block can be written: finished tile rows, cut down to whole
    chunks (shards, if the output has them: never two writes into one shard) unless the block
    is complete.

    >>> _ready_rows(1, 4, 10, 3), _ready_rows(3, 4, 10, 3)
    (3, 10)
    """
    z = min(rows_done * tile_z, block_z)
    return z if z == block_z else z // chunk_z * chunk_z


_ENGINES: dict[EngineSpec, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(spec: EngineSpec) -> Engine:
    """The process's engine for ``spec`` (the model is loaded on first use only)."""
    with _ENGINES_LOCK:
        if spec not in _ENGINES:
            for old in _ENGINES.values():  # a new model or setting replaces the old one
                old.close()
            _ENGINES.clear()
            _ENGINES[spec] = Engine(spec)
        return _ENGINES[spec]


def predict_block(job: BlockJob) -> dict[str, Any]:
    """Task entry point: predict, write and mark block ``job.index``."""
    return get_engine(job.spec).run(job)
