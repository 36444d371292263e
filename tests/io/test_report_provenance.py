"""Every report says what made it: the model's checksum, the settings and the versions."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import tifffile

from unet.evaluation.evaluate import EvaluateConfig
from unet.io import ngff, provenance
from unet.io.ingest import IngestConfig, ingest
from unet.stages.pipeline import evaluate_stage, scores_table


def test_doctests() -> None:
    assert doctest.testmod(provenance).failed == 0


def test_evaluate_reports_carry_provenance(tmp_path: Path, cells: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "lab.tif", cells, photometric="minisblack")
    ingest(tmp_path / "lab.tif", tmp_path / "lab.zarr", IngestConfig(kind="binary"))
    checksum = "0123456789ab" + "c" * 52
    attrs = {
        "stage": "predict",
        "model": "m.pt",
        "model_checksum": checksum,
        "config": {"tile_shape": [1, 64, 64]},
        "z_range": [0, 3],
    }
    pred = ngff.create(
        tmp_path / "p.zarr", cells.shape, np.uint8, (1, 64, 64), (1, 1, 1), attrs=attrs
    )
    pred[:] = cells
    scores = evaluate_stage(
        tmp_path / "p.zarr",
        tmp_path / "lab.zarr",
        None,
        tmp_path / "s.json",
        tmp_path / "o.png",
        tmp_path / "r.html",
        EvaluateConfig(warping=False),
        "1",
        "demo",
    )
    stored = json.loads((tmp_path / "s.json").read_text())["provenance"]
    assert stored == json.loads(json.dumps(scores["provenance"]))
    assert stored["model_checksum"] == checksum and stored["model"] == "m.pt"
    assert stored["predict_config"] == {"tile_shape": [1, 64, 64]}
    assert stored["evaluate_config"]["warping"] is False
    assert {"python", "torch", "numpy", "zarr"} <= set(stored["libraries"])
    assert stored["package_version"] and stored["predicted_with"]
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Provenance</h2>" in page and checksum in page
    table = scores_table([tmp_path / "s.json"])
    assert "- demo: model sha256 0123456789ab, unet-em " in table
    assert f"torch {stored['libraries']['torch']}" in table
