"""Rule segment_tune's stage: predict the validation slices with a (tiny, random) model, choose on
their central window, write the JSON whole or not at all, and leave no work folder behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import unet.stages.tune as stage
from unet.checkpoint import save_model
from unet.errors import InputError
from unet.io import ngff
from unet.model import UNet
from unet.prediction.config import PredictConfig
from unet.segmentation.tune import GRID
from unet.stages.tune import tune_stage

VOXEL = (50.0, 4.0, 4.0)


@pytest.fixture(autouse=True)
def _keep_torch_threads():  # type: ignore[no-untyped-def]
    """In-process prediction sets torch's thread count for this process: restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def inputs(tmp_path: Path, raw: np.ndarray, cells: np.ndarray) -> dict[str, Path]:
    """A tiny 2D net and the (3, 64, 64) raw volume and membrane mask of tests/conftest.py."""
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", UNet(base_channels=2, depth=1, ndim=2, dropout=0.0).eval())
    for name, values in (("raw", raw), ("labels", cells)):
        ngff.create(tmp_path / f"{name}.zarr", values.shape, values.dtype, (1, 64, 64), VOXEL)[
            :
        ] = values
    return {
        name: tmp_path / f"{name}.{ext}"
        for name, ext in (("model", "pt"), ("raw", "zarr"), ("labels", "zarr"))
    }


CONFIG = PredictConfig(
    block_shape=(1, 64, 64), chunks=(1, 64, 64), device="cpu", cluster="none", threads=1
)


def test_tune_stage_writes_the_choice_and_removes_its_work(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    out, work = tmp_path / "results" / "segment_settings.json", tmp_path / "work" / "tune"
    result = tune_stage(
        inputs["model"], inputs["raw"], inputs["labels"], [2, 1], CONFIG, "2d", out, work, 48
    )
    assert json.loads(out.read_text()) == result
    assert result["mode"] == "2d" and result["val_slices"] == [1, 2]
    assert result["crop"] == [[8, 56], [8, 56]]  # the central 48 x 48 of 64 x 64
    assert set(result["chosen"]) == set(GRID) and len(result["grid"]) == 990
    assert result["v_rand"] == max(r["v_rand"] for r in result["grid"])
    assert 0.0 <= result["thresholding"]["v_rand"] <= 1.0 and result["seconds"] >= 0
    assert not work.exists() and not out.with_name(out.name + ".partial").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_a_failed_choice_leaves_neither_json_nor_work(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise InputError("V_rand is undefined: no pixel is foreground in the truth")

    monkeypatch.setattr(stage, "choose", fail)
    out, work = tmp_path / "results" / "segment_settings.json", tmp_path / "work" / "tune"
    work.mkdir(parents=True)
    (work / "leftover").write_text("a killed run's")
    with pytest.raises(InputError, match="no pixel is foreground"):
        tune_stage(inputs["model"], inputs["raw"], inputs["labels"], [1], CONFIG, "2d", out, work)
    assert not work.exists() and not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


def test_bad_inputs_fail_before_predicting(tmp_path: Path, inputs: dict[str, Path]) -> None:
    out, work = tmp_path / "segment_settings.json", tmp_path / "work"
    small = tmp_path / "small.zarr"
    ngff.create(small, (3, 64, 48), np.uint8, (1, 64, 48), VOXEL)[:] = 255
    args = (inputs["model"], inputs["raw"])
    with pytest.raises(InputError, match=r"small.zarr: labels of shape \(3, 64, 48\) do not match"):
        tune_stage(*args, small, [1], CONFIG, "2d", out, work)
    with pytest.raises(InputError, match=r"validation slices \[1, 3\] are outside the volume of 3"):
        tune_stage(*args, inputs["labels"], [3, 1], CONFIG, "2d", out, work)
    with pytest.raises(InputError, match="at least one validation slice"):
        tune_stage(*args, inputs["labels"], [], CONFIG, "2d", out, work)
    assert not work.exists() and not out.exists()
