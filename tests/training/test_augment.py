"""Augmentation: alignment, reproducibility, identity, shapes and dtypes, validation, and
equality with the ``ndi.zoom`` + ``ndi.map_coordinates`` recipe it computes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from unet.training import augment as augment_module
from unet.training import resample as resample_module
from unet.training.augment import AugmentConfig, augment

OFF = AugmentConfig(
    rotation=0.0,
    flips=False,
    elastic=False,
    brightness=(0.0, 0.0),
    contrast=(1.0, 1.0),
    gamma=(1.0, 1.0),
)
SPATIAL = AugmentConfig(shift=5.0, brightness=(0.0, 0.0), contrast=(1.0, 1.0), gamma=(1.0, 1.0))


def blob_sample(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth off-centre blob image, its thresholded labels, and weights equal to the labels."""
    grids = np.indices(shape[-2:])
    inside = ((grids[0] - 0.4 * shape[-2]) ** 2 + (grids[1] - 0.6 * shape[-1]) ** 2) < 12**2
    inside |= (np.abs(grids[0] - 0.7 * shape[-2]) < 4) & (grids[1] > 5)  # a bar: no symmetry
    image = ndi.gaussian_filter(inside.astype(np.float32), 1.5)
    labels = (image > 0.5).astype(np.uint16) * 7
    image, labels = (np.broadcast_to(a, shape).copy() for a in (image, labels))
    return image, labels, labels.astype(np.float32)


@pytest.mark.parametrize("shape", [(48, 40), (3, 40, 48)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_labels_and_weights_stay_aligned(shape, seed):
    image, labels, weights = blob_sample(shape)
    out_image, out_labels, out_weights = augment(
        image, labels, weights, np.random.default_rng(seed), SPATIAL
    )
    # labels and weights are both resampled by nearest neighbour at the same positions
    np.testing.assert_array_equal(out_weights, out_labels.astype(np.float32))
    # the bicubic image, thresholded, agrees with the labels away from their edges
    fg = out_labels > 0
    edge = ndi.binary_dilation(fg, iterations=2) & ~ndi.binary_erosion(fg, iterations=2)
    assert np.array_equal((out_image > 0.5)[~edge], fg[~edge])
    assert fg.any() and not np.array_equal(out_labels, labels)  # something really moved


def test_reproducible_with_the_same_rng_state():
    image, labels, weights = blob_sample((40, 40))
    first = augment(image, labels, weights, np.random.default_rng(3), AugmentConfig(shift=4))
    again = augment(image, labels, weights, np.random.default_rng(3), AugmentConfig(shift=4))
    other = augment(image, labels, weights, np.random.default_rng(4), AugmentConfig(shift=4))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("shape", [(20, 24), (4, 20, 24)])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64, bool])
def test_identity_when_everything_is_off(shape, label_dtype):
    rng = np.random.default_rng(5)
    image = rng.random(shape)  # float64 in: float32 out
    labels = (rng.random(shape) * 3).astype(label_dtype)
    weights = rng.random(shape).astype(np.float64)
    out = augment(image, labels, weights, rng, OFF)
    assert [a.dtype for a in out] == [np.float32, np.dtype(label_dtype), np.float32]
    np.testing.assert_array_equal(out[0], image.astype(np.float32))
    np.testing.assert_array_equal(out[1], labels)
    np.testing.assert_array_equal(out[2], weights.astype(np.float32))
    assert not np.shares_memory(out[1], labels)


@pytest.mark.parametrize("shape", [(33, 30), (5, 33, 30)])
@pytest.mark.parametrize("elastic_3d", [False, True])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int64])
def test_shapes_and_dtypes(shape, elastic_3d, label_dtype):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 5, shape).astype(label_dtype)
    config = AugmentConfig(shift=3.0, elastic_3d=elastic_3d)
    out = augment(rng.random(shape, np.float32), labels, np.ones(shape, np.uint8), rng, config)
    assert [a.shape for a in out] == [shape] * 3
    assert [a.dtype for a in out] == [np.float32, np.dtype(label_dtype), np.float32]
    assert set(np.unique(out[1])) <= set(np.unique(labels))  # nearest neighbour: no new ids
    assert all(a.flags.c_contiguous for a in out)


def test_3d_without_elastic_z_moves_every_slice_alike():
    image, labels, weights = blob_sample((4, 40, 40))
    out = augment(image, labels, weights, np.random.default_rng(7), SPATIAL)
    for a in out:
        for z in range(1, 4):
            np.testing.assert_array_equal(a[z], a[0])


