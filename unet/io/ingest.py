"""Ingest: a TIFF, a folder of TIFF/PNG sections or a Zarr array / OME-Zarr image of any tool
(:mod:`unet.io.sources`) -> a chunked, compressed OME-Zarr volume with a pyramid for viewers;
its settings: :mod:`unet.io.ingest_config`.

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
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unet.errors import InputError
from unet.geometry import Box
from unet.io import ngff, outputs, pyramid
from unet.io.ingest_config import UNKNOWN_VOXEL, IngestConfig
from unet.io.label_stats import check_counts
from unet.io.rescale import percentile_window, to_uint8
from unet.io.sources import Source

log = logging.getLogger("unet.io.ingest")

__all__ = ["UNKNOWN_VOXEL", "IngestConfig", "Source", "ingest"]


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
        _check_like(source, like)
        out_dtype, window = _output(config, source)
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
                attrs=_attrs(config, source, window),
                name=Path(dst).stem,
                shards=config.shards,
                translation=origin,
            )
            for box, data in source.slabs((config.shards or config.chunks)[0]):
                data = _validate(data, config, source.path, box, seen, counts)
                array[box.to_slices()] = data if window is None else to_uint8(data, *window)
            summary = (
                {} if config.kind == "raw" else _label_summary(tmp, config, source, seen, counts)
            )
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


def _check_like(source: Source, like: str | Path | None) -> None:
    """Labels must have the shape of the raw volume ``like`` they label."""
    if like is None:
        return
    ref = tuple(ngff.open_array(like).shape)
    if ref != source.shape:
        raise InputError(
            f"{source.path}: labels of shape {source.shape} do not match the raw volume "
            f"{like} of shape {ref}"
        )


def _output(config: IngestConfig, source: Source) -> tuple[np.dtype, tuple[float, float] | None]:
    """The stored dtype, and the grey-value window of a percentile rescale (else None)."""
    out_dtype = source.dtype if config.kind == "raw" else _label_dtype(source.dtype)
    if config.kind == "binary" and config.membrane_value != 0:
        out_dtype = np.dtype(np.uint8)
    if config.rescale != "percentile":
        return out_dtype, None
    if source.dtype.kind not in "uif":
        raise InputError(f"{source.path}: cannot rescale grey values of {source.dtype}")
    window = percentile_window(
        lambda z: source.read(Box((z, 0, 0), (1, *source.shape[1:])))[0],
        source.shape[0],
        config.percentiles,
        str(source.path),
    )
    return np.dtype(np.uint8), window


def _attrs(
    config: IngestConfig, source: Source, window: tuple[float, float] | None
) -> dict[str, Any]:
    """Provenance of the ingested volume (``attrs["unet"]``)."""
    attrs: dict[str, Any] = {"stage": "ingest", "source": str(source.path), "kind": config.kind}
    if config.kind != "raw":
        attrs["membrane_value"] = config.membrane_value
    if window is not None:
        attrs["rescale"] = {
            "percentiles": list(config.percentiles),
            "window": list(window),
            "source_dtype": str(source.dtype),
        }
    return attrs


def _label_summary(
    tmp: Path, config: IngestConfig, source: Source, seen: set[int], counts: list[int]
) -> dict[str, Any]:
    """Check the whole label volume (a binary mask holds its membrane value, both classes
    occur), record its class counts, return its foreground fraction."""
    if config.kind == "binary" and config.membrane_value not in seen:
        raise InputError(
            f"{source.path}: the binary mask holds the values {sorted(seen)}, none "
            f"of them the membrane value {config.membrane_value}: every pixel would "
            "be cell; set the value that marks membrane (datasets.<name>."
            "membrane_value, unet ingest --membrane-value)"
        )
    fraction = check_counts(str(source.path), counts[0], counts[1], config.kind)
    zarr.open_group(str(tmp), mode="r+").attrs["unet"] = {
        **ngff.attributes(tmp),
        "label_counts": {"background": counts[0], "foreground": counts[1]},
    }
    return {"foreground_fraction": round(fraction, 6)}


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
