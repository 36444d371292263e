"""The ISBI 2012 challenge's warping error, as Fiji's ``WarpingError`` computes it.

A port of ``trainableSegmentation.metrics.WarpingError`` (fiji/Trainable_Segmentation,
``simplePointWarp2d``, ``classifyMismatches2d``, ``clusterMismatchesByType`` and
``getMinimumSplitsAndMergersErrorValue``; Jain et al. 2010, "Boundary learning by optimization
with topological constraints"), the "minimum splits and mergers" warping error of the challenge
(Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142; imagej.net "Topology preserving warping
error" / "Splits and mergers warping error").  For one slice and one threshold ``t``:

1. The truth (cell = nonzero) is warped toward the proposal's mask ``p > t``, padded by one
   pixel of membrane.  Each pass lists the mismatched pixels column by column (x outer, y
   inner, as Fiji's loops), sorts them stably by ``|p - t|``, most confident first (Fiji's
   comparator truncates ``(z2 - z1) * 10**4`` to an int, so values closer than ``1e-4`` tie),
   and flips each one in turn if it is *simple* at that moment, with the flips of the pass
   already applied.  Passes repeat until one flips nothing.
2. Each remaining mismatch is classified from the 4-connected cells of the warped truth and
   its 8 neighbours inside the image: a membrane pixel between two or more cells that the
   proposal calls cell is a *merger*; a cell pixel whose removal (in the proposal) cuts its
   cell, or that touches two or more cells, is a *split*; the rest are hole or object
   additions and deletions, which this error does not count.
3. The error is the number of split and merger pixels over all pixels of the stack; the
   challenge reports its minimum over ``t = 0.0, 0.1, ..., 0.9``.

Simple points are Fiji's ``simple2DBertrand(patch, 4)``: the 3x3 patch is embedded as the
middle plane of a 3x3x3 neighbourhood whose other planes are empty, and Richardson's 3D test
(``simple3d``) is applied to the complement with 26-connectivity, i.e. cells 6- (here 4-)
connected.  :func:`fiji_simple_table` evaluates that test for all 256 neighbourhoods.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unet.errors import InputError
from unet.evaluation.contingency import CROSS

# neighbour k of a pixel (dy, dx) is bit k of its 3x3 code
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))

# Richardson's 3D simple-point masks (Fiji WarpingError.ncb), indexed [x][y][z]
_A6 = np.zeros((3, 3, 3), int)
_A6[0] = [[0, 1, 0], [1, 5, 1], [0, 1, 0]]
_A18 = np.zeros((3, 3, 3), int)
_A18[:2] = [[[0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 1], [0, 0, 0]]]
_A26 = np.zeros((3, 3, 3), int)
_A26[:2] = [[[0, 0, 0], [0, 1, 1], [0, 1, 1]], [[0, 0, 0], [0, 0, 1], [0, 1, 1]]]
_B18 = np.zeros((3, 3, 3), int)
_B18[:2] = [[[0, 1, 0], [0, 1, 9], [0, 1, 0]], [[0, 1, 1], [0, 0, 1], [0, 1, 1]]]
_B26 = np.zeros((3, 3, 3), int)
_B26[:2] = [[[0, 0, 0], [0, 1, 1], [0, 1, 7]], [[0, 0, 0], [0, 0, 1], [0, 1, 1]]]
_X, _Y, _Z = np.indices((3, 3, 3))
# the placements (mask index as a function of the voxel's x, y, z) that ncb sums over
_PLACE6 = [(_X, _Y, _Z), (2 - _X, _Y, _Z), (_Y, _X, _Z), (2 - _Y, _X, _Z), (_Z, _Y, _X),
           (2 - _Z, _Y, _X)]  # fmt: skip
_PLACE18 = [(_X, _Y, _Z), (_X, _Y, 2 - _Z), (2 - _X, _Y, _Z), (2 - _X, _Y, 2 - _Z),
            (_Y, _X, _Z), (_Y, _X, 2 - _Z), (2 - _Y, _X, _Z), (2 - _Y, _X, 2 - _Z),
            (_X, _Z, _Y), (_X, _Z, 2 - _Y), (2 - _X, _Z, _Y), (2 - _X, _Z, 2 - _Y)]  # fmt: skip
_PLACE26 = [(_X, _Y, _Z), (2 - _X, _Y, _Z), (_X, 2 - _Y, _Z), (_X, _Y, 2 - _Z),
            (2 - _X, 2 - _Y, _Z), (_X, 2 - _Y, 2 - _Z), (2 - _X, _Y, 2 - _Z),
            (2 - _X, 2 - _Y, 2 - _Z)]  # fmt: skip
_N6 = (4, 10, 12, 14, 16, 22)
_N18 = (1, 3, 4, 5, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 21, 22, 23, 25)
_N26 = tuple(i for i in range(27) if i != 13)


def _nca(v: list[int], con: int, space: int) -> int:
    total = sum(v[i] for i in {6: _N6, 18: _N18, 26: _N26}[con])
    return con * space - total if space == 1 else total


def _ncb(v: list[int], kind: str, con: int, space: int) -> int:
    """Fiji's ``ncb``: how many placements of the mask sum to their target over ``v``."""
    at = np.array(v).reshape(3, 3, 3).transpose(2, 1, 0)  # v[x + 3 y + 9 z] -> at[x, y, z]
    mask, goal, places = {
        ("a", 6): (_A6, 5 - space, _PLACE6),
        ("a", 18): (_A18, 3 - 3 * space, _PLACE18),
        ("a", 26): (_A26, 7 - 7 * space, _PLACE26),
        ("b", 18): (_B18, 9 - space, _PLACE18),
        ("b", 26): (_B26, 7 - space, _PLACE26),
    }[kind, con]
    return sum(int((mask[place] * at).sum()) == goal for place in places)


