"""CPU throughput of blockwise prediction vs. MONAI sliding-window inference vs. a bare loop.

Side by side on one 2D volume with the same torch thread count:

(a) ours: ``unet.prediction.run.predict_volume`` (raw read from Zarr, uint8 written to Zarr), in
this
    process (``cluster="none"``) with the channels-last memory format (the pipeline's default,
    ``predict.channels_last: true``) and without it (NCHW), with one block of ``--threads``
    torch threads or two blocks of one thread each, and through a one-worker Dask LocalCluster;
(b) MONAI ``sliding_window_inference`` (overlap 0.25, gaussian blending) with a same-padded U-Net
    of the same width and depth, on the volume already in memory; ``roi`` = our output tile
    (same output tile) and = our input tile rounded up to 2^depth (same memory per forward),
    each with the net in NCHW and in channels-last format (what MONAI users get either way);
(c) a bare ``model(x)`` loop over exactly the tiles of (a), already in memory, NCHW and
    channels-last.

All rows run interleaved (one pass of every row per repeat) so that load from other processes
hits them alike.  Output pixels per second (median over ``--repeats``); the ratio column is ours
(in-process, channels-last) / the row.

    python bench/predict.py [--size 2048] [--tile 1024] [--base 16] [--depth 4] [--threads 2]
                            [--repeats 3] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import LocalCluster
from monai.inferers import sliding_window_inference
from torch import nn

from unet.checkpoint import save_model
from unet.geometry import read_mirrored
from unet.io import ngff
from unet.io.normalize import to_unit
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.prediction.tiles import tile_plan


class SameUNet(nn.Module):
    """The same U-Net with padding=1 convolutions (MONAI-style, no crops)."""

    def __init__(self, base: int, depth: int) -> None:
        super().__init__()
        chans = [base * 2**level for level in range(depth + 1)]

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.ReLU(inplace=True),
            )

        self.inc = double(1, chans[0])
        self.downs = nn.ModuleList(double(chans[i], chans[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.convs = nn.ModuleList(double(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.outc = nn.Conv2d(chans[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(nn.functional.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up, conv in zip(self.ups, self.convs, strict=True):
            x = conv(torch.cat([skips.pop(), up(x)], dim=1))
        return self.outc(x)


def synthetic_em(size: int, seed: int = 0) -> np.ndarray:
    """A (1, size, size) uint8 image with cell-like blobs and noise (compresses like EM)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 32 + 1, size // 32 + 1))
    img = np.kron(coarse, np.ones((32, 32)))[:size, :size]
    img = 60 + 150 * img + rng.normal(0, 15, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)[None]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="add a torch.compile row (slow start)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/predict.json"))
    return ap.parse_args()


