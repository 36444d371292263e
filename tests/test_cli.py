"""The `unet` command end to end on a tiny dataset, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from unet.cli import main
from unet.io import ngff

CONFIG = {
    "model": {"base_channels": 2, "depth": 1, "dropout": 0.0},
    "train": {"output_tile": [24, 24], "steps": 3, "workers": 0, "device": "cpu", "log_every": 1},
    "predict": {
        "block_shape": [1, 32, 32],
        "chunks": [1, 32, 32],
        "cluster": "none",
        "device": "cpu",
        "pyramid_levels": 1,
    },
    "weights": {"block": [1, 64, 64]},
}


@pytest.fixture
def files(tmp_path: Path, raw: np.ndarray, cells: np.ndarray) -> Path:
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", cells, photometric="minisblack")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def test_every_stage_from_the_command_line(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = files
    cfg = str(d / "config.yaml")
    assert (
        main(
            [
                "ingest",
                str(d / "raw.tif"),
                str(d / "raw.zarr"),
                "--voxel-size",
                "50",
                "4",
                "4",
                "--chunks",
                "1",
                "64",
                "64",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "ingest",
                str(d / "labels.tif"),
                str(d / "labels.zarr"),
                "--kind",
                "binary",
                "--like",
                str(d / "raw.zarr"),
                "--chunks",
                "1",
                "64",
                "64",
            ]
        )
        == 0
    )
    assert main(["weights", str(d / "labels.zarr"), str(d / "weights.zarr"), "--config", cfg]) == 0
    assert (
        main(
            [
                "train",
                str(d / "raw.zarr"),
                str(d / "labels.zarr"),
                str(d / "weights.zarr"),
                str(d / "model"),
                "--config",
                cfg,
                "--train-slices",
                "0-1",
                "--val-slices",
                "2",
            ]
        )
        == 0
    )
    assert (d / "model" / "model.pt").is_file() and (d / "model" / "curve.png").is_file()
    assert (
        main(
            [
                "predict",
                str(d / "model" / "model.pt"),
                str(d / "raw.zarr"),
                str(d / "pred.zarr"),
                "--config",
                cfg,
                "--slices",
                "1-2",
            ]
        )
        == 0
    )
    assert ngff.open_array(d / "pred.zarr").shape == (2, 64, 64)
    assert (
        main(
            [
                "evaluate",
                str(d / "pred.zarr"),
                str(d / "labels.zarr"),
                str(d / "scores.json"),
                "--raw",
                str(d / "raw.zarr"),
                "--slices",
                "2",
            ]
        )
        == 0
    )
    scores = json.loads((d / "scores.json").read_text())
    assert 0 <= scores["pixel_error"] <= 1 and (d / "scores-report.html").is_file()
    capsys.readouterr()
    assert main(["curve", str(d / "model" / "metrics.csv"), "--error", "1.0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["seconds_to_val_pixel_error_le_1.0"] is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "{d}/missing.tif", "{d}/x.zarr"], "missing.tif: no such file"),
        (["ingest", "{d}/raw.tif", "{d}/config.yaml"], "config.yaml: output already exists"),
        (["weights", "{d}/nope.zarr", "{d}/w.zarr"], "nope.zarr: no such Zarr volume"),
        (["curve", "{d}/raw.tif"], "not a metrics.csv"),
        (
            ["weights", "{d}/nope.zarr", "{d}/w.zarr", "--config", "{d}/none.yaml"],
            "none.yaml: no such config file",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    files: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(d=files) for a in argv])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ingest_pyramid_levels(files: Path) -> None:
    """``--pyramid-levels`` reaches IngestConfig; without it the schema's default applies."""
    from unet.cli import build_parser
    from unet.settings.schema import default

    assert build_parser().parse_args(["ingest", "a", "b"]).pyramid_levels == default(
        "ingest", "pyramid_levels"
    )
    for levels in (1, 2):
        out = files / f"raw{levels}.zarr"
        argv = ["ingest", str(files / "raw.tif"), str(out), "--chunks", "1", "64", "64"]
        assert main([*argv, "--pyramid-levels", str(levels)]) == 0
        multiscale = ngff.multiscale(out)
        assert multiscale is not None and len(multiscale.paths) == levels


def test_ingest_pyramid_levels_below_1_is_one_line(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ingest", str(files / "raw.tif"), str(files / "x.zarr"), "--pyramid-levels", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    assert "pyramid_levels must be >= 1" in capsys.readouterr().err
    assert not (files / "x.zarr").exists()


def test_weights_count_slices(files: Path) -> None:
    """``--count-slices`` reaches weights_stage: the balanced class weights come from those
    slices (as the workflow counts the training slices), which changes the weights here."""
    from unet.stages.pipeline import WeightsConfig, weights_stage

    labels = files / "labels.zarr"
    mask = np.zeros((2, 32, 32), np.uint8)
    mask[0, 4:28, 4:28] = 1  # mostly cell
    mask[1, 12:20, 12:20] = 1  # mostly background
    ngff.create(labels, mask.shape, mask.dtype, (1, 32, 32), (50.0, 4.0, 4.0))[...] = mask
    cfg = str(files / "config.yaml")
    assert (
        main(
            ["weights", str(labels), str(files / "w0.zarr"), "--config", cfg, "--count-slices", "0"]
        )
        == 0
    )
    assert main(["weights", str(labels), str(files / "all.zarr"), "--config", cfg]) == 0
    weights_stage(labels, files / "direct.zarr", WeightsConfig(block=(1, 64, 64)), count_slices="0")
    by_flag, direct = (ngff.open_array(files / n)[...] for n in ("w0.zarr", "direct.zarr"))
    np.testing.assert_array_equal(by_flag, direct)
    assert not np.allclose(by_flag, ngff.open_array(files / "all.zarr")[...])