def _simple3d_26(v: list[int]) -> bool:
    if _nca(v, 6, 1) == 1 or _nca(v, 26, 0) == 1:
        return True
    if _ncb(v, "b", 26, 0) != 0:
        return False
    if _nca(v, 18, 0) == 1:
        return True
    return (
        _ncb(v, "a", 6, 1) == 0
        and _ncb(v, "b", 18, 0) == 0
        and _nca(v, 6, 1) - _ncb(v, "a", 18, 1) + _ncb(v, "a", 26, 1) == 1
    )


@functools.cache
def fiji_simple_table() -> np.ndarray:
    """Lookup table ``(256,) bool``: is a pixel with this 3x3 code (bit k = cell at
    ``_OFFSETS[k]``) simple for Fiji's ``simple2DBertrand(patch, 4)``?"""
    table = np.zeros(256, bool)
    for code in range(256):
        cell = [0] * 27  # planes z = 0 and 2 are empty (0); the patch is plane z = 1
        for bit, (dy, dx) in enumerate(_OFFSETS):
            cell[9 + (dx + 1) + 3 * (dy + 1)] = code >> bit & 1
        table[code] = _simple3d_26([0 if c == 1 else 1 for c in cell])  # Fiji inverts first
    return table


def _order(mismatched: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Flat indices of the mismatched pixels in Fiji's processing order."""
    cols, rows = np.nonzero(mismatched.T)  # x outer, y inner
    z = confidence[rows, cols]
    values = np.unique(z)[::-1]  # descending; a gap below 1e-4 (after x 10^4, truncated) ties
    gaps = np.trunc((values[:-1] - values[1:]) * np.float32(10000)) != 0
    rank = np.concatenate([[0], np.cumsum(gaps)])
    key = rank[np.searchsorted(-values, -z)]
    order = np.argsort(key, kind="stable")
    return rows[order] * mismatched.shape[1] + cols[order]


def _codes(cell: np.ndarray, index: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """3x3 neighbour codes of the flat ``index`` pixels of the padded mask ``cell``."""
    return cell.ravel()[index[:, None] + offsets] @ (1 << np.arange(8))


def warp_truth(truth: np.ndarray, probability: np.ndarray, threshold: float) -> np.ndarray:
    """Fiji's ``simplePointWarp2d``: the cell mask of ``truth`` (Y, X) warped toward the
    proposal ``probability > threshold`` by simple-point flips in Fiji's order.

    The flips are sequential; a pixel's code is recomputed only when a neighbour flipped
    earlier in the same pass (otherwise the pass-start code, computed at once, is current).
    """
    if truth.ndim != 2 or truth.shape != probability.shape:
        raise InputError(f"need two 2D images of one shape, got {truth.shape}, {probability.shape}")
    table = fiji_simple_table()
    source = np.pad(truth != 0, 1)
    target = np.pad(probability.astype(np.float64) > threshold, 1)
    # Fiji: (float) Math.abs(pixel - threshold), the pixel a float, the threshold a double
    confidence = np.pad(np.abs(probability.astype(np.float64) - threshold).astype(np.float32), 1)
    width = source.shape[1]
    offsets = np.array([dy * width + dx for dy, dx in _OFFSETS])
    neighbours = offsets.tolist()
    lookup = table.tolist()
    flat = source.ravel()  # a view: flips land in ``source``
    before = -1
    while True:
        mismatched = source != target  # never on the padding, so neighbours exist
        diff = int(np.count_nonzero(mismatched))
        if diff == 0 or diff == before:
            return source[1:-1, 1:-1].copy()
        before = diff
        order = _order(mismatched, confidence)
        simple_now = table[_codes(source, order, offsets)].tolist()
        dirty: set[int] = set()
        for i, simple in zip(order.tolist(), simple_now, strict=True):
            if i in dirty:
                code = 0
                for bit, off in enumerate(neighbours):
                    code |= int(flat[i + off]) << bit
                simple = lookup[code]
            if simple:
                flat[i] = not flat[i]
                dirty.update(i + off for off in neighbours)


def splits_and_mergers(warped: np.ndarray, proposal: np.ndarray) -> tuple[int, int]:
    """(split, merger) pixel counts of the mismatches between the warped truth and the
    proposal's cell mask (Y, X), as Fiji's ``classifyMismatches2d`` (radius -1, whole image)
    and ``clusterMismatchesByType`` count them."""
    cells, _ = ndimage.label(warped, CROSS)
    padded = np.pad(cells, 1, constant_values=-1)  # -1: outside, not a neighbour
    width = padded.shape[1]
    ys, xs = np.nonzero(warped != proposal)
    index = (ys + 1) * width + xs + 1
    around = np.sort(padded.ravel()[index[:, None] + [dy * width + dx for dy, dx in _OFFSETS]])
    distinct = 1 + np.count_nonzero(around[:, 1:] != around[:, :-1], axis=1)
    distinct -= around[:, 0] == -1  # do not count the outside
    own = cells[ys, xs]
    many = (distinct > 2) | (distinct == 0)
    splits = int(np.count_nonzero(many & (own != 0)))
    mergers = int(np.count_nonzero(many & (own == 0)))
    boxes = ndimage.find_objects(cells)
    for y, x, label in zip(*(a[(distinct == 2) & (own != 0)] for a in (ys, xs, own)), strict=True):
        splits += _cuts(cells, boxes[label - 1], int(y), int(x), int(label))
    return splits, mergers


def _cuts(cells: np.ndarray, box: tuple[slice, ...], y: int, x: int, own: int) -> bool:
    """Would turning (y, x) to membrane leave more than two labels (membrane included) among
    its 8 neighbours?  Only the cell ``own`` can change, so only it is relabelled."""
    piece = cells[box] == own
    piece[y - box[0].start, x - box[1].start] = False
    pieces, _ = ndimage.label(piece, CROSS)
    labels = set()
    for dy, dx in _OFFSETS:
        ny, nx = y + dy, x + dx
        if 0 <= ny < cells.shape[0] and 0 <= nx < cells.shape[1]:
            value = int(cells[ny, nx])
            if value == own:  # its piece, as a negative id so as not to meet other cells' ids
                value = -int(pieces[ny - box[0].start, nx - box[1].start])
            labels.add(value)
    return len(labels) > 2


def splits_and_mergers_per_threshold(
    truth: np.ndarray, probability: np.ndarray, thresholds: Sequence[float]
) -> list[int]:
    """Split + merger pixels of one slice for each threshold."""
    counts = []
    for t in thresholds:
        warped = warp_truth(truth, probability, t)
        counts.append(sum(splits_and_mergers(warped, probability.astype(np.float64) > t)))
    return counts
