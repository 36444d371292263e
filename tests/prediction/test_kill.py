"""A run killed with SIGKILL at random points, then resumed, gives the uninterrupted output, and
no block is computed again once its done marker was written."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from unet.checkpoint import save_model
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume

CONFIG = {
    "block_shape": (1, 32, 32),
    "chunks": (1, 32, 32),
    "cluster": "none",
    "device": "cpu",
    "output_dtype": "uint8",
}

SCRIPT = f"""
import logging, sys
from unet.prediction.run import PredictConfig, predict_volume
handler = logging.FileHandler(sys.argv[4])
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("unet.prediction.run")
log.addHandler(handler)
log.setLevel(logging.DEBUG)
predict_volume(sys.argv[1], sys.argv[2], sys.argv[3], PredictConfig(**{CONFIG!r}))
"""


@pytest.fixture(autouse=True)
def _keep_torch_threads():  # type: ignore[no-untyped-def]
    """In-process runs set torch's thread count for this process; restore it afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _history(log_file: Path) -> dict[int, list[str]]:
    """Per block, its 'start' / 'done' events in order (a line cut by the kill is ignored)."""
    events: dict[int, list[str]] = defaultdict(list)
    for line in log_file.read_text().splitlines():
        match = re.fullmatch(r"block (\d+): (start|done)", line)
        if match:
            events[int(match[1])].append(match[2])
    return events


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_model(tmp_path / "m.pt", UNet(base_channels=4, depth=2, dropout=0.0))
    data = np.random.default_rng(0).integers(0, 256, (40, 128, 128), dtype=np.uint8)
    ngff.create(tmp_path / "raw.zarr", data.shape, np.uint8, (1, 64, 64), (1, 1, 1))[:] = data
    predict_volume(
        tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "ref.zarr", PredictConfig(**CONFIG)
    )  # type: ignore[arg-type]
    (tmp_path / "run.py").write_text(SCRIPT)
    log_file, out = tmp_path / "blocks.log", tmp_path / "out.zarr"
    args = [
        sys.executable,
        str(tmp_path / "run.py"),
        str(tmp_path / "m.pt"),
        str(tmp_path / "raw.zarr"),
        str(out),
        str(log_file),
    ]
    rng, killed = random.Random(0), 0
    for target in sorted(rng.sample(range(20, 600), 4)):  # kill after ~target blocks are done
        proc = subprocess.Popen(args, start_new_session=True, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (
            not log_file.exists() or log_file.read_text().count(": done") < target
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.02))  # anywhere inside a block: read, forward, write, mark
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
            killed += 1
        proc.wait()
    assert killed >= 3 and not out.exists()
    done_before = sum("done" in ev for ev in _history(log_file).values())
    assert 20 < done_before < 40 * 16
    final = subprocess.run(args, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-4000:]
    history = _history(log_file)
    assert sorted(history) == list(range(40 * 16))
    recomputed = sum(events.count("start") > 1 for events in history.values())
    print(
        f"{killed} SIGKILLs, {done_before} blocks done before the final run, "
        f"{recomputed} blocks started twice (killed before their marker)"
    )
    for block, events in history.items():
        # no 'done' line: killed between writing the marker and logging, never started again
        if "done" in events:
            later = events[events.index("done") :]
            assert "start" not in later, f"block {block} recomputed after its marker"
    np.testing.assert_array_equal(
        ngff.open_array(out)[:], ngff.open_array(tmp_path / "ref.zarr")[:]
    )
