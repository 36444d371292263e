from __future__ import annotations

import numpy as np
import pytest

from unet.geometry import (
    Box,
    TilePlan,
    Window,
    as_coord,
    blocks,
    center_crop,
    check_multiple,
    mirror_indices,
    read_mirrored,
)


def test_box_arithmetic() -> None:
    box = Box((1, 2), (3, 4))
    assert box.end == (4, 6) and box.size == 12 and box.ndim == 2
    assert box.grow(1) == Box((0, 1), (5, 6))
    assert box.grow((1, 0), (0, 2)) == Box((0, 2), (4, 6))
    assert box.shift(-1) == Box((0, 1), (3, 4))
    assert box.intersect(Box((3, 0), (10, 3))) == Box((3, 2), (1, 1))
    assert box.intersect(Box((10, 10), (1, 1))).empty
    assert Box.from_shape((5, 7)).contains(box)
    assert not box.contains(Box.from_shape((5, 7)))
    assert box.to_slices() == (slice(1, 4), slice(2, 6))
    assert box.to_slices(relative_to=Box((1, 1), (9, 9))) == (slice(0, 3), slice(1, 5))
    assert Box.from_bounds((2, 5), (1, 9)).shape == (0, 4)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Box((0,), (1, 2)), "differ in length"),
        (lambda: Box((0, 0), (-1, 2)), "non-negative"),
        (lambda: Box((0, 0), (2, 2)).grow(-2), "cannot shrink"),
        (lambda: Box((0, 0), (2, 2)).intersect(Box((0,), (1,))), "dimensionality"),
        (lambda: as_coord((1, 2, 3), 2, "block"), "block must have 2 entries"),
        (lambda: check_multiple((16, 20), (16, 16), "block", "factor"), r"block \(16, 20\)"),
    ],
)
def test_box_errors(make, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_mirror_indices_symmetric_and_repeated() -> None:
    assert mirror_indices(-2, 5, 3).tolist() == [1, 0, 0, 1, 2, 2, 1]
    # margin far larger than the axis: keeps reflecting (thin stacks)
    idx = mirror_indices(-7, 9, 2)
    assert set(idx.tolist()) == {0, 1}
    assert mirror_indices(-3, 3, 1).tolist() == [0] * 6
    with pytest.raises(ValueError, match="empty axis"):
        mirror_indices(0, 2, 0)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_read_mirrored_matches_numpy_symmetric_pad(ndim: int) -> None:
    rng = np.random.default_rng(ndim)
    arr = rng.integers(0, 100, size=(5, 4, 3)[:ndim])
    pad = [(2, 3), (1, 4), (0, 2)][:ndim]
    expected = np.pad(arr, pad, mode="symmetric")
    box = Box(tuple(-p[0] for p in pad), expected.shape)
    np.testing.assert_array_equal(read_mirrored(arr, box), expected)
    inner = Box((1,) * ndim, (2,) * ndim)
    np.testing.assert_array_equal(read_mirrored(arr, inner), arr[inner.to_slices()])


def test_read_mirrored_thin_axis_reflects_repeatedly() -> None:
    arr = np.arange(2)[:, None] * np.ones((1, 3))
    out = read_mirrored(arr, Box((-5, 0), (12, 3)))
    np.testing.assert_array_equal(out[:, 0], np.pad(np.arange(2.0), (5, 5), mode="symmetric"))
    with pytest.raises(ValueError, match="does not match array"):
        read_mirrored(arr, Box((0,), (1,)))


def test_tile_plan_covers_volume_once_and_aligns_reads() -> None:
    plan = TilePlan((3, 100, 70), (2, 32, 32), (2, 124, 124), (2, 36, 36))
    assert plan.grid_shape == (2, 4, 3) and len(plan) == 24
    cover = np.zeros((3, 100, 70), dtype=int)
    for tile in plan:
        cover[tile.write.to_slices()] += 1
        assert tile.read.contains(tile.output) and tile.output.contains(tile.write)
        # all read boxes share the same phase modulo the block: same max-pool grid
        assert all(
            (b + m) % w == 0
            for b, m, w in zip(tile.read.begin, plan.margin, plan.block_shape, strict=True)
        )
    assert (cover == 1).all()
    assert plan[23] == plan.tile((1, 3, 2))
    with pytest.raises(IndexError, match="out of range"):
        plan[24]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (((10,), (4,), (8,), (2,)), "need block 4 <= net output 2"),
        (((10,), (4,), (9,), (6,)), "even number"),
        (((10,), (0,), (8,), (6,)), "block shape must be positive"),
        (((0,), (4,), (8,), (6,)), "volume shape must be positive"),
    ],
)
def test_tile_plan_errors(args, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        TilePlan(*args)


def test_center_crop_numpy_and_errors() -> None:
    arr = np.arange(2 * 6 * 8).reshape(2, 6, 8)
    out = center_crop(arr, (2, 4))
    np.testing.assert_array_equal(out, arr[:, 2:4, 2:6])
    with pytest.raises(ValueError, match="non-negative even"):
        center_crop(arr, (3, 4))


def test_blocks_tile_the_shape() -> None:
    got = list(blocks((5, 7), (2, 3)))
    assert len(got) == 9
    assert got[-1] == Box((4, 6), (1, 1))
    assert sum(b.size for b in got) == 35


def test_window_is_a_lazy_sub_volume() -> None:
    arr = np.arange(5 * 4 * 3).reshape(5, 4, 3)
    win = Window(arr, Box((2, 1, 0), (3, 2, 3)))
    assert win.shape == (3, 2, 3) and win.ndim == 3
    np.testing.assert_array_equal(win[:], arr[2:5, 1:3])
    np.testing.assert_array_equal(win[1], arr[3, 1:3])
    np.testing.assert_array_equal(win[-1, :, 1:], arr[4, 1:3, 1:])
    np.testing.assert_array_equal(
        read_mirrored(win, Box((0, -1, 0), (3, 4, 3))),
        np.pad(arr[2:5, 1:3], ((0, 0), (1, 1), (0, 0)), "symmetric"),
    )
    with pytest.raises(ValueError, match="not inside the array"):
        Window(arr, Box((4, 0, 0), (2, 4, 3)))
    with pytest.raises(ValueError, match="unit-step slices only"):
        win[::2]
    with pytest.raises(IndexError, match="out of range for window axis of length 3"):
        win[3]
