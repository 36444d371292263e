"""A full disk during prediction: the failed block is reported (index, box, file, errno) even
when its failed marker cannot be written either, in one log line without a traceback, and a
rerun with space again finishes with the same output as an undisturbed run."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr

from unet.checkpoint import save_model
from unet.cluster import blockstate
from unet.io import ngff, outputs
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume, prepare_output, run_shard
from unet.stages import runner as stage

CONFIG = PredictConfig(
    cluster="none",
    device="cpu",
    output_dtype="float32",
    block_shape=(1, 16, 16),
    chunks=(1, 16, 16),
    max_in_flight=1,  # one block at a time: exactly one fails before the run stops
)


pytestmark = pytest.mark.usefixtures("restore_root_logger")


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A tiny model, a (2, 32, 32) raw volume, and the undisturbed prediction of it."""
    torch.manual_seed(1)
    save_model(tmp_path / "m.pt", UNet(base_channels=3, depth=1, ndim=2, dropout=0.0).eval())
    data = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    ngff.create(tmp_path / "raw.zarr", data.shape, np.uint8, (1, 16, 16), (30.0, 4.0, 4.0))[:] = (
        data
    )
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "ref.zarr", CONFIG)
    return (
        tmp_path / "m.pt",
        tmp_path / "raw.zarr",
        np.asarray(ngff.open_array(tmp_path / "ref.zarr")[:]),
    )


def _no_space(self: zarr.Array, sel: Any, value: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")  # a full disk's write() names no file


def _run_stage(model: Path, raw: Path, out: Path, config: PredictConfig, log: Path) -> str:
    with pytest.raises(SystemExit) as exit_:
        stage.run("predict", run_shard, model, raw, out, config, log_file=log)
    assert exit_.value.code == stage.EXIT_FAILED
    return log.read_text()


@pytest.mark.parametrize("cluster", ["none", "local"])  # local: the error crosses Dask
def test_full_disk_reports_the_block_even_when_its_marker_cannot_be_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inputs: tuple[Path, Path, np.ndarray],
    cluster: str,
) -> None:
    model, raw, reference = inputs
    config = PredictConfig(**{**CONFIG.record(), "cluster": cluster, "processes": False})
    out = tmp_path / "o.zarr"
    partial = outputs.partial_path(out)
    prepare_output(model, raw, out, config)
    monkeypatch.setattr(zarr.Array, "__setitem__", _no_space)  # data and markers alike
    with pytest.raises(blockstate.BlockError, match=r"\[Errno 28\] No space left") as err:
        run_shard(model, raw, out, config)
    assert err.value.failed == [0]
    text = _run_stage(model, raw, out, config, tmp_path / "predict.log")
    assert (
        f"block 0 (z 0:1, y 0:16, x 0:16): OSError: [Errno 28] No space left on device: "
        f"'{partial}/0'; its failed marker was not written either: [Errno 28] No space left on "
        f"device: '{partial}/{blockstate.MARKERS}/c/0/0/0'"
    ) in text
    assert (
        f"ERROR unet.predict: predict: {partial}: 1 block(s) failed (first: [0]); "
        "7 not started; rerun to resume. First failure: block 0 (z 0:1, y 0:16, x 0:16): "
        "OSError: [Errno 28]"
    ) in text  # the stage's one closing line
    # (Dask's worker logs its own "Compute Failed" record, with the task's frames)
    assert "Traceback (most recent call last)" not in text and "internal error" not in text
    monkeypatch.undo()
    states = blockstate.read_states(blockstate.open_markers(partial), 0, 8)
    assert states.tolist() == [0] * 8  # unmarked: the rerun computes it again
    summary = predict_volume(model, raw, out, config)
    assert summary["computed"] == 8
    np.testing.assert_array_equal(ngff.open_array(out)[:], reference)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB tmpfs (needs root and a sandbox that allows mounts; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (FileNotFoundError, PermissionError) as err:
        pytest.skip(f"cannot mount a tmpfs: {err}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=30)


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder/filler`` until the file system is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(65536))
        except OSError as err:
            assert err.errno == errno.ENOSPC
    with open(filler, "ab", buffering=0) as f, pytest.raises(OSError):
        f.write(bytes(4096))  # really full: not even one more page
    return filler


def test_a_really_full_disk_loses_no_block(
    tmp_path: Path, small_disk: Path, inputs: tuple[Path, Path, np.ndarray]
) -> None:
    model, raw, reference = inputs
    out = small_disk / "o.zarr"
    partial = outputs.partial_path(out)
    prepare_output(model, raw, out, CONFIG)
    filler = _fill(small_disk)
    text = _run_stage(model, raw, out, CONFIG, tmp_path / "predict.log")
    assert "block 0 (z 0:1, y 0:16, x 0:16): OSError: [Errno 28] No space left on device: " in text
    assert f"'{partial}/0'" in text  # the array the block's data goes to
    assert "its failed marker was not written either: [Errno 28]" in text
    assert f"'{partial}/{blockstate.MARKERS}/c/0/0/0'" in text
    assert "rerun to resume. First failure: block 0" in text
    assert "Traceback (most recent call last)" not in text
    filler.unlink()
    summary = predict_volume(model, raw, out, CONFIG)
    assert summary["computed"] == 8 and summary["skipped"] == 0
    np.testing.assert_array_equal(ngff.open_array(out)[:], reference)
