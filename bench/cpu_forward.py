"""CPU forward pass of one tile: which of eager NCHW, channels-last, TorchScript freezing (oneDNN
conv + ReLU fusion) and torch.compile (inductor) is fastest on this machine.

The demo-size U-Net (base 16, depth 4) on one tile, ``--threads`` torch threads; each variant's
first call (compilation, oneDNN primitive creation) is reported apart, then the variants run
interleaved ``--repeats`` times; median seconds and output Mpx/s, and each variant's largest
difference from eager NCHW.

    python bench/cpu_forward.py [--tile 1024] [--threads 2] [--repeats 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unet.model import UNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tile", type=int, default=1024, help="output tile edge (made valid)")
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/out/cpu_forward.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet(base_channels=args.base, depth=4, dropout=0.0).eval()
    tile = net.valid_output(args.tile)
    x = torch.rand(1, 1, *net.input_shape((tile, tile)))
    cl = torch.channels_last
    net_cl = copy.deepcopy(net).to(memory_format=cl)  # type: ignore[call-overload]
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(copy.deepcopy(net), x))
        fused = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x)))
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "eager NCHW": net,
        "eager channels-last": lambda t: net_cl(t.contiguous(memory_format=cl)),
        "TorchScript frozen": frozen,
        "TorchScript optimize_for_inference": fused,
    }
    if not args.no_compile:
        variants["torch.compile (inductor)"] = torch.compile(copy.deepcopy(net))
    first, diff, times = {}, {}, {name: [] for name in variants}
    with torch.inference_mode():
        ref = net(x)
        for name, fn in variants.items():
            start = time.perf_counter()
            out = fn(x)
            first[name] = time.perf_counter() - start
            diff[name] = float((out - ref).abs().max())
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    print(
        f"U-Net base {args.base} depth 4, tile {tile}² (input {x.shape[-1]}²), "
        f"{args.threads} threads"
    )
    print(f"{'variant':<38} {'first s':>8} {'median s':>9} {'Mpx/s':>7} {'max |diff|':>11}")
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = {"first_s": first[name], "seconds": t, "mpx_per_s": tile**2 / med / 1e6}
        rate = rows[name]["mpx_per_s"]
        print(f"{name:<38} {first[name]:8.2f} {med:9.3f} {rate:7.3f} {diff[name]:11.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tile": tile, "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
