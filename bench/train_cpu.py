"""CPU training step: fp32 against bf16 autocast (and channels-last, which the Trainer leaves off
on CPUs), with the project's own :class:`unet.training.step.Trainer`.

The net and tile of a config file (default: the CPU recipe, 32 base channels, 116² output from
300² input), batch 1, random data; the variants run interleaved ``--repeats`` times ``--steps``
steps each after two warm-up steps; median seconds per step and speed relative to fp32.  bf16
is only fast where the CPU computes it natively (AVX512-BF16 or AMX; printed): elsewhere
oneDNN emulates it.

    python bench/train_cpu.py [--config config/isbi2012-cpu.yaml] [--threads 2] [--repeats 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from unet.cli.training import train_config
from unet.training.config import TrainConfig
from unet.training.step import Trainer, native_cpu_bf16


def trainer(config: TrainConfig, precision: str, channels_last: bool) -> Trainer:
    out = Trainer(dataclasses.replace(config, precision=precision), torch.device("cpu"))
    if channels_last:  # what the Trainer does on CUDA, forced here
        out.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        out.memory_format = torch.channels_last
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("config/isbi2012-cpu.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per timing")
    ap.add_argument("--out", type=Path, default=Path("bench/out/train_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # the TrainConfig that `unet train --config F` builds (unknown keys are bad input there)
    namespace = argparse.Namespace(config=str(args.config))
    config = train_config(namespace, device="cpu", workers=0, val_every=0)
    shape = config.input_tile
    batch = (
        torch.rand(1, 1, *shape),
        torch.randint(0, 2, (1, *shape)),
        torch.ones(1, *shape),
    )
    variants = {
        "fp32": trainer(config, "fp32", False),
        "bf16 autocast": trainer(config, "bf16", False),
        "fp32 channels-last": trainer(config, "fp32", True),
        "bf16 channels-last": trainer(config, "bf16", True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for t in variants.values():
        for _ in range(2):
            float(t.step(batch))
    for _ in range(args.repeats):
        for name, t in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                float(t.step(batch))
            times[name].append((time.perf_counter() - start) / args.steps)
    native = native_cpu_bf16()
    print(
        f"U-Net base {config.base_channels} depth {config.depth}, input {shape}, batch 1, "
        f"{args.threads} threads; native bf16: {native}"
    )
    base = statistics.median(times["fp32"])
    print(f"{'variant':<22} {'median ms/step':>15} {'steps/s':>8} {'vs fp32':>8}")
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = {"seconds": t, "median_s": med, "speedup": base / med}
        print(f"{name:<22} {med * 1000:15.1f} {1 / med:8.2f} {base / med:7.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"config": str(args.config), "input": list(shape), "threads": args.threads}
    args.out.write_text(json.dumps({**summary, "native_bf16": native, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
