"""The training configuration: one frozen, validated dataclass built from the workflow config."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from unet.checkpoint import canonical_arch
from unet.errors import InputError, InputTypeError
from unet.io.slices import parse_slices
from unet.model import input_size
from unet.settings.schema import default
from unet.training.augment import AugmentConfig

Precision = Literal["fp32", "bf16", "fp16"]
Schedule = Literal["constant", "poly", "cosine"]
Optimizer = Literal["sgd", "adam"]
Slices = tuple[int, ...] | str

ARCH_FIELDS = ("base_channels", "depth", "ndim", "batch_norm", "dropout", "norm")
RUNTIME_FIELDS = frozenset(
    {
        "device",
        "workers",
        "log_every",
        "checkpoint_every",
        "checkpoint_seconds",
        "val_every",
        "channels_last",
        "cudnn_benchmark",
        "deterministic",
    }
)
"""Settings that may change when a job resumes: they do not change what is being trained."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides its data (the paper's values where it has them).

    Parameters
    ----------
    base_channels, depth, ndim, batch_norm, dropout, norm : the :class:`unet.model.UNet`
        (``norm`` ``None``: ``batch`` if ``batch_norm`` else ``none``).
    output_tile : output tile per axis, ``ndim`` entries (paper: 388 x 388, from 572 x 572).
    steps, batch_size : optimisation steps, patches per step (paper: batch 1).
    optimizer : ``sgd`` (the paper's, with ``momentum``) or ``adam`` (``torch.optim.Adam`` with
        its default betas; ``momentum`` unused; take ``lr`` about 1e-3).
    lr, momentum, weight_decay : learning rate, SGD momentum (paper: 0.99; it gives no learning
        rate), L2 penalty.
    schedule : learning-rate factor over the steps: ``constant``, ``poly``
        (``(1 - s / steps) ** poly_power``) or ``cosine`` (``(1 + cos(pi s / steps)) / 2``).
    seed : seeds the initial weights, dropout and every patch (sample ``i`` is a pure function
        of ``(seed, i)``).
    train_slices : z indices to train on, or a spec such as ``"0-24"`` / ``"all"``
        (:func:`unet.io.slices.parse_slices`); ``None``: every slice not in ``val_slices``.
    val_slices : held-out z indices (or a spec); their pixel error is recorded in
        ``metrics.csv`` every ``val_every`` steps (0: only after the last step).
    log_every : steps between log lines.
    checkpoint_every, checkpoint_seconds : write the training state every so many steps /
        seconds (0 disables either); it is also written on SIGUSR1 and SIGTERM.
    device : ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:1``...
    precision : ``fp32``, or autocast to ``bf16`` / ``fp16`` (fp16 with gradient scaling); ``bf16``
        also on CPUs with native bf16 (AVX512-BF16, AMX), where it trains 1.5x faster.
    channels_last : channels-last memory format on CUDA devices (faster convolutions on
        tensor-core GPUs); ignored on the CPU, where it makes convolutions slower.
    cudnn_benchmark : let cuDNN time its algorithms for the tile shape.
    workers : DataLoader processes reading and augmenting patches (0: in the training process).
    augment : :class:`unet.training.augment.AugmentConfig` (a mapping is converted), ``None`` for
    none.
    deterministic : deterministic algorithms, no cuDNN benchmark; on the CPU a resumed run
        then ends with bit-identical weights.
    separation : width in px of the separation border between touching instances
        (:func:`unet.weights.border.separation_border`), background in the training target
        (:class:`unet.training.sampler.PatchDataset`) and in the weight map (the weights stage
        reads the same setting); 0: none; no effect on binary masks.
    """

    base_channels: int = default("model", "base_channels")
    depth: int = default("model", "depth")
    ndim: int = default("model", "ndim")
    batch_norm: bool = default("model", "batch_norm")
    dropout: float = default("model", "dropout")
    norm: str | None = default("model", "norm")
    output_tile: tuple[int, ...] = default("train", "output_tile")
    steps: int = default("train", "steps")
    batch_size: int = default("train", "batch_size")
    optimizer: Optimizer = default("train", "optimizer")
    lr: float = default("train", "lr")
    momentum: float = default("train", "momentum")
    weight_decay: float = default("train", "weight_decay")
    schedule: Schedule = default("train", "schedule")
    poly_power: float = default("train", "poly_power")
    seed: int = default("train", "seed")
    train_slices: Slices | None = None
    val_slices: Slices = ()
    val_every: int = default("train", "val_every")
    log_every: int = default("train", "log_every")
    checkpoint_every: int = default("train", "checkpoint_every")
    checkpoint_seconds: float = default("train", "checkpoint_seconds")
    device: str = default("train", "device")
    precision: Precision = default("train", "precision")
    channels_last: bool = default("train", "channels_last")
    cudnn_benchmark: bool = default("train", "cudnn_benchmark")
    workers: int = default("train", "workers")
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    deterministic: bool = default("train", "deterministic")
    separation: int = default("train", "separation")

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_tile", tuple(int(t) for t in self.output_tile))
        for name in ("train_slices", "val_slices"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, tuple(int(z) for z in value))  # YAML lists
            elif isinstance(value, str) and value != "all":
                parse_slices(value, sys.maxsize, name)  # syntax only: the volume comes later
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        if not isinstance(self.augment, AugmentConfig | None):
            raise InputTypeError(f"augment must be an AugmentConfig or None, got {self.augment!r}")
        for name in ("batch_norm", "channels_last", "cudnn_benchmark", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise InputTypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        self._check_architecture()
        self._check_optimisation()
        self._check_run()

    def _check_architecture(self) -> None:
        _require(self.ndim in (2, 3), f"ndim must be 2 or 3, got {self.ndim}")
        _require(
            self.depth >= 1 and self.base_channels >= 1,
            f"depth and base_channels must be >= 1, got {self.depth}, {self.base_channels}",
        )
        _require(self.depth <= 6, f"depth must be <= 6, got {self.depth}")
        _require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _require(
            self.norm in (None, "batch", "instance", "group", "none"),
            f"norm must be batch, instance, group, none or null, got {self.norm!r}",
        )
        _require(
            len(self.output_tile) == self.ndim,
            f"output_tile {self.output_tile} needs {self.ndim} entries for a {self.ndim}D net",
        )
        for o in self.output_tile:
            _require(
                o >= 1 and input_size(o, self.depth) is not None,
                f"output_tile {self.output_tile}: no input gives an output of {o} at depth "
                f"{self.depth}; nearest valid outputs {_valid_near(o, self.depth)}",
            )

    def _check_optimisation(self) -> None:
        _require(
            self.steps >= 1 and self.batch_size >= 1,
            f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}",
        )
        _require(
            self.lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0,
            f"need lr > 0, momentum in [0, 1), weight_decay >= 0, got {self.lr}, "
            f"{self.momentum}, {self.weight_decay}",
        )
        _require(
            self.optimizer in ("sgd", "adam"),
            f"optimizer must be sgd or adam, got {self.optimizer!r}",
        )
        _require(
            self.schedule in ("constant", "poly", "cosine"),
            f"schedule must be constant, poly or cosine, got {self.schedule!r}",
        )
        _require(self.poly_power > 0, f"poly_power must be > 0, got {self.poly_power}")
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")

    def _check_run(self) -> None:
        """Slices, validation, logging, checkpoints, precision, workers, device."""
        _require(self.train_slices != (), "train_slices must not be empty (None: all but val)")
        _require(
            self.val_every >= 0 and (bool(self.val_slices) or not self.val_every),
            f"val_every {self.val_every} needs val_slices and must be >= 0",
        )
        _require(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        _require(
            self.checkpoint_every >= 0 and self.checkpoint_seconds >= 0,
            "checkpoint_every and checkpoint_seconds must be >= 0 (0: off), got "
            f"{self.checkpoint_every}, {self.checkpoint_seconds}",
        )
        _require(
            self.precision in ("fp32", "bf16", "fp16"),
            f"precision must be fp32, bf16 or fp16, got {self.precision!r}",
        )
        _require(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _require(
            isinstance(self.separation, int) and self.separation >= 0,
            f"separation must be an integer >= 0, got {self.separation!r}",
        )
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as err:
                raise InputError(
                    f"device must be 'auto' or a torch device, got {self.device!r}"
                ) from err

    @property
    def arch(self) -> dict[str, Any]:
        """Keyword arguments of :class:`unet.model.UNet` (one grey-value input, two classes)."""
        arch = {"in_channels": 1, "n_classes": 2, **{k: getattr(self, k) for k in ARCH_FIELDS}}
        return canonical_arch(arch)

    @property
    def input_tile(self) -> tuple[int, ...]:
        """The input tile that gives ``output_tile`` (388 -> 572 at depth 4)."""
        return tuple(int(input_size(o, self.depth) or 0) for o in self.output_tile)

    def slices(self, n_slices: int) -> tuple[list[int], list[int]]:
        """The (train, val) z indices in a volume of ``n_slices`` slices.

        ``ValueError`` if an index is outside the volume, repeated, in both sets, or if no
        training slice is left.
        """
        val = _indices(self.val_slices, n_slices, "val_slices")
        train = (
            _indices(self.train_slices, n_slices, "train_slices")
            if self.train_slices is not None
            else [z for z in range(n_slices) if z not in val]
        )
        shared = sorted(set(train) & set(val))
        _require(not shared, f"slices {shared} are in both train_slices and val_slices")
        _require(bool(train), f"no training slices left in a volume of {n_slices} slices")
        for name, idx in (("train_slices", train), ("val_slices", val)):
            ascending = not idx or idx == list(range(idx[0], idx[0] + len(idx)))
            _require(
                self.ndim == 2 or ascending,
                f"{name} must be one ascending z range for a 3D net, got {idx}",
            )
        return train, val

    def identity(self, volume_shape: Sequence[int]) -> dict[str, Any]:
        """What a saved training state must match to be resumed: the architecture, every
        setting outside :data:`RUNTIME_FIELDS`, and the volume shape."""
        settings = {
            k: v
            for k, v in asdict(self).items()
            if k not in RUNTIME_FIELDS and k not in ARCH_FIELDS
        }
        return {"arch": self.arch, "config": settings, "volume_shape": list(volume_shape)}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _valid_near(size: int, depth: int) -> list[int]:
    """The nearest valid output sizes below (if any) and above ``size``."""
    below = next((o for o in range(size, 0, -1) if input_size(o, depth)), None)
    above = next(o for o in range(max(size, 1), size + 2**depth + 2) if input_size(o, depth))
    return [above] if below is None else [below, above]


def _indices(spec: Slices, n_slices: int, name: str) -> list[int]:
    if isinstance(spec, str):
        return parse_slices(spec, n_slices, name)
    bad = [z for z in spec if not 0 <= z < n_slices]
    _require(not bad, f"{name} {bad} outside the volume's z range [0, {n_slices})")
    _require(len(set(spec)) == len(spec), f"{name} {list(spec)} repeats slices")
    return list(spec)
