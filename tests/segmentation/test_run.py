"""Blockwise segmentation: kernels, and the invariants of the blockwise run (equal to one
whole-volume call up to relabelling; objects crossing block faces keep one id; ids consecutive;
an OME-Zarr label image with the prediction's voxel size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from unet.errors import InputError
from unet.interop.tiff import tiff_dtype
from unet.io import ngff, pyramid
from unet.segmentation.kernels import probability, segment
from unet.segmentation.run import SegmentConfig, segment_volume


def voronoi_cells(shape: tuple[int, int, int], n: int, seed: int = 0) -> np.ndarray:
    """Instance labels 1..n of Voronoi cells (the same seeds in every section, drifting)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n, 2)) * shape[1:]
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    out = np.empty(shape, dtype=np.int64)
    for z in range(shape[0]):
        p = points + z * 0.7
        d = (yy[..., None] - p[:, 0]) ** 2 + (xx[..., None] - p[:, 1]) ** 2
        out[z] = d.argmin(-1) + 1
    return out


def membrane_probability(labels: np.ndarray, gap: bool = False) -> np.ndarray:
    """Cell probability: 0.05 on 1-2 px membranes between cells, 0.95 inside, blurred a
    little; ``gap``: an opening of radius 2 (p = 0.6) in the first cell's wall."""
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (1, 2):
        diff = np.diff(labels, axis=axis) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    p = np.where(edge, 0.05, 0.95)
    if gap:
        for z in range(labels.shape[0]):  # one opening of radius 2 per section
            wall = edge[z] & ndimage.binary_dilation(labels[z] == 1, iterations=2)
            y, x = np.argwhere(wall)[len(np.argwhere(wall)) // 2]
            yy, xx = np.mgrid[: labels.shape[1], : labels.shape[2]]
            p[z][wall & ((yy - y) ** 2 + (xx - x) ** 2 <= 4)] = 0.6
    return ndimage.gaussian_filter(p, (0, 0.7, 0.7)).astype(np.float32)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a`` and ``b`` have the same background and objects (ids may differ)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def write(path: Path, values: np.ndarray, chunks: tuple[int, int, int]) -> Path:
    ngff.create(path, values.shape, values.dtype, chunks, (40.0, 4.0, 4.0))[:] = values
    return path


def run(tmp_path: Path, name: str, pred: Path, **settings: object) -> np.ndarray:
    # the synthetic maps are made for p > 0.5 (the shipped default is chosen on ISBI)
    config = SegmentConfig(**{"chunks": (1, 8, 8), "threshold": 0.5, **settings})  # type: ignore[arg-type]
    segment_volume(pred, tmp_path / name, config)
    return np.asarray(ngff.open_array(tmp_path / name)[:])


def test_kernel_threshold_is_6_connected_components() -> None:
    p = np.zeros((2, 5, 5), dtype=np.float32)
    p[0, 0, 0:2] = p[1, 0, 1] = 0.9  # joined across z
    p[0, 4, 4] = p[0, 3, 3] = 0.9  # diagonal: two objects
    labels = segment(p, "threshold", 0.5)
    assert labels.dtype == np.uint32 and labels.max() == 3
    assert labels[0, 0, 0] == labels[1, 0, 1] != labels[0, 4, 4] != labels[0, 3, 3]


def test_kernel_2d_splits_cells_that_thresholding_merges() -> None:
    truth = voronoi_cells((2, 48, 48), 6, seed=3)
    p = membrane_probability(truth, gap=True)
    merged = segment(p, "threshold", 0.5)[0]
    cells = segment(p, "2d", 0.5, seed_distance=3, merge_threshold=0.3)
    assert len(np.unique(merged[merged > 0])) < 6  # the leaky wall joins cell 1 to others
    assert len(np.unique(cells[0][cells[0] > 0])) == 6
    assert not set(np.unique(cells[0])) & set(np.unique(cells[1])) - {0}  # per section


def test_kernel_merges_fragments_of_one_cell() -> None:
    # one elongated cell: two distance cores joined by a neck of high probability
    p = np.full((1, 20, 41), 0.02, dtype=np.float32)
    p[0, 2:18, 2:14] = p[0, 2:18, 27:39] = 0.98
    p[0, 8:12, 14:27] = 0.97
    split = segment(p, "2d", 0.5, seed_distance=4, merge_threshold=0.01)
    joined = segment(p, "2d", 0.5, seed_distance=4, merge_threshold=0.5)
    assert split.max() == 2 and joined.max() == 1


def test_probability_of_stored_values() -> None:
    np.testing.assert_allclose(probability(np.array([0, 255], dtype=np.uint8)), [0.0, 1.0])
    with pytest.raises(InputError, match="uint8 or float"):
        probability(np.array([1], dtype=np.int16))


@pytest.mark.parametrize("block", [(1, 8, 8), (2, 16, 8), (3, 24, 40), (4, 48, 48)])
def test_threshold_blockwise_equals_whole_volume(tmp_path: Path, block: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.random((4, 40, 48)), (0.8, 2, 2))
    values = np.round((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8)
    pred = write(tmp_path / "p.zarr", values, (1, 8, 8))
    labels = run(tmp_path, "s.zarr", pred, mode="threshold", threshold=0.6, block_shape=block)
    whole = segment(probability(values), "threshold", 0.6)
    assert whole.max() == 24 and same_partition(labels, whole)
    assert np.array_equal(np.unique(labels), np.arange(whole.max() + 1))


@pytest.mark.parametrize("block", [(1, 8, 8), (2, 16, 24), (1, 32, 32), (2, 48, 48)])
def test_2d_blockwise_equals_whole_volume(tmp_path: Path, block: tuple[int, ...]) -> None:
    # cells are ~16 px across: blocks of 8 x 8 are smaller than every object
    truth = voronoi_cells((2, 48, 48), 9, seed=0)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth, gap=True), (1, 8, 8))
    settings = {"mode": "2d", "seed_distance": 3.0, "merge_threshold": 0.3, "halo": 24}
    labels = run(tmp_path, "s.zarr", pred, block_shape=block, **settings)
    whole = segment(np.asarray(ngff.open_array(pred)[:]), "2d", 0.5, 3.0, 0.3)
    assert whole.max() == 2 * 9 and same_partition(labels, whole)
    per_section = truth + 100 * np.arange(2)[:, None, None]
    assert same_partition(labels, np.where(labels > 0, per_section, 0))  # the cells themselves


