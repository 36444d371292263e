"""Border weight maps: exactness against a brute-force recipe, and the paper's invariants."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from unet.errors import InputError
from unet.weights.border import (
    CUTOFF_RATIO,
    class_weights,
    cutoff,
    instances_from_mask,
    reach,
    resolve_class_weights,
    separation_border,
    weight_map,
)


def brute_force(labels: np.ndarray, w0: float, sigma: float, sampling=None) -> np.ndarray:
    """Eq. 2 with one full-image distance transform per cell and no cutoff (balanced w_c)."""
    ids = [k for k in np.unique(labels) if k != 0]
    dists = [ndi.distance_transform_edt(labels != k, sampling=sampling) for k in ids]
    dists += [np.full(labels.shape, np.inf)] * max(2 - len(ids), 0)
    d1, d2 = np.sort(np.stack(dists), axis=0)[:2]
    w_bg, w_fg = class_weights(labels)
    border = w0 * np.exp(-np.square(d1 + d2) / (2 * sigma**2))
    return np.where(labels == 0, w_bg + border, w_fg)


def random_labels(rng: np.random.Generator, shape: tuple[int, ...], n_cells: int) -> np.ndarray:
    """Blocky random cells (many touching each other), with random background carved out."""
    coarse = rng.integers(1, n_cells + 1, size=tuple(max(s // 4, 1) for s in shape))
    labels = coarse
    for axis, s in enumerate(shape):
        labels = np.repeat(labels, -(-s // coarse.shape[axis]), axis=axis)
    labels = labels[tuple(slice(0, s) for s in shape)].copy()
    labels[rng.random(shape) < 0.3] = 0
    labels[ndi.binary_dilation(rng.random(shape) < 0.02, iterations=2)] = 0
    return labels


def sparse_labels(rng: np.random.Generator, shape: tuple[int, ...], n_cells: int) -> np.ndarray:
    """Small cells (3 px wide) scattered far apart: second-nearest cells near the cutoff."""
    labels = np.zeros(shape, dtype=np.int32)
    labels[tuple(rng.integers(0, s, n_cells) for s in shape)] = np.arange(1, n_cells + 1)
    return ndi.grey_dilation(labels, size=(3,) * len(shape))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("shape", "n_cells", "sampling", "sigma"),
    [
        ((48, 56), 12, None, 5.0),
        ((64, 64), 20, None, 2.0),  # windows (cutoff ~10 px) much smaller than the image
        ((40, 40), 1, None, 5.0),
        ((12, 24, 20), 6, None, 5.0),
        ((16, 40, 40), 8, (3.0, 1.0, 1.0), 2.0),
        ((40, 36), 9, (1.0, 2.0), 3.0),
        ((64, 64), -6, None, 5.0),  # negative: sparse cells
        ((10, 40, 40), -6, None, 3.0),
    ],
)
def test_weight_map_matches_brute_force(seed, shape, n_cells, sampling, sigma):
    make = random_labels if n_cells > 0 else sparse_labels
    labels = make(np.random.default_rng(seed), shape, abs(n_cells))
    ours = weight_map(labels, w0=10.0, sigma=sigma, sampling=sampling)
    expected = brute_force(labels, 10.0, sigma, sampling)
    assert ours.dtype == np.float32 and ours.shape == labels.shape
    np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=0)  # truncation <= 1e-6 * w0
    if abs(n_cells) > 1:
        assert np.ptp(expected[labels == 0]) > 0.1  # the border term is really exercised


def test_weight_map_zero_cells_is_class_weight_only():
    labels = np.zeros((10, 12), dtype=np.uint16)
    np.testing.assert_array_equal(weight_map(labels), np.ones((10, 12), np.float32))


def test_weight_map_large_ids_are_relabelled():
    labels = random_labels(np.random.default_rng(3), (32, 32), 8).astype(np.int64)
    sparse = np.where(labels > 0, labels * 10**9 + 7, 0)
    np.testing.assert_array_equal(weight_map(sparse), weight_map(labels))


def test_weight_map_slicewise_equals_per_slice():
    labels = random_labels(np.random.default_rng(4), (3, 32, 40), 10)
    stacked = weight_map(labels, class_weights=(1.0, 2.0), ndim=2)
    for z in range(labels.shape[0]):
        np.testing.assert_array_equal(stacked[z], weight_map(labels[z], class_weights=(1.0, 2.0)))


@pytest.mark.parametrize("seed", [5, 6])
def test_weight_map_is_at_least_class_weight(seed):
    labels = random_labels(np.random.default_rng(seed), (40, 40), 10)
    w_bg, w_fg = class_weights(labels)
    weights = weight_map(labels)
    assert min(w_bg, w_fg) == 1.0
    assert np.all(weights >= np.where(labels == 0, w_bg, w_fg) - 1e-6)
    assert weights.min() >= 1.0 - 1e-6
    assert np.all(weight_map(labels, class_weights=None) >= 1.0)


def test_border_term_peaks_in_the_narrow_gap():
    # three bars: a 2-px gap between the first two, a 10-px gap between the last two
    labels = np.zeros((40, 60), dtype=np.int32)
    labels[5:35, 5:20] = 1
    labels[5:35, 22:35] = 2
    labels[5:35, 45:55] = 3
    w0, sigma = 10.0, 5.0
    weights = weight_map(labels, w0=w0, sigma=sigma, class_weights=None)
    # pixel (20, 20): d1 = 1 to bar 1, d2 = 2 to bar 2
    assert weights[20, 20] == pytest.approx(1 + w0 * np.exp(-9 / (2 * sigma**2)), abs=1e-5)
    assert np.unravel_index(np.argmax(weights), weights.shape)[1] in (20, 21)
    assert weights[20, 20] > weights[20, 35:45].max() + 1.0


def test_border_term_only_on_background():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:9, 2:18], labels[10:18, 2:18] = 1, 2
    weights = weight_map(labels, class_weights=(2.0, 3.0))
    np.testing.assert_array_equal(weights[labels > 0], 3.0)
    assert np.all(weights[labels == 0] > 2.0)


def test_cutoff_bounds_the_border_term():
    r = cutoff(5.0)
    assert np.exp(-(r**2) / 50) == pytest.approx(CUTOFF_RATIO)


def test_class_weights_formula():
    labels = np.array([[0, 0, 0, 0], [0, 0, 3, 7]])
    assert class_weights(labels) == (1.0, 3.0)
    assert class_weights(None, counts=(10, 40)) == (4.0, 1.0)
    assert class_weights(np.zeros(5, int)) == (1.0, 1.0)
    assert class_weights(None, counts=(0, 0)) == (1.0, 1.0)


def test_instances_from_mask_isbi_convention():
    mask = np.full((2, 9, 9), 255, dtype=np.uint8)
    mask[:, 4, :] = 0  # a horizontal membrane: two cells per slice...
    mask[0, 4, 4] = 255  # ...except where a hole joins them in slice 0
    labels = instances_from_mask(mask)
    assert labels.dtype == np.int32
    assert [len(np.unique(s[s > 0])) for s in labels] == [1, 2]
    assert np.unique(labels[labels > 0]).tolist() == [1, 2, 3]  # unique across slices
    assert np.array_equal(labels == 0, mask == 0)


def test_instances_from_mask_four_connectivity_and_foreground():
    mask = np.eye(6, dtype=np.uint8)  # a diagonal line of "1"
    assert instances_from_mask(mask).max() == 6  # diagonal neighbours are separate cells
    inverted = instances_from_mask(mask, foreground=0)
    assert inverted.max() == 2  # a 1-px diagonal membrane separates the two triangles
    assert instances_from_mask(np.ones((3, 3), bool)).max() == 1


def test_instances_from_mask_rejects_non_binary():
    with pytest.raises(ValueError, match="found 3: 0, 1, 2"):
        instances_from_mask(np.array([[0, 1], [2, 1]]))


def test_instances_from_mask_rejects_1d():
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(5,\)"):
        instances_from_mask(np.zeros(5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": np.zeros((4, 4), float)}, TypeError, "dtype float64"),
        ({"labels": np.zeros((4, 4), bool)}, TypeError, "dtype bool"),
        ({"labels": np.full((4, 4), -1)}, ValueError, "minimum -1"),
        ({"sigma": 0.0}, ValueError, "sigma must be positive, got 0.0"),
        ({"w0": -1.0}, ValueError, "w0 must be non-negative, got -1.0"),
        ({"ndim": 3}, ValueError, r"ndim must be in \[1, 2\].*got 3"),
        ({"sampling": (1.0, 0.0)}, ValueError, r"sampling must be 2 positive.*\(1.0, 0.0\)"),
        ({"sampling": (1.0,)}, ValueError, r"sampling must be 2 positive"),
        ({"class_weights": "equal"}, ValueError, "got 'equal'"),
        ({"class_weights": (1.0, -2.0)}, ValueError, r"two positive numbers, got \(1.0, -2.0\)"),
    ],
)
def test_weight_map_validation(kwargs, error, match):
    args = {"labels": np.ones((4, 4), np.int32)} | kwargs
    with pytest.raises(error, match=match):
        weight_map(**args)


@pytest.mark.parametrize(
    ("labels", "counts", "match"),
    [(None, None, "needs labels or counts"), (None, (3, -1), r"non-negative.*\(3, -1\)")],
)
def test_class_weights_validation(labels, counts, match):
    with pytest.raises(ValueError, match=match):
        class_weights(labels, counts=counts)


def test_weight_map_scalar_sampling_and_w0_zero():
    labels = random_labels(np.random.default_rng(7), (24, 24), 5)
    np.testing.assert_array_equal(weight_map(labels, sampling=1), weight_map(labels))
    w_bg, w_fg = class_weights(labels)
    np.testing.assert_array_equal(
        weight_map(labels, w0=0.0), np.where(labels, w_fg, w_bg).astype(np.float32)
    )


@pytest.mark.parametrize(("gap", "has_border"), [(26, True), (27, False)])
def test_border_term_is_truncated_beyond_the_cutoff(gap, has_border):
    # two 1-px cells on a row: every pixel between them has d1 + d2 = gap; cutoff(5) ~ 26.28
    labels = np.zeros((1, 40), dtype=np.int32)
    labels[0, 5], labels[0, 5 + gap] = 1, 2
    weights = weight_map(labels, class_weights=None)
    between = weights[0, 6 : 5 + gap]
    assert np.all(between > 1.0) if has_border else np.all(between == 1.0)


def test_reach_is_the_cutoff_in_voxels():
    assert reach(5.0, 2) == (27, 27)
    assert reach(5.0, 3, sampling=(4.0, 1.0, 1.0)) == (7, 27, 27)
    assert reach(2.0, 2, sampling=0.5) == (22, 22)
    with pytest.raises(ValueError, match="sampling must be 2 positive numbers, got -1"):
        reach(5.0, 2, sampling=-1)
    with pytest.raises(ValueError, match="sigma must be positive, got 0"):
        reach(0, 2)


def test_resolve_class_weights():
    assert resolve_class_weights("balanced", counts=(30, 10)) == (1.0, 3.0)
    assert resolve_class_weights("balanced", labels=np.array([0, 1, 1, 1])) == (3.0, 1.0)
    assert resolve_class_weights(None) == (1.0, 1.0)
    assert resolve_class_weights([2, 3]) == (2.0, 3.0)
    with pytest.raises(ValueError, match=r"two positive numbers, got \(1.0, 2.0, 3.0\)"):
        resolve_class_weights((1.0, 2.0, 3.0))


@pytest.mark.parametrize("width", [1, 2, 3])
def test_separation_border_keeps_touching_cells_apart(width: int) -> None:
    labels = np.zeros((2, 12, 12), dtype=np.int32)
    labels[:, :, :6], labels[:, :, 6:] = 4, 9  # two cells touching along x = 5 | 6
    labels[1, :6, 6:] = 2  # a third cell in slice 1 touching both
    border = separation_border(labels, width, ndim=2)
    # slice 0: a line of `width` pixels on the side of the higher id, nothing else
    assert np.array_equal(np.nonzero(border[0].any(axis=0))[0], np.arange(6, 6 + width))
    assert border[0, :, 6 : 6 + width].all() and not border[0, labels[0] == 4].any()
    kept = np.where(border, 0, labels)
    cross = ndi.generate_binary_structure(2, 1)
    for z in range(2):  # face-connected foreground components = the cells
        assert ndi.label(kept[z] > 0, cross)[1] == len(np.unique(labels[z]))
        gap = ndi.distance_transform_cdt(kept[z] != 9, metric="taxicab")
        assert gap[kept[z] == 4].min() == width + 1  # `width` pixels of background between
    assert not separation_border(labels, 0).any()
    assert not separation_border(np.full((4, 4), 3), 1).any()  # one cell, no border


def test_separation_is_background_in_the_weight_map() -> None:
    labels = np.zeros((10, 12), dtype=np.int32)
    labels[2:8, 1:6], labels[2:8, 6:11] = 1, 2
    plain = weight_map(labels, class_weights=None)
    separated = weight_map(labels, class_weights=None, separation=1)
    assert (plain[2:8, 6] == 1).all()  # without: a cell pixel, no border term
    np.testing.assert_allclose(separated[2:8, 6], 1 + 10 * np.exp(-4 / 50), rtol=1e-6)
    with pytest.raises(InputError, match="width must be >= 0"):
        separation_border(labels, -1)
