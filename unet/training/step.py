"""One optimisation step: the net with its optimizer, LR schedule and AMP gradient scaler
(:class:`Trainer`), and the device / precision / determinism settings it runs under.

Shared by the training loop (:func:`unet.training.loop.train`), :mod:`unet.stages.doctor` and
``bench/train_gpu.py``, so that what is measured is what trains.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from unet.model import UNet
from unet.prediction.tiles import autocast, resolve_device  # noqa: F401  (re-exported)
from unet.training.config import TrainConfig
from unet.training.loss import weighted_cross_entropy


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``model``'s parameters: the paper's SGD with momentum, or Adam."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def native_cpu_bf16() -> bool:
    """Does this CPU compute bf16 natively (oneDNN's check: AVX512-BF16 or AMX)?"""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Trainer:
    """The net with its optimizer (SGD or Adam), LR schedule and AMP gradient scaler, on
    ``device``.

    The initial weights are drawn after ``torch.manual_seed(config.seed)``.
    """

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        torch.manual_seed(config.seed)
        self.config, self.device = config, device
        self.model = UNet(**config.arch)
        self.channels_last = config.channels_last and device.type == "cuda"  # slower on CPUs
        self.memory_format = torch.preserve_format
        if self.channels_last:
            self.memory_format = torch.channels_last if config.ndim == 2 else torch.channels_last_3d
        self.model.to(device).train()
        if self.channels_last:  # torch's type stubs omit Module.to's memory_format
            self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer = make_optimizer(self.model, config)
        self.loss = weighted_cross_entropy  # (logits, classes, weights) -> scalar

        def factor(step: int) -> float:
            t = min(step / config.steps, 1.0)
            if config.schedule == "poly":
                return float((1.0 - t) ** config.poly_power)
            return 0.5 * (1.0 + math.cos(math.pi * t)) if config.schedule == "cosine" else 1.0

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        if config.precision == "bf16" and device.type == "cpu" and not native_cpu_bf16():
            warnings.warn(
                "precision bf16 on a CPU without native bf16 (AVX512-BF16 or AMX): it is "
                "emulated and may train slower than fp32",
                stacklevel=2,
            )

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """One optimisation step on ``(image (N, 1, *I), classes (N, *I), weights (N, *I))``;
        returns the loss (a device scalar: reading it waits for the GPU)."""
        image, classes, weights = (t.to(self.device, non_blocking=True) for t in batch)
        with autocast(self.device, self.config.precision):
            logits = self.model(image.contiguous(memory_format=self.memory_format))
        loss = self.loss(logits.float(), classes, weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():
            # fp16: the scaler skips a step whose gradients overflowed; the schedule counts it
            # all the same, so that the learning rate stays a function of the step number
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


@contextmanager
def torch_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms / cuDNN benchmark for the run; the previous settings after."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if config.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    # warn_only: some CUDA kernels (3D max-pool backward) have no deterministic version
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = config.cudnn_benchmark and not config.deterministic
    torch.backends.cudnn.deterministic = config.deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]
