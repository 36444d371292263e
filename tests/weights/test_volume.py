"""Chunked weight maps over Zarr: equal to weight_map on the whole array, whatever the blocks."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from unet.errors import InputError
from unet.weights.border import class_weights, instances_from_mask, separate, weight_map
from unet.weights.volume import weight_volume


def membrane_mask(rng: np.random.Generator, shape: tuple[int, ...], n_seeds: int) -> np.ndarray:
    """ISBI-like uint8 mask (0 = membrane, 255 = cell): Voronoi cells per slice with 1-px
    membranes, some cells dropped to leave wider background gaps."""
    mask = np.zeros(shape, dtype=np.uint8)
    for z in range(shape[0]):
        seeds = np.zeros(shape[1:], dtype=np.int32)
        seeds[tuple(rng.integers(0, s, n_seeds) for s in shape[1:])] = np.arange(1, n_seeds + 1)
        nearest = ndi.distance_transform_edt(seeds == 0, return_indices=True)[1]
        cells = seeds[tuple(nearest)]
        edge = np.zeros_like(cells, dtype=bool)
        edge[1:] |= cells[1:] != cells[:-1]
        edge[:, 1:] |= cells[:, 1:] != cells[:, :-1]
        dropped = np.isin(cells, rng.integers(1, n_seeds + 1, n_seeds // 5))
        mask[z] = np.where(edge | dropped, 0, 255)
    return mask


def as_zarr(path, data: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    array = zarr.create_array(store=path, shape=data.shape, chunks=chunks, dtype=data.dtype)
    array[...] = data
    return array


def empty_out(path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> zarr.Array:
    return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype="float32")


@pytest.mark.parametrize(("seed", "block_factor"), [(0, 1), (1, 1), (2, 2)])
def test_slicewise_chunks_equal_whole_array(tmp_path, seed, block_factor):
    mask = membrane_mask(np.random.default_rng(seed), (3, 70, 64), 40)
    labels = as_zarr(tmp_path / "mask.zarr", mask, (1, 32, 32))
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 16, 16))  # xy chunks < the slice
    block = (1, 16 * block_factor, 16 * block_factor)
    info = weight_volume(labels, out, ndim=2, block_shape=block)
    expected = weight_map(instances_from_mask(mask), ndim=2)
    assert np.ptp(expected) > 5  # real border terms
    np.testing.assert_allclose(out[...], expected, rtol=0, atol=1e-6)
    n_bg = int(np.count_nonzero(mask == 0))
    assert info["counts"] == [n_bg, mask.size - n_bg]
    assert info["class_weights"] == list(class_weights(mask))
    assert info["halo"] == [0, 27, 27] and info["block_shape"] == list(block)


@pytest.mark.parametrize("sampling", [None, (2.0, 1.0, 1.0)])
def test_3d_chunks_equal_whole_array(tmp_path, sampling):
    rng = np.random.default_rng(3)
    labels = np.zeros((20, 36, 40), dtype=np.int32)
    labels[tuple(rng.integers(0, s, 30) for s in labels.shape)] = np.arange(1, 31)
    labels = ndi.grey_dilation(labels, size=(3, 5, 5))  # touching and separate blobs
    out = empty_out(tmp_path / "w.zarr", labels.shape, (5, 8, 10))
    info = weight_volume(
        labels, out, sigma=2.0, ndim=3, from_mask=False, class_weights=None, sampling=sampling
    )
    expected = weight_map(labels, sigma=2.0, class_weights=None, sampling=sampling)
    assert np.ptp(expected) > 2
    np.testing.assert_allclose(out[...], expected, rtol=0, atol=1e-6)
    assert info["class_weights"] == [1.0, 1.0]
    assert info["halo"] == ([11, 11, 11] if sampling is None else [6, 11, 11])


def test_explicit_class_weights_and_numpy_input(tmp_path):
    mask = membrane_mask(np.random.default_rng(4), (2, 40, 40), 20)
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 20, 20))
    info = weight_volume(mask, out, class_weights=(2.0, 0.5), w0=5.0, sigma=3.0)
    expected = weight_map(instances_from_mask(mask), 5.0, 3.0, (2.0, 0.5), ndim=2)
    np.testing.assert_allclose(out[...], expected, rtol=0, atol=1e-6)
    assert info["class_weights"] == [2.0, 0.5] and info["w0"] == 5.0


def test_runs_under_a_distributed_client(tmp_path):
    distributed = pytest.importorskip("distributed")
    mask = membrane_mask(np.random.default_rng(5), (2, 32, 32), 12)
    labels = as_zarr(tmp_path / "mask.zarr", mask, (1, 16, 16))
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 16, 16))
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ):
        weight_volume(labels, out)
    np.testing.assert_allclose(out[...], weight_map(instances_from_mask(mask), ndim=2), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_shape": (1, 24, 16)}, r"block_shape \(1, 24, 16\) must be a multiple of out's"),
        ({"block_shape": (1, 16)}, "block_shape must have 3 entries"),
        ({"ndim": 1}, "ndim must be 2 or 3 .* got 1"),
        ({"sigma": -1.0}, "sigma must be positive, got -1.0"),
        ({"class_weights": "equal"}, "got 'equal'"),
        ({"sampling": (1.0, 1.0, 1.0)}, "sampling must be 2 positive numbers"),
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs, match):
    out = empty_out(tmp_path / "w.zarr", (2, 32, 32), (1, 16, 16))
    with pytest.raises(ValueError, match=match):
        weight_volume(np.zeros((2, 32, 32), np.uint8), out, **kwargs)


def test_rejects_shape_mismatch(tmp_path):
    out = empty_out(tmp_path / "w.zarr", (2, 32, 32), (1, 16, 16))
    with pytest.raises(ValueError, match=r"out has shape \(2, 32, 32\), labels .* \(2, 32, 30\)"):
        weight_volume(np.zeros((2, 32, 30), np.uint8), out)


def test_rejects_a_mask_with_three_values_across_blocks(tmp_path):
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[0, :16, :4] = 1
    mask[0, 16:, :4] = 2  # every block alone is binary, the volume is not
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 16, 16))
    with pytest.raises(ValueError, match=r"binary mask for from_mask=True, found \[0, 1, 2\]"):
        weight_volume(mask, out)


def test_rejects_float_instance_labels(tmp_path):
    out = empty_out(tmp_path / "w.zarr", (1, 16, 16), (1, 16, 16))
    with pytest.raises(TypeError, match="integer instance labels, got dtype float32"):
        weight_volume(np.zeros((1, 16, 16), np.float32), out, from_mask=False)


def test_class_weights_count_only_the_training_slices(tmp_path):
    mask = np.full((4, 32, 32), 255, np.uint8)
    mask[:2, :, :8] = 0  # training slices 0-1: 1/4 membrane
    mask[2:, :, :16] = 0  # held-out slices 2-3: 1/2 membrane (must not shape the training)
    labels = as_zarr(tmp_path / "mask.zarr", mask, (1, 32, 32))
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 32, 32))
    info = weight_volume(labels, out, w0=0.0, count_slices=[1, 0])
    assert info["counts"] == [2 * 32 * 8, 2 * 32 * 24] and info["count_slices"] == [0, 1]
    assert info["class_weights"] == [3.0, 1.0]  # w_c = max_k N_k / N_c over slices 0-1
    np.testing.assert_array_equal(out[2], np.where(mask[2] == 0, 3.0, 1.0))  # applied to all
    everything = weight_volume(labels, out, w0=0.0)
    assert everything["count_slices"] is None
    assert everything["class_weights"] == pytest.approx([2560 / 1536, 1.0])  # all 4 slices


def test_count_slices_must_lie_in_the_volume(tmp_path):
    mask = membrane_mask(np.random.default_rng(0), (2, 16, 16), 5)
    labels = as_zarr(tmp_path / "mask.zarr", mask, (1, 16, 16))
    out = empty_out(tmp_path / "w.zarr", mask.shape, (1, 16, 16))
    with pytest.raises(ValueError, match=r"count_slices must be a non-empty subset of range\(2\)"):
        weight_volume(labels, out, count_slices=[2])
    with pytest.raises(ValueError, match=r"got \[\]"):
        weight_volume(labels, out, count_slices=[])


@pytest.mark.parametrize("block", [(1, 16, 16), (2, 32, 48)])
def test_separation_of_touching_instances_equals_whole_array(tmp_path, block):
    # Voronoi cells that touch directly (no membrane between them), as instance ids
    rng = np.random.default_rng(4)
    labels = np.zeros((2, 64, 48), dtype=np.int32)
    for z in range(2):
        seeds = np.zeros(labels.shape[1:], dtype=np.int32)
        seeds[rng.integers(0, 64, 12), rng.integers(0, 48, 12)] = np.arange(1, 13)
        labels[z] = seeds[tuple(ndi.distance_transform_edt(seeds == 0, return_indices=True)[1])]
    source = as_zarr(tmp_path / "ids.zarr", labels, (1, 16, 16))
    out = empty_out(tmp_path / "w.zarr", labels.shape, (1, 16, 16))
    info = weight_volume(
        source, out, ndim=2, from_mask=False, block_shape=block, separation=1, class_weight_cap=None
    )
    separated = separate(labels, 1, ndim=2)
    assert not np.isin(0, labels) and np.isin(0, separated)  # the border is the only background
    expected = weight_map(labels, ndim=2, separation=1, class_weights=class_weights(separated))
    np.testing.assert_allclose(out[...], expected, rtol=0, atol=1e-6)
    n_bg = int(np.count_nonzero(separated == 0))
    assert info["counts"] == [n_bg, labels.size - n_bg] and info["separation"] == 1
    assert info["halo"] == [0, 28, 28]  # the border term's reach plus the separation width
    w_bg, w_fg = info["class_weights"]
    border = separated == 0
    assert (out[...][border] > w_bg + 5).all()  # background between two cells: border term
    assert (out[...][~border] == np.float32(w_fg)).all()  # cells: w_c, no border term
    cross = ndi.generate_binary_structure(2, 1)
    for z in range(2):  # the target's cells stay apart: one component per cell
        assert ndi.label(separated[z] > 0, cross)[1] == len(np.unique(labels[z]))
    with pytest.raises(ValueError, match="separation must be an integer >= 0"):
        weight_volume(source, out, ndim=2, from_mask=False, separation=-1)


def test_the_default_cap_bounds_a_rare_class_weight(tmp_path):
    # one 4 x 4 cell in 32 x 32 px of background: balanced would weigh it 63
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[0, 8:12, 8:12] = 255
    labels = as_zarr(tmp_path / "mask.zarr", mask, (1, 32, 32))
    full = weight_volume(labels, empty_out(tmp_path / "a.zarr", mask.shape, (1, 32, 32)), w0=0.0,
                         class_weight_cap=None)  # fmt: skip
    capped = weight_volume(labels, empty_out(tmp_path / "b.zarr", mask.shape, (1, 32, 32)), w0=0.0)
    assert full["class_weights"] == [1.0, 63.0]
    assert capped["class_weights"] == [1.0, 5.0] and capped["class_weight_cap"] == 5.0
    with pytest.raises(InputError, match="class_weight_cap must be a number >= 1 or None, got 0"):
        weight_volume(labels, empty_out(tmp_path / "c.zarr", mask.shape, (1, 32, 32)),
                      class_weight_cap=0)  # fmt: skip
