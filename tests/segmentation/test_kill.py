"""A segmentation killed with SIGKILL at random points, in any of its passes, then resumed,
gives exactly the labels of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.segmentation.test_run import membrane_probability, voronoi_cells, write
from unet.cluster import blockstate
from unet.io import ngff
from unet.io.outputs import partial_path
from unet.segmentation.blocks import PASSES, step_path
from unet.segmentation.run import SegmentConfig, segment_volume

CONFIG = {
    "mode": "2d",
    "block_shape": (1, 8, 8),
    "chunks": (1, 8, 8),
    "halo": 16,
    "seed_distance": 3.0,
    "merge_threshold": 0.3,
    "pyramid_levels": 2,
}

SHAPE = (4, 48, 48)
N_BLOCKS = 4 * 6 * 6

SCRIPT = f"""
import sys
from unet.segmentation.run import SegmentConfig, segment_volume
segment_volume(sys.argv[1], sys.argv[2], SegmentConfig(**{CONFIG!r}))
"""


def _passes_done(out: Path) -> list[int]:
    """Blocks done per pass in the partial output (empty if there is none yet)."""
    partial = partial_path(out)
    if blockstate.stored_layout(step_path(str(partial), PASSES[-1])) is None:
        return []
    return [
        blockstate.count(
            blockstate.read_states(
                blockstate.open_markers(step_path(str(partial), step), "r"), 0, N_BLOCKS
            )
        )["done"]
        for step in PASSES
    ]


def _progress(out: Path) -> list[int] | None:
    """:func:`_passes_done`, or None while a marker is being written (unreadable)."""
    try:
        done = _passes_done(out)
    except Exception:
        return None
    return done or None


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    truth = voronoi_cells(SHAPE, 9, seed=1)
    pred = write(tmp_path / "p.zarr", membrane_probability(truth, gap=True), (1, 8, 8))
    segment_volume(pred, tmp_path / "ref.zarr", SegmentConfig(**CONFIG))  # type: ignore[arg-type]
    (tmp_path / "run.py").write_text(SCRIPT)
    out = tmp_path / "out.zarr"
    args = [sys.executable, str(tmp_path / "run.py"), str(pred), str(out)]
    rng, seen = random.Random(0), []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    # kill until one kill landed after the fragments pass (each run resumes where the last
    # one was killed, so later kills reach later passes)
    while len(seen) < 20 and not (len(seen) >= 3 and seen[-1] and seen[-1][0] == N_BLOCKS):
        before = seen[-1] if seen else []
        proc = subprocess.Popen(args, start_new_session=True, stderr=subprocess.DEVNULL, env=env)
        # kill once this run has made progress, a random moment later: on a fast machine as on
        # a slow one, every kill then lands inside the work (not before it, nor after the end)
        while proc.poll() is None and _progress(out) in (before, None):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # finished before the kill
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
        proc.wait()
        seen.append(_passes_done(out))
    print("blocks done per pass at each kill:", seen)
    assert len(seen) >= 3 and not out.exists()
    passes = {sum(n == N_BLOCKS for n in done) for done in seen if done}
    assert len(passes) >= 2  # killed in different passes
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL, env=env)
    np.testing.assert_array_equal(
        ngff.open_array(out)[:], ngff.open_array(tmp_path / "ref.zarr")[:]
    )
    np.testing.assert_array_equal(
        ngff.open_array(out, 1)[:], ngff.open_array(tmp_path / "ref.zarr", 1)[:]
    )
