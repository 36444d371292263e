"""Every store the pipeline writes (raw, labels, weights, prediction, segmentation) is valid
OME-Zarr (ome-zarr-models), placed where viewers overlay it on the raw data: pyramid levels
with their scale and half-voxel translation, a partial prediction with its z translation; one
is opened with ome-zarr-py; the CLI and the Snakemake route write the same voxel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import zarr

from unet.checkpoint import save_model
from unet.io import ngff, pyramid
from unet.io.ingest import IngestConfig, ingest
from unet.model import UNet

VOXEL = (50.0, 4.0, 4.0)


def validate(path: Path) -> Any:
    """The store at ``path`` parsed by ome-zarr-models (NGFF 0.5): raises if it is invalid."""
    import ome_zarr_models
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    model = ome_zarr_models.open_ome_zarr(zarr.open_group(str(path), mode="r"), version="0.5")
    assert isinstance(model, Image | ImageLabel), type(model)
    return model


def transforms(path: Path) -> list[list[dict[str, Any]]]:
    ome: Any = zarr.open_group(str(path), mode="r").attrs["ome"]
    return [d["coordinateTransformations"] for d in ome["multiscales"][0]["datasets"]]


@pytest.fixture
def volumes(tmp_path: Path, cells: np.ndarray) -> tuple[Path, Path, np.ndarray]:
    raw = np.random.default_rng(0).integers(0, 256, cells.shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", cells, photometric="minisblack")
    config = IngestConfig(voxel_size=VOXEL, chunks=(1, 32, 32), pyramid_levels=3)
    ingest(tmp_path / "raw.tif", tmp_path / "raw.zarr", config)
    labels = IngestConfig(kind="binary", chunks=(1, 32, 32), pyramid_levels=2)
    ingest(tmp_path / "lab.tif", tmp_path / "lab.zarr", labels, like=tmp_path / "raw.zarr")
    return tmp_path / "raw.zarr", tmp_path / "lab.zarr", raw


def test_ingested_volumes_have_placed_pyramids(volumes: tuple[Path, Path, np.ndarray]) -> None:
    raw_path, lab_path, raw = volumes
    validate(raw_path)
    validate(lab_path)
    expect = raw
    for level in (1, 2):
        expect = pyramid.downsample(expect)
        np.testing.assert_array_equal(ngff.open_array(raw_path, level)[:], expect)
    assert transforms(raw_path) == [
        [{"type": "scale", "scale": [50.0, 4.0, 4.0]}],
        [
            {"type": "scale", "scale": [50.0, 8.0, 8.0]},
            {"type": "translation", "translation": [0.0, 2.0, 2.0]},  # mean of 2 x 2
        ],
        [
            {"type": "scale", "scale": [50.0, 16.0, 16.0]},
            {"type": "translation", "translation": [0.0, 6.0, 6.0]},
        ],
    ]
    # labels are subsampled (nearest): level 1 voxel 0 is level 0 voxel 0, no shift
    assert transforms(lab_path)[1] == [{"type": "scale", "scale": [50.0, 8.0, 8.0]}]
    assert ngff.voxel_size(lab_path) == VOXEL  # from --like: none was given


def test_cli_labels_take_the_raw_voxel_size(
    tmp_path: Path, volumes: tuple[Path, Path, np.ndarray], restore_root_logger: None
) -> None:
    """``unet ingest --like`` writes what the Snakemake route (the dataset's voxel_size for
    both) writes; a contradicting explicit voxel size is refused."""
    from unet.cli import main

    raw_path, lab_path, _ = volumes
    out = tmp_path / "cli_lab.zarr"
    argv = ["ingest", str(tmp_path / "lab.tif"), str(out), "--kind", "binary"]
    assert main([*argv, "--like", str(raw_path)]) == 0
    assert ngff.voxel_size(out) == ngff.voxel_size(lab_path) == VOXEL
    with pytest.raises(SystemExit) as stop:
        main(
            [*argv[:2], str(tmp_path / "x.zarr"), *argv[3:], "--like", str(raw_path)]
            + ["--voxel-size", "40", "4", "4"]
        )
    assert stop.value.code != 0 and not (tmp_path / "x.zarr").exists()


def test_weights_store_validates(tmp_path: Path, volumes: tuple[Path, Path, np.ndarray]) -> None:
    from unet.stages.pipeline import WeightsConfig, weights_stage

    _, lab_path, _ = volumes
    weights_stage(lab_path, tmp_path / "w.zarr", WeightsConfig(block=(1, 64, 64)))
    validate(tmp_path / "w.zarr")
    assert ngff.voxel_size(tmp_path / "w.zarr") == VOXEL


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_partial_prediction_carries_its_z_translation(tmp_path: Path) -> None:
    """Slices 2..4 of a volume whose own origin is z = 10 nm start at 10 + 2 * 30 nm; the
    segmentation of that prediction (every pyramid level), and ome-zarr-py reading both,
    agree."""
    from unet.prediction.run import PredictConfig, predict_volume

    torch.manual_seed(1)
    save_model(tmp_path / "m.pt", UNet(base_channels=3, depth=2, ndim=2, dropout=0.0).eval())
    data = np.random.default_rng(0).integers(0, 256, (6, 40, 40), dtype=np.uint8)
    raw = ngff.create(
        tmp_path / "raw.zarr", data.shape, np.uint8, (1, 40, 40), (30, 4, 4), translation=(10, 0, 0)
    )
    raw[:] = data
    config = PredictConfig(
        cluster="none", device="cpu", block_shape=(1, 40, 40), chunks=(1, 40, 40), pyramid_levels=2
    )
    predict_volume(
        tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "p.zarr", config, z_range=(2, 5)
    )
    validate(tmp_path / "p.zarr")
    assert ngff.translation(tmp_path / "p.zarr") == (70.0, 0.0, 0.0)
    assert transforms(tmp_path / "p.zarr")[1] == [
        {"type": "scale", "scale": [30.0, 8.0, 8.0]},
        {"type": "translation", "translation": [70.0, 2.0, 2.0]},
    ]

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(tmp_path / "p.zarr")))())
    levels = nodes[0].data
    assert len(levels) == 2 and tuple(levels[0].shape) == (3, 40, 40)
    np.testing.assert_array_equal(np.asarray(levels[0]), ngff.open_array(tmp_path / "p.zarr")[:])
    read = nodes[0].metadata["coordinateTransformations"][0]
    assert {"type": "translation", "translation": [70.0, 0.0, 0.0]} in read

    from unet.segmentation.config import SegmentConfig
    from unet.segmentation.run import segment_volume

    segment = SegmentConfig(chunks=(1, 8, 8), block_shape=(1, 16, 16), pyramid_levels=3)
    segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", segment)
    validate(tmp_path / "s.zarr")
    assert ngff.translation(tmp_path / "s.zarr") == ngff.translation(tmp_path / "p.zarr")
    assert ngff.voxel_size(tmp_path / "s.zarr") == ngff.voxel_size(tmp_path / "p.zarr")
    # labels are subsampled (nearest): every level keeps level 0's origin
    assert transforms(tmp_path / "s.zarr") == [
        [
            {"type": "scale", "scale": [30.0, 4.0 * 2**level, 4.0 * 2**level]},
            {"type": "translation", "translation": [70.0, 0.0, 0.0]},
        ]
        for level in range(3)
    ]
    labels = list(Reader(parse_url(str(tmp_path / "s.zarr")))())[0].metadata
    assert {"type": "translation", "translation": [70.0, 0.0, 0.0]} in (
        labels["coordinateTransformations"][0]
    )
