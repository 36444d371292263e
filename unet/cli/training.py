"""``unet train``, ``unet doctor`` (measured throughput, runtime estimates) and ``unet curve``
(a training run's metrics.csv summarised)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unet.cli.options import finish, override, section, settings
from unet.errors import InputError


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The flags of ``unet train`` that ``unet doctor`` takes too."""
    p.add_argument("--steps", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data-loader processes")


def train_config(args: argparse.Namespace, **fixed: Any) -> Any:
    """The TrainConfig of the ``model`` and ``train`` sections, ``fixed`` and the flags."""
    from unet.training.loop import TrainConfig

    fields = {**section(args, "model"), **section(args, "train"), **fixed}
    keys = ("steps", "device", "precision", "seed", "workers", "train_slices", "val_slices")
    override(fields, args, keys)
    return settings(TrainConfig, fields, args, "model/train")


def add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a U-Net (resumes from --state after a kill)")
    p.add_argument("raw")
    p.add_argument("labels")
    p.add_argument("weights")
    p.add_argument("out_dir", help="receives model.pt, metrics.csv, curve.png")
    p.add_argument("--state", help="training state file (default <out_dir>.partial/train_state.pt)")
    p.add_argument("--train-slices", help="e.g. 0-24 (default: all but the val slices)")
    p.add_argument("--val-slices", help="held-out slices for pixel-error monitoring, e.g. 25-29")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing out_dir when done")
    add_train_options(p)
    finish(p, _train)


def _train(args: argparse.Namespace) -> Any:
    from unet.stages.runner import limit_threads
    from unet.training.loop import train

    if args.threads:
        limit_threads(args.threads)
    from unet.io.outputs import partial_path

    # by default the state lives in the partial output: gone once the model is complete
    state = args.state or str(partial_path(args.out_dir) / "train_state.pt")
    return train(
        args.raw,
        args.labels,
        args.weights,
        args.out_dir,
        state,
        train_config(args),
        overwrite=args.overwrite,
    )


def add_doctor(sub: Any) -> None:
    p = sub.add_parser("doctor", help="versions, device, measured throughput, runtime estimates")
    p.add_argument("volumes", nargs="*", help="OME-Zarr volumes to estimate prediction time for")
    p.add_argument("--seconds", type=float, default=3.0, help="measurement budget")
    add_train_options(p)
    finish(p, _doctor)


def _doctor(args: argparse.Namespace) -> Any:
    from unet.stages.doctor import doctor, report

    volumes = {str(p): _voxels(p) for p in args.volumes}
    # the doctor times training steps and forward passes: it never validates
    result = doctor(train_config(args, val_every=0), volumes=volumes or None, seconds=args.seconds)
    print(report(result))
    return None


def _voxels(path: str) -> int:
    from unet.io import ngff

    shape = ngff.open_array(path).shape
    return int(shape[0]) * int(shape[1]) * int(shape[2])


def add_curve(sub: Any) -> None:
    p = sub.add_parser("curve", help="summarise metrics.csv: time to a held-out pixel error")
    p.add_argument("metrics", help="metrics.csv of a training run")
    p.add_argument("--error", type=float, default=0.08, help="pixel error to reach")
    finish(p, _curve, config=False)


def _curve(args: argparse.Namespace) -> Any:
    import csv

    from unet.training.curves import time_to_error

    path = Path(args.metrics)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file")
    try:
        with open(path, newline="") as fh:
            rows: list[dict[str, Any]] = [
                {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]
    except (UnicodeDecodeError, csv.Error, ValueError) as err:
        raise InputError(f"{path}: not a metrics.csv written by unet train ({err})") from err
    if not rows or "val_pixel_error" not in rows[0]:
        raise InputError(f"{path}: not a metrics.csv written by unet train")
    checked = [r for r in rows if r["val_pixel_error"] is not None]
    return {
        "steps": int(rows[-1]["step"]),
        "seconds": rows[-1]["seconds"],
        "best_val_pixel_error": min((r["val_pixel_error"] for r in checked), default=None),
        f"seconds_to_val_pixel_error_le_{args.error}": time_to_error(rows, args.error),
    }
