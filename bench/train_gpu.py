"""Training speed of the paper's net on one GPU: fp32 vs TF32 vs bf16 autocast.

The paper's setting: 2D U-Net, 64 base channels, depth 4, batch 1, 572 x 572 input tiles
(388 x 388 output).  Each variant times :meth:`unet.training.loop.Trainer.step` (the training
loop's own
step: host-to-device copy of a pinned batch, forward, weighted cross-entropy, backward, SGD with
momentum, LR schedule) back to back, with CUDA events, after warm-up steps that let cuDNN pick its
algorithms.  Synthetic in-memory data (no Zarr, no augmentation: see ``unet.stages.doctor`` for
those).

Variants (all channels_last, cuDNN benchmark on):

* ``fp32``   : float32 convolutions in IEEE precision (TF32 off),
* ``tf32``   : float32 tensors, cuDNN convolutions in TF32 (PyTorch's default for convolutions),
* ``bf16``   : autocast to bfloat16,
* ``bf16-nchw`` : autocast to bfloat16 without channels_last, to show what the layout is worth.

Peak memory is the steady state (after warm-up; cuDNN's algorithm search may briefly use much
more).  Achieved TFLOP/s counts 3x the forward convolution FLOPs per step (forward, input gradient,
weight gradient).  Run from the repository root (the GPU machine has no editable install)::

    PYTHONPATH=. python3 bench/train_gpu.py            # writes bench/out/train_gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unet.training.config import Precision, TrainConfig
from unet.training.step import Trainer, torch_settings

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, tuple[Precision, str, bool]] = {
    # name: (precision, cuDNN fp32 convolution precision, channels_last)
    "fp32": ("fp32", "ieee", True),
    "tf32": ("fp32", "tf32", True),
    "bf16": ("bf16", "tf32", True),
    "bf16-nchw": ("bf16", "tf32", False),
}


def conv_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs (2 per multiply-add) of all (transposed) convolutions for input ``x``."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.modules.conv._ConvNd)  # hooks are only on convolutions
        k = math.prod(module.kernel_size)
        if module.transposed:  # stride = kernel: each input voxel feeds k outputs per channel
            total += 2 * inputs[0].numel() * module.out_channels * k
        else:
            total += 2 * out.numel() * module.in_channels * k

    convs = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convs)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def set_conv_precision(mode: str) -> None:
    """cuDNN float32 convolutions in ``ieee`` or ``tf32`` precision."""
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9
        torch.backends.cudnn.conv.fp32_precision = mode  # type: ignore[attr-defined]
    else:
        torch.backends.cudnn.allow_tf32 = mode == "tf32"


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    precision, conv_precision, channels_last = VARIANTS[name]
    config = TrainConfig(
        base_channels=args.base,
        depth=args.depth,
        output_tile=(args.tile, args.tile),
        batch_size=args.batch,
        steps=10**6,
        device="cuda",
        precision=precision,
        channels_last=channels_last,
        augment=None,
        dropout=0.5,
        lr=1e-4,
    )
    set_conv_precision(conv_precision)
    device = torch.device("cuda")
    shape = (args.batch, *config.input_tile)
    gen = torch.Generator().manual_seed(0)
    batch = [
        torch.rand((shape[0], 1, *shape[1:]), generator=gen).pin_memory(),
        torch.randint(0, 2, shape, generator=gen).pin_memory(),
        (1 + 9 * torch.rand(shape, generator=gen)).pin_memory(),
    ]
    with torch_settings(config, device):
        trainer = Trainer(config, device)
        flops = 3 * conv_flops(trainer.model, batch[0][:1].to(device)) * args.batch
        warmup = []  # the first steps include cuDNN's algorithm search (benchmark mode)
        for _ in range(args.warmup):
            t0 = time.perf_counter()
            trainer.step(batch)
            torch.cuda.synchronize()
            warmup.append(time.perf_counter() - t0)
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.steps):
                loss = trainer.step(batch)
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop) / 1e3 / args.steps)
    per_step = statistics.median(times)
    result = {
        "variant": name,
        "input_tile": list(config.input_tile),
        "precision": precision,
        "conv_fp32_precision": conv_precision,
        "channels_last": channels_last,
        "steps_per_s": 1 / per_step,
        "ms_per_step": per_step * 1e3,
        "ms_per_step_all": [t * 1e3 for t in times],
        "tflops": flops / per_step / 1e12,
        "flops_per_step": flops,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "first_step_s": warmup[0],
        "warmup_s": sum(warmup),
        "final_loss": float(loss),
    }
    del trainer
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tile", type=int, default=388, help="output tile side (388 -> 572)")
    parser.add_argument("--base", type=int, default=64, help="base channels")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train_gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/train_gpu.py needs a CUDA GPU")
    rows = [run_variant(name, args) for name in args.variants]
    props = torch.cuda.get_device_properties(0)
    out = {
        "gpu": props.name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "input_tile": rows[0]["input_tile"],
        "output_tile": [args.tile, args.tile],
        "base_channels": args.base,
        "depth": args.depth,
        "batch_size": args.batch,
        "variants": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(
        f"{props.name}, torch {torch.__version__}, cuDNN {out['cudnn']}: U-Net base "
        f"{args.base}, depth {args.depth}, {out['input_tile'][0]}^2 -> {args.tile}^2, "
        f"batch {args.batch}"
    )
    print(
        f"{'variant':<10} {'steps/s':>8} {'ms/step':>8} {'TFLOP/s':>8} {'peak GiB':>9} "
        f"{'vs fp32':>8} {'1st step s':>10}"
    )
    base = next((r["steps_per_s"] for r in rows if r["variant"] == "fp32"), rows[0]["steps_per_s"])
    for r in rows:
        print(
            f"{r['variant']:<10} {r['steps_per_s']:8.2f} {r['ms_per_step']:8.2f} "
            f"{r['tflops']:8.1f} {r['peak_memory_gib']:9.2f} {r['steps_per_s'] / base:7.2f}x "
            f"{r['first_step_s']:10.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
