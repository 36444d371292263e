"""The done markers of every segmentation pass are compacted as prediction's are
(:mod:`unet.cluster.markers`): a few files per pass however many blocks, also when a pass
fails, and the run resumes from them to the labels of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.segmentation.test_run import (
    membrane_probability,
    run,
    same_partition,
    voronoi_cells,
    write,
)
from unet.cluster import blockstate
from unet.cluster import markers as mk
from unet.cluster.blockstate import BlockError
from unet.io import outputs
from unet.segmentation import blocks

EVERY = 8
SETTINGS = {"block_shape": (1, 8, 8), "halo": 8, "max_failures": 1}  # 2 x 6 x 6 = 72 blocks


def test_segmentation_marker_files_stay_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mk, "COMPACT_EVERY", EVERY)
    sizes: list[int] = []
    finished = mk.Compactor.finished

    def sampled(self: mk.Compactor, index: int) -> None:
        finished(self, index)
        sizes.append(len(mk.marker_files(self.markers)))

    monkeypatch.setattr(mk.Compactor, "finished", sampled)
    pred = write(
        tmp_path / "p.zarr", membrane_probability(voronoi_cells((2, 48, 48), 6)), (1, 8, 8)
    )
    relabel = blocks.TASKS["relabel"]

    def failing(job: blocks.SegmentJob) -> dict[str, object]:
        if job.index == 50:
            raise OSError(28, "No space left on device")
        return relabel(job)

    monkeypatch.setitem(blocks.TASKS, "relabel", failing)
    with pytest.raises(BlockError, match=r"pass relabel: 1 block\(s\) failed"):
        run(tmp_path, "s.zarr", pred, **SETTINGS)
    n = 2 * 6 * 6
    assert len(sizes) >= 2 * n + 50  # two passes and a part of the third
    # zarr.json, the summary, the chunks since the last compaction (one task in flight)
    assert max(sizes) <= EVERY + 2
    partial = outputs.partial_path(tmp_path / "s.zarr")
    for step in blocks.PASSES:  # each pass's markers folded into one summary file
        markers = blockstate.open_markers(blocks.step_path(str(partial), step), "r")
        names = sorted(p.name for p in mk.marker_files(markers))
        assert names == [f"done-0-{n}.npy", "zarr.json"], step
    states = blockstate.read_states(markers, 0, n)
    assert states[50] == blockstate.FAILED and (states == blockstate.DONE).sum() >= 50
    monkeypatch.setitem(blocks.TASKS, "relabel", relabel)
    labels = run(tmp_path, "s.zarr", pred, **SETTINGS)  # resumes from the summaries
    whole = run(tmp_path, "whole.zarr", pred, **{**SETTINGS, "block_shape": (2, 48, 48)})
    assert same_partition(labels, whole)
    assert not list((tmp_path / "s.zarr").rglob("done-*.npy"))  # work folders removed
