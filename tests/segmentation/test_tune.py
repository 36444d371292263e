"""The choice of the segmentation's kernel settings on labelled slices: one waterz pass through
several merge thresholds equals one pass per threshold; the grid search scores every point,
keeps the first of equal ones, beats or equals thresholding where the watershed can split what
thresholding merges; and its JSON feeds the run's config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.segmentation.test_run import membrane_probability, voronoi_cells
from unet.errors import InputError
from unet.evaluation.instances import v_rand  # the truth objects found per call
from unet.segmentation.config import SegmentConfig
from unet.segmentation.kernels import (
    agglomerate,
    agglomerate_levels,
    fragments,
    threshold_components,
)
from unet.segmentation.tune import GRID, choose, chosen_settings, components, crop, sweep

SMALL = {"threshold": (0.3, 0.5), "seed_distance": (1.0, 3.0), "merge_threshold": (0.05, 0.5)}


def leaky_cells(shape: tuple[int, int, int] = (2, 48, 48)) -> tuple[np.ndarray, np.ndarray]:
    """``(p, truth)``: Voronoi cells (membranes 0 in the truth), the first cell's wall open in
    ``p`` (0.6 where the truth has membrane)."""
    cells = voronoi_cells(shape, 6, seed=3)
    truth = np.where(membrane_probability(cells) > 0.5, cells, 0)
    return membrane_probability(cells, gap=True), truth


# ---------------------------------------------------------------- agglomerate_levels


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_agglomerate_levels_equal_one_agglomerate_per_level(mode: str) -> None:
    """Touching cells cut into 5 x 5 tiles, on a noisy map: every level of one pass equals its
    own pass, though waterz merges on in one buffer; levels <= 0 merge nothing."""
    truth = voronoi_cells((3, 40, 40), 8, seed=1)
    noise = np.random.default_rng(0).normal(0, 0.15, truth.shape)
    p = np.clip(membrane_probability(truth) + noise, 0, 1).astype(np.float32)
    z, y, x = np.indices(truth.shape)
    frags = (z * 64 + (y // 5) * 8 + x // 5 + 1).astype(np.int64)  # 192 fragments
    levels = [-0.1, 0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
    results = list(agglomerate_levels(frags, p, levels, mode))
    assert len(results) == len(levels)
    for m, merged in zip(levels, results, strict=True):
        np.testing.assert_array_equal(merged, agglomerate(frags, p, m, mode), err_msg=str(m))
    np.testing.assert_array_equal(results[0], frags)
    counts = [len(np.unique(r[r > 0])) for r in results]
    assert counts == sorted(counts, reverse=True) and counts[0] == 192 > counts[4] > counts[-1] >= 1
    assert np.array_equal(results[-1] > 0, frags > 0)  # merging never changes the foreground


def test_agglomerate_levels_without_fragments_and_out_of_order() -> None:
    empty = np.zeros((1, 8, 8), dtype=np.int64)
    p = np.full(empty.shape, 0.9, dtype=np.float32)
    assert all(r is empty for r in agglomerate_levels(empty, p, [0.1, 0.5], "2d"))
    with pytest.raises(ValueError, match=r"merge thresholds must ascend, got \[0.5, 0.1\]"):
        next(agglomerate_levels(empty, p, [0.5, 0.1], "2d"))


# ---------------------------------------------------------------- choose


def test_choose_beats_thresholding_and_records_the_grid() -> None:
    p, truth = leaky_cells()
    result = choose(p, truth, "2d", SMALL)
    rows = result["grid"]
    assert len(rows) == 8 and all(set(r) == {*SMALL, "v_rand"} for r in rows)
    assert [(r["threshold"], r["seed_distance"], r["merge_threshold"]) for r in rows[:3]] == [
        (0.3, 1.0, 0.05),
        (0.3, 1.0, 0.5),
        (0.3, 3.0, 0.05),
    ]
    for row in rows:  # each score is the score of that point's segmentation
        frags = fragments(p, "2d", row["threshold"], row["seed_distance"])
        labels = agglomerate(frags, p, row["merge_threshold"], "2d")
        assert row["v_rand"] == v_rand(labels, truth)
    best = max(r["v_rand"] for r in rows)
    assert result["v_rand"] == best and {**result["chosen"], "v_rand": best} in rows
    level = result["thresholding"]
    assert level["v_rand"] == max(v_rand(components(p, t, "2d"), truth) for t in SMALL["threshold"])
    # the open wall joins cell 1 to its neighbour at every level; seeds split them
    assert result["v_rand"] > level["v_rand"] and result["v_rand"] > 0.99
    assert result["chosen"] == {"threshold": 0.5, "seed_distance": 3.0, "merge_threshold": 0.05}


def test_choose_ties_keep_the_first_point() -> None:
    """A clean map segments the same at every point: the first point of the grid is chosen,
    whichever way the thresholds and seed distances are listed."""
    truth = voronoi_cells((1, 40, 40), 5, seed=2)
    p = (membrane_probability(truth) > 0.5).astype(np.float32)
    forward = choose(p, truth, "2d", SMALL)
    assert len({r["v_rand"] for r in forward["grid"]}) == 1
    assert forward["chosen"] == {"threshold": 0.3, "seed_distance": 1.0, "merge_threshold": 0.05}
    backward = {**SMALL, "threshold": (0.5, 0.3), "seed_distance": (3.0, 1.0)}
    assert choose(p, truth, "2d", backward)["chosen"] == {
        "threshold": 0.5,
        "seed_distance": 3.0,
        "merge_threshold": 0.05,
    }
    assert forward["thresholding"]["threshold"] == 0.3


def test_threshold_mode_searches_the_level_only() -> None:
    p, truth = leaky_cells()
    result = choose(p, truth, "threshold", {"threshold": (0.3, 0.5, 0.7)})
    assert [set(r) for r in result["grid"]] == [{"threshold", "v_rand"}] * 3
    assert set(result["chosen"]) == {"threshold"}
    t = result["chosen"]["threshold"]
    assert result["thresholding"] == {"threshold": t, "v_rand": result["v_rand"]}
    assert result["v_rand"] == v_rand(threshold_components(p, t), truth, per_section=False)
    assert result["grid"] == sweep(p, truth, "threshold", {"threshold": (0.3, 0.5, 0.7)})


def test_3d_seed_distances_are_in_the_voxel_size() -> None:
    """The 3d run measures distances in the voxel size: the grid's voxels are scaled by the
    finest axis, and the recorded choice is what the run is given."""
    p, truth = leaky_cells((4, 32, 32))
    result = choose(p, truth, "3d", {**SMALL, "seed_distance": (1.0, 2.0)}, (40.0, 4.0, 4.0))
    assert {r["seed_distance"] for r in result["grid"]} == {4.0, 8.0}
    row = result["grid"][2]  # threshold 0.3, seed distance 8 nm = 2 voxels, merge 0.05
    frags = fragments(p, "3d", 0.3, 8.0, (40.0, 4.0, 4.0))
    assert row["v_rand"] == v_rand(agglomerate(frags, p, 0.05, "3d"), truth, per_section=False)


def test_bad_input_is_named() -> None:
    p, truth = leaky_cells()
    with pytest.raises(InputError, match=r"probabilities \(2, 48, 48\) and truth \(2, 48, 40\)"):
        choose(p, truth[..., :40], "2d", SMALL)
    with pytest.raises(InputError, match="must have one"):
        choose(p[0], truth[0], "2d", SMALL)
    with pytest.raises(InputError, match="the 2d grid needs values of threshold, seed_distance"):
        choose(p, truth, "2d", {"threshold": (0.5,), "seed_distance": (), "merge_threshold": ()})


# ---------------------------------------------------------------- crop and the JSON


@pytest.mark.parametrize(
    ("shape", "extent", "expected"),
    [
        ((2, 48, 40), 64, ((0, 2), (0, 48), (0, 40))),  # smaller: all of it
        ((1, 100, 64), 64, ((0, 1), (18, 82), (0, 64))),  # centred
        ((3, 65, 70), 64, ((0, 3), (0, 64), (3, 67))),  # odd excess: the extra voxel after
    ],
)
def test_crop_is_central(shape, extent, expected) -> None:  # type: ignore[no-untyped-def]
    window = crop(shape, extent)
    assert tuple((s.start, s.stop) for s in window) == expected
    assert np.zeros(shape)[window].shape == tuple(b - a for a, b in expected)


def test_crop_of_a_bad_shape() -> None:
    with pytest.raises(InputError, match=r"crop needs a \(z, y, x\) shape"):
        crop((48, 48), 32)


def test_chosen_settings_round_trip_into_the_run_config(tmp_path: Path) -> None:
    p, truth = leaky_cells()
    result = choose(p, truth, "2d", SMALL)
    path = tmp_path / "segment_settings.json"
    path.write_text(json.dumps(result))
    chosen = chosen_settings(path)
    assert chosen == result["chosen"] and set(chosen) == set(GRID)
    settings = {"mode": "2d", "threshold": 0.8, "halo": 8, "shards": 2, "tune": True}
    config = SegmentConfig.from_settings(settings, **chosen)
    assert (config.threshold, config.seed_distance, config.merge_threshold) == (
        chosen["threshold"],
        chosen["seed_distance"],
        chosen["merge_threshold"],
    )
    assert config.halo == 8 and config.mode == "2d"


@pytest.mark.parametrize("content", ["{}", "[1]", '{"chosen": {"halo": 3}}', "not json"])
def test_chosen_settings_of_another_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "segment_settings.json"
    path.write_text(content)
    with pytest.raises(InputError, match="segment_settings.json: not a segment_tune result"):
        chosen_settings(path)


def test_from_settings_drops_the_workflow_keys() -> None:
    settings = {"mode": "threshold", "threshold": 0.5, "shards": 3, "tune": False}
    assert SegmentConfig.from_settings(settings) == SegmentConfig(mode="threshold", threshold=0.5)
    assert SegmentConfig.from_settings(settings, threshold=0.7).threshold == 0.7
    assert settings == {"mode": "threshold", "threshold": 0.5, "shards": 3, "tune": False}