def predict_settings(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """PredictConfig fields of our rows: channels-last, NCHW, two blocks in flight, compiled."""
    tile = (1, args.tile, args.tile)
    common = {
        "block_shape": tile,
        "chunks": (1, min(512, args.tile), min(512, args.tile)),
        "device": "cpu",
        "threads": args.threads,
        "io_threads": 1,
        "pyramid_levels": 1,
        "channels_last": True,
    }
    # the second block of two-blocks-in-flight needs a second block along y
    two = {**common, "block_shape": (1, args.tile, args.size), "tile_shape": tile}
    two |= {"concurrent_blocks": 2, "threads": max(1, args.threads // 2)}
    return {
        "cl": common,
        "nchw": {**common, "channels_last": False},
        "cl2": two,
        "compile": {**common, "compile": True},
    }


def summarise(
    args: argparse.Namespace,
    raw: np.ndarray,
    plan: Any,
    rois: dict[str, int],
    times: dict[str, list[float]],
) -> None:
    """Print the table (median and least disturbed pass, relative to ours) and write JSON."""
    tile = (1, args.tile, args.tile)
    pixels = raw.size
    rows = {name: pixels / statistics.median(t) for name, t in times.items()}
    best = {name: pixels / min(t) for name, t in times.items()}  # the least disturbed pass
    ours_name = "ours (Zarr->Zarr, in-process, channels-last)"
    ref, ref_best = rows[ours_name], best[ours_name]
    print(
        f"volume {raw.shape}, U-Net base {args.base} depth {args.depth}, tile {tile} "
        f"(net input {plan.input_shape[1:]}), {args.threads} threads, {args.repeats} repeats"
    )
    print(f"{'method':<58} {'median':>8} {'best':>7} {'ours/this':>10} {'(best)':>7}")
    for name, rate in rows.items():
        print(
            f"{name:<58} {rate / 1e6:8.3f} {best[name] / 1e6:7.3f} {ref / rate:10.2f} "
            f"{ref_best / best[name]:7.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "volume": list(raw.shape),
        "base": args.base,
        "depth": args.depth,
        "tile": list(tile),
        "net_input": list(plan.input_shape),
        "threads": args.threads,
        "repeats": args.repeats,
        "monai_rois": rois,
        "seconds": times,
        "mpx_per_s_median": {k: v / 1e6 for k, v in rows.items()},
        "mpx_per_s_best": {k: v / 1e6 for k, v in best.items()},
    }
    args.out.write_text(json.dumps(record, indent=2))


def methods_of(
    ours: Callable[..., None],
    bare: Callable[..., None],
    monai: Callable[..., None],
    scheduler: str,
    rois: dict[str, int],
    compile: bool,
) -> dict[str, Callable[[], None]]:
    """The table's rows: name -> one timed pass."""
    methods = {
        "ours (Zarr->Zarr, in-process, channels-last)": lambda: ours("none"),
        "ours (Zarr->Zarr, in-process, NCHW)": lambda: ours("none", kind="nchw"),
        "ours (channels-last, 2 blocks x 1 thread)": lambda: ours("none", kind="cl2"),
        "ours (channels-last, Dask LocalCluster 1 worker)": lambda: ours(scheduler),
        "bare model(x) loop, same tiles, channels-last": lambda: bare(last=True),
        "bare model(x) loop, same tiles, NCHW": bare,
        **{
            f"MONAI SWI roi {r} ({k}), {fmt}": (lambda r=r, last=last: monai(r, last=last))
            for k, r in rois.items()
            for fmt, last in (("NCHW", False), ("channels-last", True))
        },
    }
    if compile:
        methods["ours (channels-last, torch.compile)"] = lambda: ours("none", kind="compile")
    return methods


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    net = UNet(base_channels=args.base, depth=args.depth, dropout=0.0).eval()
    same = SameUNet(args.base, args.depth).eval()
    save_model(work / "m.pt", net)
    raw = synthetic_em(args.size)
    ngff.create(work / "raw.zarr", raw.shape, np.uint8, (1, 512, 512), (1, 1, 1))[:] = raw
    small = raw[:, : args.tile, : args.tile]  # warm-up volume: same tile shapes, one tile
    ngff.create(work / "warm.zarr", small.shape, np.uint8, (1, 512, 512), (1, 1, 1))[:] = small
    plan = tile_plan(net, raw.shape, (1, args.tile, args.tile))
    tiles = [torch.from_numpy(to_unit(read_mirrored(raw, t.read)))[:, None] for t in plan]
    image = torch.from_numpy(to_unit(raw))[None]  # (1, 1, Y, X)
    f = net.factor
    rois = {"same output tile": args.tile, "same input tile": -(-plan.input_shape[1] // f) * f}
    settings = predict_settings(args)

    def ours(cluster: str, name: str = "raw.zarr", kind: str = "cl") -> None:
        shutil.rmtree(work / "o.zarr", ignore_errors=True)
        cfg = PredictConfig(**settings[kind], cluster=cluster)  # type: ignore[arg-type]
        predict_volume(work / "m.pt", work / name, work / "o.zarr", cfg)

    cl = torch.channels_last
    net_cl = copy.deepcopy(net).to(memory_format=cl)  # type: ignore[call-overload]
    same_cl = copy.deepcopy(same).to(memory_format=cl)  # type: ignore[call-overload]

    @torch.inference_mode()
    def bare(xs: list[torch.Tensor] = tiles, last: bool = False) -> None:
        for x in xs:
            if last:
                torch.softmax(net_cl(x.contiguous(memory_format=cl)), 1)
            else:
                torch.softmax(net(x), 1)

    @torch.inference_mode()
    def monai(roi: int, img: torch.Tensor = image, last: bool = False) -> None:
        model = same_cl if last else same

        def fn(x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=cl) if last else x
            return torch.softmax(model(x), 1)

        prob = sliding_window_inference(img, (roi, roi), 1, fn, overlap=0.25, mode="gaussian")
        torch.round(prob[:, 1] * 255).to(torch.uint8)

    # a running one-worker cluster (its start-up is paid once per job, not per volume)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0")

    methods = methods_of(ours, bare, monai, cluster.scheduler_address, rois, args.compile)
    # warm-up on one tile's worth (model caches, allocator, oneDNN primitives of these shapes)
    for kind in ("cl", "nchw", "cl2") + (("compile",) if args.compile else ()):
        ours("none", "warm.zarr", kind)
    ours(cluster.scheduler_address, "warm.zarr")
    bare(tiles[:1])
    bare(tiles[:1], last=True)
    for r in rois.values():
        monai(r, image[..., : args.tile, : args.tile])
        monai(r, image[..., : args.tile, : args.tile], last=True)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    summarise(args, raw, plan, rois, times)
    cluster.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
