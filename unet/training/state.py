"""Walltime-safe training: full training state on disk, and preemption signals.

A training job on SLURM is killed at its walltime.  With ``--signal=USR1@300`` SLURM sends
``SIGUSR1`` five minutes before; at the walltime it sends ``SIGTERM`` (and ``SIGKILL`` after
``KillWait``).  :class:`PreemptionSignals` turns either signal into a flag that the training loop
checks after every step: it then writes the state and raises :class:`Preempted`, which the
Snakemake script turns into exit code :data:`EXIT_PREEMPTED` (75), so Snakemake's ``retries``
resubmit the job and the new job resumes from the state file.

The state file holds everything the next step depends on, so that a resumed run ends with the
same weights as an uninterrupted one (bit for bit on a deterministic device)::

    {"format": STATE_FORMAT, "identity": {...}, "step": int, "sample": int, "seconds": float,
     "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "numpy": {...}, "python": {...}},
     "metrics": [{"step": ..., "loss": ...}, ...]}

It is written atomically (temporary file, ``fsync``, rename), so a kill while writing leaves the
previous state intact, and it contains only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)``.  ``identity`` records the architecture, the training
settings and the volume shape it belongs to; resuming under another identity is refused.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import torch

from unet.errors import EXIT_PREEMPTED, InputError, brief

STATE_FORMAT = "unet-em-train-state/1"

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

log = logging.getLogger("unet.training.loop")


class Preempted(Exception):
    """Training stopped on a signal after writing its state; resubmit the job to resume.

    :func:`unet.stages.runner.run` turns it into exit status :data:`EXIT_PREEMPTED`.
    """

    exit_code = EXIT_PREEMPTED

    def __init__(self, state_path: str | Path, step: int, signal_name: str) -> None:
        super().__init__(
            f"{signal_name} received: training state at step {step} saved to {state_path}; "
            f"exiting with status {EXIT_PREEMPTED} so that the job is resubmitted and resumes"
        )
        self.state_path = Path(state_path)
        self.step = step
        self.signal_name = signal_name


class PreemptionSignals:
    """Context manager catching ``SIGUSR1``/``SIGTERM`` as a flag instead of dying.

    ``received`` is the name of the first signal caught (``None`` before any).  The previous
    handlers are restored on exit.  Outside the main thread Python cannot install handlers; then
    nothing is caught and a warning is logged.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def __enter__(self) -> PreemptionSignals:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: SIGUSR1/SIGTERM will not checkpoint training")
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` for DataLoader workers: leave SIGUSR1/SIGTERM to the main process,
    which then checkpoints and shuts the workers down itself."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def capture_rng() -> dict[str, Any]:
    """All random states as tensors and plain values (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def restore_rng(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    npy = states["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    legacy = ("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"])
    np.random.set_state(legacy)  # noqa: NPY002 (the global state others may use)
    py = states["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (see the module docstring) atomically: tmp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save({"format": STATE_FORMAT, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_state(path: str | Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` for the run described by
    ``identity``.

    Raises ``ValueError`` naming the file if it is unreadable, not a training state, or belongs
    to another run (the differing entries are listed).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise InputError(
            f"{path}: not a readable training state ({brief(err)}); "
            "delete it to start training afresh"
        ) from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path}: not a training state (format {found!r}, need {STATE_FORMAT!r})")
    diff = differences(state.get("identity", {}), identity)
    if diff:
        raise InputError(
            f"{path}: training state belongs to another run ({'; '.join(diff)}); "
            "delete it to start afresh, or restore the settings it was made with"
        )
    return state


def differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested identity records."""
    stored, current = _plain(stored), _plain(current)
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: state has {a!r}, this run has {b!r}")
    return out


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """Tuples -> lists etc., so that a record compares equal to itself after a round trip."""
    return dict(json.loads(json.dumps(record)))
