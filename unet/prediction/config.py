"""Settings of a blockwise prediction run (:mod:`unet.prediction.run`), validated on
construction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from unet.cluster.executors import check_cluster, check_counts
from unet.errors import InputError
from unet.geometry import Coord, as_coord, check_multiple
from unet.io.ngff import compressor
from unet.prediction.tiles import Precision
from unet.settings.schema import default, factory

OUTPUT_DTYPES = ("uint8", "float16", "float32")
PRECISIONS = ("fp32", "bf16", "fp16")
# settings of the workflow around a run, not of one run: separate (SLURM array) jobs
WORKFLOW_KEYS = ("shards",)


@dataclass(frozen=True)
class PredictConfig:
    """How to predict a volume.

    Parameters
    ----------
    block_shape : (z, y, x) write block of one task; a multiple of ``chunks`` and of the tile.
    chunks : (z, y, x) output chunks (clipped to the volume).
    shard_shape : (z, y, x) Zarr v3 shards of the output (a multiple of ``chunks``; the block a
        multiple of it), or None: one file per shard instead of per chunk, for file systems
        with file-count quotas.  A resumed output keeps the shards it began with.
    tile_shape : (z, y, x) net output tile of one forward sample (default: the block); a multiple
        of the net's factor ``2^depth`` along convolved axes.  Bigger tiles waste less on context.
    tiles_per_batch : tiles stacked into one forward pass.
    device : ``auto`` (cuda if available), ``cpu``, ``cuda`` (one GPU per worker) or ``cuda:N``.
    precision : ``fp32``, or autocast ``bf16`` / ``fp16``.
    channels_last, compile : channels-last memory format (faster on GPUs and, with torch >=
        2.13's oneDNN, 2x on CPUs: bench/predict.py); ``torch.compile`` the net.
    cuda_graphs : on CUDA, capture each batch's whole forward pass (normalisation, net,
        softmax, quantisation) as one CUDA graph per batch shape and replay it; ignored on CPUs.
    tta : test-time augmentation: average over the 8 rotations / flips of the y-x plane, exact
        under tiling (:class:`unet.prediction.tiles.Predictor`); 8x the forward passes.  On the
        ISBI 2012 test slices it lowers the Rand error (bench/accuracy.py).
    output_dtype : ``uint8`` (round(p * 255)), ``float16`` or ``float32``.
    compression : Blosc ``"<codec>:<level>"`` of the output or ``"none"``
        (:func:`unet.io.ngff.compressor`); ``zstd:1`` writes 2.6-3.7x faster than ``zstd:5`` for
        ~4% more bytes, which matters at GPU speed.  A resumed output keeps its first codec.
    cluster : ``local`` (LocalCluster), ``slurm`` (dask-jobqueue), ``none`` (this process) or a
        scheduler address ``tls://host:port``.  Clusters started here take only clients and
        workers with their run's temporary TLS credentials (docs/cluster.md).
    dashboard_address : ``host:port`` of the Dask dashboard of a cluster started here; the
        default ``127.0.0.1:0`` (a free port on localhost) keeps it off the network.
    workers : Dask workers (local) or SLURM jobs; one per GPU.
    concurrent_blocks : blocks one worker runs at once (Dask threads per worker, or threads here
        with ``cluster="none"``).  2 overlaps one block's reads and writes with another's forward
        pass (recommended on GPUs); all CUDA work runs in one thread per worker, so GPU memory
        holds one batch at a time.
    threads : torch threads per worker (CPU) and CPUs per SLURM job.
    processes : local workers as processes (False: threads of this process, for tests).
    slurm : extra ``SLURMCluster`` options (queue, account, memory, walltime, ...).
    max_in_flight : tasks submitted at once (default ``2 * workers * concurrent_blocks``).
    io_threads, prefetch : reader and writer threads per worker; batches read ahead of the net.
    pyramid_levels : OME-Zarr levels including level 0 (each halves y and x).
    resume : reuse finished blocks of an interrupted run with the same layout.
    normalize : ``auto``: grey values scaled by their dtype's maximum, and a volume of another
        dtype family than the model's training data is refused (:mod:`unet.io.intensity`);
        ``dtype``: the same scaling, accepted for any dtype (the user's explicit choice).
    overwrite : replace an existing final output.
    max_failures : stop submitting after this many failed blocks (the run then raises).
    progress_seconds : interval of progress log lines.
    """

    block_shape: Coord = default("predict", "block_shape")
    chunks: Coord = default("predict", "chunks")
    shard_shape: Coord | None = default("predict", "shard_shape")
    tile_shape: Coord | None = default("predict", "tile_shape")
    tiles_per_batch: int = default("predict", "tiles_per_batch")
    device: str = default("predict", "device")
    precision: Precision = default("predict", "precision")
    channels_last: bool = default("predict", "channels_last")
    compile: bool = default("predict", "compile")
    cuda_graphs: bool = default("predict", "cuda_graphs")
    tta: bool = default("predict", "tta")
    output_dtype: str = default("predict", "output_dtype")
    compression: str = default("predict", "compression")
    cluster: str = default("predict", "cluster")
    dashboard_address: str = default("predict", "dashboard_address")
    workers: int = default("predict", "workers")
    concurrent_blocks: int = default("predict", "concurrent_blocks")
    threads: int = default("predict", "threads")
    processes: bool = True
    slurm: Mapping[str, Any] = field(default_factory=factory("predict", "slurm"), hash=False)
    max_in_flight: int | None = None
    io_threads: int = default("predict", "io_threads")
    prefetch: int = default("predict", "prefetch")
    pyramid_levels: int = default("predict", "pyramid_levels")
    resume: bool = default("predict", "resume")
    normalize: str = default("predict", "normalize")
    overwrite: bool = False
    max_failures: int = default("predict", "max_failures")
    progress_seconds: float = default("predict", "progress_seconds")

    def __post_init__(self) -> None:
        for name in ("block_shape", "chunks", "shard_shape", "tile_shape"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_coord(value, 3, name))
        check_multiple(self.block_shape, self.chunks, "block_shape", "the chunks")
        if self.shard_shape is not None:
            check_multiple(self.shard_shape, self.chunks, "shard_shape", "the chunks")
            check_multiple(self.block_shape, self.shard_shape, "block_shape", "shard_shape")
        check_multiple(
            self.block_shape, self.tile_shape or self.block_shape, "block_shape", "tile_shape"
        )
        if self.normalize not in ("auto", "dtype"):
            raise InputError(f"normalize must be auto or dtype, got {self.normalize!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.output_dtype not in OUTPUT_DTYPES:
            raise InputError(
                f"output_dtype must be one of {OUTPUT_DTYPES}, got {self.output_dtype!r}"
            )
        compressor(self.compression)  # raises ValueError naming a bad codec
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as err:
                raise InputError(
                    f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
                ) from err
        check_cluster(self.cluster)
        if self.slurm and self.cluster != "slurm":
            raise InputError(f"slurm options given but cluster is {self.cluster!r}")
        if not re.fullmatch(r"[^:]*:[0-9]+", self.dashboard_address):
            raise InputError(
                "dashboard_address must be host:port (127.0.0.1:8787; :8787 = every interface), "
                f"got {self.dashboard_address!r}"
            )
        check_counts(
            self,
            (
                "tiles_per_batch",
                "workers",
                "concurrent_blocks",
                "threads",
                "io_threads",
                "pyramid_levels",
                "max_failures",
                "max_in_flight",
            ),
        )
        if self.prefetch < 0 or self.progress_seconds <= 0:
            raise InputError(
                f"prefetch must be >= 0 and progress_seconds > 0, got "
                f"{self.prefetch}, {self.progress_seconds}"
            )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PredictConfig:
        """From a workflow's ``predict`` section, without its :data:`WORKFLOW_KEYS`."""
        return cls(**{k: v for k, v in settings.items() if k not in WORKFLOW_KEYS})

    def record(self) -> dict[str, Any]:
        """JSON-ready settings (provenance)."""
        return {
            k: list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v)
            for k, v in asdict(self).items()
        }
