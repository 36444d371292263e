"""Data augmentation of Ronneberger et al. (2015), sec. 3.1: flips, rotation, shift, smooth elastic
deformation and grey-value changes, applied identically to image, labels and weights.

All spatial transforms are folded into ONE coordinate map, so the data are resampled once::

    input position = R(angle) (p - c) + c + shift + elastic(p)      for output pixel p

with ``c`` the centre of the y-x plane, and the elastic field ``elastic(p)`` obtained from random
normal displacements (standard deviation ``elastic_sigma`` px) on a coarse ``elastic_grid`` per axis
grid, upsampled to every pixel by cubic spline zoom.  The image is resampled bicubically
(order 3), labels and weights by nearest neighbour (order 0) at the same positions; positions
outside the array are mirrored, so there are no empty corners.

This computes what ``ndi.zoom`` (field) and ``ndi.map_coordinates(mode="mirror")`` (one call per
array) did, ~4x (572 x 572) to ~9x (3D field) faster (``bench/augment.py``): the zoom is a
product of small matrices, the positions are built a few rows at a time, the image's spline
coefficients are gathered at the 4 x 4 (x 4) taps, and labels and weights at the rounded
positions (order 0, exactly).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from unet.errors import InputError, InputTypeError
from unet.settings.schema import default
from unet.training.resample import Factors, resample

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation parameters (the paper's values where it gives them).

    Parameters
    ----------
    rotation : maximum rotation in the y-x plane, degrees; the angle is uniform in
        ``[-rotation, rotation]``.  180 (any angle): EM sections have no preferred orientation.
    shift : maximum translation in the y-x plane, px, uniform per axis.  The paper names shifts
        but gives no size; random tile positions already translate, so the default is 0.
    flips : flip the y and x axes, each with probability 1/2.
    elastic : apply the smooth elastic deformation.
    elastic_grid : coarse grid points per axis of the elastic field (paper: 3 x 3).
    elastic_sigma : standard deviation of the coarse displacements, px (paper: 10).
    elastic_3d : for (Z, Y, X) data, displace along all three axes with a 3D field; otherwise one
        y-x field shared by all slices.
    brightness : range of an additive grey-value offset (images normalised to [0, 1]).
    contrast : range of a factor scaling grey values about the image mean.
    gamma : range of an exponent applied to the image clipped to [0, 1] (``x ** gamma``).
        The paper names grey-value variations but gives no sizes; the defaults are mild.
    """

    rotation: float = default("train.augment", "rotation")
    shift: float = default("train.augment", "shift")
    flips: bool = default("train.augment", "flips")
    elastic: bool = default("train.augment", "elastic")
    elastic_grid: int = default("train.augment", "elastic_grid")
    elastic_sigma: float = default("train.augment", "elastic_sigma")
    elastic_3d: bool = default("train.augment", "elastic_3d")
    brightness: Range = default("train.augment", "brightness")
    contrast: Range = default("train.augment", "contrast")
    gamma: Range = default("train.augment", "gamma")

    def __post_init__(self) -> None:
        for name in ("flips", "elastic", "elastic_3d"):
            if not isinstance(getattr(self, name), bool):
                raise InputTypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not 0 <= self.rotation <= 180:
            raise InputError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if not self.shift >= 0:
            raise InputError(f"shift must be non-negative, got {self.shift}")
        grid = self.elastic_grid
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
            raise InputError(f"elastic_grid must be an integer >= 2, got {grid!r}")
        if not self.elastic_sigma >= 0:
            raise InputError(f"elastic_sigma must be non-negative, got {self.elastic_sigma}")
        for name, low in (("brightness", -math.inf), ("contrast", 0.0), ("gamma", 0.0)):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), low))


def _check_range(name: str, value: Range, low: float) -> Range:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not (low < pair[0] <= pair[1] < math.inf):
        bound = "" if low == -math.inf else f" with low > {low}"
        raise InputError(f"{name} must be a finite (low, high) range{bound}, got {value}")
    return pair[0], pair[1]


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomly transform an image with its labels and weights, identically.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) grey values, normalised to [0, 1].
    labels : labels of the same shape (any integer or bool dtype).
    weights : pixel weights of the same shape.
    rng : the random generator; the same state gives the same output.
    config : what to randomise.

    Returns
    -------
    image (float32), labels (their dtype), weights (float32), all of the input shape.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    image, labels, weights = np.asarray(image), np.asarray(labels), np.asarray(weights)
    if not image.shape == labels.shape == weights.shape or image.ndim not in (2, 3):
        raise InputError(
            "image, labels and weights must share a (Y, X) or (Z, Y, X) shape, got "
            f"{image.shape}, {labels.shape} and {weights.shape}"
        )
    image, weights = image.astype(np.float32, copy=False), weights.astype(np.float32, copy=False)
    if config.flips:
        for axis in (-2, -1):
            if rng.random() < 0.5:
                image, labels, weights = (np.flip(a, axis) for a in (image, labels, weights))
    positions = _positions(image.shape, rng, config)
    if positions is None:  # copies: the outputs never alias the inputs
        image, labels, weights = (np.array(a, order="C") for a in (image, labels, weights))
    else:
        image, labels, weights = resample(image, labels, weights, positions)
    return _grey_values(image, rng, config), labels, weights


