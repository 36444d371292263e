"""Contingency tables of (predicted, true) label pairs, accumulated block by block.

The ISBI 2012 challenge scores (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142; Fiji
``trainableSegmentation.metrics.RandError`` / ``VariationOfInformation``) only need the counts
``c_ij`` of pixels with predicted label ``j`` and true label ``i``, per 2D slice:

* only pixels that are foreground in the truth count (``i > 0``: *foreground-restricted*);
* a pixel the prediction calls background (``j = 0``) is its own singleton segment;
* V_rand is pooled over a stack (per-slice pair counts are summed, then the F-score is taken),
  V_info is the mean of the per-slice scores, exactly as the Fiji code aggregates them.

Label images enter as instance labels per slice (:func:`as_instances`); a table keeps one sparse
``{pred << 32 | true: count}`` array per slice, so tables from different blocks merge by summing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from unet.errors import InputError, InputTypeError

CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity of cells, as the challenge
_MAX_LABEL = 2**32 - 1


def _check_map(array: np.ndarray, name: str) -> None:
    if array.ndim not in (2, 3):
        raise InputError(f"{name} must be 2D (Y, X) or 3D (Z, Y, X), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise InputTypeError(f"{name} must be bool, integer or float, got dtype {array.dtype}")
    lo, hi = (np.min(array), np.max(array)) if array.size else (0, 0)
    if array.dtype.kind == "f" and not 0.0 <= lo <= hi <= 1.0:  # also catches NaN
        raise InputError(f"{name} is float: a probability map in [0, 1]; got [{lo}, {hi}]")
    if array.dtype.kind == "i" and lo < 0:
        raise InputError(f"{name} must not hold negative labels, got {lo}")


def as_foreground(array: Any, *, threshold: float = 0.5, name: str = "array") -> np.ndarray:
    """Cell (foreground) mask of a binary map, probability map or instance image.

    Parameters
    ----------
    array : (Y, X) or (Z, Y, X) bool (True = cell), integer (nonzero = cell) or float
        probability of cell in [0, 1] (cell where ``p > threshold``, as Fiji binarises).
    """
    arr = np.asarray(array)
    _check_map(arr, name)
    return arr > threshold if arr.dtype.kind == "f" else arr != 0


def as_instances(array: Any, *, threshold: float = 0.5, name: str = "array") -> np.ndarray:
    """Instance labels (0 = boundary/background) per 2D slice, as int64 of the input's shape.

    A bool or float slice, or an integer slice whose nonzero pixels all hold the same value
    (ISBI 0/255, 0/1), is a binary map: its 4-connected cell components are numbered
    ``1..n`` within the slice.  Any other integer slice already is an instance image and
    keeps its labels.
    """
    arr = np.asarray(array)
    _check_map(arr, name)
    stack = arr.reshape((-1,) + arr.shape[-2:])
    out = np.empty(stack.shape, np.int64)
    for z, plane in enumerate(stack):
        if arr.dtype.kind in "iu":
            nonzero = plane[plane != 0]
            if nonzero.size and nonzero.min() != nonzero.max():
                out[z] = plane
                continue
        ndimage.label(as_foreground(plane, threshold=threshold), CROSS, output=out[z])
    return out.reshape(arr.shape)


def _group_sum(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(labels, return_inverse=True)
    return np.bincount(inverse, weights=weights)


def _entropy(counts: np.ndarray, n: float) -> float:
    p = counts / n
    return float(-(p @ np.log(p)))


class ContingencyTable:
    """Sparse per-slice counts of (predicted label, true label) pairs on truth foreground.

    >>> t = ContingencyTable.from_labels(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 1, 1]]))
    >>> round(t.v_rand(), 4)  # split + one background pixel: P = 1, R = 6 / 16
    0.5455
    """

    def __init__(self) -> None:
        self._slices: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_labels(cls, prediction: Any, truth: Any) -> ContingencyTable:
        """Table of two instance images (see :meth:`add`)."""
        table = cls()
        table.add(prediction, truth)
        return table

    def add(self, prediction: Any, truth: Any, z: int = 0) -> None:
        """Count the pixel pairs of one (Y, X) slice or a (Z, Y, X) slab starting at slice ``z``.

        Both are instance labels (0 = background) below ``2**32``; pixels that are background
        in ``truth`` are dropped at once.  Adding a slice index again adds to its counts, which
        is only meaningful when its labels agree between the calls.
        """
        pred, true = np.asarray(prediction), np.asarray(truth)
        if pred.shape != true.shape:
            raise InputError(f"prediction shape {pred.shape} != truth shape {true.shape}")
        for name, arr in (("prediction", pred), ("truth", true)):
            if arr.ndim not in (2, 3):
                raise InputError(f"{name} must be (Y, X) or (Z, Y, X), got shape {arr.shape}")
            if arr.dtype.kind not in "biu":
                raise InputTypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
            if arr.size and not 0 <= int(arr.min()) <= int(arr.max()) <= _MAX_LABEL:
                raise InputError(
                    f"{name} labels must lie in [0, 2**32), got [{arr.min()}, {arr.max()}]"
                )
        pred = pred.reshape((-1,) + pred.shape[-2:])
        true = true.reshape(pred.shape)
        for k in range(pred.shape[0]):
            fg = true[k] != 0
            if not fg.any():
                continue
            keys = pred[k][fg].astype(np.uint64) << np.uint64(32) | true[k][fg].astype(np.uint64)
            uniq, counts = np.unique(keys, return_counts=True)
            self._insert(z + k, uniq, counts.astype(np.int64))

    def merge(self, other: ContingencyTable) -> ContingencyTable:
        """Add ``other``'s counts to this table (in place) and return this table."""
        for z, (keys, counts) in other._slices.items():
            self._insert(z, keys, counts)
        return self

    def _insert(self, z: int, keys: np.ndarray, counts: np.ndarray) -> None:
        if z in self._slices:
            old_keys, old_counts = self._slices[z]
            keys, inverse = np.unique(np.concatenate([old_keys, keys]), return_inverse=True)
            summed = np.zeros(keys.size, np.int64)
            np.add.at(summed, inverse, np.concatenate([old_counts, counts]))
            counts = summed
        self._slices[z] = (keys, counts)

    def _marginals(self, z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(truth sizes a_i, predicted sizes b_j for j > 0, overlaps c_ij for j > 0, number of
        pixels the prediction calls background)."""
        keys, counts = self._slices[z]
        pred, true, c = keys >> np.uint64(32), keys & np.uint64(_MAX_LABEL), counts.astype(float)
        inside = pred != 0
        return (
            _group_sum(true, c),
            _group_sum(pred[inside], c[inside]),
            c[inside],
            float(c[~inside].sum()),
        )

    def _require_foreground(self, what: str) -> None:
        if not self._slices:
            raise InputError(f"{what} is undefined: no pixel is foreground in the truth")

    def v_rand(self) -> float:
        """Foreground-restricted Rand F-score, pooled over slices (1 = perfect).

        With ``n_ij`` the overlaps, ``a_i``/``b_j`` the true/predicted sizes and ``s`` the
        singletons (truth foreground the prediction calls background), each summed over slices:
        ``P = (sum n_ij^2 + s) / (sum b_j^2 + s)``, ``R = (sum n_ij^2 + s) / sum a_i^2``,
        ``V_rand = 2PR / (P + R)`` (Fiji's N^2-normalised version: self-pairs included).
        """
        self._require_foreground("V_rand")
        sum_ab = sum_a = sum_b = 0.0
        for z in self._slices:
            a, b, c, singletons = self._marginals(z)
            sum_a += a @ a
            sum_b += b @ b + singletons
            sum_ab += c @ c + singletons
        return float(2.0 * sum_ab / (sum_a + sum_b))

    def rand_error(self) -> float:
        """``1 - V_rand`` of this one segmentation (the challenge's Rand error is the best
        over thresholds, :mod:`unet.evaluation.isbi2012`)."""
        return 1.0 - self.v_rand()

    def v_info(self) -> float:
        """Foreground-restricted information-theoretic F-score, mean over slices (1 = perfect).

        Per slice with ``n`` truth-foreground pixels: ``V_info = 2 I(S; T) / (H(S) + H(T))``
        (the harmonic mean of Fiji's ``I/H(T)`` and ``I/H(S)``), each singleton contributing
        ``(1/n) log n`` to ``H(S)`` and ``H(S, T)``.  A slice where both entropies vanish (one
        true segment, predicted exactly) scores 1; Fiji leaves that case at 0 or NaN.
        """
        self._require_foreground("V_info")
        scores = []
        for z in self._slices:
            a, b, c, singletons = self._marginals(z)
            n = float(a.sum())
            h_true = _entropy(a, n)
            h_pred = _entropy(b, n) + singletons / n * np.log(n)
            h_joint = _entropy(c, n) + singletons / n * np.log(n)
            denominator = h_true + h_pred
            mutual = h_true + h_pred - h_joint
            scores.append(1.0 if denominator == 0.0 else 2.0 * mutual / denominator)
        return float(np.mean(scores))
