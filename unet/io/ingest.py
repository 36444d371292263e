"""Ingest: a TIFF, a folder of TIFF/PNG sections or a Zarr array / OME-Zarr image of any tool
(:mod:`unet.io.sources`) -> a chunked, compressed OME-Zarr volume with a pyramid for viewers.

The source is streamed slab by slab (``chunks[0]`` slices at a time), so memory stays bounded
by one slab whatever the volume size.  Every slab is validated on the way:

* raw:    2D or 3D, real numbers, no NaN/inf;
* labels: integers >= 0; ``binary`` masks hold at most two values, one of them the membrane
          value (ISBI: 0 membrane, 255 cell; a mask with another membrane value is stored with
          membrane 0 and cell 255), ``instances`` hold cell ids (0 = background); shape must
          equal the raw volume's; the volume must hold both classes (:mod:`unet.io.label_stats`).

The voxel size and translation of an OME-Zarr source are kept; labels take the raw volume's
(``like``), so that both routes (CLI, Snakemake) write the same.  Output is written under
``<dst>.partial`` and renamed on success (:mod:`unet.io.outputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from unet.errors import InputError
from unet.geometry import Box
from unet.io import ngff, outputs, pyramid
from unet.io.label_stats import check_counts
from unet.io.rescale import percentile_window, to_uint8
from unet.io.sources import Source
from unet.settings.schema import default

Kind = Literal["raw", "binary", "instances"]
UNKNOWN_VOXEL = (1.0, 1.0, 1.0)
"""The default voxel size, read as "not given": the source's or the ``like`` volume's wins."""

log = logging.getLogger("unet.io.ingest")

__all__ = ["IngestConfig", "Source", "ingest"]


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


def _numbers(value: Any, n: int) -> Any:
    """``value`` as a tuple of ``n`` finite floats, or None if it is not one."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    ok = len(out) == n and np.isfinite(out).all() and not any(isinstance(v, bool) for v in value)
    return out if ok else None


def _validate(
    data: np.ndarray, config: IngestConfig, src: Path, box: Box, seen: set[int], counts: list[int]
) -> np.ndarray:
    """Check one slab; labels are returned as stored (binary: membrane 0) and counted into
    ``counts`` = [background, foreground]."""
    kind = config.kind
    where = f"{src} (slices {box.begin[0]}..{box.end[0] - 1})"
    if kind == "raw":
        if data.dtype.kind not in "uif":
            raise InputError(f"{where}: raw images must be numeric, got dtype {data.dtype}")
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise InputError(f"{where}: raw image holds {bad} NaN/inf values")
        return data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise InputError(f"{where}: labels must be whole numbers, found fractional/NaN values")
        data = data.astype(np.int64)
    if data.dtype.kind not in "ui":
        raise InputError(f"{where}: labels must be integers, got dtype {data.dtype}")
    if data.size and data.min() < 0:
        raise InputError(f"{where}: labels must be >= 0, found {int(data.min())}")
    if kind == "binary":
        seen.update(int(v) for v in np.unique(data)[:3])
        if len(seen) > 2:
            raise InputError(
                f"{where}: a binary mask holds at most two values, found "
                f"{sorted(seen)[:3]}... (use labels_format: instances for cell ids)"
            )
        background = data == config.membrane_value
        if config.membrane_value != 0:  # stored as the pipeline reads masks: membrane 0
            data = np.where(background, 0, 255).astype(np.uint8)
    else:
        background = data == 0
    n_background = int(np.count_nonzero(background))
    counts[0] += n_background
    counts[1] += data.size - n_background
    return data


