"""Resampling of :mod:`unet.training.augment`: image, labels and weights at the positions of one
coordinate map, as ``ndi.map_coordinates(..., mode="mirror")`` does (order 3 for the image,
order 0 for labels and weights), a few rows at a time.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

Factors = tuple[np.ndarray, np.ndarray]  # (rows, m) @ (m, X): positions of one axis

CHUNK = 2**15  # positions per chunk: their ~20 float temporaries stay in cache


def resample(
    image: np.ndarray, labels: np.ndarray, weights: np.ndarray, factors: list[Factors]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays at the positions ``L @ R`` along their last ``len(factors)`` axes
    (leading z: kept), as ``ndi.map_coordinates(..., mode="mirror")`` with order 3 for the image
    (up to float32 rounding) and order 0 for labels and weights (exactly), a few rows at a time.
    """
    k, shape = len(factors), image.shape
    spatial = shape[-k:]
    size, nx = math.prod(spatial), spatial[-1]
    coef, strides = spline_coefficients(image, k)
    sources = [a.reshape(-1, size) for a in (labels, weights)]  # copies flipped views
    outs = [np.empty((coef.shape[0], size), a.dtype) for a in (image, *sources)]
    rows = max(1, CHUNK // nx)
    for start in range(0, size // nx, rows):
        chunk = slice(start * nx, (start + rows) * nx)
        # einsum, not BLAS: no thread pool contending with the data-loader workers
        p = [
            mirror(np.einsum("ri,ix->rx", left[start : start + rows], right).ravel(), n)
            for (left, right), n in zip(factors, spatial, strict=True)
        ]
        outs[0][:, chunk] = cubic(coef, strides, p)
        index = nearest_index(p, spatial)
        for source, out in zip(sources, outs[1:], strict=True):
            out[:, chunk] = np.take(source, index, axis=1)
    return outs[0].reshape(shape), outs[1].reshape(shape), outs[2].reshape(shape)


def mirror(p: np.ndarray, n: int) -> np.ndarray:
    """Map positions outside [0, n - 1] into [0, n) in place, as ``mode="mirror"`` of
    ``ndi.map_coordinates`` does, with the same float64 operations (so order 0 rounds alike).
    Positions in (n - 1, n) stay: their taps are mirrored instead."""
    if n == 1:
        p[...] = 0.0
        return p
    period = 2 * n - 2
    low = p < 0
    if low.any():
        q = p[low]
        q += period * np.trunc(-q / period)
        p[low] = np.where(q <= 1 - n, q + period, -q)
    high = p > n - 1
    if high.any():
        q = p[high]
        q -= period * np.trunc(q / period)
        p[high] = np.where(q >= n, period - q, q)
    return p


def nearest_index(positions: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Flat index into ``shape`` of the pixel nearest to each mirrored position (order 0)."""
    index, stride = np.zeros((), np.intp), 1
    for p, n in zip(positions[::-1], shape[::-1], strict=True):
        i = np.floor(p + 0.5).astype(np.intp)  # ndimage rounds halves up
        i[i == n] = max(n - 2, 0)  # from [n - 1/2, n): n mirrors to n - 2
        index = index + i * stride
        stride *= n
    return index


def spline_coefficients(image: np.ndarray, k: int) -> tuple[np.ndarray, list[int]]:
    """Cubic B-spline coefficients of ``image`` along its last k axes (float32, mirror
    boundary), padded by 2 per axis: (B, padded size), and the padded strides in elements."""
    axes = range(image.ndim - k, image.ndim)
    coef = ndi.spline_filter1d(image, 3, axes[0], output=np.float32, mode="mirror")
    for axis in axes[1:]:
        ndi.spline_filter1d(coef, 3, axis, output=coef, mode="mirror")
    pad = [(0, 0)] * (image.ndim - k) + [(2, 2)] * k
    coef = np.pad(coef, pad, mode="reflect")  # reflect = ndimage's mirror on integers
    strides = [s // coef.itemsize for s in coef.strides[-k:]]
    return coef.reshape(-1, math.prod(coef.shape[-k:])), strides


def cubic(coef: np.ndarray, strides: list[int], positions: list[np.ndarray]) -> np.ndarray:
    """(B, n) spline values at n mirrored positions, from :func:`spline_coefficients`."""
    base, weights = np.zeros((), np.intp), []
    for p, stride in zip(positions, strides, strict=True):
        floor = np.floor(p)
        base = base + (floor.astype(np.intp) + 1) * stride  # tap floor - 1, padded by 2
        t = (p - floor).astype(np.float32)
        s = 1 - t
        # taps at distance d = 1 + t, t, s, 1 + s from p: B(d) = 2/3 - d^2 + d^3 / 2 for d < 1,
        # (2 - d)^3 / 6 for 1 <= d < 2
        weights.append(
            [s * s * s / 6, 2 / 3 - t * t * (1 - t / 2), 2 / 3 - s * s * (1 - s / 2), t * t * t / 6]
        )

    def tensor_sum(axis: int, offset: int) -> np.ndarray:
        """sum_k weights[axis][k] * (the same sum over the later axes at offset + k strides)."""
        total = np.zeros((coef.shape[0], base.size), np.float32)
        for k, w in enumerate(weights[axis]):
            at = offset + k * strides[axis]
            last = axis == len(strides) - 1
            term = np.take(coef[:, at:], base, axis=1) if last else tensor_sum(axis + 1, at)
            term *= w
            total += term
        return total

    return tensor_sum(0, 0)
