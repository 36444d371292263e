"""Real Snakemake runs of the workflow on a tiny synthetic dataset."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from tests.workflow.conftest import (
    REPO,
    TINY_CONFIG,
    snakemake,
    write_config,
    write_tiny_dataset,
)
from unet.io import ngff
from unet.segmentation.tune import GRID


def _jobs(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    stats = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


def test_lint(workdir: Path) -> None:
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_dry_run_lists_every_stage(workdir: Path) -> None:
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr
    assert _jobs(result.stdout) == {
        "ingest_raw": 1,
        "ingest_labels": 1,
        "weights": 1,
        "train": 1,
        "predict": 1,
        "segment": 1,
        "evaluate": 1,
        "scores": 1,
        "all": 1,
        "total": 9,
    }


@pytest.mark.parametrize(("cluster", "gpus"), [("local", "gpu=1"), ("slurm", "gpu=0")])
def test_predict_job_asks_for_a_gpu_unless_dask_jobqueue_does(
    tmp_path: Path, cluster: str, gpus: str
) -> None:
    """With predict.cluster: slurm the predict job only hosts the Dask scheduler."""
    write_config(tmp_path, predict={**TINY_CONFIG["predict"], "cluster": cluster})
    result = snakemake(tmp_path, "-n", "--until", "predict")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("rule predict:", 1)[1].split("\n\n", 1)[0]
    assert re.search(rf"resources: .*\b{gpus}\b", block), block


def test_unknown_config_key_fails_before_any_job(workdir: Path) -> None:
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["train"]["stpes"] = 10
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n")
    assert result.returncode != 0
    assert "'stpes' was unexpected" in result.stdout + result.stderr


def test_train_slices_without_labels_fail(tmp_path: Path) -> None:
    write_config(tmp_path)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["datasets"]["tiny"]["labels"] = None
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert "datasets.tiny.train_slices is set but the dataset has no labels" in (
        result.stdout + result.stderr
    )


def test_missing_raw_file_is_named(workdir: Path) -> None:
    (workdir / "data" / "raw.tif").unlink()
    result = snakemake(workdir, "-n")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"config: datasets.tiny.raw: {workdir}/data/raw.tif: no such file" in out


@pytest.mark.slow
def test_full_run_then_forcerun_predict(tmp_path: Path) -> None:
    """Every stage, segment_tune included (a fifth slice validates: val_slices 4), then a
    rerun of predict and what follows from it."""
    workdir = tmp_path
    write_config(workdir)
    write_tiny_dataset(workdir / "data", shape=(5, 96, 96))
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["datasets"]["tiny"]["val_slices"] = "4"
    cfg["segment"] = {"threshold": 0.55}  # not a grid value: the choice must replace it
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    res = workdir / "results" / "tiny"
    # segment used the settings segment_tune chose on slice 4, not the config's
    tuned = json.loads((res / "segment_settings.json").read_text())
    assert tuned["val_slices"] == [4] and set(tuned["chosen"]) == set(GRID)
    recorded = ngff.attributes(res / "segmentation.zarr")["config"]
    assert {k: recorded[k] for k in GRID} == tuned["chosen"] and recorded["threshold"] != 0.55
    assert not (workdir / "work" / "tiny" / "segment_tune").exists()
    scores = json.loads((res / "evaluation.json").read_text())
    for key in ("pixel_error", "rand_error", "warping_error", "iou", "v_rand", "v_info"):
        assert 0.0 <= scores[key] <= 1.0, (key, scores)
    pred = ngff.open_array(res / "prediction.zarr")
    assert pred.shape == (2, 96, 96) and pred.dtype.name == "uint8"  # predict_slices 2-3
    assert ngff.is_volume(res / "prediction.zarr")
    assert (res / "overlay.png").stat().st_size > 0 and (res / "report.html").stat().st_size > 0
    assert (res / "model" / "curve.png").exists()
    assert "| tiny |" in (workdir / "results" / "scores.md").read_text()
    assert (workdir / "logs" / "train" / "tiny.log").exists()

    before = {
        p: p.stat().st_mtime_ns
        for p in (res / "model" / "model.pt", workdir / "work" / "tiny" / "weights.zarr")
    }
    rerun = snakemake(workdir, "--cores", "2", "--forcerun", "predict")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert _jobs(rerun.stderr) == {
        "predict": 1,
        "segment": 1,
        "evaluate": 1,
        "scores": 1,
        "all": 1,
        "total": 5,
    }
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    assert json.loads((res / "evaluation.json").read_text())["pixel_error"] == scores["pixel_error"]

    nothing = snakemake(workdir, "--cores", "2")
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.stderr

    report = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "curve.png" in (workdir / "report.html").read_text()


@pytest.mark.slow
def test_bad_labels_fail_with_one_clear_message(tmp_path: Path) -> None:
    import numpy as np
    import tifffile

    write_config(tmp_path)
    labels = tifffile.imread(tmp_path / "data" / "labels.tif")
    tifffile.imwrite(
        tmp_path / "data" / "labels.tif",
        (labels // 64).astype(np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None],
        photometric="minisblack",
    )
    result = snakemake(tmp_path, "--cores", "1", "--until", "ingest_labels")
    assert result.returncode != 0
    log = (tmp_path / "logs" / "ingest_labels" / "tiny.log").read_text()
    assert "labels.tif" in log and "a binary mask holds at most two values" in log
    assert "Traceback" not in log
    assert not (tmp_path / "work" / "tiny" / "labels.zarr").exists()
    assert not (tmp_path / "work" / "tiny" / "labels.zarr.partial").exists()


@pytest.mark.parametrize("name", ["config.yaml", "isbi2012-paper.yaml", "isbi2012-cpu.yaml"])
def test_shipped_configs_are_valid(tmp_path: Path, name: str) -> None:
    """The shipped demo config passes the schema and plans every stage (dry run in a scratch
    directory that sees the repo's data, so a demo run in the repo root cannot interfere)."""
    (tmp_path / "data").symlink_to(REPO / "data")
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("snakemake")
    run = subprocess.run(
        [
            str(exe),
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / name),
            "-n",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert _jobs(run.stdout)["train"] == 1 and "isbi2012" in run.stdout


@pytest.mark.slow
def test_sharded_prediction_equals_single_job(tmp_path: Path) -> None:
    """predict.shards = 3 and segment.shards = 2: prepare, shard jobs, finalize of each stage;
    the same prediction and labels as one job each."""
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    write_config(single)
    write_config(sharded)
    cfg = yaml.safe_load((sharded / "config.yaml").read_text())
    cfg["predict"]["shards"] = 3
    cfg["segment"] = {**cfg.get("segment", {}), "shards": 2}
    (sharded / "config.yaml").write_text(yaml.safe_dump(cfg))
    for folder in (single, sharded):
        target = str(folder / "results" / "tiny" / "segmentation.zarr")
        result = snakemake(folder, "--cores", "2", target)
        assert result.returncode == 0, result.stderr[-4000:]
    jobs = _jobs(snakemake(sharded, "-n", "--forcerun", "predict_prepare").stdout)
    assert jobs["predict_prepare"] == 1 and jobs["predict_shard"] == 3
    assert jobs["predict_finalize"] == 1 and "predict" not in jobs
    assert jobs["segment_shard"] == 2 and jobs["segment_finalize"] == 1
    for name in ("prediction.zarr", "segmentation.zarr"):
        a = ngff.open_array(single / "results" / "tiny" / name)[:]
        b = ngff.open_array(sharded / "results" / "tiny" / name)[:]
        assert (a == b).all(), name
    assert len(list((sharded / "work" / "tiny" / "predict").glob("shard-*.json"))) == 3
    assert len(list((sharded / "work" / "tiny" / "segment").glob("shard-*.json"))) == 2


def test_what_follows_from_the_input_shapes_fails_the_dry_run(tmp_path: Path) -> None:
    """Issue 14: a volume smaller than the net's context, an output tile the net cannot produce,
    a block off the 2^depth grid and eval slices outside the volume stop `snakemake -n` before
    any job, in one line naming the dataset, the key and the value."""
    from tests.workflow.conftest import write_tiny_dataset

    cases = [
        (
            {"overrides": {"train": {"output_tile": [47, 47]}}},
            "config: datasets.tiny.overrides."
            "train.output_tile: output 47x47 is not reachable: valid outputs are 48 - 4 * k",
        ),
        (
            {"overrides": {"predict": {"block_shape": [1, 42, 42], "chunks": [1, 42, 42]}}},
            "config: datasets.tiny.overrides.predict.block_shape: block shape (1, 42, 42) must "
            "be a multiple of the net's down-sampling factor (1, 4, 4)",
        ),
        (
            {"eval_slices": "7"},
            "config: datasets.tiny.eval_slices: slice 7 in '7' is outside the volume of 4 slices",
        ),
    ]
    for change, message in cases:
        write_config(tmp_path)
        cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
        cfg["datasets"]["tiny"].update(change)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
        result = snakemake(tmp_path, "-n")
        assert result.returncode != 0 and message in result.stdout + result.stderr, change

    write_config(tmp_path)
    write_tiny_dataset(tmp_path / "data", shape=(4, 30, 30))  # context of depth 2 is 40
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["weights"]["block"] = cfg["ingest"]["chunks"] = [1, 30, 30]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert (
        f"config: datasets.tiny.raw {tmp_path}/data/raw.tif of shape (4, 30, 30) is smaller "
        "than the network context 40 along axis y"
    ) in result.stdout + result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "logs").exists()


def test_segment_shards_plan_separate_jobs(tmp_path: Path) -> None:
    """segment.shards = 3: one prepare job, three shard jobs, one finalize job, and the
    segment_<ds> target still names the label image (tests/segmentation/test_shards.py checks
    that the jobs' labels equal one job's)."""
    write_config(tmp_path)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["segment"] = {**cfg.get("segment", {}), "shards": 3}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(result.stdout)
    assert jobs["segment_prepare"] == 1 and jobs["segment_shard"] == 3
    assert jobs["segment_finalize"] == 1 and "segment" not in jobs
    target = snakemake(tmp_path, "-n", "segment_tiny")
    assert target.returncode == 0 and "segment_finalize" in target.stdout
    cfg["datasets"]["tiny"]["overrides"] = {"segment": {"shards": 2}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    refused = snakemake(tmp_path, "-n")
    assert refused.returncode != 0
    assert "segment.shards cannot differ per dataset" in refused.stdout + refused.stderr