def test_no_empty_corners_after_rotation():
    shape = (32, 32)
    config = AugmentConfig(rotation=45.0, shift=10.0, gamma=(1.0, 1.0), brightness=(0.0, 0.0))
    ones = np.ones(shape)
    for seed in range(3):
        image, labels, weights = augment(
            ones, ones.astype(np.uint8), ones, np.random.default_rng(seed), config
        )
        np.testing.assert_allclose(image, 1.0, atol=1e-5)  # contrast about the mean: still 1
        assert labels.min() == 1 and weights.min() == 1.0


def test_flips_apply_to_all_three_alike():
    rng = np.random.default_rng(8)
    image = rng.random((6, 7))
    labels = np.arange(42).reshape(6, 7)
    config = AugmentConfig(
        rotation=0.0, elastic=False, brightness=(0, 0), contrast=(1, 1), gamma=(1, 1)
    )
    seen = set()
    for seed in range(12):
        out_image, out_labels, out_weights = augment(
            image, labels, labels.astype(float), np.random.default_rng(seed), config
        )
        seen.add(int(out_labels[0, 0]))  # the corner that landed at (0, 0)
        np.testing.assert_array_equal(out_image, image.astype(np.float32).ravel()[out_labels])
        np.testing.assert_array_equal(out_weights, out_labels)
    assert seen == {0, 6, 35, 41}  # all four flip combinations occur


def test_grey_values_change_the_image_only():
    image, labels, weights = blob_sample((30, 30))
    config = AugmentConfig(
        rotation=0.0, flips=False, elastic=False, brightness=(0.2, 0.2), gamma=(2.0, 2.0)
    )
    out_image, out_labels, out_weights = augment(
        image, labels, weights, np.random.default_rng(9), config
    )
    np.testing.assert_array_equal(out_labels, labels)
    np.testing.assert_array_equal(out_weights, weights)
    contrast = (out_image - 0.2 - (image**2).mean()) / (image**2 - (image**2).mean())
    finite = np.abs(image**2 - (image**2).mean()) > 0.1
    assert np.ptp(contrast[finite]) < 1e-3 and 0.9 <= contrast[finite].mean() <= 1.1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rotation": 190.0}, ValueError, r"rotation must be in \[0, 180\].*got 190.0"),
        ({"rotation": -1.0}, ValueError, "got -1.0"),
        ({"shift": -2.0}, ValueError, "shift must be non-negative, got -2.0"),
        ({"flips": 1}, TypeError, "flips must be a bool, got 1"),
        ({"elastic_3d": "yes"}, TypeError, "elastic_3d must be a bool, got 'yes'"),
        ({"elastic_grid": 1}, ValueError, "elastic_grid must be an integer >= 2, got 1"),
        ({"elastic_grid": 2.5}, ValueError, "got 2.5"),
        ({"elastic_sigma": -1.0}, ValueError, "elastic_sigma must be non-negative, got -1.0"),
        ({"brightness": (0.1, -0.1)}, ValueError, r"brightness .* got \(0.1, -0.1\)"),
        ({"contrast": (0.0, 1.0)}, ValueError, r"contrast .* low > 0.0, got \(0.0, 1.0\)"),
        ({"gamma": (1.0,)}, ValueError, r"gamma must be a finite .* got \(1.0,\)"),
        ({"gamma": (1.0, float("inf"))}, ValueError, "gamma must be a finite"),
    ],
)
def test_config_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        AugmentConfig(**kwargs)


