from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from unet.io import ngff, pyramid


def test_doctests() -> None:
    assert doctest.testmod(pyramid).failed == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
@pytest.mark.parametrize("shape", [(2, 8, 10), (1, 7, 5), (3, 1, 1)])
def test_downsample_is_the_2x2_mean(shape: tuple[int, int, int], dtype: type) -> None:
    data = np.random.default_rng(0).integers(0, 255, shape).astype(dtype)
    got = pyramid.downsample(data)
    assert got.dtype == data.dtype and got.shape == pyramid.level_shape(shape, 1)
    padded = np.pad(
        data.astype(np.float64), ((0, 0), (0, shape[1] % 2), (0, shape[2] % 2)), mode="edge"
    )
    ref = (
        padded[:, ::2, ::2] + padded[:, 1::2, ::2] + padded[:, ::2, 1::2] + padded[:, 1::2, 1::2]
    ) / 4
    np.testing.assert_allclose(got.astype(np.float64), ref, atol=0.5 if dtype == np.uint8 else 0.1)


def test_build_blockwise_equals_whole(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 255, (2, 45, 37), dtype=np.uint8)
    ngff.create(tmp_path / "v.zarr", data.shape, np.uint8, (1, 8, 8), (1, 1, 1))[:] = data
    pyramid.build(tmp_path / "v.zarr", 4, (1, 16, 8))
    expect = data
    for level in range(1, 4):
        expect = pyramid.downsample(expect)
        np.testing.assert_array_equal(ngff.open_array(tmp_path / "v.zarr", level)[:], expect)
    pyramid.build(tmp_path / "v.zarr", 2, (1, 16, 8))  # rebuilding drops stale levels
    assert not (tmp_path / "v.zarr" / "2").exists()
    with pytest.raises(ValueError, match="pyramid levels must be >= 1"):
        pyramid.build(tmp_path / "v.zarr", 0, (1, 16, 8))
