"""Walltime safety: a run interrupted by a signal or a crash resumes to the same final weights,
and foreign or corrupt state files are refused with a clear error."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_loop import TINY, TINY_3D, one_thread, read_csv, write_volumes  # noqa: F401
from unet.checkpoint import read, save_model
from unet.io.ngff import open_array
from unet.model import UNet
from unet.stages import runner as stage
from unet.training.loop import train
from unet.training.state import (
    EXIT_PREEMPTED,
    Preempted,
    PreemptionSignals,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def same_run(a: Path, b: Path) -> None:
    """Two finished runs have identical weights and metrics (except the timings)."""
    wa, wb = read(a / "model.pt")["state_dict"], read(b / "model.pt")["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_csv(a / "metrics.csv")) == strip(read_csv(b / "metrics.csv"))


class Interrupting:
    """A (z, y, x) array that interrupts training on its ``at``-th read: by sending this process
    a real SIGTERM (while the next batch is being loaded), or by crashing (a hard kill)."""

    def __init__(self, array: np.ndarray, at: int, how: str) -> None:
        self.array, self.at, self.how, self.reads = array, at, how, 0
        self.shape = array.shape

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.at and self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        if self.reads == self.at and self.how == "crash":
            raise MemoryError("node failure")
        return self.array[index]


@pytest.mark.parametrize(
    ("config", "stop"),
    [
        (replace(TINY, val_slices=(5,), val_every=2), 3),
        (replace(TINY, val_slices=(5,), val_every=2), 4),
        (TINY_3D, 2),
    ],
)
def test_resume_after_signal_gives_identical_weights(tmp_path, config, stop) -> None:
    shape = (6, 32, 32) if config.ndim == 2 else (20, 24, 24)
    paths = write_volumes(tmp_path, shape)
    train(*paths, tmp_path / "a", tmp_path / "a.state", config)
    with pytest.raises(Preempted, match=f"SIGUSR1 received: training state at step {stop}") as err:
        train(*paths, tmp_path / "b", tmp_path / "b.state", config, stop_after=stop)
    assert isinstance(err.value, stage.Preempted)  # stage.run exits with status 75
    assert err.value.exit_code == EXIT_PREEMPTED == 75 and err.value.step == stop
    assert (tmp_path / "b.state").exists() and not (tmp_path / "b").exists()
    # progress visible meanwhile, in the partial output only
    assert len(read_csv(tmp_path / "b.partial" / "metrics.csv")) == stop
    result = train(*paths, tmp_path / "b", tmp_path / "b.state", config)
    assert result["resumed_from"] == stop and result["steps"] == config.steps
    same_run(tmp_path / "a", tmp_path / "b")
    assert not (tmp_path / "b.state").exists()


@pytest.mark.parametrize("how", ["sigterm", "crash"])
def test_resume_after_sigterm_or_crash_gives_identical_weights(tmp_path, how) -> None:
    paths = write_volumes(tmp_path)
    raw = open_array(paths[0])[...]
    config = replace(TINY, checkpoint_every=2, steps=7)
    train(raw, *paths[1:], tmp_path / "a", tmp_path / "a.state", config)
    # one read per sample: read 5 happens while loading step 5 (state saved after step 4)
    if how == "sigterm":
        with pytest.raises(Preempted, match="SIGTERM received: .* at step 5"):
            train(
                Interrupting(raw, 5, how), *paths[1:], tmp_path / "b", tmp_path / "b.state", config
            )
    else:
        with pytest.raises(MemoryError):
            train(
                Interrupting(raw, 5, how), *paths[1:], tmp_path / "b", tmp_path / "b.state", config
            )
    step = torch.load(tmp_path / "b.state", weights_only=True)["step"]
    assert step == (5 if how == "sigterm" else 4)
    assert (
        train(raw, *paths[1:], tmp_path / "b", tmp_path / "b.state", config)["resumed_from"] == step
    )
    same_run(tmp_path / "a", tmp_path / "b")


def test_runtime_settings_may_change_on_resume(tmp_path) -> None:
    paths = write_volumes(tmp_path)
    with pytest.raises(Preempted):
        train(*paths, tmp_path / "b", tmp_path / "s", TINY, stop_after=2)
    changed = replace(TINY, log_every=1, checkpoint_every=5, channels_last=False)
    assert train(*paths, tmp_path / "b", tmp_path / "s", changed)["resumed_from"] == 2


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"base_channels": 3}, r"arch.base_channels: state has 2, this run has 3"),
        ({"lr": 0.02}, r"config.lr: state has 0.01, this run has 0.02"),
        ({"augment": None}, r"config.augment: state has \{.*\}, this run has None"),
    ],
)
def test_state_of_another_run_is_refused(tmp_path, change, match) -> None:
    paths = write_volumes(tmp_path)
    with pytest.raises(Preempted):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", TINY, stop_after=1)
    with pytest.raises(
        ValueError, match=r"s.pt: training state belongs to another run \(.*" + match
    ):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", replace(TINY, **change))


def test_state_of_another_volume_is_refused(tmp_path) -> None:
    paths = write_volumes(tmp_path / "a")
    with pytest.raises(Preempted):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", TINY, stop_after=1)
    bigger = write_volumes(tmp_path / "b", shape=(6, 32, 48))
    with pytest.raises(
        ValueError,
        match=r"volume_shape: state has \[6, 32, 32\], this run has "
        r"\[6, 32, 48\]",
    ):
        train(*bigger, tmp_path / "out", tmp_path / "s.pt", TINY)


def test_corrupt_or_foreign_state_file_is_refused(tmp_path) -> None:
    paths = write_volumes(tmp_path)
    state = tmp_path / "s.pt"
    state.write_bytes(b"PK\x03\x04 this is no checkpoint")
    with pytest.raises(ValueError, match="s.pt: not a readable training state"):
        train(*paths, tmp_path / "out", state, TINY)
    save_model(state, UNet(base_channels=2, depth=1))
    with pytest.raises(ValueError, match=r"s.pt: not a training state \(format 'unet-em-model/1'"):
        train(*paths, tmp_path / "out", state, TINY)
    torch.save([1, 2], state)
    with pytest.raises(ValueError, match=r"not a training state \(format 'list'"):
        load_state(state, {})


def test_rng_states_survive_a_weights_only_round_trip(tmp_path) -> None:
    def draw() -> tuple:
        return (torch.rand(3), np.random.random(3), random.random())  # noqa: NPY002

    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002
    random.seed(3)
    np.random.standard_normal()  # noqa: NPY002 (leaves a cached gaussian in the state)
    save_state(tmp_path / "s.pt", {"identity": {"a": (1, 2)}, "rng": capture_rng()})
    assert not list(tmp_path.glob("*.tmp"))
    first = draw()
    state = load_state(tmp_path / "s.pt", {"a": [1, 2]})
    restore_rng(state["rng"])
    again = draw()
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_signals_become_a_flag_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionSignals() as signals:
        assert signals.received is None
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGTERM)
        assert signals.received == "SIGUSR1"  # the first one counts
    assert signal.getsignal(signal.SIGUSR1) is before
