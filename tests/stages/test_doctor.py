"""The doctor report: versions, measured rates and runtime estimates, on the CPU."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tests.training.test_loop import TINY, TINY_3D, one_thread  # noqa: F401
from unet.stages.doctor import MARGIN, OVERHEAD_MINUTES, doctor, report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("config", "block"),
    [(replace(TINY, workers=2), None), (replace(TINY_3D, augment=None), (16, 16, 16))],
)
def test_doctor_measures_and_estimates(config, block) -> None:
    result = doctor(config, predict_block=block, volumes={"stack": 10**6}, seconds=0.3)
    env, tr, pr = result["environment"], result["train"], result["predict"]
    assert env["device"] == "cpu" and env["gpu"] is None and env["torch"]
    assert tr["input_tile"] == list(config.input_tile) and tr["device_steps_per_s"] > 0
    assert 0 < tr["expected_steps_per_s"] <= tr["device_steps_per_s"]
    if config.augment is None:
        assert math.isinf(tr["augment_samples_per_s_per_worker"])
    assert pr["block"] == ([1, 8, 8] if block is None else list(block))
    assert pr["output_mvox_per_s"] > 0 and result["model"]["parameters"] > 0
    train_est = result["estimates"]["train"]
    assert train_est["seconds"] == pytest.approx(config.steps / tr["expected_steps_per_s"])
    assert train_est["runtime_minutes"] == (
        math.ceil(train_est["seconds"] * MARGIN / 60) + OVERHEAD_MINUTES
    )
    stack = result["estimates"]["predict stack"]["seconds"]
    assert stack == pytest.approx(1.0 / pr["output_mvox_per_s"])
    text = report(result)
    assert "torch" in text and "steps/s" in text and "Mvox/s" in text
    assert "predict stack:" in text and "device: cpu" in text


def test_doctor_rejects_an_unaligned_block() -> None:
    with pytest.raises(ValueError, match="block shape .* must be a multiple"):
        doctor(TINY, predict_block=(1, 9, 9), seconds=0.1)
