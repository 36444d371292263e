"""The border weight map of Ronneberger et al. (2015), eq. 2, computed exactly within a cutoff.

The loss weight of pixel ``x`` is::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))      (border term on background only)

with ``d1``/``d2`` the distances to the nearest and second-nearest cell.  The border term falls
below ``CUTOFF_RATIO * w0`` once ``d1 + d2 > R = sigma * sqrt(2 ln(1 / CUTOFF_RATIO))`` (about
26 px for sigma = 5), so a cell only matters for pixels within ``R`` of it.  Instead of one
full-image distance transform per cell, each cell gets one distance transform inside its bounding
box grown by ``R`` (a window that holds every pixel of the cell, so distances inside it are exact),
and a running pair of smallest distances is kept.  The cost is the sum of the window sizes: linear
in the pixel count for cells of bounded size.

The border term is set to 0 where ``d1 + d2 > R`` (an error below ``CUTOFF_RATIO * w0``).  Where
``d1 + d2 <= R`` both distances are at most ``R`` and so are computed exactly; the result therefore
depends only on the cells within ``R`` of a pixel, and a window of the labels grown by ``R``
(:mod:`unet.weights.volume`) gives the same weights as the whole array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from unet.errors import InputError, InputTypeError

CUTOFF_RATIO = 1e-6
"""The border term is set to 0 where it is below ``CUTOFF_RATIO * w0`` (1e-5 for w0 = 10)."""

ClassWeights = Literal["balanced"] | tuple[float, float] | None


def cutoff(sigma: float) -> float:
    """Distance ``R`` with ``exp(-R^2 / (2 sigma^2)) = CUTOFF_RATIO``: beyond ``d1 + d2 > R`` the
    border term is negligible.

    >>> round(cutoff(5.0), 2)
    26.28
    """
    if not sigma > 0:
        raise InputError(f"sigma must be positive, got {sigma}")
    return sigma * math.sqrt(2.0 * math.log(1.0 / CUTOFF_RATIO))


def reach(
    sigma: float, ndim: int, sampling: float | Sequence[float] | None = None
) -> tuple[int, ...]:
    """Voxels per axis, ``ceil(cutoff(sigma) / sampling)``, beyond which a cell cannot change the
    weights: the halo a block of the volume needs.

    >>> reach(5.0, 3, sampling=(4.0, 1.0, 1.0))
    (7, 27, 27)
    """
    radius = cutoff(sigma)
    return tuple(math.ceil(radius / s) for s in _spacing(sampling, ndim))


def _spacing(sampling: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if sampling is None:
        return (1.0,) * ndim
    if isinstance(sampling, (int, float, np.number)):
        spacing = (float(sampling),) * ndim
    else:
        spacing = tuple(float(s) for s in sampling)
    if len(spacing) != ndim or not all(s > 0 for s in spacing):
        raise InputError(f"sampling must be {ndim} positive numbers, got {sampling}")
    return spacing


def instances_from_mask(mask: np.ndarray, foreground: int | None = None) -> np.ndarray:
    """Instance labels from a binary membrane mask, by connected components per 2D slice.

    Parameters
    ----------
    mask : (..., Y, X) binary mask; cells are the nonzero pixels, or the pixels equal to
        ``foreground`` if given (ISBI 2012: 0 = membrane, 255 = cell).
    foreground : the value marking cells, or ``None`` for "nonzero".

    Returns
    -------
    (..., Y, X) int32 labels: 0 = background, cells ``1..N`` numbered across the whole array.
    Components are 4-connected in the last two axes (a 1-px membrane, even a diagonal one,
    separates two cells) and never connect across the leading axes.
    """
    mask = np.asarray(mask)
    if mask.ndim < 2:
        raise InputError(f"mask must have at least 2 dimensions (Y, X), got shape {mask.shape}")
    if mask.dtype != bool:
        values = np.unique(mask)
        if values.size > 2:
            shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
            raise InputTypeError(
                f"mask must be binary (two distinct values), found {values.size}: {shown}"
            )
    cells = mask != 0 if foreground is None else mask == foreground
    # a 3x3 cross in the last two axes, a single plane along the leading ones
    structure = np.zeros((3,) * mask.ndim, dtype=bool)
    structure[(1,) * (mask.ndim - 2)] = ndi.generate_binary_structure(2, 1)
    labels = np.zeros(mask.shape, dtype=np.int32)
    ndi.label(cells, structure=structure, output=labels)
    return labels


def separation_border(labels: np.ndarray, width: int = 1, ndim: int | None = None) -> np.ndarray:
    """The separation border between touching objects (the paper's "separation border ...
    computed using morphological operations", sec. 3): the pixels of each object within
    ``width`` face steps of an object with a lower id.

    Made background, it leaves every two touching objects ``width`` pixels apart (their
    face-connected components stay separate); ``width = 1``, a one-pixel line on the side of
    the higher id, is the least that does.  ``ndim``: trailing axes of one image (2: per
    section on a 3D array; default ``labels.ndim``); ``width = 0``: no border.

    >>> separation_border(np.array([[1, 1, 2, 2, 0, 3]])).astype(int).tolist()
    [[0, 0, 1, 0, 0, 0]]
    """
    labels = _check_labels(labels)
    ndim = labels.ndim if ndim is None else ndim
    if width < 0 or not 1 <= ndim <= labels.ndim:
        raise InputError(f"width must be >= 0 and ndim in [1, {labels.ndim}], got {width}, {ndim}")
    if width == 0 or labels.size == 0:
        return np.zeros(labels.shape, dtype=bool)
    step = ndi.iterate_structure(ndi.generate_binary_structure(ndim, 1), width)
    footprint = step.reshape((1,) * (labels.ndim - ndim) + step.shape)
    top = np.iinfo(np.int64).max
    lowest = ndi.grey_erosion(
        np.where(labels > 0, labels.astype(np.int64), top), footprint=footprint
    )
    return (labels > 0) & (lowest < labels)  # type: ignore[no-any-return]


def separate(labels: np.ndarray, width: int = 1, ndim: int | None = None) -> np.ndarray:
    """``labels`` with their :func:`separation_border` set to background (0)."""
    return np.where(separation_border(labels, width, ndim), 0, labels)


def class_weights(
    labels: np.ndarray | None, counts: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Class-balancing weights ``(w_bg, w_fg)`` for background (label 0) and cells (label > 0).

    ``w_c(k) = max_j N_j / N_k`` with ``N_k`` the pixel count of class ``k``: the more frequent
    class gets 1 and every weight is ``>= 1``.  A class with no pixels gets 1.

    Parameters
    ----------
    labels : (...) integer labels, counted when ``counts`` is not given.
    counts : global pixel counts ``(N0, N1)`` (e.g. summed over the blocks of a volume).

    >>> class_weights(np.array([0, 0, 0, 1]))
    (1.0, 3.0)
    """
    if counts is None:
        if labels is None:
            raise InputError("class_weights needs labels or counts, got neither")
        labels = np.asarray(labels)
        n0 = int(np.count_nonzero(labels == 0))
        counts = (n0, labels.size - n0)
    if len(counts) != 2 or any(int(n) < 0 for n in counts):
        raise InputError(f"counts must be two non-negative pixel counts, got {counts}")
    top = max(int(n) for n in counts)
    w_bg, w_fg = (top / int(n) if int(n) > 0 else 1.0 for n in counts)
    return w_bg, w_fg


def weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = "balanced",
    ndim: int | None = None,
    sampling: float | Sequence[float] | None = None,
    separation: int = 0,
) -> np.ndarray:
    """The pixel-wise loss weights of Ronneberger et al. (2015), eq. 2.

    Parameters
    ----------
    labels : (..., Y, X) or (Z, Y, X) non-negative integer instance labels, 0 = background.
    w0 : amplitude of the border term (paper: 10).
    sigma : width of the border term, in ``sampling`` units (paper: 5 px).
    class_weights : ``"balanced"`` (see :func:`class_weights`, counted on ``labels``), ``None``
        (``w_c = 1``) or an explicit ``(w_bg, w_fg)`` pair.
    ndim : number of trailing axes forming one image; ``2`` on a 3D array treats each slice
        separately (cells are 2D), ``None`` means ``labels.ndim``.
    sampling : voxel size along the last ``ndim`` axes (a number or one per axis; default 1).
    separation : width of the :func:`separation_border` between touching objects, which is
        background here (and in the training target, :class:`unet.training.sampler.PatchDataset`),
        so
        the border term weights it; 0: none.

    Returns
    -------
    float32 weights of the shape of ``labels``.  The border term is 0 where
    ``d1 + d2 > cutoff(sigma)``, and so in images with fewer than two cells (``d2 = inf``).
    """
    labels = _check_labels(labels)
    ndim = labels.ndim if ndim is None else ndim
    if not 1 <= ndim <= labels.ndim:
        raise InputTypeError(
            f"ndim must be in [1, {labels.ndim}] for labels of shape {labels.shape}, got {ndim}"
        )
    if separation:
        labels = separate(labels, separation, ndim)
    radius = cutoff(sigma)
    if not w0 >= 0:
        raise InputError(f"w0 must be non-negative, got {w0}")
    window = reach(sigma, ndim, sampling)
    spacing = _spacing(sampling, ndim)
    w_bg, w_fg = resolve_class_weights(class_weights, labels)

    weights = np.where(labels == 0, np.float32(w_bg), np.float32(w_fg))
    if w0 == 0:
        return weights
    for lead in np.ndindex(*labels.shape[: labels.ndim - ndim]):
        image = labels[lead]
        d1, d2 = _two_nearest(image, spacing, window)
        near = (image == 0) & (d1 + d2 <= radius)  # the border term is truncated beyond R
        total = d1[near] + d2[near]
        weights[lead][near] += (w0 * np.exp(-np.square(total) / (2.0 * sigma**2))).astype(
            np.float32
        )
    return weights


