"""Ingest: a multi-page TIFF or a Zarr array -> a chunked, compressed OME-Zarr volume.

The source is streamed slab by slab (``chunks[0]`` slices at a time), so memory stays bounded
by one slab whatever the volume size.  Every slab is validated on the way:

* raw:    2D or 3D, real numbers, no NaN/inf;
* labels: integers >= 0; ``binary`` masks hold at most two values, one of them the membrane
          value (ISBI: 0 membrane, 255 cell; a mask with another membrane value is stored with
          membrane 0 and cell 255), ``instances`` hold cell ids (0 = background); shape must
          equal the raw volume's; the volume must hold both classes (:mod:`unet.io.label_stats`).

Output is written under ``<dst>.partial`` and renamed on success (:mod:`unet.io.outputs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import zarr

from unet.errors import InputError
from unet.geometry import Box, blocks
from unet.io import ngff, outputs
from unet.io.label_stats import check_counts
from unet.io.rescale import percentile_window, to_uint8

Kind = Literal["raw", "binary", "instances"]


@dataclass(frozen=True)
class IngestConfig:
    """How to ingest one volume.

    kind : ``raw`` (EM image), ``binary`` (membrane mask) or ``instances`` (cell ids).
    voxel_size : (z, y, x) in nanometres, written to the NGFF metadata.
    chunks : output chunk shape (z, y, x); also the slab height used while streaming.
    shards : Zarr v3 shard shape (z, y, x), a multiple of ``chunks``, or None; with shards the
        slab height is the shard's (one file per shard: for file systems with file-count quotas).
    membrane_value : the value that marks membrane (background) in a ``binary`` mask.
    rescale : ``none`` (grey values as they are) or ``percentile``: raw stretched to uint8
        between the grey values at ``percentiles`` (:mod:`unet.io.rescale`; for uint16 EM).
    """

    kind: Kind = "raw"
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    chunks: tuple[int, int, int] = (1, 512, 512)
    shards: tuple[int, int, int] | None = None
    membrane_value: int = 0
    rescale: Literal["none", "percentile"] = "none"
    percentiles: tuple[float, float] = (0.5, 99.5)

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


class Source:
    """A 3D (z, y, x) view of a TIFF file or Zarr array, read slab by slab."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self._tif: tifffile.TiffFile | None = None
        self._zarr: Any = None
        if self.path.is_dir() or self.path.suffix == ".zarr":
            self._zarr = ngff.open_array(self.path)
            shape, dtype = tuple(self._zarr.shape), np.dtype(self._zarr.dtype)
        else:
            try:
                self._tif = tifffile.TiffFile(self.path)
                series = self._tif.series[0]
                shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            except Exception as err:  # tifffile raises many types for corrupt files
                raise InputError(f"{self.path}: not a readable TIFF image ({err})") from err
        if len(shape) == 2:
            shape = (1, *shape)
        problem = ""
        if len(shape) != 3:
            problem = (
                f"expected a 2D image or a 3D (z, y, x) stack, got shape {shape} "
                "(multi-channel and time series are not supported)"
            )
        elif any(s == 0 for s in shape):
            problem = f"empty image of shape {shape}"
        if problem:
            self.close()
            raise InputError(f"{self.path}: {problem}")
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype = dtype

    def read(self, box: Box) -> np.ndarray:
        """Read the slab ``box`` (whole y-x planes are read from TIFF pages)."""
        if self._zarr is not None:
            return np.asarray(self._zarr[box.to_slices()]).reshape(box.shape)
        assert self._tif is not None
        z0, z1 = box.begin[0], box.end[0]
        try:
            if len(self._tif.series[0].shape) == 2:
                data = self._tif.series[0].asarray()[None]
            else:
                data = self._tif.series[0].asarray(key=range(z0, z1))
                data = data.reshape((z1 - z0, *self.shape[1:]))
        except Exception as err:
            raise InputError(
                f"{self.path}: cannot read slices {z0}..{z1 - 1} (truncated or corrupt TIFF? {err})"
            ) from err
        return np.asarray(data[(slice(None),) + box.to_slices()[1:]])

    def slabs(self, depth: int) -> Iterator[tuple[Box, np.ndarray]]:
        for box in blocks(self.shape, (depth, *self.shape[1:])):
            yield box, self.read(box)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()


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
    """Copy ``src`` (TIFF or Zarr) into a new OME-Zarr volume ``dst``; return a summary.

    ``like``: an ingested raw volume whose shape the labels must match.
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
        seen: set[int] = set()
        counts = [0, 0]  # background, foreground pixels (labels)
        with outputs.staging(dst, overwrite=overwrite, inputs=(src, like)) as tmp:
            array = ngff.create(
                tmp,
                source.shape,
                out_dtype,
                config.chunks,
                config.voxel_size,
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
    finally:
        source.close()
    return {
        "shape": source.shape,
        "dtype": str(out_dtype),
        "kind": config.kind,
        "dst": str(dst),
        **summary,
    }


def _label_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.uint32)
    return dtype
