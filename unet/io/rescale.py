"""Percentile contrast stretch at ingest: e.g. uint16 EM (often using a narrow band of its
65,536 grey values) -> uint8, the same for training and prediction volumes.

The grey values at the ``percentiles`` of a strided sample of the source (at most
:data:`SAMPLE_SLICES` slices, about :data:`SAMPLE_PIXELS` pixels each) map to 0 and 255;
values outside are clipped::

    uint8 = round(255 * clip((v - lo) / (hi - lo), 0, 1))

Each volume is stretched by its own percentiles, which makes volumes of one modality acquired
with another gain or offset look alike to the net.  The window is recorded in the volume's
provenance (``rescale``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from unet.errors import InputError

SAMPLE_SLICES = 16
SAMPLE_PIXELS = 1 << 20


def percentile_window(
    read_slice: Callable[[int], np.ndarray],
    n_slices: int,
    percentiles: Sequence[float],
    name: str,
) -> tuple[float, float]:
    """The grey values ``(lo, hi)`` at ``percentiles`` of a sample of slices of ``name``
    (``read_slice(z)`` returns slice ``z``)."""
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0 <= p_lo < p_hi <= 100:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    picked = range(0, n_slices, max(1, -(-n_slices // SAMPLE_SLICES)))
    parts = []
    for z in picked:
        plane = np.asarray(read_slice(z))
        step = max(1, int(np.sqrt(plane.size / SAMPLE_PIXELS)))
        parts.append(plane[::step, ::step].ravel())
    lo, hi = np.percentile(np.concatenate(parts), [p_lo, p_hi])
    if not hi > lo:
        raise InputError(
            f"{name}: the grey values at percentiles {p_lo} and {p_hi} are equal ({lo}): "
            "nothing to stretch (a constant image?); ingest it without rescale"
        )
    return float(lo), float(hi)


def to_uint8(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Stretch ``[lo, hi]`` to ``[0, 255]`` (clipped), as uint8.

    >>> to_uint8(np.array([100, 150, 200, 300]), 100, 200).tolist()
    [0, 128, 255, 255]
    """
    scaled = (data.astype(np.float32) - np.float32(lo)) * np.float32(255 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
