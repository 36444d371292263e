"""CPU throughput of blockwise prediction vs. MONAI sliding-window inference vs. a bare loop.

Side by side on one 2D volume with the same torch thread count:

(a) ours: ``unet.predict.predict_volume`` (raw read from Zarr, uint8 written to Zarr), in this
    process (``cluster="none"``) and through a one-worker Dask LocalCluster;
(b) MONAI ``sliding_window_inference`` (overlap 0.25, gaussian blending) with a same-padded U-Net
    of the same width and depth, on the volume already in memory; ``roi`` = our output tile
    (same output tile) and = our input tile rounded up to 2^depth (same memory per forward);
(c) a bare ``model(x)`` loop over exactly the tiles of (a), already in memory.

Output pixels per second (median over ``--repeats``); ratios are ours (in-process) / other.

    python bench/predict.py [--size 2048] [--tile 1024] [--base 16] [--depth 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from distributed import LocalCluster
from monai.inferers import sliding_window_inference
from torch import nn

from unet import ngff
from unet.checkpoint import save_model
from unet.geometry import read_mirrored
from unet.inference import tile_plan
from unet.model import UNet
from unet.normalize import to_unit
from unet.predict import PredictConfig, predict_volume


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/out/predict.json"))
    args = ap.parse_args()
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
    tile = (1, args.tile, args.tile)
    plan = tile_plan(net, raw.shape, tile)
    tiles = [torch.from_numpy(to_unit(read_mirrored(raw, t.read)))[:, None] for t in plan]
    image = torch.from_numpy(to_unit(raw))[None]  # (1, 1, Y, X)
    f = net.factor
    rois = {"same output tile": args.tile, "same input tile": -(-plan.input_shape[1] // f) * f}
    common = {
        "block_shape": tile,
        "chunks": (1, min(512, args.tile), min(512, args.tile)),
        "device": "cpu",
        "threads": args.threads,
        "io_threads": 1,
        "pyramid_levels": 1,
    }

    def ours(cluster: str, name: str = "raw.zarr") -> None:
        shutil.rmtree(work / "o.zarr", ignore_errors=True)
        cfg = PredictConfig(**common, cluster=cluster)  # type: ignore[arg-type]
        predict_volume(work / "m.pt", work / name, work / "o.zarr", cfg)

    @torch.inference_mode()
    def bare(xs: list[torch.Tensor] = tiles) -> None:
        for x in xs:
            torch.softmax(net(x), 1)

    @torch.inference_mode()
    def monai(roi: int, img: torch.Tensor = image) -> None:
        prob = sliding_window_inference(
            img, (roi, roi), 1, lambda x: torch.softmax(same(x), 1), overlap=0.25, mode="gaussian"
        )
        torch.round(prob[:, 1] * 255).to(torch.uint8)

    # a running one-worker cluster (its start-up is paid once per job, not per volume)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0")

    methods = {
        "ours (Zarr->Zarr, in-process)": lambda: ours("none"),
        "ours (Zarr->Zarr, Dask LocalCluster 1 worker)": lambda: ours(cluster.scheduler_address),
        "bare model(x) loop, same tiles in memory": bare,
        **{
            f"MONAI SWI roi {r} ({k}), overlap .25 gaussian": (lambda r=r: monai(r))
            for k, r in rois.items()
        },
    }
    # warm-up on one tile's worth (model caches, allocator, oneDNN primitives of these shapes)
    ours("none", "warm.zarr")
    ours(cluster.scheduler_address, "warm.zarr")
    bare(tiles[:1])
    for r in rois.values():
        monai(r, image[..., : args.tile, : args.tile])
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    pixels = raw.size
    rows = {name: pixels / statistics.median(t) for name, t in times.items()}
    ref = rows["ours (Zarr->Zarr, in-process)"]
    print(
        f"volume {raw.shape}, U-Net base {args.base} depth {args.depth}, tile {tile} "
        f"(net input {plan.input_shape[1:]}), {args.threads} threads, median of {args.repeats}"
    )
    print(f"{'method':<58} {'Mpx/s':>8} {'ours/this':>10}")
    for name, rate in rows.items():
        print(f"{name:<58} {rate / 1e6:8.3f} {ref / rate:10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
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
            },
            indent=2,
        )
    )
    cluster.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
