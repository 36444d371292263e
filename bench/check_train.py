"""Step 2 of ``bench/gpu_check.py``: the paper-size training for a fixed wall time, then the
held-out slices predicted and scored, through the package's own stage functions.

This module is the adapter between the check and the pipeline: the settings are the schema's
defaults (``workflow/schemas/config.schema.yaml``) with ``config/isbi2012-paper.yaml`` merged
over them, each section filtered to the fields its dataclass has, so that keys added to the
schema later do not break the check (and no jsonschema is needed on the GPU node).  The split
is the dataset's: ``train_slices``, ``val_slices`` (the validation curve; ``eval_slices``
where the dataset names none) and ``test_slices`` (scored; ``eval_slices`` where it names none;
the smoke test scores one slice).

The fixed wall time: a short calibration run measures steps per second (start-up and cuDNN
tuning excluded), then the real run trains ``rate * seconds`` steps with the config's schedule
over exactly those steps.  Time to accuracy comes from the validation curve
(:func:`unet.training.curves.time_to_error`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from unet.evaluation.evaluate import EvaluateConfig
from unet.io.ingest import IngestConfig, ingest
from unet.io.slices import slice_range
from unet.prediction.run import PredictConfig, predict_volume
from unet.stages.pipeline import WeightsConfig, evaluate_stage, weights_stage
from unet.training.config import TrainConfig
from unet.training.curves import time_to_error

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.10, 0.08, 0.07, 0.06)
Record = Callable[[str, Any], None]


SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def schema_defaults(path: Path = SCHEMA) -> dict[str, Any]:
    """The ``default`` of every key of every object-valued section of the config schema."""
    props = yaml.safe_load(path.read_text())["properties"]
    return {
        name: {k: v["default"] for k, v in prop["properties"].items() if "default" in v}
        for name, prop in props.items()
        if prop.get("type") == "object" and "properties" in prop
    }


def merged_config(*paths: Path, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Later files' sections update earlier ones (and ``base``) key by key, one level deep."""
    merged: dict[str, Any] = dict(base or {})
    for path in paths:
        for name, section in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(section, Mapping) and isinstance(merged.get(name), Mapping):
                merged[name] = {**merged[name], **section}
            else:
                merged[name] = section
    return merged