def ingest(
    src: str | Path,
    dst: str | Path,
    config: IngestConfig,
    like: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Copy ``src`` (:class:`~unet.io.sources.Source`) into a new OME-Zarr volume ``dst`` with
    ``config.pyramid_levels`` levels; return a summary.

    ``like``: an ingested raw volume whose shape the labels must match, and whose voxel size
    and translation they take (:func:`placement`).
    """
    source = Source(src)
    try:
        if like is not None:
            ref = ngff.open_array(like).shape
            if tuple(ref) != source.shape:
                raise InputError(
                    f"{source.path}: labels of shape {source.shape} do not match the raw volume "
                    f"{like} of shape {tuple(ref)}"
                )
        out_dtype = source.dtype if config.kind == "raw" else _label_dtype(source.dtype)
        if config.kind == "binary" and config.membrane_value != 0:
            out_dtype = np.dtype(np.uint8)
        window = None
        if config.rescale == "percentile":
            if source.dtype.kind not in "uif":
                raise InputError(f"{source.path}: cannot rescale grey values of {source.dtype}")
            window = percentile_window(
                lambda z: source.read(Box((z, 0, 0), (1, *source.shape[1:])))[0],
                source.shape[0],
                config.percentiles,
                str(source.path),
            )
            out_dtype = np.dtype(np.uint8)
        voxel, origin = placement(config, source, like)
        seen: set[int] = set()
        counts = [0, 0]  # background, foreground pixels (labels)
        with outputs.staging(dst, overwrite=overwrite, inputs=(src, like)) as tmp:
            array = ngff.create(
                tmp,
                source.shape,
                out_dtype,
                config.chunks,
                voxel,
                attrs={
                    "stage": "ingest",
                    "source": str(source.path),
                    "kind": config.kind,
                    **({} if config.kind == "raw" else {"membrane_value": config.membrane_value}),
                    **(
                        {}
                        if window is None
                        else {
                            "rescale": {
                                "percentiles": list(config.percentiles),
                                "window": list(window),
                                "source_dtype": str(source.dtype),
                            }
                        }
                    ),
                },
                name=Path(dst).stem,
                shards=config.shards,
                translation=origin,
            )
            for box, data in source.slabs((config.shards or config.chunks)[0]):
                data = _validate(data, config, source.path, box, seen, counts)
                array[box.to_slices()] = data if window is None else to_uint8(data, *window)
            summary: dict[str, Any] = {}
            if config.kind != "raw":
                if config.kind == "binary" and config.membrane_value not in seen:
                    raise InputError(
                        f"{source.path}: the binary mask holds the values {sorted(seen)}, none "
                        f"of them the membrane value {config.membrane_value}: every pixel would "
                        "be cell; set the value that marks membrane (datasets.<name>."
                        "membrane_value, unet ingest --membrane-value)"
                    )
                fraction = check_counts(str(source.path), counts[0], counts[1], config.kind)
                summary = {"foreground_fraction": round(fraction, 6)}
                zarr.open_group(str(tmp), mode="r+").attrs["unet"] = {
                    **ngff.attributes(tmp),
                    "label_counts": {"background": counts[0], "foreground": counts[1]},
                }
            method = "mean" if config.kind == "raw" else "nearest"
            pyramid.build(tmp, config.pyramid_levels, array.shards or array.chunks, method=method)
    finally:
        source.close()
    return {
        "shape": source.shape,
        "dtype": str(out_dtype),
        "kind": config.kind,
        "dst": str(dst),
        **summary,
    }


def placement(
    config: IngestConfig, source: Source, like: str | Path | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Voxel size and translation (z, y, x; nanometres) of the ingested volume: labels take the
    raw volume ``like``'s (a different explicit voxel size is an error); raw takes the
    configured voxel size, else (:data:`UNKNOWN_VOXEL`) its source's, and its source's
    translation."""
    given = tuple(config.voxel_size)  # checked: 3 positive numbers
    known = None if given == UNKNOWN_VOXEL else given
    if like is not None:
        ref = ngff.voxel_size(like)
        if known is not None and not np.allclose(known, ref):
            raise InputError(
                f"{source.path}: voxel size {known} differs from {ref} of the raw volume {like}; "
                "labels lie on the raw volume's grid (leave the voxel size out to take its)"
            )
        return ref, ngff.translation(like)
    origin = source.translation or (0.0, 0.0, 0.0)
    found = source.voxel_size
    if known is None:
        if found is not None and found != UNKNOWN_VOXEL:
            log.info("%s: voxel size %s (z, y, x) nm from its metadata", source.path, found)
        return found or UNKNOWN_VOXEL, origin
    if found is not None and found != UNKNOWN_VOXEL and not np.allclose(found, known):
        log.warning(
            "%s: its metadata says voxel size %s nm, the settings %s: the settings win",
            source.path,
            found,
            known,
        )
    return known, origin


def _label_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.uint32)
    return dtype
