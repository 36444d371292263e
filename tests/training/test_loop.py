"""The training configuration, the loop's outputs and its input checks, and the metrics files."""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from unet.checkpoint import load_model, read
from unet.io import ngff
from unet.training.augment import AugmentConfig
from unet.training.config import RUNTIME_FIELDS
from unet.training.curves import plot, time_to_error, write_csv
from unet.training.loop import TrainConfig, train
from unet.training.step import Trainer, resolve_device

# a depth-1 net (context 16) with 2 base channels, on volumes of a few 32 x 32 slices
TINY = TrainConfig(
    base_channels=2,
    depth=1,
    output_tile=(8, 8),
    steps=6,
    lr=0.01,
    seed=3,
    log_every=2,
    checkpoint_every=0,
    checkpoint_seconds=0,
    device="cpu",
    workers=0,
    deterministic=True,
)
TINY_3D = replace(TINY, ndim=3, output_tile=(4, 4, 4), steps=4)


def write_volumes(
    root: Path, shape: tuple[int, int, int] = (6, 32, 32), instances: bool = False
) -> tuple[Path, Path, Path]:
    """Learnable synthetic EM as OME-Zarr: dark 1-px membranes on a grid, noisy bright cells."""
    rng = np.random.default_rng(0)
    labels = np.full(shape, 255, np.uint8)
    labels[:, ::8], labels[:, :, ::8] = 0, 0
    if instances:
        labels = (labels > 0) * (1 + np.arange(labels.size).reshape(shape) // 64 % 7)
    raw = np.clip(np.where(labels > 0, 180, 60) + rng.normal(0, 20, shape), 0, 255)
    weights = np.where(labels > 0, 1.0, 3.0)
    paths = []
    for name, data, dtype in (
        ("raw", raw, np.uint8),
        ("labels", labels, np.uint16),
        ("weights", weights, np.float32),
    ):
        path = root / f"{name}.zarr"
        record = {"stage": "weights"} if name == "weights" else {}
        ngff.create(path, shape, dtype, (1, *shape[1:]), (1, 1, 1), attrs=record)[...] = (
            data.astype(dtype)
        )
        paths.append(path)
    return paths[0], paths[1], paths[2]


@pytest.fixture
def one_thread():
    """One intra-op thread (restored afterwards): the same results on any machine, and no
    OpenMP threads spinning against other processes on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


pytestmark = pytest.mark.usefixtures("one_thread")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---- configuration -------------------------------------------------------------------------


def test_paper_defaults() -> None:
    config = TrainConfig()
    assert config.input_tile == (572, 572) and config.output_tile == (388, 388)
    assert (config.batch_size, config.momentum, config.depth, config.base_channels) == (
        1,
        0.99,
        4,
        64,
    )
    assert config.arch == {
        "in_channels": 1,
        "n_classes": 2,
        "base_channels": 64,
        "depth": 4,
        "ndim": 2,
        "batch_norm": False,
        "dropout": 0.5,
        "norm": "none",
    }
    assert TrainConfig(norm="instance").arch["norm"] == "instance"
    assert TrainConfig(batch_norm=True).arch["norm"] == "batch"  # norm null: from batch_norm
    assert TrainConfig(ndim=3, output_tile=(4, 4, 4), depth=1).input_tile == (20, 20, 20)


def test_yaml_values_are_normalised() -> None:
    config = TrainConfig(
        output_tile=[388, 388], val_slices=[25, 26], augment={"rotation": 90.0, "elastic": False}
    )
    assert config.output_tile == (388, 388) and config.val_slices == (25, 26)
    assert config.augment == AugmentConfig(rotation=90.0, elastic=False)
    assert hash(config.output_tile) and TrainConfig(augment=None).augment is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ndim": 4}, ValueError, "ndim must be 2 or 3"),
        ({"depth": 0}, ValueError, "depth and base_channels must be >= 1"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"output_tile": (388,)}, ValueError, "needs 2 entries"),
        ({"output_tile": (390, 388)}, ValueError, "nearest valid outputs \\[388, 404\\]"),
        ({"steps": 0}, ValueError, "steps and batch_size must be >= 1"),
        ({"lr": 0.0}, ValueError, "need lr > 0"),
        ({"momentum": 1.0}, ValueError, r"momentum in \[0, 1\)"),
        ({"schedule": "step"}, ValueError, "schedule must be constant, poly or cosine"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be sgd or adam, got 'rmsprop'"),
        ({"poly_power": 0}, ValueError, "poly_power must be > 0"),
        ({"seed": -1}, ValueError, "seed must be non-negative"),
        ({"train_slices": ()}, ValueError, "train_slices must not be empty"),
        ({"train_slices": "0-x"}, ValueError, "cannot parse"),
        ({"val_every": 5}, ValueError, "val_every 5 needs val_slices"),
        ({"log_every": 0}, ValueError, "log_every must be >= 1"),
        ({"checkpoint_every": -1}, ValueError, "checkpoint_every and checkpoint_seconds"),
        ({"precision": "fp8"}, ValueError, "precision must be fp32, bf16 or fp16"),
        ({"workers": -1}, ValueError, "workers must be >= 0"),
        ({"device": "gpu0"}, ValueError, "device must be 'auto' or a torch device"),
        ({"augment": 3}, TypeError, "augment must be an AugmentConfig or None"),
        ({"channels_last": "yes"}, TypeError, "channels_last must be a bool"),
    ],
)
def test_invalid_config_raises(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_slices_resolve_against_the_volume() -> None:
    isbi = TrainConfig(train_slices="0-24", val_slices="25-29")
    assert isbi.slices(30) == (list(range(25)), [25, 26, 27, 28, 29])
    assert TrainConfig(val_slices=(1, 3)).slices(5) == ([0, 2, 4], [1, 3])
    assert TrainConfig(train_slices="all").slices(3) == ([0, 1, 2], [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_slices": (0, 5)}, r"train_slices \[5\] outside the volume's z range \[0, 5\)"),
        ({"train_slices": (1, 1)}, "repeats slices"),
        ({"val_slices": "3-7"}, "outside the volume of 5 slices"),
        ({"train_slices": (0, 1, 2), "val_slices": (2, 3)}, r"slices \[2\] are in both"),
        ({"val_slices": "all"}, "no training slices left"),
        (
            {"ndim": 3, "output_tile": (4, 4, 4), "depth": 1, "val_slices": (2,)},
            "one ascending z range for a 3D net",
        ),
    ],
)
def test_bad_slices_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).slices(5)


def test_identity_ignores_runtime_settings() -> None:
    runtime = {
        "device": "cuda",
        "workers": 7,
        "log_every": 3,
        "checkpoint_every": 9,
        "checkpoint_seconds": 1.0,
        "val_every": 2,
        "channels_last": False,
        "cudnn_benchmark": False,
        "deterministic": True,
    }
    assert set(runtime) == RUNTIME_FIELDS
    base = TrainConfig(val_slices=(0,))
    assert replace(base, **runtime).identity((5, 9, 9)) == base.identity((5, 9, 9))
    assert replace(base, lr=0.1).identity((5, 9, 9)) != base.identity((5, 9, 9))
    assert replace(base, optimizer="adam").identity((5, 9, 9)) != base.identity((5, 9, 9))
    assert base.identity((5, 9, 9)) != base.identity((6, 9, 9))


def test_lr_schedules() -> None:
    device = torch.device("cpu")
    for schedule, last in (("constant", 1.0), ("poly", (1 / 6) ** 0.9), ("cosine", 0.0670)):
        trainer = Trainer(replace(TINY, schedule=schedule), device)
        lrs = []
        for _ in range(6):
            lrs.append(trainer.lr)
            trainer.optimizer.step()  # no gradients: changes nothing
            trainer.scheduler.step()
        assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.01 * last, rel=1e-2)


def test_fp16_skipped_step_still_advances_the_schedule() -> None:
    trainer = Trainer(replace(TINY, precision="fp16"), torch.device("cpu"))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)  # gradients overflow
    before = trainer.model.outc.weight.clone()
    batch = (torch.rand(1, 1, 24, 24), torch.randint(0, 2, (1, 24, 24)), torch.ones(1, 24, 24))
    trainer.step(batch)  # no "lr_scheduler.step() before optimizer.step()" warning (an error)
    assert torch.equal(trainer.model.outc.weight, before) and trainer.scaler.get_scale() < 2**60
    assert trainer.lr == pytest.approx(0.01 * (5 / 6) ** 0.9)


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")


# ---- the loop ------------------------------------------------------------------------------


def test_train_writes_model_metrics_and_curve(tmp_path) -> None:
    paths = write_volumes(tmp_path, instances=True)
    config = replace(TINY, val_slices=(5,), val_every=4, train_slices="0-4")
    result = train(*paths, tmp_path / "out", tmp_path / "state.pt", config)
    out = tmp_path / "out"
    assert result["steps"] == 6 and result["resumed_from"] == 0
    assert result["model"] == str(out / "model.pt")
    model = load_model(out / "model.pt", arch=config.arch)
    meta = read(out / "model.pt")["meta"]
    assert meta["steps"] == 6 and meta["config"]["output_tile"] == (8, 8)
    assert meta["loss"] == pytest.approx(result["loss"]) and math.isfinite(meta["loss"])
    assert model.arch == config.arch
    rows = read_csv(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["val_pixel_error"] != "" for r in rows] == [False] * 3 + [True, False, True]
    assert float(rows[-1]["val_pixel_error"]) == pytest.approx(result["val_pixel_error"])
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and float(rows[0]["lr"]) == pytest.approx(0.01)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "state.pt").exists()


@pytest.mark.parametrize(
    ("optimizer", "lr", "precision"),
    [("sgd", 0.05, "fp32"), ("adam", 0.01, "fp32"), ("sgd", 0.05, "bf16")],
)
def test_training_fits_a_batch(optimizer, lr, precision, monkeypatch) -> None:
    monkeypatch.setattr("unet.training.step.native_cpu_bf16", lambda: True)  # no warning here
    config = replace(TINY, base_channels=4, dropout=0.0, lr=lr, schedule="constant")
    trainer = Trainer(
        replace(config, optimizer=optimizer, precision=precision), torch.device("cpu")
    )
    kind = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    assert type(trainer.optimizer) is kind and trainer.lr == pytest.approx(lr)
    rng = np.random.default_rng(0)
    classes = torch.from_numpy(rng.integers(0, 2, (1, 24, 24)))
    batch = (
        classes[:, None].float() + 0.1 * torch.rand(1, 1, 24, 24),
        classes,
        torch.ones(1, 24, 24),
    )
    losses = [float(trainer.step(batch)) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(native, monkeypatch) -> None:
    monkeypatch.setattr("unet.training.step.native_cpu_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(replace(TINY, precision="bf16"), torch.device("cpu"))
        Trainer(replace(TINY, precision="fp32"), torch.device("cpu"))
    emulated = [w for w in caught if "without native bf16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)


def test_mismatched_volumes_name_the_files(tmp_path) -> None:
    raw, labels, weights = write_volumes(tmp_path / "a")
    other = write_volumes(tmp_path / "b", shape=(6, 32, 40))[2]
    with pytest.raises(
        ValueError,
        match=r"labels.zarr \(6, 32, 32\), .*b/weights.zarr "
        r"\(6, 32, 40\)",
    ):
        train(raw, labels, other, tmp_path / "out", tmp_path / "s.pt", TINY)


def test_volume_smaller_than_context_raises(tmp_path) -> None:
    paths = write_volumes(tmp_path, shape=(2, 32, 32))
    with pytest.raises(
        ValueError,
        match=r"raw volume .*raw.zarr of shape \(2, 32, 32\) is "
        "smaller than the network context 16 along axis z",
    ):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", TINY_3D)


def test_slices_outside_the_volume_raise(tmp_path) -> None:
    paths = write_volumes(tmp_path)
    with pytest.raises(ValueError, match=r"val_slices \[6\] outside"):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", replace(TINY, val_slices=(6,)))


def test_divergence_raises(tmp_path) -> None:
    paths = write_volumes(tmp_path)
    with pytest.raises(FloatingPointError, match="training diverged: loss nan"):
        train(*paths, tmp_path / "out", tmp_path / "s.pt", replace(TINY, lr=1e30))


# ---- metrics files ------------------------------------------------------------------------


def test_metrics_csv_and_curve(tmp_path) -> None:
    rows = [
        {
            "step": s,
            "loss": 1 / s,
            "lr": 0.01,
            "seconds": 2.0 * s,
            "val_pixel_error": 0.3 / s if s % 50 == 0 else None,
        }
        for s in range(1, 201)
    ]
    write_csv(tmp_path / "m.csv", rows)
    back = read_csv(tmp_path / "m.csv")
    assert list(back[0]) == ["step", "loss", "lr", "seconds", "val_pixel_error"]
    assert back[0]["val_pixel_error"] == "" and float(back[49]["val_pixel_error"]) == 0.006
    assert time_to_error(rows, 0.003) == 200.0 and time_to_error(rows, 0.001) is None
    plot(tmp_path / "c.png", rows)
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp"))