def test_config_ranges_become_float_tuples():
    assert AugmentConfig(contrast=[1, 2]).contrast == (1.0, 2.0)


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((4, 4), (4, 4), (4, 5)), r"\(4, 4\), \(4, 4\) and \(4, 5\)"),
        (((4,), (4,), (4,)), r"\(Y, X\) or \(Z, Y, X\) shape, got \(4,\)"),
        (((1, 2, 3, 4),) * 3, r"got \(1, 2, 3, 4\)"),
    ],
)
def test_augment_rejects_bad_shapes(shapes, match):
    arrays = [np.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        augment(*arrays, np.random.default_rng(0), OFF)


def test_augment_rejects_legacy_random_state():
    a = np.zeros((4, 4))
    with pytest.raises(TypeError, match="numpy.random.Generator, got RandomState"):
        augment(a, a, a, np.random.RandomState(0), OFF)  # noqa: NPY002


@pytest.mark.parametrize(
    ("shape", "resampled"),
    [((23, 17), 2), ((6, 11, 9), 3), ((4, 13, 10), 2), ((1, 2, 9), 3), ((3, 1, 5), 2)],
)
@pytest.mark.parametrize("chunk", [2**15, 7])  # one chunk; one row per chunk
def test_resampling_equals_map_coordinates_with_mirror(shape, resampled, chunk, monkeypatch):
    """The gathers equal ndi.map_coordinates(mode="mirror"): order 0 (labels, weights) exactly,
    order 3 (image) to float32 rounding; positions far outside, on half pixels and edges."""
    monkeypatch.setattr(resample_module, "CHUNK", chunk)
    rng = np.random.default_rng(10)
    spatial = shape[-resampled:]
    positions = []
    for n in spatial:
        p = rng.uniform(-2.5 * n - 3, 3.5 * n + 3, spatial)
        special = np.array([-0.5, 0.5, n - 1.5, n - 1, n - 0.5, n - 0.25, n, -n + 0.5, 2 * n])
        p.ravel()[: special.size] = special[: p.size]
        positions.append(p + rng.integers(-n, 2 * n, spatial) * (rng.random(spatial) < 0.2) / 2)
    image = rng.random(shape, np.float32)
    labels = rng.integers(-(2**40), 2**40, shape)
    weights = rng.random(shape, np.float32)
    factors = [(p.reshape(-1, spatial[-1]), np.eye(spatial[-1])) for p in positions]  # p @ 1
    out = resample_module.resample(image, labels, weights, factors)
    # the reference coordinates: every output z reads input z when only y-x is resampled
    z = np.indices(shape)[: len(shape) - resampled]
    coords = np.stack([*z, *(np.broadcast_to(p, shape) for p in positions)])
    expected = [ndi.map_coordinates(a, coords, order=0, mode="mirror") for a in (labels, weights)]
    np.testing.assert_array_equal(out[1], expected[0])
    np.testing.assert_array_equal(out[2], expected[1])
    cubic = ndi.map_coordinates(image, coords, order=3, mode="mirror")
    np.testing.assert_allclose(out[0], cubic, atol=2e-6)
    assert [a.dtype for a in out] == [np.float32, labels.dtype, np.float32]


@pytest.mark.parametrize("shape", [(572, 572), (5, 33, 30), (2, 1)])
def test_elastic_field_is_the_cubic_zoom_of_the_coarse_grid(shape):
    coarse = np.random.default_rng(11).normal(0, 10, (3,) * len(shape))
    zoomed = ndi.zoom(coarse, [s / 3 for s in shape], order=3)
    left, right = augment_module._zoom_factors(coarse, shape)
    np.testing.assert_allclose(left @ right, zoomed, atol=1e-12)


def zoom_and_map_coordinates(image, labels, weights, rng, config):
    """The recipe, spelled out: float64 coordinates of every pixel, the coarse field zoomed to
    full size, one map_coordinates per array (grey values left out)."""
    image = image.astype(np.float32)
    for axis in (-2, -1):
        if config.flips and rng.random() < 0.5:
            image, labels, weights = (np.flip(a, axis) for a in (image, labels, weights))
    angle = np.radians(rng.uniform(-config.rotation, config.rotation))
    shift = rng.uniform(-config.shift, config.shift, size=2)
    coords = np.indices(image.shape, dtype=np.float64)
    cy, cx = ((s - 1) / 2 for s in image.shape[-2:])
    y, x = coords[-2] - cy, coords[-1] - cx
    coords[-2] = np.cos(angle) * y - np.sin(angle) * x + cy + shift[0]
    coords[-1] = np.sin(angle) * y + np.cos(angle) * x + cx + shift[1]
    field_shape = image.shape if config.elastic_3d else image.shape[-2:]
    for axis in range(image.ndim - len(field_shape), image.ndim):
        coarse = rng.normal(0.0, config.elastic_sigma, (config.elastic_grid,) * len(field_shape))
        coords[axis] += ndi.zoom(coarse, [s / config.elastic_grid for s in field_shape], order=3)
    return (
        ndi.map_coordinates(image, coords, order=3, mode="mirror", output=np.float32),
        *(ndi.map_coordinates(a, coords, order=0, mode="mirror") for a in (labels, weights)),
    )


@pytest.mark.parametrize(
    ("shape", "elastic_3d"), [((70, 61), False), ((5, 40, 36), False), ((6, 30, 33), True)]
)
def test_equals_the_zoom_and_map_coordinates_recipe(shape, elastic_3d, monkeypatch):
    monkeypatch.setattr(resample_module, "CHUNK", 100)  # several chunks
    image, labels, weights = blob_sample(shape)
    config = AugmentConfig(
        shift=6.0,
        elastic_3d=elastic_3d,
        elastic_sigma=15.0,
        brightness=(0.0, 0.0),
        contrast=(1.0, 1.0),
        gamma=(1.0, 1.0),
    )
    for seed in range(4):
        out = augment(image, labels, weights, np.random.default_rng(seed), config)
        expected = zoom_and_map_coordinates(
            image, labels, weights, np.random.default_rng(seed), config
        )
        np.testing.assert_allclose(out[0], expected[0], atol=1e-5)
        np.testing.assert_array_equal(out[1], expected[1])
        np.testing.assert_array_equal(out[2], expected[2])
