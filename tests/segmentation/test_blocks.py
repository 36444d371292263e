"""Face pairs of the edges pass (unet.segmentation.blocks.face_pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from unet.segmentation.blocks import face_pairs


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_agree", [False, True])
def test_face_pairs_equal_the_unique_pairs_of_every_joined_voxel(
    seed: int, with_agree: bool
) -> None:
    rng = np.random.default_rng(seed)
    shape = (1, 37, 41)
    # runs of equal ids along x, as cells give them, with background between
    lower = np.repeat(rng.integers(0, 6, size=(1, 37, 9)), 5, axis=2)[..., :41]
    upper = np.where(rng.random(shape) < 0.9, lower + 10 * (lower > 0), rng.integers(0, 20, shape))
    agree = rng.random(shape) < 0.7 if with_agree else None
    keep = (lower > 0) & (upper > 0) & (agree if agree is not None else True)
    expected = {(int(a), int(b)) for a, b in zip(lower[keep], upper[keep], strict=True)}
    got = face_pairs(lower, upper, agree)
    assert got.dtype == np.uint64 and got.shape[1] == 2
    assert [tuple(p) for p in got.tolist()] == sorted(expected)  # unique, sorted rows
