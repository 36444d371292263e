"""Grey values -> float32 network input in [0, 1]."""

from __future__ import annotations

import numpy as np

from unet.errors import InputTypeError


def to_unit(data: np.ndarray) -> np.ndarray:
    """Scale raw EM grey values to float32 in [0, 1]: unsigned integers by their dtype's maximum
    (uint8 / 255, uint16 / 65535), signed integers likewise, floats unchanged.

    >>> to_unit(np.array([0, 255], dtype=np.uint8)).tolist()
    [0.0, 1.0]
    """
    if data.dtype.kind in "ui":
        return data.astype(np.float32) / np.float32(np.iinfo(data.dtype).max)
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype == bool:
        return data.astype(np.float32)
    raise InputTypeError(f"cannot normalise grey values of dtype {data.dtype}")
