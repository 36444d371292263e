"""Instance kernels for one in-memory block: foreground probability ``p`` -> labels.

``threshold``: connected components of ``p > t`` (6-connected, connected-components-3d).
``2d`` / ``3d`` (per section / in 3D), as the EM field does it (e.g. funkelab lsd, waterz)::

    mask   = p > threshold                          confident foreground (cells)
    seeds  = cores {EDT(mask) >= seed_distance}     one seed per core; a mask component
             (connected components)                 without a core is a seed of its own
    frags  = watershed(1 - p, seeds, mask)          scikit-image, face connectivity
    labels = agglomerate(frags)                     waterz: merge neighbours while the mean
                                                    boundary probability 1 - p along their
                                                    shared surface is < merge_threshold

The boundary probability of a voxel pair is the mean of the two voxels' ``1 - p``; waterz's
``OneMinus<MeanAffinity>`` score with affinities ``(p_i + p_j) / 2`` is exactly the mean of it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential, watershed

from unet.errors import InputTypeError

# in-section face connectivity for (z, y, x) arrays: no neighbour across z
SECTION = np.zeros((3, 3, 3), dtype=bool)
SECTION[1] = ndimage.generate_binary_structure(2, 1)
_STDOUT = threading.Lock()


def probability(values: Any) -> np.ndarray:
    """Stored prediction values (uint8 ``round(p * 255)`` or float) -> float32 ``p``."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255
    if values.dtype.kind != "f":
        raise InputTypeError(f"probabilities must be uint8 or float, got dtype {values.dtype}")
    return values.astype(np.float32, copy=False)


def threshold_components(p: np.ndarray, threshold: float) -> np.ndarray:
    """6-connected components of ``p > threshold`` in a ``(z, y, x)`` block, ids ``1..n``."""
    labels = cc3d.connected_components(p > threshold, connectivity=6, out_dtype=np.uint64)
    return np.asarray(labels, dtype=np.uint32)


def seeds(mask: np.ndarray, seed_distance: float, sampling: Sequence[float] | None) -> np.ndarray:
    """Seeds of one section or volume (2D or 3D ``mask``): cores at distance
    ``>= seed_distance`` from the background, plus every mask component without a core."""
    distance = ndimage.distance_transform_edt(mask, sampling=sampling)
    cores, n = ndimage.label(distance >= max(seed_distance, 1e-6))
    parts, _ = ndimage.label(mask)
    coreless = np.setdiff1d(np.unique(parts), np.unique(parts[cores > 0]))
    coreless = coreless[coreless > 0]
    lookup = np.zeros(int(parts.max()) + 1, dtype=np.int64)
    lookup[coreless] = n + 1 + np.arange(len(coreless))
    extra = lookup[parts]
    return np.where(cores > 0, cores, extra).astype(np.int64)  # type: ignore[no-any-return]


def fragments(
    p: np.ndarray,
    mode: str,
    threshold: float,
    seed_distance: float,
    sampling: Sequence[float] | None = None,
) -> np.ndarray:
    """Seeded watershed of ``1 - p`` inside the mask: per section (``2d``) or in 3D."""
    mask = p > threshold
    if mode == "3d":
        return watershed(1 - p, seeds(mask, seed_distance, sampling), mask=mask, connectivity=1)
    out = np.zeros(p.shape, dtype=np.int64)
    base = 0
    for z in range(p.shape[0]):
        plane = watershed(
            1 - p[z], seeds(mask[z], seed_distance, None), mask=mask[z], connectivity=1
        )
        out[z] = np.where(plane > 0, plane + base, 0)
        base = int(out[z].max(initial=base))
    return out


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """waterz prints progress, from Python and from C++ (file descriptor 1): discard both
    (one caller at a time in this process)."""
    with _STDOUT:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def agglomerate(frags: np.ndarray, p: np.ndarray, merge_threshold: float, mode: str) -> np.ndarray:
    """Merge neighbouring fragments while their mean boundary probability is below
    ``merge_threshold`` (waterz, mean affinity); in ``2d`` never across sections."""
    return next(agglomerate_levels(frags, p, [merge_threshold], mode))


def agglomerate_levels(
    frags: np.ndarray, p: np.ndarray, merge_thresholds: Sequence[float], mode: str
) -> Iterator[np.ndarray]:
    """:func:`agglomerate` at each of the ascending ``merge_thresholds`` in turn, from one
    region graph: one waterz pass merges on from the previous level, which gives what a pass
    of its own would (the merges happen in the order of their scores, lowest first).  Each
    merged result is a copy; a level ``<= 0`` (or fragments without any id) gives ``frags``."""
    levels = list(merge_thresholds)
    if levels != sorted(levels):
        raise ValueError(f"merge thresholds must ascend, got {levels}")
    if frags.max(initial=0) == 0 or all(m <= 0 for m in levels):
        for _ in levels:
            yield frags
        return
    import waterz

    affs = np.zeros((3, *p.shape), dtype=np.float32)
    for axis in range(3):
        if axis == 0 and mode == "2d":
            continue  # affinity 0 = boundary 1: never below a threshold < 1
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        # affs[d][x] links voxel x with its predecessor along axis d
        affs[axis][tuple(hi)] = (p[tuple(hi)] + p[tuple(lo)]) / 2
    for m in levels:
        if m > 0:
            break
        yield frags  # a threshold <= 0 merges nothing
    positive = [m for m in levels if m > 0]
    results = waterz.agglomerate(affs, positive, fragments=frags.astype(np.uint64))
    while True:
        with _quiet_stdout():  # waterz merges (and prints) while the next level is asked for
            merged = next(results, None)
        if merged is None:
            return
        yield np.array(merged)  # waterz goes on merging in this buffer


def segment(
    p: np.ndarray,
    mode: str,
    threshold: float,
    seed_distance: float = 2.0,
    merge_threshold: float = 0.5,
    min_size: int = 0,
    sampling: Sequence[float] | None = None,
) -> np.ndarray:
    """Labels ``1..n`` (uint32, 0 background) of a ``(z, y, x)`` float probability block."""
    if p.ndim != 3:
        raise InputTypeError(f"segment needs a (z, y, x) block, got shape {p.shape}")
    if mode == "threshold":
        labels = threshold_components(p, threshold)
    else:
        frags = fragments(p, mode, threshold, seed_distance, sampling)
        labels = agglomerate(frags, p, merge_threshold, mode)
    if min_size > 0:
        ids, counts = np.unique(labels, return_counts=True)
        small = ids[(counts < min_size) & (ids > 0)]
        labels = np.where(np.isin(labels, small), 0, labels)
    out, _, _ = relabel_sequential(labels.astype(np.uint64))
    return out.astype(np.uint32)  # type: ignore[no-any-return]