def _two_nearest(
    labels: np.ndarray, sampling: tuple[float, ...], grow: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest cell, from one distance transform per cell
    inside its bounding box grown by ``grow`` voxels (the window holds the whole cell, so its
    distances are exact); ``inf`` outside the window, where the distance exceeds ``grow``."""
    if labels.size and int(labels.max()) > labels.size:  # keep find_objects' list small
        values, compact = np.unique(labels, return_inverse=True)
        labels = compact.reshape(labels.shape) + int(values[0] != 0)  # background stays 0
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for cell, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        window = tuple(
            slice(max(b.start - g, 0), min(b.stop + g, n))
            for b, g, n in zip(box, grow, labels.shape, strict=True)
        )
        dist = ndi.distance_transform_edt(labels[window] != cell, sampling=sampling)
        near, second = d1[window], d2[window]  # views: updated in place
        np.minimum(second, np.maximum(near, dist), out=second)
        np.minimum(near, dist, out=near)
    return d1, d2


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputTypeError(
            f"labels must be an integer instance image, got dtype {labels.dtype} "
            "(use instances_from_mask for a binary mask)"
        )
    if labels.size and int(labels.min()) < 0:
        raise InputError(f"labels must be non-negative, got minimum {int(labels.min())}")
    return labels


def resolve_class_weights(
    choice: ClassWeights,
    labels: np.ndarray | None = None,
    counts: tuple[int, int] | None = None,
    cap: float | None = None,
) -> tuple[float, float]:
    """``(w_bg, w_fg)`` for a ``class_weights`` option of :func:`weight_map`: ``"balanced"``
    (:func:`class_weights` of ``labels`` or ``counts``, each weight at most ``cap``; ``None``:
    no cap), ``None`` (1, 1) or an explicit pair.

    >>> resolve_class_weights("balanced", counts=(30, 10)), resolve_class_weights(None)
    ((1.0, 3.0), (1.0, 1.0))
    >>> resolve_class_weights("balanced", counts=(93, 7), cap=5.0)
    (1.0, 5.0)
    """
    if choice is None:
        return 1.0, 1.0
    if isinstance(choice, str):
        if choice != "balanced":
            raise InputError(f"class_weights must be 'balanced', None or a pair, got {choice!r}")
        if cap is not None and not (isinstance(cap, int | float) and cap >= 1):
            raise InputError(f"class_weight_cap must be a number >= 1 or None, got {cap!r}")
        w_bg, w_fg = _balanced(labels, counts)
        return (w_bg, w_fg) if cap is None else (min(w_bg, cap), min(w_fg, cap))
    pair = tuple(float(w) for w in choice)
    if len(pair) != 2 or not all(math.isfinite(w) and w > 0 for w in pair):
        raise InputError(f"class_weights must be two positive numbers, got {choice}")
    return pair[0], pair[1]


_balanced = class_weights  # the public name is shadowed by weight_map's parameter
