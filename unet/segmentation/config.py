"""Settings of a blockwise segmentation run (:mod:`unet.segmentation.run`), validated on
construction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from unet.cluster.executors import check_cluster, check_counts
from unet.errors import InputError
from unet.geometry import Coord, as_coord, check_multiple
from unet.io.ngff import compressor
from unet.settings.schema import default

MODES = ("2d", "3d", "threshold")
LABEL_DTYPES = ("uint32", "uint64")
# the settings that decide what a block's labels are (hashed into the run's layout)
KERNEL_KEYS = ("mode", "threshold", "seed_distance", "merge_threshold", "halo", "min_size")
# settings of the workflow around a run, not of one run: separate jobs, the choice on validation
WORKFLOW_KEYS = ("shards", "tune")


@dataclass(frozen=True)
class SegmentConfig:
    """How to turn a foreground-probability volume into instance labels.

    Parameters
    ----------
    mode : ``2d`` (per section: seeded watershed + mean-boundary agglomeration; objects never
        span sections), ``3d`` (the same in 3D) or ``threshold`` (3D connected components of
        ``p > threshold``, for binary targets such as mitochondria).
    threshold : foreground level of the confident mask ``p > threshold``, in ``(0, 1)``.
    seed_distance : a seed is a connected core of the mask whose distance to the background is
        at least this many voxels (``2d``, ``3d``); mask components without a core are seeds
        themselves.
    merge_threshold : neighbouring fragments are merged while the mean boundary probability
        ``1 - p`` along their shared surface is below this, in ``(0, 1)``.
    halo : context in voxels read around each block (y and x in ``2d``, all axes in ``3d``;
        at least 1; not used in ``threshold``, which is exact without one).  Blockwise equals
        whole-volume labels where no watershed basin reaches further than the halo across a
        block face.
    min_size : objects with fewer voxels per block are dropped before merging (0: keep all).
    block_shape, chunks : (z, y, x) task block and output chunks (the block a multiple of them).
    output_dtype : ``uint32`` or ``uint64`` labels.
    compression, pyramid_levels : as for prediction; pyramid levels are subsampled (nearest).
    cluster, workers, concurrent_blocks, threads, processes, slurm, max_in_flight : where the
        blocks run (:func:`unet.cluster.executors.connect`).
    resume, overwrite, max_failures, progress_seconds : as for prediction.
    """

    mode: Literal["2d", "3d", "threshold"] = default("segment", "mode")
    threshold: float = default("segment", "threshold")
    seed_distance: float = default("segment", "seed_distance")
    merge_threshold: float = default("segment", "merge_threshold")
    halo: int = default("segment", "halo")
    min_size: int = default("segment", "min_size")
    block_shape: Coord = default("segment", "block_shape")
    chunks: Coord = default("segment", "chunks")
    output_dtype: str = default("segment", "output_dtype")
    compression: str = default("segment", "compression")
    pyramid_levels: int = default("segment", "pyramid_levels")
    cluster: str = default("segment", "cluster")
    workers: int = default("segment", "workers")
    concurrent_blocks: int = default("segment", "concurrent_blocks")
    threads: int = default("segment", "threads")
    processes: bool = True
    slurm: Mapping[str, Any] = field(default_factory=dict, hash=False)
    max_in_flight: int | None = default("segment", "max_in_flight")
    resume: bool = default("segment", "resume")
    overwrite: bool = False
    max_failures: int = default("segment", "max_failures")
    progress_seconds: float = default("segment", "progress_seconds")

    def __post_init__(self) -> None:
        for name in ("block_shape", "chunks"):
            object.__setattr__(self, name, as_coord(getattr(self, name), 3, name))
        check_multiple(self.block_shape, self.chunks, "block_shape", "the chunks")
        if self.mode not in MODES:
            raise InputError(f"segment mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.threshold < 1:
            raise InputError(f"segment threshold must be in (0, 1), got {self.threshold}")
        if not 0 < self.merge_threshold < 1:
            raise InputError(f"merge_threshold must be in (0, 1), got {self.merge_threshold}")
        if self.seed_distance < 0 or self.halo < 0 or self.min_size < 0:
            raise InputError(
                "seed_distance, halo and min_size must be >= 0, got "
                f"{self.seed_distance}, {self.halo}, {self.min_size}"
            )
        if self.mode != "threshold" and self.halo < 1:
            raise InputError(
                f"halo must be >= 1 in mode {self.mode!r} (blocks see across their faces), "
                f"got {self.halo}"
            )
        if self.output_dtype not in LABEL_DTYPES:
            raise InputError(
                f"output_dtype must be one of {LABEL_DTYPES}, got {self.output_dtype!r}"
            )
        compressor(self.compression)
        check_cluster(self.cluster)
        check_counts(
            self,
            (
                "workers",
                "concurrent_blocks",
                "threads",
                "pyramid_levels",
                "max_failures",
                "max_in_flight",
            ),
        )
        if self.progress_seconds <= 0:
            raise InputError(f"progress_seconds must be > 0, got {self.progress_seconds}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **changes: Any) -> SegmentConfig:
        """From a workflow's ``segment`` section (without its :data:`WORKFLOW_KEYS`), with
        ``changes`` (e.g. the settings ``segment_tune`` chose) replacing its values."""
        return cls(**{k: v for k, v in settings.items() if k not in WORKFLOW_KEYS} | changes)

    @property
    def halo_shape(self) -> Coord:
        """Context per side and axis: none in ``threshold``, none along z in ``2d``."""
        if self.mode == "threshold":
            return (0, 0, 0)
        return (0 if self.mode == "2d" else self.halo, self.halo, self.halo)

    def kernel_hash(self) -> str:
        """A checksum of the settings that decide the labels (stored in the run's layout)."""
        text = json.dumps({k: getattr(self, k) for k in KERNEL_KEYS}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        """JSON-ready settings (provenance)."""
        return {
            k: list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v)
            for k, v in asdict(self).items()
        }
