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
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
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
    inputs = [v for v in (raw, labels, weights) if isinstance(v, str | Path)]
    out_dir, state_path = Path(out_dir), Path(state_path)
    outputs.check_writable(out_dir, overwrite, inputs)  # before any work: fail fast
    for source, role in ((raw, "raw"), (labels, "labels"), (weights, "weights")):
        if isinstance(source, str | Path):  # a labels volume passed as weights, ...
            ngff.check_role(source, role, required=role == "weights")
    arrays = open_volumes(raw, labels, weights)
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
        dataset = PatchDataset(
            raw,
            labels,
            weights,
            config.input_tile,
            config.output_tile,
            train_z,
            config.seed,
            config.augment,
        )
        val_data = [np.stack([np.asarray(a[z]) for z in val_z]) for a in arrays[:2] if val_z]
        start, sample, seconds, metrics = 0, 0, 0.0, []
        if state_path.exists():
            state = load_state(state_path, config.identity(shape))
            trainer.load_state_dict(state)
            restore_rng(state["rng"])
            start, sample = state["step"], state["sample"]
            seconds, metrics = state["seconds"], state["metrics"]
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
            len(train_z),
            len(val_z),
            start + 1,
            config.steps,
        )
        b = config.batch_size
        loader = patch_loader(
            dataset,
            sample,
            config.steps * b,
            b,
            config.workers,
            pin_memory=device.type == "cuda",
        )
        clock = _Clock(seconds, start)
        pending: list[dict[str, Any]] = []  # rows whose loss is still on the device
        with tqdm(total=config.steps, initial=start, disable=None, unit="step") as bar:
            for step, data in enumerate(loader, start=start + 1):
                lr = trainer.lr
                pending.append(
                    {
                        "step": step,
                        "loss": trainer.step(data),
                        "lr": lr,
                        "seconds": clock.seconds(),
                        "val_pixel_error": None,
                    }
                )
                bar.update()
                if step == stop_after:
                    signal.raise_signal(signal.SIGUSR1)
                last = step == config.steps
                validate_now = bool(val_z) and (last or _every(step, config.val_every))
                log_now = last or _every(step, config.log_every)
                save_now = not last and (
                    signals.received is not None
                    or _every(step, config.checkpoint_every)
                    or clock.since_save() >= config.checkpoint_seconds > 0
                )
                if not (validate_now or log_now or save_now):
                    continue
                metrics += _synchronise(pending)
                if validate_now:
                    with clock.paused():
                        metrics[-1]["val_pixel_error"] = validate(trainer, *val_data)
                    metrics[-1]["seconds"] = clock.seconds()
                if log_now:
                    _log_progress(metrics, config.steps, clock)
                if save_now:
                    save_state(
                        state_path,
                        {
                            "identity": config.identity(shape),
                            "step": step,
                            "sample": step * b,
                            "seconds": clock.seconds(),
                            **trainer.state_dict(),
                            "rng": capture_rng(),
                            "metrics": metrics,
                        },
                    )
                    write_csv(tmp / "metrics.csv", metrics)
                    clock.saved()
                    log.info("step %d: training state saved to %s", step, state_path)
                if signals.received is not None and not last:
                    raise Preempted(state_path, step, signals.received)
        metrics += _synchronise(pending)
        # a signal now is ignored: finishing takes less time than resuming would
        vals = [r["val_pixel_error"] for r in metrics if r["val_pixel_error"] is not None]
        summary = {
            "steps": config.steps,
            "resumed_from": start,
            "loss": metrics[-1]["loss"],
            "val_pixel_error": vals[-1] if vals else None,
            "seconds": metrics[-1]["seconds"],
        }
        meta = {**summary, "config": asdict(config), "input": sample_stats(arrays[0], train_z)}
        save_model(tmp / "model.pt", trainer.model, meta=meta)
        write_csv(tmp / "metrics.csv", metrics)
        plot(tmp / "curve.png", metrics)
        state_path.unlink(missing_ok=True)
        log.info("training done: %s", summary)
    return {**summary, "model": str(out_dir / "model.pt")}


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0


def _synchronise(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Read the losses of ``pending`` rows from the device (waits for the GPU) and hand the
    rows over; ``FloatingPointError`` if training diverged."""
    rows = [{**row, "loss": float(row["loss"])} for row in pending]
    pending.clear()
    for row in rows:
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(
                f"training diverged: loss {row['loss']} at step "
                f"{row['step']} (lr {row['lr']:.3g}); lower the lr"
            )
    return rows


class _Clock:
    """Training seconds (summed over resumed jobs, validation excluded), log and save timers."""

    def __init__(self, seconds: float, step: int) -> None:
        self.offset = seconds
        self.began = self.last_save = time.monotonic()
        self.last_log = (self.began, step)

    def seconds(self) -> float:
        return self.offset + time.monotonic() - self.began

    def since_save(self) -> float:
        return time.monotonic() - self.last_save

    def saved(self) -> None:
        self.last_save = time.monotonic()

    @contextmanager
    def paused(self) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.offset -= time.monotonic() - t0


def _log_progress(rows: list[dict[str, Any]], steps: int, clock: _Clock) -> None:
    """One log line: the mean loss and the rate since the previous line, and the ETA."""
    now, step = time.monotonic(), rows[-1]["step"]
    then, then_step = clock.last_log
    clock.last_log = (now, step)
    n = step - then_step
    rate = n / (now - then) if now > then else float("nan")
    eta = (steps - step) / rate if rate > 0 else float("nan")
    hms = (
        "?"
        if not math.isfinite(eta)
        else (f"{int(eta) // 3600}:{int(eta) // 60 % 60:02d}:{int(eta) % 60:02d}")
    )
    val = rows[-1]["val_pixel_error"]
    log.info(
        "step %d/%d  loss %.4f  lr %.3g  %.2f steps/s  ETA %s%s",
        step,
        steps,
        float(np.mean([r["loss"] for r in rows[-max(n, 1) :]])),
        rows[-1]["lr"],
        rate,
        hms,
        f"  val pixel error {val:.4f}" if val is not None else "",
    )
