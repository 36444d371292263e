"""A dataset predicted by a shipped model or a model file: no training, in the CLI and Snakemake."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from tests.workflow.conftest import TINY_CONFIG, snakemake, write_tiny_dataset
from unet.checkpoint import save_model, shipped_models
from unet.cli import main
from unet.errors import InputError
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.settings.workflow import external_model, load_schema, resolve

SCHEMAS = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


def _run(datasets: dict[str, Any]) -> Any:
    config = copy.deepcopy({"datasets": datasets})
    validate(config, str(SCHEMAS / "config.schema.yaml"))
    return resolve(
        config,
        load_schema(SCHEMAS / "config.schema.yaml"),
        load_schema(SCHEMAS / "datasets.schema.yaml"),
    )


def test_a_dataset_may_name_a_shipped_model_or_a_model_file(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", UNet(base_channels=2, depth=2))
    run = _run(
        {
            "shipped": {"raw": "a.tif", "model": "isbi2012"},
            "file": {"raw": "b.tif", "model": str(tmp_path / "m.pt")},
            "trains": {"raw": "c.tif", "labels": "c_labels.tif", "train_slices": "0-3"},
            "by_dataset": {"raw": "d.tif", "model": "trains"},
        }
    )
    assert external_model(run, "shipped") == str(shipped_models()["isbi2012"])
    assert external_model(run, "file") == str(tmp_path / "m.pt")
    assert external_model(run, "trains") is None and external_model(run, "by_dataset") is None


def test_a_dataset_of_the_same_name_wins_and_unknown_names_fail() -> None:
    run = _run(
        {
            "isbi2012": {"raw": "a.tif", "labels": "l.tif", "train_slices": "0-3"},
            "b": {"raw": "b.tif", "model": "isbi2012"},
        }
    )
    assert external_model(run, "b") is None  # the dataset's own training
    with pytest.raises(InputError, match=r"datasets\.b\.model names unknown dataset 'nope' \("):
        _run({"b": {"raw": "b.tif", "model": "nope"}})
    with pytest.raises(InputError, match="set its model to a shipped model: isbi2012"):
        _run({"b": {"raw": "b.tif"}})


def test_cli_predict_by_shipped_name_equals_predict_from_its_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw.zarr"
    data = np.random.default_rng(0).integers(0, 256, (1, 64, 64), dtype=np.uint8)
    ngff.create(raw, data.shape, np.uint8, (1, 64, 64), (50.0, 4.0, 4.0))[:] = data
    args = ["--cluster", "none", "--device", "cpu"]
    assert main(["predict", "isbi2012", str(raw), str(tmp_path / "a.zarr"), *args]) == 0
    config = PredictConfig(
        cluster="none", device="cpu", block_shape=(1, 64, 64), chunks=(1, 64, 64)
    )
    predict_volume(shipped_models()["isbi2012"], raw, tmp_path / "b.zarr", config)
    a = np.asarray(ngff.open_array(tmp_path / "a.zarr")[:])
    np.testing.assert_array_equal(a, np.asarray(ngff.open_array(tmp_path / "b.zarr")[:]))
    assert a.std() > 0  # membranes and cells, not a constant
    assert "isbi2012" in str(ngff.attributes(tmp_path / "a.zarr")["model"])


@pytest.mark.slow
def test_snakemake_predicts_a_raw_only_dataset_with_the_shipped_model(tmp_path: Path) -> None:
    raw, _ = write_tiny_dataset(tmp_path / "data", shape=(2, 64, 64))
    config = {
        "results": str(tmp_path / "results"),
        "work": str(tmp_path / "work"),
        "datasets": {"em": {"raw": str(raw), "model": "isbi2012"}},
        **{k: dict(v) for k, v in TINY_CONFIG.items() if k != "model"},
        "ingest": {"chunks": [1, 64, 64]},
        "predict": {**TINY_CONFIG["predict"], "block_shape": [1, 64, 64], "chunks": [1, 64, 64]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule train" not in result.stdout + result.stderr
    assert not (tmp_path / "results" / "em" / "model").exists()
    predicted = np.asarray(ngff.open_array(tmp_path / "results" / "em" / "prediction.zarr")[:])
    direct = tmp_path / "direct.zarr"
    predict_volume(
        "isbi2012",
        tmp_path / "work" / "em" / "raw.zarr",
        direct,
        PredictConfig(cluster="none", device="cpu", block_shape=(1, 64, 64), chunks=(1, 64, 64)),
    )
    np.testing.assert_array_equal(predicted, np.asarray(ngff.open_array(direct)[:]))
    assert (tmp_path / "results" / "em" / "segmentation.zarr").is_dir()
