"""Patch sampling: pure in (seed, index), inside the volume and the training region, identical
through DataLoader worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from unet.errors import InputError
from unet.geometry import Box
from unet.io import ngff
from unet.training.augment import AugmentConfig
from unet.training.sampler import PatchDataset, open_volumes, patch_loader
from unet.weights.border import separate, weight_map

# (ndim, volume shape, input tile, output tile) for a depth-1 net (context 16)
CASES = {2: ((5, 30, 34), (24, 24), (8, 8)), 3: ((12, 22, 26), (20, 20, 20), (4, 4, 4))}


def volumes(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw values that encode their position, instance labels, and weights."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, shape, dtype=np.uint8)
    labels = rng.integers(0, 4, shape).astype(np.uint16)  # instance ids, 0 = membrane
    weights = rng.random(shape, dtype=np.float32) + 1
    return raw, labels, weights


def dataset(ndim: int, slices=None, seed: int = 0, augment=None) -> PatchDataset:
    shape, inp, out = CASES[ndim]
    raw, labels, weights = volumes(shape)
    slices = range(shape[0]) if slices is None else slices
    return PatchDataset(raw, labels, weights, inp, out, list(slices), seed, augment)


def equal(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("ndim", [2, 3])
def test_sample_is_a_pure_function_of_seed_and_index(ndim: int) -> None:
    aug = AugmentConfig()
    ds, again = dataset(ndim, augment=aug), dataset(ndim, augment=aug)
    later = [again[i] for i in (7, 3, 5)]  # other order, other instance
    assert equal(ds[3], later[1]) and equal(ds[5], later[2]) and equal(ds[7], later[0])
    assert not equal(ds[3], ds[4])
    assert not equal(ds[3], dataset(ndim, seed=1, augment=aug)[3])
    image, classes, weights = ds[0]
    inp = CASES[ndim][1]
    assert image.shape == (1, *inp) and image.dtype == torch.float32
    assert classes.shape == inp and classes.dtype == torch.int64
    assert weights.shape == inp and weights.dtype == torch.float32
    assert set(classes.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("ndim", [2, 3])
def test_output_box_inside_training_region_and_data_aligned(ndim: int) -> None:
    shape, inp, out = CASES[ndim]
    raw, labels, weights = volumes(shape)
    slices = [1, 3, 4] if ndim == 2 else list(range(2, 10))
    ds = PatchDataset(raw, labels, weights, inp, out, slices, 0, None)
    margin = [(i - o) // 2 for i, o in zip(inp, out, strict=True)]
    # the target: cells less the separation border between touching ids, per slice (2D) or in
    # the training region (3D), whose borders are mirrored like the patches'
    region_labels = labels if ndim == 2 else labels[slices[0] : slices[-1] + 1]
    target = separate(region_labels, 1, ndim) > 0
    for index in range(40):
        z0, box, _ = ds.box(index)
        output = box.grow([0, *[-m for m in margin]] if ndim == 2 else [-m for m in margin])
        # boxes are relative to the training region: one slice (2D), the z range (3D)
        region = (1, *shape[1:]) if ndim == 2 else (len(slices), *shape[1:])
        assert Box.from_shape(region).contains(output)
        assert z0 in slices if ndim == 2 else z0 == slices[0]
        image, classes, weight = ds[index]
        # the output part of the patch is the volume itself (no mirroring there)
        where = output.shift((z0, 0, 0)).to_slices()
        crop = tuple(slice(m, m + o) for m, o in zip(margin, out, strict=True))
        expect = raw[where].reshape(out)
        np.testing.assert_array_equal(image[0][crop].numpy(), expect / np.float32(255))
        in_region = where if ndim == 2 else output.to_slices()
        np.testing.assert_array_equal(classes[crop].numpy(), target[in_region].reshape(out))
        np.testing.assert_array_equal(weight[crop].numpy(), weights[where].reshape(out))


def test_3d_context_never_reaches_held_out_slices() -> None:
    shape, inp, out = CASES[3]
    raw = np.zeros(shape, np.uint8)
    raw[8:] = 255  # held-out slices 8..11; training on 0..7 (fewer than the input's 20)
    labels, weights = np.ones(shape, np.uint8), np.ones(shape, np.float32)
    ds = PatchDataset(raw, labels, weights, inp, out, list(range(8)), 0, None)
    assert all(ds[i][0].max() == 0 for i in range(10))


def test_worker_processes_return_the_same_batches() -> None:
    ds = dataset(2, augment=AugmentConfig())
    inline = list(patch_loader(ds, 3, 9, 2, workers=0, pin_memory=False))
    workers = list(patch_loader(ds, 3, 9, 2, workers=2, pin_memory=False))
    assert len(inline) == len(workers) == 3
    assert all(equal(a, b) for a, b in zip(inline, workers, strict=True))
    assert equal(tuple(t[0] for t in inline[0]), ds[3])


def test_loader_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    list(patch_loader(dataset(2), 0, 2, 1, workers=0, pin_memory=False))
    assert torch.equal(torch.rand(1), expected)


def test_zarr_volumes_open_lazily_and_match_arrays(tmp_path) -> None:
    shape, inp, out = CASES[2]
    arrays = volumes(shape)
    paths = []
    for name, array in zip(("raw", "labels", "weights"), arrays, strict=True):
        path = tmp_path / f"{name}.zarr"
        ngff.create(path, shape, array.dtype, (1, 16, 16), (1, 1, 1))[...] = array
        paths.append(path)
    from_zarr = PatchDataset(*paths, inp, out, [0, 2], 0, None)
    from_numpy = PatchDataset(*arrays, inp, out, [0, 2], 0, None)
    assert equal(from_zarr[4], from_numpy[4])
    assert from_zarr.__getstate__()["_arrays"] is None  # workers reopen the paths


def test_mismatched_volumes_are_named(tmp_path) -> None:
    raw, labels, weights = volumes((5, 30, 34))
    with pytest.raises(ValueError, match=r"raw array \(5, 30, 34\), labels array \(5, 30, 33\)"):
        open_volumes(raw, labels[..., :33], weights)
    with pytest.raises(ValueError, match="one .z, y, x. shape"):
        open_volumes(raw[0], labels[0], weights[0])
    path = tmp_path / "labels.zarr"
    ngff.create(path, (5, 30, 33), np.uint8, (1, 30, 33), (1, 1, 1))
    with pytest.raises(ValueError, match="labels.zarr"):
        open_volumes(raw, path, weights)


@pytest.mark.parametrize(
    ("ndim", "slices", "inp", "out", "match"),
    [
        (2, [0, 5], (24, 24), (8, 8), r"outside \[0, 5\)"),
        (2, [], (24, 24), (8, 8), "empty"),
        (3, [0, 2, 3], (20, 20, 20), (4, 4, 4), "one ascending z range"),
        (2, [0], (56, 56), (40, 40), "does not fit"),
        (3, [0, 1, 2], (20, 20, 20), (4, 4, 4), "does not fit"),
        (2, [0], (24, 24), (8, 8, 8), "must both be 2D or both 3D"),
    ],
)
def test_bad_sampling_region_raises(ndim, slices, inp, out, match) -> None:
    raw, labels, weights = volumes((5, 30, 34))
    with pytest.raises(ValueError, match=match):
        PatchDataset(raw, labels, weights, inp, out, slices, 0, None)


def test_negative_seed_raises() -> None:
    with pytest.raises(ValueError, match="seed must be non-negative"):
        dataset(2, seed=-1)


def test_touching_instances_are_separated_in_the_target_and_weighted() -> None:
    # two square cells that touch along x = 6 | 7, and a third one apart
    labels = np.zeros((1, 16, 20), dtype=np.uint16)
    labels[0, 2:12, 1:7], labels[0, 2:12, 7:13], labels[0, 4:9, 15:19] = 1, 2, 3
    weights = weight_map(labels, w0=10.0, sigma=5.0, class_weights=None, ndim=2, separation=1)
    ds = PatchDataset(
        np.zeros(labels.shape, np.uint8), labels, weights, (16, 20), (16, 20), [0], 0, None
    )
    _, classes, weight = ds[0]
    target = classes.numpy()
    expect = (labels[0] > 0).astype(np.int64)
    expect[2:12, 7] = 0  # the one-pixel border on the side of the higher id
    np.testing.assert_array_equal(target, expect)
    assert ndi.label(target, ndi.generate_binary_structure(2, 1))[1] == 3  # kept apart
    border = weight.numpy()[2:12, 7]
    # background there, between two cells at distance 1 each: 1 + 10 exp(-2^2 / 50)
    np.testing.assert_allclose(border, 1 + 10 * np.exp(-4 / 50), rtol=1e-5)
    assert (weight.numpy()[expect == 1] == 1).all()  # cells keep w_c = 1
    without = PatchDataset(
        np.zeros(labels.shape, np.uint8),
        labels,
        weights,
        (16, 20),
        (16, 20),
        [0],
        0,
        None,
        separation=0,
    )
    assert without[0][1].numpy()[2:12, 7].all()  # plain labels > 0 merges the two cells
    with pytest.raises(InputError, match="separation must be >= 0"):
        PatchDataset(labels, labels, weights, (16, 20), (16, 20), [0], 0, None, separation=-1)
