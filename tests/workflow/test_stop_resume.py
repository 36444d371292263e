"""Stopping a local run with Ctrl-C (SIGINT to Snakemake's process group, as a terminal sends it)
and starting it again: training resumes from its state file, prediction from its done markers.

The kill -> resume equivalence itself is tested below the workflow (tests/training/test_state.py:
identical weights; tests/prediction/test_kill.py: identical output, no block computed twice); here
the workflow must keep what those need across a stopped run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.workflow.conftest import (
    REPO,
    SNAKEFILE,
    SNAKEMAKE,
    snakemake,
    write_config,
    write_tiny_dataset,
)
from unet.cluster import blockstate


def _done_blocks(partial: Path) -> int:
    try:
        markers = blockstate.open_markers(partial, "r")
        return int(blockstate.count(blockstate.read_states(markers, 0, markers.size))["done"])
    except Exception:  # not created yet, or being created
        return 0


def _run_until(workdir: Path, ready: Callable[[], bool], timeout: float = 300) -> int:
    """Start the workflow, press Ctrl-C once ``ready()``, return Snakemake's exit status."""
    with (workdir / "snakemake.out").open("a") as out:
        proc = subprocess.Popen(
            [
                str(SNAKEMAKE),
                "-s",
                str(SNAKEFILE),
                "--directory",
                str(workdir),
                "--configfile",
                str(workdir / "config.yaml"),
                "--cores",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
            # a terminal's foreground job takes SIGINT; a test run from a background shell
            # inherits it ignored, so set it back
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be stopped"
        os.killpg(proc.pid, signal.SIGINT)  # our own child's process group, as Ctrl-C
        return proc.wait(timeout=120)


@pytest.mark.slow
def test_ctrl_c_then_rerun_resumes_training_and_prediction(tmp_path: Path) -> None:
    write_config(tmp_path)
    write_tiny_dataset(tmp_path / "data", shape=(6, 192, 192))
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["datasets"]["tiny"].update(train_slices="0-3", eval_slices="5", predict_slices="all")
    cfg["train"].update(steps=300, checkpoint_every=5, val_every=0)
    cfg["predict"].update(block_shape=[1, 16, 16], chunks=[1, 16, 16])  # 864 blocks
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    state = tmp_path / "work" / "tiny" / "train_state.pt"
    model = tmp_path / "results" / "tiny" / "model" / "model.pt"
    final = tmp_path / "results" / "tiny" / "prediction.zarr"
    partial = final.with_name("prediction.zarr.partial")

    assert _run_until(tmp_path, state.exists) != 0
    assert state.exists() and not model.exists()

    assert _run_until(tmp_path, lambda: _done_blocks(partial) >= 20) != 0
    assert model.exists() and not final.exists() and _done_blocks(partial) >= 20

    result = snakemake(tmp_path, "--cores", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train_log = (tmp_path / "logs" / "train" / "tiny.log").read_text()
    # (Snakemake starts a job's log afresh, so these are the lines of the resumed job)
    resumed = [int(m) for m in re.findall(r"'resumed_from': (\d+)", train_log)]
    assert resumed and resumed[-1] >= 5, train_log[-2000:]  # from its state, not from step 0
    predict_log = (tmp_path / "logs" / "predict" / "tiny.log").read_text()
    done_before = [int(m) for m in re.findall(r": (\d+) done, \d+ to compute", predict_log)]
    assert done_before and done_before[-1] >= 20, predict_log[-2000:]  # from its markers
    assert (tmp_path / "results" / "tiny" / "evaluation.json").exists() and not partial.exists()
