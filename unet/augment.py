"""Data augmentation of Ronneberger et al. (2015), sec. 3.1: flips, rotation, shift, smooth elastic
deformation and grey-value changes, applied identically to image, labels and weights.

All spatial transforms are folded into ONE coordinate map, so the data are resampled once::

    input position = R(angle) (p - c) + c + shift + elastic(p)      for output pixel p

with ``c`` the centre of the y-x plane, and the elastic field ``elastic(p)`` obtained from random
normal displacements (standard deviation ``elastic_sigma`` px) on a coarse ``elastic_grid`` per axis
grid, upsampled to every pixel by cubic spline zoom.  The image is resampled bicubically
(order 3), labels and weights by nearest neighbour (order 0) at the same positions; positions
outside the array are mirrored, so there are no empty corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

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

    rotation: float = 180.0
    shift: float = 0.0
    flips: bool = True
    elastic: bool = True
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    elastic_3d: bool = False
    brightness: Range = (-0.1, 0.1)
    contrast: Range = (0.9, 1.1)
    gamma: Range = (0.8, 1.25)

    def __post_init__(self) -> None:
        for name in ("flips", "elastic", "elastic_3d"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if not self.shift >= 0:
            raise ValueError(f"shift must be non-negative, got {self.shift}")
        grid = self.elastic_grid
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
            raise ValueError(f"elastic_grid must be an integer >= 2, got {grid!r}")
        if not self.elastic_sigma >= 0:
            raise ValueError(f"elastic_sigma must be non-negative, got {self.elastic_sigma}")
        for name, low in (("brightness", -math.inf), ("contrast", 0.0), ("gamma", 0.0)):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), low))


def _check_range(name: str, value: Range, low: float) -> Range:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not (low < pair[0] <= pair[1] < math.inf):
        bound = "" if low == -math.inf else f" with low > {low}"
        raise ValueError(f"{name} must be a finite (low, high) range{bound}, got {value}")
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
    labels : labels of the same shape (any integer or bool dtype, ids below 2**53).
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
        raise ValueError(
            "image, labels and weights must share a (Y, X) or (Z, Y, X) shape, got "
            f"{image.shape}, {labels.shape} and {weights.shape}"
        )
    image, weights = image.astype(np.float32), weights.astype(np.float32)
    if config.flips:
        for axis in (-2, -1):
            if rng.random() < 0.5:
                image, labels, weights = (np.flip(a, axis) for a in (image, labels, weights))
    coords = _coordinates(image.shape, rng, config)
    if coords is not None:
        image = ndi.map_coordinates(image, coords, order=3, mode="mirror", output=np.float32)
        labels = ndi.map_coordinates(labels, coords, order=0, mode="mirror")
        weights = ndi.map_coordinates(weights, coords, order=0, mode="mirror")
    image = _grey_values(image, rng, config)
    # copies: the outputs never alias the inputs, even for the identity transform
    return np.array(image, order="C"), np.array(labels, order="C"), np.array(weights, order="C")


def _coordinates(
    shape: tuple[int, ...], rng: np.random.Generator, config: AugmentConfig
) -> np.ndarray | None:
    """(ndim, *shape) input positions of every output pixel, or ``None`` for the identity."""
    angle = math.radians(rng.uniform(-config.rotation, config.rotation)) if config.rotation else 0
    shift = rng.uniform(-config.shift, config.shift, size=2) if config.shift else np.zeros(2)
    elastic = config.elastic and config.elastic_sigma > 0
    if angle == 0 and not shift.any() and not elastic:
        return None
    coords = np.indices(shape, dtype=np.float64)
    cy, cx = ((s - 1) / 2 for s in shape[-2:])
    y, x = coords[-2] - cy, coords[-1] - cx
    cos, sin = math.cos(angle), math.sin(angle)
    coords[-2] = cos * y - sin * x + cy + shift[0]
    coords[-1] = sin * y + cos * x + cx + shift[1]
    if elastic:
        field_shape = shape if config.elastic_3d else shape[-2:]
        grid = (config.elastic_grid,) * len(field_shape)
        zoom = [s / g for s, g in zip(field_shape, grid, strict=True)]
        for axis in range(len(shape) - len(field_shape), len(shape)):
            coarse = rng.normal(0.0, config.elastic_sigma, size=grid)
            coords[axis] += ndi.zoom(coarse, zoom, order=3)  # broadcast over z for a y-x field
    return coords


def _grey_values(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Gamma (on the image clipped to [0, 1]), then contrast about the mean, then brightness."""
    if config.gamma != (1.0, 1.0):
        image = np.clip(image, 0.0, 1.0) ** np.float32(rng.uniform(*config.gamma))
    if config.contrast != (1.0, 1.0):
        mean = image.mean(dtype=np.float64)
        image = (image - mean) * rng.uniform(*config.contrast) + mean
    if config.brightness != (0.0, 0.0):
        image = image + rng.uniform(*config.brightness)
    return image.astype(np.float32, copy=False)