def _positions(
    shape: tuple[int, ...], rng: np.random.Generator, config: AugmentConfig
) -> list[Factors] | None:
    """Input positions along the resampled axes (the last 2, or all 3 for a 3D field) as
    float64 factors, or ``None`` for the identity: ``L @ R`` is the (rows, X) array of one
    axis's positions, rows running over the other resampled axes, y last.

    Without a 3D field the z position is the output z, so (Z, Y, X) data are resampled as a
    stack of y-x slices: spline interpolation at an integer position returns that sample.
    """
    angle = math.radians(rng.uniform(-config.rotation, config.rotation)) if config.rotation else 0
    shift = rng.uniform(-config.shift, config.shift, size=2) if config.shift else np.zeros(2)
    elastic = config.elastic and config.elastic_sigma > 0
    if angle == 0 and not shift.any() and not elastic:
        return None
    (ny, nx), cos, sin = shape[-2:], math.cos(angle), math.sin(angle)
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    y, x, ones = np.arange(ny) - cy, np.arange(nx) - cx, np.ones(ny)
    # R(angle) (p - c) + c + shift: per component, a y term times 1 plus 1 times an x term
    factors = [
        (np.stack([cos * y + (cy + shift[0]), ones], 1), np.stack([np.ones(nx), -sin * x])),
        (np.stack([sin * y + (cx + shift[1]), ones], 1), np.stack([np.ones(nx), cos * x])),
    ]
    if elastic and config.elastic_3d and len(shape) == 3:
        z = np.broadcast_to(np.arange(shape[0], dtype=np.float64)[:, None, None], (*shape[:2], 1))
        factors = [(z, np.ones((1, nx)))] + [
            (np.broadcast_to(a, (*shape[:2], 2)), b) for a, b in factors
        ]
    spatial = shape[-len(factors) :]
    if elastic:
        grid = (config.elastic_grid,) * len(spatial)
        for axis, (left, right) in enumerate(factors):
            coarse = rng.normal(0.0, config.elastic_sigma, size=grid)
            field_left, field_right = _zoom_factors(coarse, spatial)
            factors[axis] = (
                np.concatenate([left, field_left], -1),
                np.concatenate([right, field_right]),
            )
    return [(left.reshape(-1, left.shape[-1]), right) for left, right in factors]


def _zoom_factors(coarse: np.ndarray, shape: tuple[int, ...]) -> Factors:
    """``ndi.zoom(coarse, shape / coarse.shape, order=3)`` as (..., g) @ (g, X) factors: cubic
    spline zoom is separable and linear, so in 2D it is ``A_y @ coarse @ A_x.T``."""
    left = coarse
    for n in shape[:-1]:  # contract the leading coarse axis, append the fine one
        left = np.einsum("i...,ni->...n", left, _zoom_matrix(coarse.shape[0], n))
    return np.moveaxis(left, 0, -1), _zoom_matrix(coarse.shape[0], shape[-1]).T


@functools.lru_cache(maxsize=64)
def _zoom_matrix(grid: int, n: int) -> np.ndarray:
    """(n, grid): column j is ``ndi.zoom`` of the j-th unit vector to length n."""
    matrix = np.stack([ndi.zoom(e, n / grid, order=3) for e in np.eye(grid)], axis=1)
    matrix.flags.writeable = False
    return matrix


def _grey_values(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Gamma (on the image clipped to [0, 1]), then contrast about the mean, then brightness;
    in place on a fresh float32 image."""
    if config.gamma != (1.0, 1.0):
        np.clip(image, 0.0, 1.0, out=image)
        np.power(image, np.float32(rng.uniform(*config.gamma)), out=image)
    scale, offset = 1.0, 0.0
    if config.contrast != (1.0, 1.0):
        mean = image.mean(dtype=np.float64)
        scale = rng.uniform(*config.contrast)
        offset = mean * (1 - scale)  # (x - mean) * scale + mean
    if config.brightness != (0.0, 0.0):
        offset += rng.uniform(*config.brightness)
    if scale != 1.0:
        image *= np.float32(scale)
    if offset != 0.0:
        image += np.float32(offset)
    return image
