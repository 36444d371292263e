"""The pure parts of bench/postprocess.py (its rows are scorer runs on real predictions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import postprocess  # noqa: E402

from unet.evaluation.contingency import CROSS  # noqa: E402


def test_boundary_map_separates_touching_objects() -> None:
    labels = np.zeros((2, 8, 8), np.uint32)
    labels[:, 1:7, 1:4], labels[:, 1:7, 4:7] = 1, 2  # two touching objects, background around
    labels[1, 1:7, 4:7] = 1  # slice 1: one object
    cells = postprocess.boundary_map(labels)
    assert cells.dtype == np.float32 and set(np.unique(cells)) == {0.0, 1.0}
    assert not cells[labels == 0].any()  # background stays background
    assert [ndimage.label(c > 0.5, CROSS)[1] for c in cells] == [2, 1]


def test_a_perfect_map_has_no_split_or_merger() -> None:
    truth = np.full((1, 12, 12), 255, np.uint8)
    truth[0, :, 5:7] = 0
    cells = (truth > 0).astype(np.float32)
    r = postprocess.row("perfect", cells, truth)
    assert (r["splits"], r["mergers"]) == (0, 0)
    assert r["rand_error"] == r["pixel_error"] == r["warping_error"] == 0.0
    gap = cells.copy()
    gap[0, 4:6, 5:7] = 1.0  # a gap in the membrane merges the two cells
    assert postprocess.row("gap", gap, truth)["mergers"] > 0


def test_filters_keep_the_shape() -> None:
    p = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    for name, f in postprocess.FILTERS.items():
        out = f(p)
        assert out.shape == p.shape and out.dtype == np.float32, name
    smooth = postprocess.FILTERS["gauss_2"](p)
    assert smooth.std() < p.std()  # smoothing lowers the variance


def test_load_refuses_slices_the_prediction_lacks(tmp_path) -> None:
    import zarr

    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    group.create_array("0", shape=(2, 512, 512), dtype="uint8")
    group.attrs["unet"] = {"z_range": [21, 23]}
    cells, truth, wanted = postprocess.load(tmp_path / "p.zarr", "21-22")
    assert cells.shape == truth.shape == (2, 512, 512) and wanted == [21, 22]
    with pytest.raises(SystemExit, match=r"holds slices 21-22, not \[25\]"):
        postprocess.load(tmp_path / "p.zarr", "25")
    json.dumps(postprocess.row("zeros", cells[:1, :32, :32], truth[:1, :32, :32]))


def test_slice_errors_add_up_to_the_stack_count() -> None:
    truth = np.full((2, 12, 12), 255, np.uint8)
    truth[:, :, 5:7] = 0  # two cells in each slice
    cells = (truth > 0).astype(np.float32)
    cells[1, 4:6, 5:7] = 0.95  # slice 1: a confident gap merges its two cells
    stack = postprocess.row("stack", cells, truth)
    per = postprocess.slice_errors(stack, [7, 8])
    assert [r["z"] for r in per] == [7, 8]
    assert per[0]["fewest"] == per[0]["at_stack_threshold"] == 0  # the perfect slice
    assert per[1]["at_stack_threshold"] > 0 and per[1]["fewest"] <= per[1]["at_stack_threshold"]
    total = sum(r["at_stack_threshold"] for r in per)
    assert total == stack["splits"] + stack["mergers"]  # the stack's count is the slices' sum
