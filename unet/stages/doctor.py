"""Environment and throughput report: versions, the device, measured training and prediction
speed of the configured net, and the runtimes they imply, to size SLURM ``runtime`` requests.

Everything is measured on synthetic data in a few seconds: training steps on one batch kept on
the device (the real loop's step, :class:`unet.training.loop.Trainer`), augmentation of one patch
on the
CPU (what each DataLoader worker does per sample; Zarr reads excluded), and the forward pass of
one prediction tile in eval mode (:class:`unet.prediction.tiles.Predictor`; reads and writes
excluded).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from unet.prediction.tiles import Predictor, net_factor, tile_plan
from unet.training.augment import augment
from unet.training.config import TrainConfig
from unet.training.step import Trainer, resolve_device, torch_settings

MARGIN = 1.25
"""Suggested ``runtime`` = estimate * MARGIN + OVERHEAD_MINUTES (start-up, I/O, cuDNN tuning)."""
OVERHEAD_MINUTES = 5


def doctor(
    config: TrainConfig,
    *,
    predict_block: Sequence[int] | None = None,
    volumes: Mapping[str, int] | None = None,
    seconds: float = 3.0,
) -> dict[str, Any]:
    """Measure the configured net on its device and estimate runtimes.

    Parameters
    ----------
    config : the training configuration (net, tile, batch, device, precision, workers, augment).
    predict_block : prediction write block (z, y, x), a multiple of the net's factor; default
        the training output tile rounded down to the factor (one slice for a 2D net).
    volumes : name -> voxel count of the volumes to predict.
    seconds : about how long to measure in total.  On a GPU, cuDNN's algorithm search for
        each new shape (benchmark mode) comes on top: about 20 s for the paper's net on an H100.

    Returns
    -------
    ``{"environment": {...}, "model": {...}, "train": {...}, "predict": {...},
    "estimates": {...}}``; :func:`report` formats it.
    """
    device = resolve_device(config.device)
    budget = seconds / 3
    with torch_settings(config, device):
        trainer = Trainer(config, device)
        model = trainer.model
        rng = np.random.default_rng(0)
        step_s, memory = _time_step(trainer, rng, budget)
        sample_s = _time_augment(config, rng, budget)
        if predict_block is None:
            predict_block = _default_block(config, net_factor(model))
        plan = tile_plan(model, tuple(predict_block), tuple(predict_block))
        predictor = Predictor(model, device, config.precision, trainer.channels_last)
        tile = predictor.to_batch(rng.random(plan.input_shape, dtype=np.float32))
        predict_s = _time_per_call(lambda: predictor.forward(tile), budget, device)

    train = _train_rates(config, step_s, sample_s)
    vox_rate = math.prod(predict_block) / predict_s
    estimates = {"train": _estimate(config.steps / train["expected_steps_per_s"])}
    for name, voxels in (volumes or {}).items():
        estimates[f"predict {name}"] = _estimate(voxels / vox_rate)
    return {
        "environment": environment(device),
        "model": {
            **config.arch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "precision": config.precision,
            "channels_last": trainer.channels_last,
        },
        "train": {**train, "peak_memory_bytes": memory},
        "predict": {
            "block": list(predict_block),
            "input_tile": list(plan.input_shape),
            "output_mvox_per_s": vox_rate / 1e6,
        },
        "estimates": estimates,
    }


def _time_step(
    trainer: Trainer, rng: np.random.Generator, budget: float
) -> tuple[float, int | None]:
    """Seconds per training step on a random batch, and the peak device memory (CUDA)."""
    config, device = trainer.config, trainer.device
    shape = (config.batch_size, *config.input_tile)
    batch = (
        torch.rand((shape[0], 1, *shape[1:]), device=device),
        torch.from_numpy(rng.integers(0, 2, shape)).to(device),
        torch.ones(shape, device=device),
    )
    trainer.step(batch)  # cuDNN's algorithm search may briefly take far more memory
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _time_per_call(lambda: trainer.step(batch), budget, device)
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return step_s, memory


def _time_augment(config: TrainConfig, rng: np.random.Generator, budget: float) -> float:
    """Seconds per augmented sample in one data-loader worker (0 without augmentation)."""
    if config.augment is None:
        return 0.0
    aug = config.augment
    image = rng.random(config.input_tile, dtype=np.float32)
    classes = rng.integers(0, 2, config.input_tile, dtype=np.uint8)
    ones = np.ones(config.input_tile, np.float32)
    return _time_per_call(lambda: augment(image, classes, ones, rng, aug), budget, None)


def _default_block(config: TrainConfig, factor: Sequence[int]) -> list[int]:
    """The training output tile rounded down to the net's factor (one slice for a 2D net)."""
    out = [
        max(f, t // f * f)
        for f, t in zip(factor[3 - config.ndim :], config.output_tile, strict=True)
    ]
    return [1, *out] if config.ndim == 2 else out


def _train_rates(config: TrainConfig, step_s: float, sample_s: float) -> dict[str, Any]:
    """Steps per second of the device alone and as fed by the data-loader workers."""
    step_rate = 1 / step_s
    loader_rate = math.inf if sample_s == 0 else 1 / sample_s  # samples/s per worker
    if config.workers:
        expected = min(step_rate, config.workers * loader_rate / config.batch_size)
    else:  # loading and stepping take turns in one process
        expected = 1 / (step_s + config.batch_size * sample_s)
    return {
        "input_tile": list(config.input_tile),
        "output_tile": list(config.output_tile),
        "batch_size": config.batch_size,
        "device_steps_per_s": step_rate,
        "augment_samples_per_s_per_worker": loader_rate,
        "workers": config.workers,
        "expected_steps_per_s": expected,
        "workers_to_feed_device": math.ceil(step_rate * config.batch_size * sample_s),
    }


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the device: GPU name and memory, or the CPU and its torch threads."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_bytes=props.total_memory,
            capability=f"{props.major}.{props.minor}",
        )
    else:
        env.update(gpu=None, cpu=platform.processor() or platform.machine())
    return env