def test_3d_objects_crossing_faces_keep_one_id(tmp_path: Path) -> None:
    zz, yy, xx = np.mgrid[:32, :48, :48]
    rng = np.random.default_rng(2)
    truth = np.zeros((32, 48, 48), dtype=np.int64)
    for k, c in enumerate(rng.uniform(6, 42, (7, 3))):
        c[0] = c[0] * 26 / 42
        truth[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < 36] = k + 1
    touching = ndimage.grey_dilation(truth, size=3) != ndimage.grey_erosion(truth, size=3)
    truth[touching & (truth > 0)] = 0  # keep balls apart by one voxel of background
    p = ndimage.gaussian_filter(np.where(truth > 0, 0.95, 0.05), 0.5).astype(np.float32)
    pred = write(tmp_path / "p.zarr", p, (8, 8, 8))
    labels = run(
        tmp_path,
        "s.zarr",
        pred,
        mode="3d",
        block_shape=(8, 16, 16),
        chunks=(8, 8, 8),
        halo=8,
        seed_distance=2.0,
        merge_threshold=0.4,
    )
    objects = np.unique(truth[truth > 0])
    assert len(objects) >= 5
    for k in objects:  # every ball, most of them cut by faces, has one label
        ids = np.unique(labels[(truth == k) & (labels > 0)])
        assert len(ids) == 1, f"object {k} split into {ids}"
    assert np.array_equal(np.unique(labels), np.arange(len(objects) + 1))  # consecutive


def test_label_image_metadata_and_pyramid(tmp_path: Path) -> None:
    truth = voronoi_cells((2, 40, 40), 5)
    pred = write(tmp_path / "pred.zarr", membrane_probability(truth), (1, 8, 8))
    labels = run(
        tmp_path,
        "cells.zarr",
        pred,
        block_shape=(1, 16, 16),
        pyramid_levels=2,
        output_dtype="uint64",
    )
    group = zarr.open_group(str(tmp_path / "cells.zarr"), mode="r")
    ome = group.attrs["ome"]
    assert ome["image-label"] == {"source": {"image": "../pred.zarr"}}  # type: ignore[index]
    assert ngff.voxel_size(tmp_path / "cells.zarr") == (40.0, 4.0, 4.0)
    assert sorted(group.keys()) == ["0", "1"]  # work arrays removed
    level1 = np.asarray(ngff.open_array(tmp_path / "cells.zarr", 1)[:])
    assert labels.dtype == np.uint64 and np.array_equal(level1, labels[:, ::2, ::2])
    assert group.attrs["unet"]["objects"] == labels.max() == 10  # type: ignore[index]


