"""A sharded segmentation (separate jobs for the fragments pass) equals one job's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.segmentation.test_run import membrane_probability, voronoi_cells, write
from unet.cluster.blockstate import BlockError
from unet.io import ngff
from unet.segmentation import run as segment

SETTINGS = {
    "mode": "2d",
    "threshold": 0.5,
    "seed_distance": 3.0,
    "merge_threshold": 0.3,
    "halo": 24,
    "block_shape": (1, 16, 16),
    "chunks": (1, 8, 8),
}


def test_three_shards_then_finish_equal_one_job(tmp_path: Path) -> None:
    truth = voronoi_cells((3, 48, 48), 9, seed=1)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth, gap=True), (1, 8, 8))
    config = segment.SegmentConfig(**SETTINGS)  # type: ignore[arg-type]
    whole = segment.segment_volume(pred, tmp_path / "one.zarr", config)

    out = tmp_path / "sharded.zarr"
    with pytest.raises(FileNotFoundError, match="no prepared"):
        segment.run_shard(pred, out, config, shard=0, n_shards=3)
    layout = segment.prepare_output(pred, out, config)
    assert layout.n_blocks == 27
    ranges = [segment.run_shard(pred, out, config, shard=i, n_shards=3) for i in range(3)]
    assert [r["blocks"] for r in ranges] == [[0, 9], [9, 18], [18, 27]]
    assert sum(r["computed"] for r in ranges) == 27
    again = segment.run_shard(pred, out, config, shard=1, n_shards=3)  # a rerun job: resumes
    assert again["computed"] == 0 and again["skipped"] == 9
    summary = segment.finish_shards(pred, out, config)
    assert summary["objects"] == whole["objects"] == 27
    a = np.asarray(ngff.open_array(tmp_path / "one.zarr")[:])
    b = np.asarray(ngff.open_array(out)[:])
    assert np.array_equal(a, b)  # ids too: relabelling numbers the objects in block order


def test_finish_names_the_blocks_no_shard_computed(tmp_path: Path) -> None:
    truth = voronoi_cells((2, 32, 32), 4, seed=2)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth), (1, 8, 8))
    config = segment.SegmentConfig(**SETTINGS)  # type: ignore[arg-type]
    out = tmp_path / "s.zarr"
    segment.prepare_output(pred, out, config)
    segment.run_shard(pred, out, config, shard=0, n_shards=2)  # shard 1 never ran
    with pytest.raises(BlockError, match="never"):
        segment.finish_shards(pred, out, config)
    assert not out.exists()  # nothing that looks complete
    segment.run_shard(pred, out, config, shard=1, n_shards=2)
    assert segment.finish_shards(pred, out, config)["objects"] == 2 * 4
    assert out.is_dir() and not Path(f"{out}.partial").exists()