def known(cls: type, section: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``section`` that are fields of dataclass ``cls``, lists made tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items() if k in names}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        return [
            {k: float(v) if v not in ("", None) else None for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def train_and_score(work: Path, opts: dict[str, Any], record: Record) -> None:
    """``opts``: config (paths), seconds (training wall time), calibration_steps, validations
    (points on the validation curve), overrides
    (``model`` / ``train`` / ``predict`` keys that win over the config: the smoke's tiny net)."""
    from unet.training.loop import train

    cfg = merged_config(*[ROOT / p for p in opts["config"]], base=schema_defaults())
    for name, section in opts.get("overrides", {}).items():
        cfg[name] = {**cfg.get(name, {}), **section}
    ds_name, ds = next(iter(cfg["datasets"].items()))
    train_spec = ds.get("train_slices")
    val_spec = ds.get("val_slices") or ds.get("eval_slices")
    test_spec = opts.get("test_slices") or ds.get("test_slices") or ds.get("eval_slices")
    record("split", {"dataset": ds_name, "train": train_spec, "val": val_spec, "test": test_spec})

    start = time.perf_counter()
    voxel = tuple(ds.get("voxel_size", (1.0, 1.0, 1.0)))
    chunks = tuple(cfg.get("ingest", {}).get("chunks") or (1, 512, 512))
    raw, labels, weights = work / "raw.zarr", work / "labels.zarr", work / "weights.zarr"
    ingest(ROOT / ds["raw"], raw, IngestConfig(kind="raw", voxel_size=voxel, chunks=chunks))
    kind = ds.get("labels_format", "binary")
    ingest(ROOT / ds["labels"], labels, IngestConfig(kind=kind, voxel_size=voxel, chunks=chunks))
    weights_stage(labels, weights, WeightsConfig(**known(WeightsConfig, cfg.get("weights", {}))))
    record("prepare_seconds", time.perf_counter() - start)

    fields = {**known(TrainConfig, cfg["model"]), **known(TrainConfig, cfg["train"])}
    fields.update(train_slices=train_spec, val_slices=val_spec or ())
    cal = TrainConfig(
        **{**fields, "steps": opts["calibration_steps"], "val_slices": (), "val_every": 0}
    )
    start = time.perf_counter()
    summary = train(raw, labels, weights, work / "cal", work / "cal.pt", cal)
    rate = cal.steps / summary["seconds"]
    steps = max(1, int(rate * opts["seconds"]))
    record(
        "calibration",
        {
            "steps": cal.steps,
            "train_seconds": summary["seconds"],
            "steps_per_s": rate,
            "wall_seconds": time.perf_counter() - start,
        },
    )
    shutil.rmtree(work / "cal", ignore_errors=True)
    val_every = max(1, steps // opts["validations"])  # the curve: that many points
    config = TrainConfig(**{**fields, "steps": steps, "val_every": val_every})
    start = time.perf_counter()
    summary = train(raw, labels, weights, work / "model", work / "state.pt", config)
    rows = read_metrics(work / "model" / "metrics.csv")
    curve = [
        {"step": int(r["step"]), "seconds": r["seconds"], "val_pixel_error": r["val_pixel_error"]}
        for r in rows
        if r.get("val_pixel_error") is not None
    ]
    record(
        "training",
        {
            "steps": steps,
            "target_seconds": opts["seconds"],
            "train_seconds": summary["seconds"],
            "wall_seconds": time.perf_counter() - start,
            "steps_per_s": steps / summary["seconds"],
            "final_loss": summary["loss"],
            "val_pixel_error": summary["val_pixel_error"],
            "seconds_to_val_pixel_error": {f"{t:g}": time_to_error(rows, t) for t in THRESHOLDS},
            "validation_curve": curve,
            "settings": {k: v for k, v in dataclasses.asdict(config).items() if k != "augment"},
        },
    )

    section = {**cfg.get("predict", {}), "cluster": "none", "pyramid_levels": 1}
    n_slices = ngff_slices(raw)
    z_range = slice_range(test_spec, n_slices, "test slices")
    start = time.perf_counter()
    predict_volume(
        work / "model" / "model.pt",
        raw,
        work / "pred.zarr",
        PredictConfig(**known(PredictConfig, section)),
        z_range=z_range,
    )
    record("test", {"slices": test_spec, "predict_seconds": time.perf_counter() - start})
    evaluate = known(EvaluateConfig, cfg.get("evaluate", {}))
    (work / "score.json").write_text(
        json.dumps({"evaluate": evaluate, "slices": test_spec, "dataset": ds_name})
    )
    record("test/scores_without_warping", score(work, {"warping": False}))


def score(work: Path, evaluate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score the test slices that :func:`train_and_score` predicted into ``work`` with
    :func:`unet.stages.pipeline.evaluate_stage` (the challenge's definitions); ``evaluate`` updates
    the run's own settings (the warping error included: minutes of CPU time, so the check
    runs it as its own last step, after the GPU figures)."""
    run = json.loads((work / "score.json").read_text())
    start = time.perf_counter()
    for name in ("scores.json", "overlay.png", "report.html"):
        (work / name).unlink(missing_ok=True)
    scores = evaluate_stage(
        work / "pred.zarr",
        work / "labels.zarr",
        work / "raw.zarr",
        work / "scores.json",
        work / "overlay.png",
        work / "report.html",
        EvaluateConfig(**{**run["evaluate"], **(evaluate or {})}),
        run["slices"],
        run["dataset"],
    )
    return {"seconds": time.perf_counter() - start, **scores}


def ngff_slices(path: Path) -> int:
    from unet.io import ngff

    return int(ngff.open_array(path).shape[0])