def test_bad_settings_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mode must be one of"):
        SegmentConfig(mode="4d")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"merge_threshold must be in \(0, 1\)"):
        SegmentConfig(merge_threshold=0.0)
    with pytest.raises(InputError, match="block_shape"):
        SegmentConfig(block_shape=(1, 10, 10), chunks=(1, 8, 8))
    with pytest.raises(InputError, match="halo must be >= 1 in mode '3d'"):
        SegmentConfig(mode="3d", halo=0)
    assert SegmentConfig(mode="threshold", halo=0).halo_shape == (0, 0, 0)
    with pytest.raises(InputError, match="pyramid method must be"):
        pyramid.build(tmp_path, 2, (1, 8, 8), method="mode")
    with pytest.raises(InputError, match="do not fit a TIFF"):
        tiff_dtype(np.uint32, 2**24 + 1)
    pred = write(tmp_path / "p.zarr", np.zeros((1, 8, 8), np.uint8), (1, 8, 8))
    assert run(tmp_path, "s.zarr", pred, block_shape=(1, 8, 8)).max() == 0  # empty is fine
    with pytest.raises(FileExistsError, match="already exists"):
        run(tmp_path, "s.zarr", pred, block_shape=(1, 8, 8))
    write(tmp_path / "i.zarr", np.zeros((1, 8, 8), np.int16), (1, 8, 8))
    with pytest.raises(InputError, match="probability volume"):
        run(tmp_path, "t.zarr", tmp_path / "i.zarr", block_shape=(1, 8, 8))


def test_cli_segment(tmp_path: Path) -> None:
    from unet.cli import main

    truth = voronoi_cells((1, 32, 32), 4)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth), (1, 16, 16))
    args = [str(pred), str(tmp_path / "s.zarr"), "--mode", "threshold"]
    assert main(["segment", *args]) == 0
    labels = np.asarray(ngff.open_array(tmp_path / "s.zarr")[:])
    assert labels.max() == 4 and same_partition(labels, np.where(labels > 0, truth, 0))
    with pytest.raises(SystemExit) as stop:  # exists: one error line, exit status 1
        main(["segment", *args])
    assert stop.value.code == 1


def test_cli_segment_with_a_workflow_config(tmp_path: Path) -> None:
    """The workflow's keys of a config's segment section (shards, tune) are not the command's:
    it segments with the section's settings as they are."""
    from unet.cli import main

    truth = voronoi_cells((1, 32, 32), 4)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth), (1, 16, 16))
    config = tmp_path / "config.yaml"
    config.write_text("segment: {mode: threshold, threshold: 0.6, shards: 2, tune: true}\n")
    assert main(["segment", str(pred), str(tmp_path / "s.zarr"), "--config", str(config)]) == 0
    recorded = ngff.attributes(tmp_path / "s.zarr")["config"]
    assert (recorded["mode"], recorded["threshold"]) == ("threshold", 0.6)


def test_evaluate_scores_the_written_segmentation(tmp_path: Path) -> None:
    from unet.evaluation.evaluate import EvaluateConfig
    from unet.stages.pipeline import evaluate_stage

    truth = voronoi_cells((2, 48, 48), 6, seed=3)
    p = membrane_probability(truth, gap=True)
    pred = write(tmp_path / "p.zarr", np.round(p * 255).astype(np.uint8), (1, 16, 16))
    cells = np.where(p > 0.5, truth, 0).astype(np.uint32)  # the truth: cells without walls
    labels = write(tmp_path / "labels.zarr", cells, (1, 16, 16))
    settings = {"seed_distance": 3.0, "merge_threshold": 0.3, "block_shape": (1, 16, 16)}
    run(tmp_path, "seg.zarr", pred, **settings)
    scores = evaluate_stage(
        pred,
        labels,
        None,
        tmp_path / "e.json",
        tmp_path / "o.png",
        tmp_path / "r.html",
        EvaluateConfig(warping=False),
        None,
        "toy",
        segmentation_path=tmp_path / "seg.zarr",
    )
    assert scores["segment_objects"] == 12 and scores["segment_truth_objects"] == 6
    assert scores["segment_v_rand"] > 0.95 and scores["segment_seg"] > 0.9
    assert scores["segment_v_rand"] > scores["v_rand"]  # thresholding merges through the gap


