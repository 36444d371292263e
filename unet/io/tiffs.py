"""TIFF input of ingest: multi-page or 2D stacks (compressed ones decoded by ``imagecodecs``,
an undecodable compression reported as such, never as corruption), their ImageJ voxel size, and
the reduction of grey RGB(A) samples to one channel (also for PNG sections,
:mod:`unet.io.sources`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unet.errors import InputError


def to_grey(data: np.ndarray, where: str) -> np.ndarray:
    """``(..., samples)`` -> ``(...)``: the first channel of grey RGB(A) / grey + alpha data;
    :class:`InputError` if red, green and blue differ (a colour image)."""
    if data.shape[-1] >= 3:
        rgb = data[..., :3]
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        if not (np.array_equal(red, green) and np.array_equal(red, blue)):
            raise InputError(
                f"{where}: a colour image (red, green and blue differ); the pipeline reads grey "
                "EM images: convert it to greyscale first"
            )
    return np.ascontiguousarray(data[..., 0])


def check_samples(n: int, where: str) -> None:
    """Refuse an image of ``n`` samples per pixel unless grey + alpha or RGB(A)."""
    if n not in (2, 3, 4):
        raise InputError(
            f"{where}: an image of {n} samples per pixel (channels); the pipeline reads grey "
            "(z, y, x) images (multi-channel and time series are not supported)"
        )


class TiffStack:
    """A multi-page or 2D TIFF as a (z, y, x) stack (grey RGB(A) pages reduced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tif = tifffile.TiffFile(path)
            series = self.tif.series[0]
            shape, axes = tuple(series.shape), series.axes
            page = series.pages[0] if series.pages else self.tif.pages[0]
        except Exception as err:  # tifffile raises many types for corrupt files
            raise InputError(f"{path}: not a readable TIFF image ({err})") from err
        self.rgb = axes.endswith("S")
        try:
            if self.rgb:
                check_samples(shape[-1], str(path))
                shape, axes = shape[:-1], axes[:-1]
            if len(shape) > 3 or (len(shape) == 3 and "C" in axes):
                raise InputError(
                    f"{path}: expected a 2D image or a 3D (z, y, x) stack, got shape {shape} "
                    f"(axes {axes}: multi-channel and time series are not supported)"
                )
            problem = _undecodable(page)
            if problem:
                raise InputError(f"{path}: {problem}")
        except InputError:
            self.close()
            raise
        self.flat = len(shape) == 2
        self.shape = (1, *shape) if self.flat else shape
        self.dtype = np.dtype(series.dtype)
        self.voxel = imagej_voxel(self.tif)

    def read(self, z0: int, z1: int) -> np.ndarray:
        series = self.tif.series[0]
        try:
            data = series.asarray() if self.flat else series.asarray(key=range(z0, z1))
        except Exception as err:
            text = str(err)
            if "imagecodecs" in text or "not supported" in text or "not implemented" in text:
                raise InputError(
                    f"{self.path}: cannot decode slices {z0}..{z1 - 1}: {text} (the file is "
                    "readable, its compression is not: install imagecodecs)"
                ) from err
            raise InputError(
                f"{self.path}: cannot read slices {z0}..{z1 - 1} (truncated or corrupt TIFF? {err})"
            ) from err
        if self.rgb:
            data = to_grey(data, f"{self.path} (slices {z0}..{z1 - 1})")
        return np.asarray(data).reshape((z1 - z0, *self.shape[1:]))

    def close(self) -> None:
        self.tif.close()


IMAGEJ_UNITS = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "micron": 1e3, "\u00b5m": 1e3, "mm": 1e6}


def imagej_voxel(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in nanometres of an ImageJ TIFF (``unet export-tiff`` writes one):
    its resolution tags, ``spacing`` and ``unit``; None unless all three are there."""
    meta = tif.imagej_metadata or {}
    factor = IMAGEJ_UNITS.get(str(meta.get("unit", "")).strip().lower())
    tags = getattr(tif.pages[0], "tags", {})
    if factor is None or "spacing" not in meta or "XResolution" not in tags:
        return None
    try:
        (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
        size = (float(meta["spacing"]), yd / yn, xd / xn)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return (
        float(f"{size[0] * factor:.6g}"),
        float(f"{size[1] * factor:.6g}"),
        float(f"{size[2] * factor:.6g}"),
    )


def _undecodable(page: Any) -> str:
    """Why this installation cannot decode ``page`` ("" if it can)."""
    compression = getattr(page, "compression", 1)
    if compression == 1 or compression in tifffile.TIFF.DECOMPRESSORS:
        return ""
    try:
        name = tifffile.COMPRESSION(compression).name
    except ValueError:
        name = f"compression {compression}"
    return (
        f"compressed with {name}, which this installation cannot decode (the file is readable, "
        "not corrupt; install imagecodecs, a dependency of unet-em, or save it uncompressed)"
    )
