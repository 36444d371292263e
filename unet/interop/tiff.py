"""OME-Zarr volume -> multi-page TIFF for Fiji / ImageJ (``unet export-tiff``), by section.

Probabilities keep their dtype (uint8, or float32); label images become uint16 when their ids
fit, else float32 (ids exact up to 2**24), the integer types ImageJ reads.  The voxel size goes
into the TIFF resolution tags (pixels per micrometre) and ImageJ's ``spacing`` (z).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unet.errors import InputError
from unet.io import ngff, outputs

FLOAT_EXACT = 2**24


def tiff_dtype(dtype: Any, max_value: int) -> np.dtype:
    """The ImageJ-readable dtype a volume of ``dtype`` (and largest value) is written as.

    >>> tiff_dtype(np.uint32, 70000), tiff_dtype(np.uint64, 12), tiff_dtype(np.uint8, 255)
    (dtype('float32'), dtype('uint16'), dtype('uint8'))
    """
    dtype = np.dtype(dtype)
    if dtype in (np.uint8, np.uint16):
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if max_value < 2**16:
        return np.dtype(np.uint16)
    if max_value <= FLOAT_EXACT:
        return np.dtype(np.float32)
    raise InputError(f"labels up to {max_value} do not fit a TIFF ImageJ reads exactly (2**24)")


def export_tiff(volume: str | Path, tiff: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write level 0 of the OME-Zarr ``volume`` as a (Z, Y, X) ImageJ TIFF ``tiff``."""
    array = ngff.open_array(volume)
    if array.ndim != 3:
        raise InputError(f"{volume}: need a (z, y, x) volume, got shape {array.shape}")
    top = int(ngff.attributes(volume).get("objects", 0))
    if np.dtype(array.dtype).kind in "iu" and not top:
        top = max(int(np.asarray(array[z]).max(initial=0)) for z in range(array.shape[0]))
    dtype = tiff_dtype(array.dtype, top)
    vz, vy, vx = ngff.voxel_size(volume)  # nanometres

    def sections() -> Iterator[np.ndarray]:
        for z in range(array.shape[0]):
            yield np.asarray(array[z]).astype(dtype)

    with outputs.staging(tiff, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            sections(),
            shape=tuple(array.shape),
            dtype=dtype,
            imagej=True,
            resolution=(1000.0 / vy, 1000.0 / vx),
            metadata={"axes": "ZYX", "spacing": vz / 1000.0, "unit": "um"},
        )
    return {"out": str(tiff), "shape": list(array.shape), "dtype": str(dtype)}