def test_export_tiff_of_labels_and_probabilities(tmp_path: Path) -> None:
    import tifffile

    from unet.cli import main

    truth = voronoi_cells((2, 32, 32), 4)
    values = np.round(membrane_probability(truth) * 255).astype(np.uint8)
    pred = write(tmp_path / "p.zarr", values, (1, 16, 16))
    labels = run(tmp_path, "s.zarr", pred, block_shape=(1, 16, 16))
    for volume, expect in ((tmp_path / "s.zarr", labels), (pred, values)):
        out = tmp_path / f"{volume.stem}.tif"
        assert main(["export-tiff", str(volume), str(out)]) == 0
        with tifffile.TiffFile(out) as tif:
            data = tif.asarray()
            page = tif.pages[0]
            x_res = page.tags["XResolution"].value
            spacing = tif.imagej_metadata["spacing"]  # type: ignore[index]
        assert data.dtype == (np.uint16 if volume.stem == "s" else np.uint8)
        np.testing.assert_array_equal(data, expect)
        assert x_res[0] / x_res[1] == pytest.approx(250.0)  # 4 nm: 250 px per um
        assert spacing == pytest.approx(0.04)  # 40 nm sections


def test_a_failed_block_is_marked_named_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unet.cluster import blockstate
    from unet.cluster.blockstate import BlockError
    from unet.io import outputs
    from unet.segmentation import blocks

    truth = voronoi_cells((2, 32, 32), 4)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth), (1, 16, 16))
    task = blocks.TASKS["fragments"]

    def failing(job: blocks.SegmentJob) -> dict[str, object]:
        if job.index == 3:  # of the grid (2, 2, 2): z 0:1, y 16:32, x 16:32
            raise OSError(28, "No space left on device")
        return task(job)

    settings = {"block_shape": (1, 16, 16), "halo": 8, "max_failures": 1}
    monkeypatch.setitem(blocks.TASKS, "fragments", failing)
    with pytest.raises(
        BlockError,
        match=r"pass fragments: 1 block\(s\) failed .* rerun to resume"
        r"\. First failure: block 3 \(z 0:1, y 16:32, x 16:32\): OSError: \[Errno 28\]",
    ):
        run(tmp_path, "s.zarr", pred, **settings)
    partial = outputs.partial_path(tmp_path / "s.zarr")
    markers = blockstate.open_markers(blocks.step_path(str(partial), "fragments"))
    states = blockstate.read_states(markers, 0, 8)
    assert (states == blockstate.FAILED).sum() == 1
    monkeypatch.setitem(blocks.TASKS, "fragments", task)
    labels = run(tmp_path, "s.zarr", pred, **settings)  # resumes, computes the failed block
    assert same_partition(labels, run(tmp_path, "whole.zarr", pred, block_shape=(2, 32, 32)))


def test_touching_cells_separation_border_then_2d_separates_what_thresholding_merges(
    tmp_path: Path,
) -> None:
    from unet.evaluation.instances import instance_scores
    from unet.weights.border import separate

    # cells that touch directly (instance ids, no membrane between them), as in the issue
    truth = voronoi_cells((2, 64, 64), 10, seed=5)
    plain = truth > 0  # the old target: every pixel is cell, the cells are one object
    target = separate(truth, 1, ndim=2) > 0  # the paper's: a 1-px separation border
    assert plain.all() and ndimage.label(plain[0])[1] == 1
    # a net that learned the target, a little blurred: the 1-px border leaks (p up to 0.5)
    p = 0.02 + 0.96 * ndimage.gaussian_filter(target.astype(np.float32), (0, 0.6, 0.6))
    pred = write(tmp_path / "p.zarr", np.round(p * 255).astype(np.uint8), (1, 32, 32))
    stored = probability(np.asarray(ngff.open_array(pred)[:]))
    cross = ndimage.generate_binary_structure(2, 1)
    thresholded = np.stack([ndimage.label(plane > 0.5, cross)[0] for plane in stored])
    cells = run(
        tmp_path, "s.zarr", pred, block_shape=(1, 32, 32), seed_distance=3.0, merge_threshold=0.3
    )
    counts = [len(np.unique(a[z][a[z] > 0])) for a in (thresholded, cells) for z in range(2)]
    assert counts[:2] == [6, 6] and counts[2:] == [9, 10]  # of 10 cells per section
    assert instance_scores(cells, truth)["seg"] > instance_scores(thresholded, truth)["seg"] + 0.2