def _time_per_call(fn: Callable[[], Any], budget: float, device: torch.device | None) -> float:
    """Seconds per call of ``fn``: two warm-up calls (cuDNN tuning, allocations), then as many
    calls back to back as fit in ``budget`` (at least 2), synchronising only at the end."""

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run(1)
    first = run(1)
    n = max(2, int(budget / max(first, 1e-6)))
    return run(n) / n


def _estimate(seconds: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "runtime_minutes": math.ceil(seconds * MARGIN / 60) + OVERHEAD_MINUTES,
    }


def report(result: Mapping[str, Any]) -> str:
    """A short human-readable report of :func:`doctor`'s result."""
    env, model, tr, pr = (result[k] for k in ("environment", "model", "train", "predict"))
    if env["gpu"]:
        where = f"{env['gpu']} ({env['gpu_memory_bytes'] / 2**30:.1f} GiB, sm {env['capability']})"
    else:
        where = f"CPU {env['cpu']} ({env['torch_threads']} torch threads, {env['cpus']} CPUs)"
    x = "x".join
    peak = tr["peak_memory_bytes"]
    lines = [
        f"python {env['python']}, torch {env['torch']}, CUDA {env['cuda'] or '-'}, "
        f"cuDNN {env['cudnn'] or '-'}",
        f"device: {env['device']}: {where}",
        f"model: {model['ndim']}D U-Net, depth {model['depth']}, {model['base_channels']} base "
        f"channels, {model['parameters'] / 1e6:.2f} M parameters, {model['precision']}"
        f"{', channels_last' if model['channels_last'] else ''}",
        f"training: tile {x(map(str, tr['input_tile']))} -> {x(map(str, tr['output_tile']))}, "
        f"batch {tr['batch_size']}: {tr['device_steps_per_s']:.2f} steps/s on the device"
        + (f", peak memory {peak / 2**30:.2f} GiB" if peak else ""),
        f"  augmentation: {tr['augment_samples_per_s_per_worker']:.1f} samples/s per worker, "
        f"{tr['workers']} workers -> expect {tr['expected_steps_per_s']:.2f} steps/s "
        f"({tr['workers_to_feed_device']} workers would keep the device busy)",
        f"prediction: block {x(map(str, pr['block']))} (input {x(map(str, pr['input_tile']))}): "
        f"{pr['output_mvox_per_s']:.3f} Mvox/s",
        f"estimates (runtime = estimate x {MARGIN} + {OVERHEAD_MINUTES} min):",
    ]
    for name, est in result["estimates"].items():
        lines.append(
            f"  {name}: {est['seconds'] / 60:.1f} min -> runtime {est['runtime_minutes']} min"
        )
    return "\n".join(lines)
