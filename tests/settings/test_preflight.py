"""Checks before the first job: settings against the inputs' shapes, one line per problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.settings.test_workflow import run_of
from tests.workflow.conftest import TINY_CONFIG, write_tiny_dataset
from unet.errors import InputError
from unet.io import ngff
from unet.settings.preflight import check_run


def eval_as_val(run: Any) -> Any:
    """The workflow's held-out slices for training (common.smk: val_slices)."""
    return lambda name: run[name].dataset["eval_slices"]


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """Two tiny (4, 96, 96) TIFF datasets and a (6, 80, 80) Zarr one predicted by a's model."""
    raw, labels = write_tiny_dataset(tmp_path / "data")
    zarr_raw = tmp_path / "c.zarr"
    ngff.create(zarr_raw, (6, 80, 80), np.uint8, (1, 40, 40), (1, 1, 1))[:] = 7
    datasets = {
        name: {
            "raw": str(raw),
            "labels": str(labels),
            "train_slices": "0-2",
            "eval_slices": "3",
            "predict_slices": "2-3",
        }
        for name in ("a", "b")
    }
    datasets["c"] = {"raw": str(zarr_raw), "model": "a"}
    return {**copy.deepcopy(TINY_CONFIG), "datasets": datasets}


def check(config: dict[str, Any]) -> None:
    run = run_of(config)
    check_run(run, eval_as_val(run))


def test_a_good_config_passes(config: dict[str, Any]) -> None:
    check(config)


@pytest.mark.parametrize(
    ("dataset", "change", "match"),
    [
        (
            "b",
            {"overrides": {"train": {"output_tile": [50, 50]}}},
            r"config: datasets\.b\.overrides\.train\.output_tile: output 50x50 is not reachable",
        ),
        (
            "b",
            {"overrides": {"predict": {"block_shape": [1, 42, 42], "chunks": [1, 42, 42]}}},
            r"datasets\.b\.overrides\.predict\.block_shape: block shape \(1, 42, 42\) must be a "
            r"multiple of the net's down-sampling factor \(1, 4, 4\)",
        ),
        (
            "b",
            {"overrides": {"predict": {"chunks": [1, 32, 32]}}},
            r"datasets\.b\.overrides\.predict\.chunks.*block_shape \(1, 48, 48\) must be a "
            r"multiple of the chunks \(1, 32, 32\)",
        ),
        (
            "b",
            {"eval_slices": "4"},
            r"config: datasets\.b\.eval_slices: slice 4 in '4' is outside the volume of 4 slices",
        ),
        ("b", {"train_slices": "0-7"}, r"datasets\.b\.train_slices: slice 7 in '0-7' is outside"),
        (
            "b",
            {"predict_slices": "2"},
            r"datasets\.b\.eval_slices: slices \[3\] of '3' are not predicted",
        ),
        (
            "b",
            {"train_slices": "0-3"},
            r"dataset 'b': slices \[3\] are in both train_slices and val",
        ),
        (  # not trained, but segment_tune predicts its validation slices
            "b",
            {"train_slices": None, "model": "a", "val_slices": "7"},
            r"config: datasets\.b\.val_slices: slice 7 in '7' is outside the volume of 4 slices",
        ),
        (
            "c",
            {"predict_slices": "0-9"},
            r"datasets\.c\.predict_slices: slice 9 in '0-9' is outside",
        ),
    ],
)
def test_problems_name_dataset_key_and_value(
    config: dict[str, Any], dataset: str, change: dict[str, Any], match: str
) -> None:
    config["datasets"][dataset].update(change)
    with pytest.raises(InputError, match=match) as err:
        check(config)
    assert len(str(err.value).splitlines()) == 1  # the other datasets are fine


def test_a_predict_only_dataset_is_checked_against_its_models_net(
    config: dict[str, Any],
) -> None:
    """c's block fits a depth-2 net (factor 4) but not a's depth-4 net (factor 16)."""
    config["model"]["depth"] = 1  # the global net
    config["train"]["output_tile"] = [48, 48]
    config["predict"].update(block_shape=[1, 40, 40], chunks=[1, 40, 40])
    config["datasets"]["b"].update(predict_slices="0-3")
    check(config)
    config["datasets"]["a"]["overrides"] = {"model": {"depth": 4}, "train": {"output_tile": [4, 4]}}
    with pytest.raises(InputError) as err:
        check(config)
    lines = str(err.value).splitlines()
    assert any(line.startswith("config: predict.block_shape (dataset 'c')") for line in lines)
    assert any("'a': depth 4" in line and "(1, 16, 16)" in line for line in lines)


def test_every_problem_of_every_dataset_is_listed(config: dict[str, Any]) -> None:
    config["datasets"]["a"]["eval_slices"] = "9"
    config["datasets"]["b"]["raw"] = "missing.tif"
    with pytest.raises(InputError) as err:
        check(config)
    assert str(err.value).splitlines() == [
        "config: datasets.a.eval_slices: slice 9 in '9' is outside the volume of 4 slices",
        "config: datasets.b.raw: missing.tif: no such file",
    ]


def test_labels_of_another_shape_and_a_volume_smaller_than_the_context(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    _, small_labels = write_tiny_dataset(tmp_path / "small", shape=(4, 30, 30))
    config["datasets"]["b"]["labels"] = str(small_labels)
    with pytest.raises(InputError, match=r"datasets\.b\.labels: shape \(4, 30, 30\) differs"):
        check(config)
    small_raw = tmp_path / "small" / "raw.tif"
    config["datasets"]["b"]["raw"] = str(small_raw)
    with pytest.raises(
        InputError,
        match=r"datasets\.b\.raw .*raw\.tif of shape \(4, 30, 30\) is smaller than the "
        r"network context 40",
    ):
        check(config)
