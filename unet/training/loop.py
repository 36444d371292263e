"""The walltime-safe training loop (:func:`train`): sample, step, validate, checkpoint, resume.

Each step draws a batch of random patches (:mod:`unet.training.sampler`) and takes one SGD step
(:class:`unet.training.step.Trainer`: weighted cross-entropy of eq. 1, momentum 0.99, batch 1 and
large
tiles in the paper).  The loop writes the full training state (:mod:`unet.training.state`) every
``checkpoint_every`` steps, every ``checkpoint_seconds`` and on SIGUSR1/SIGTERM, and resumes from
it when it exists.  Settings: :class:`unet.training.config.TrainConfig`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from unet.checkpoint import save_model
from unet.evaluation.metrics import pixel_disagreement
from unet.io import ngff, outputs
from unet.io.intensity import sample_stats
from unet.prediction.tiles import Predictor, check_context, predict_array
from unet.training.config import TrainConfig
from unet.training.curves import plot, write_csv
from unet.training.progress import Clock, every, log_progress, synchronise
from unet.training.sampler import PatchDataset, Source, open_volumes, patch_loader, source_name
from unet.training.state import (
    Preempted,
    PreemptionSignals,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
)
from unet.training.step import Trainer, resolve_device, torch_settings

__all__ = ["TrainConfig", "train", "validate"]

log = logging.getLogger("unet.training.loop")


def validate(trainer: Trainer, raw: np.ndarray, labels: np.ndarray) -> float:
    """Pixel disagreement (:func:`unet.evaluation.metrics.pixel_disagreement`, threshold 0.5: the
    fraction
    of pixels classified wrongly; the validation curve's ``val_pixel_error``) of the net on held-out
    (z, y, x) data, predicted tile by tile with training-size tiles."""
    config = trainer.config
    factor = trainer.model.factor
    block = [max(factor, t // factor * factor) for t in config.output_tile]
    predictor = Predictor(trainer.model, trainer.device, config.precision, trainer.channels_last)
    try:
        prob = predict_array(predictor, raw, [1, *block] if config.ndim == 2 else block)
    finally:
        trainer.model.train()
    return pixel_disagreement(prob, labels)


def train(
    raw: Source,
    labels: Source,
    weights: Source,
    out_dir: str | Path,
    state_path: str | Path,
    config: TrainConfig,
    *,
    overwrite: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train a U-Net on (z, y, x) volumes, resuming from ``state_path`` if it exists.

    Parameters
    ----------
    raw, labels, weights : OME-Zarr volumes (paths) or arrays of one (z, y, x) shape: grey
        values, labels (cell = ``labels > 0``) and float loss weights (:mod:`unet.weights.border`).
    out_dir : receives ``model.pt`` (:func:`unet.checkpoint.save_model`; meta: steps, loss,
        val_pixel_error, seconds, config), ``metrics.csv`` and ``curve.png``
        (:mod:`unet.training.curves`).  They are written into ``<out_dir>.partial``
        (``metrics.csv`` at
        every checkpoint too), which is renamed to ``out_dir`` when training is complete, so an
        interrupted run never leaves new files beside an old model.  An existing ``out_dir`` is
        refused unless ``overwrite`` (an empty folder is not data).
    state_path : the full training state (:mod:`unet.training.state`).  Keep it outside the
        Snakemake rule's outputs, so that a retried job finds it.  It is deleted after the
        outputs are written: it exists only while a run is unfinished.
    config : the run's settings.
    overwrite : replace an existing ``out_dir`` once the new model is complete.
    stop_after : test hook: raise SIGUSR1 in this process after that step.

    Returns
    -------
    ``{"steps", "resumed_from", "loss", "val_pixel_error", "seconds", "model"}``.

    Raises
    ------
    Preempted : after SIGUSR1/SIGTERM, once the state is saved (exit with ``err.exit_code``).
    ValueError : mismatched volumes, a volume smaller than the net's context, slices outside
        the volume, an unreadable or foreign state file.
    FloatingPointError : the loss became NaN or infinite (lower ``lr``).
    """
    out_dir, state_path = Path(out_dir), Path(state_path)
    inputs, arrays = _open_inputs(raw, labels, weights, out_dir, overwrite)
    shape = tuple(arrays[0].shape)
    train_z, val_z = config.slices(shape[0])
    device = resolve_device(config.device)
    with (
        outputs.staging(out_dir, overwrite, keep_partial=True, inputs=inputs) as tmp,
        torch_settings(config, device),
        PreemptionSignals() as signals,
    ):
        tmp.mkdir(exist_ok=True)
        trainer = Trainer(config, device)
        check_context(trainer.model, shape, name=f"raw volume {source_name(raw, 'raw')}")
        dataset = _dataset(raw, labels, weights, config, train_z)
        val_data = [np.stack([np.asarray(a[z]) for z in val_z]) for a in arrays[:2] if val_z]
        start, sample, seconds, metrics = _resume(state_path, config.identity(shape), trainer)
        _log_start(config, str(device), len(train_z), len(val_z), start)
        b, cuda = config.batch_size, device.type == "cuda"
        loader = patch_loader(dataset, sample, config.steps * b, b, config.workers, pin_memory=cuda)
        clock = Clock(seconds, start)
        run = _Run(config, trainer, shape, state_path, tmp, signals, clock, val_data, metrics)
        _steps(run, loader, start, stop_after)
        # a signal now is ignored: finishing takes less time than resuming would
        summary = _finish(run, start, sample_stats(arrays[0], train_z))
    return {**summary, "model": str(out_dir / "model.pt")}


def _open_inputs(
    raw: Source, labels: Source, weights: Source, out_dir: Path, overwrite: bool
) -> tuple[list[str | Path], list[Any]]:
    """The input paths and the three opened volumes, once the output is known to be writable
    (before any work: fail fast) and each volume to have its role."""
    inputs = [v for v in (raw, labels, weights) if isinstance(v, str | Path)]
    outputs.check_writable(out_dir, overwrite, inputs)
    for source, role in ((raw, "raw"), (labels, "labels"), (weights, "weights")):
        if isinstance(source, str | Path):  # a labels volume passed as weights, ...
            ngff.check_role(source, role, required=role == "weights")
    return inputs, list(open_volumes(raw, labels, weights))


def _dataset(
    raw: Source, labels: Source, weights: Source, config: TrainConfig, train_z: Sequence[int]
) -> PatchDataset:
    """Random, augmented patches of slices ``train_z`` (:mod:`unet.training.sampler`)."""
    return PatchDataset(
        raw,
        labels,
        weights,
        config.input_tile,
        config.output_tile,
        train_z,
        config.seed,
        config.augment,
        separation=config.separation,
    )


def _resume(
    state_path: Path, identity: dict[str, Any], trainer: Trainer
) -> tuple[int, int, float, list[dict[str, Any]]]:
    """``(step, sample, seconds, metrics)`` of the saved state (the trainer and the random
    generators restored from it), or of a fresh start."""
    if not state_path.exists():
        return 0, 0, 0.0, []
    state = load_state(state_path, identity)
    trainer.load_state_dict(state)
    restore_rng(state["rng"])
    return state["step"], state["sample"], state["seconds"], state["metrics"]


def _log_start(config: TrainConfig, device: str, n_train: int, n_val: int, start: int) -> None:
    log.info(
        "%dD U-Net (depth %d, %d channels) on %s, %s: tile %s -> %s, %d train / %d val "
        "slices, steps %d..%d",
        config.ndim,
        config.depth,
        config.base_channels,
        device,
        config.precision,
        config.input_tile,
        config.output_tile,
        n_train,
        n_val,
        start + 1,
        config.steps,
    )


@dataclass
class _Run:
    """What the step loop of one training job works with; ``metrics`` grows as it goes."""

    config: TrainConfig
    trainer: Trainer
    shape: tuple[int, ...]
    state_path: Path
    tmp: Path
    signals: PreemptionSignals
    clock: Clock
    val_data: list[np.ndarray]
    metrics: list[dict[str, Any]]

    def due(self, step: int, last: bool) -> tuple[bool, bool, bool]:
        """Whether to validate, log and save the state after ``step``."""
        config = self.config
        validate_now = bool(self.val_data) and (last or every(step, config.val_every))
        log_now = last or every(step, config.log_every)
        save_now = not last and (
            self.signals.received is not None
            or every(step, config.checkpoint_every)
            or self.clock.since_save() >= config.checkpoint_seconds > 0
        )
        return validate_now, log_now, save_now

    def validate(self) -> None:
        with self.clock.paused():
            self.metrics[-1]["val_pixel_error"] = validate(self.trainer, *self.val_data)
        self.metrics[-1]["seconds"] = self.clock.seconds()

    def save(self, step: int) -> None:
        state = {
            "identity": self.config.identity(self.shape),
            "step": step,
            "sample": step * self.config.batch_size,
            "seconds": self.clock.seconds(),
            **self.trainer.state_dict(),
            "rng": capture_rng(),
            "metrics": self.metrics,
        }
        save_state(self.state_path, state)
        write_csv(self.tmp / "metrics.csv", self.metrics)
        self.clock.saved()
        log.info("step %d: training state saved to %s", step, self.state_path)


def _steps(run: _Run, loader: Iterable[Any], start: int, stop_after: int | None) -> None:
    """Steps ``start + 1 ..``: a step per batch; validate, log, save when due; raise
    :class:`Preempted` after saving on a signal."""
    steps = run.config.steps
    pending: list[dict[str, Any]] = []  # rows whose loss is still on the device
    with tqdm(total=steps, initial=start, disable=None, unit="step") as bar:
        for step, data in enumerate(loader, start=start + 1):
            lr = run.trainer.lr
            row = {"step": step, "loss": run.trainer.step(data), "lr": lr}
            pending.append({**row, "seconds": run.clock.seconds(), "val_pixel_error": None})
            bar.update()
            if step == stop_after:
                signal.raise_signal(signal.SIGUSR1)
            last = step == steps
            validate_now, log_now, save_now = run.due(step, last)
            if not (validate_now or log_now or save_now):
                continue
            run.metrics += synchronise(pending)
            if validate_now:
                run.validate()
            if log_now:
                log_progress(run.metrics, steps, run.clock)
            if save_now:
                run.save(step)
            if run.signals.received is not None and not last:
                raise Preempted(run.state_path, step, run.signals.received)
    run.metrics += synchronise(pending)


def _finish(run: _Run, start: int, input_stats: dict[str, Any]) -> dict[str, Any]:
    """Write model.pt, metrics.csv and curve.png, delete the state; the run's summary."""
    metrics, config, tmp = run.metrics, run.config, run.tmp
    vals = [r["val_pixel_error"] for r in metrics if r["val_pixel_error"] is not None]
    summary = {
        "steps": config.steps,
        "resumed_from": start,
        "loss": metrics[-1]["loss"],
        "val_pixel_error": vals[-1] if vals else None,
        "seconds": metrics[-1]["seconds"],
    }
    meta = {**summary, "config": asdict(config), "input": input_stats}
    save_model(tmp / "model.pt", run.trainer.model, meta=meta)
    write_csv(tmp / "metrics.csv", metrics)
    plot(tmp / "curve.png", metrics)
    run.state_path.unlink(missing_ok=True)
    log.info("training done: %s", summary)
    return summary
