"""Settings of ingest (:mod:`unet.io.ingest`), validated on construction; their defaults and
bounds are the schema's (``ingest`` and ``datasets`` sections)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from unet.errors import InputError
from unet.io import ngff
from unet.settings.schema import default

Kind = Literal["raw", "binary", "instances"]
UNKNOWN_VOXEL = (1.0, 1.0, 1.0)
"""The default voxel size, read as "not given": the source's or the ``like`` volume's wins."""


@dataclass(frozen=True)
class IngestConfig:
    """How to ingest one volume.

    kind : ``raw`` (EM image), ``binary`` (membrane mask) or ``instances`` (cell ids).
    voxel_size : (z, y, x) in nanometres, written to the NGFF metadata; :data:`UNKNOWN_VOXEL`
        (the default) takes an OME-Zarr source's own, labels always take ``like``'s.
    chunks : output chunk shape (z, y, x); also the slab height used while streaming.
    shards : Zarr v3 shard shape (z, y, x), a multiple of ``chunks``, or None; with shards the
        slab height is the shard's (one file per shard: for file systems with file-count quotas).
    membrane_value : the value that marks membrane (background) in a ``binary`` mask.
    rescale : ``none`` (grey values as they are) or ``percentile``: raw stretched to uint8
        between the grey values at ``percentiles`` (:mod:`unet.io.rescale`; for uint16 EM).
    pyramid_levels : OME-Zarr levels including level 0 (:mod:`unet.io.pyramid`: mean for raw,
        nearest for labels).
    """

    kind: Kind = "raw"
    voxel_size: tuple[float, float, float] = default("dataset", "voxel_size")
    chunks: tuple[int, int, int] = default("ingest", "chunks")
    shards: tuple[int, int, int] | None = default("ingest", "shards")
    membrane_value: int = default("dataset", "membrane_value")
    rescale: Literal["none", "percentile"] = default("ingest", "rescale")
    percentiles: tuple[float, float] = default("ingest", "percentiles")
    pyramid_levels: int = default("ingest", "pyramid_levels")

    def __post_init__(self) -> None:
        if self.kind not in ("raw", "binary", "instances"):
            raise InputError(f"kind must be raw, binary or instances, got {self.kind!r}")
        if len(self.chunks) != 3 or any(int(c) <= 0 for c in self.chunks):
            raise InputError(f"chunks must be 3 positive ints, got {self.chunks}")
        if self.shards is not None:
            ngff.grid_shapes(self.chunks, self.chunks, self.shards)  # a multiple of the chunks
        if isinstance(self.membrane_value, bool) or not isinstance(self.membrane_value, int):
            raise InputError(f"membrane_value must be an integer, got {self.membrane_value!r}")
        if self.membrane_value < 0:
            raise InputError(f"membrane_value must be >= 0, got {self.membrane_value}")
        if self.rescale not in ("none", "percentile"):
            raise InputError(f"rescale must be none or percentile, got {self.rescale!r}")
        if self.rescale != "none" and self.kind != "raw":
            raise InputError(f"rescale applies to raw images only, not to {self.kind} labels")
        if isinstance(self.pyramid_levels, bool) or not isinstance(self.pyramid_levels, int):
            raise InputError(f"pyramid_levels must be an integer, got {self.pyramid_levels!r}")
        if self.pyramid_levels < 1:
            raise InputError(
                f"pyramid_levels must be >= 1 (level 0 included), got {self.pyramid_levels}"
            )
        voxel = _numbers(self.voxel_size, 3)
        if voxel is None or any(not v > 0 for v in voxel):
            raise InputError(
                f"voxel size must be 3 positive numbers (z, y, x; nm), got {self.voxel_size!r}"
            )
        percentiles = _numbers(self.percentiles, 2)
        if percentiles is None or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise InputError(
                "percentiles must satisfy 0 <= low < high <= 100 (2 numbers), got "
                f"{self.percentiles!r}"
            )
        object.__setattr__(self, "voxel_size", voxel)
        object.__setattr__(self, "percentiles", percentiles)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> IngestConfig:
        """The config of a rule's params (lists as tuples); every key must be a field, so a
        setting the rule passes always arrives."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"unknown ingest setting(s) {unknown}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
        }
        return cls(**values)


def _numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """``value`` as a tuple of ``n`` finite floats, or None if it is not one."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    ok = len(out) == n and np.isfinite(out).all() and not any(isinstance(v, bool) for v in value)
    return out if ok else None
