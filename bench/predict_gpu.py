"""GPU throughput of the paper's net (base 64, depth 4, 2D) predicting Zarr -> Zarr.

Needs only ``unet`` plus torch, numpy, zarr, numcodecs, dask/distributed.  Writes a synthetic
64 x 2048 x 2048 uint8 EM-like volume, warms up each setting on its first 8 slices (cuDNN
autotuning), then times full passes (median of ``--repeats``), each writing uint8 probabilities:

* fp32 (cuDNN may use TF32), bf16 autocast, bf16 + channels_last, fp16 + channels_last, in this
  process (``cluster="none"``), output ``compression`` zstd:1 (the default) and bf16 +
  channels_last with zstd:5 (the earlier codec), and through a one-worker Dask LocalCluster;
* the bare forward pass of the same batch shape on data already on the GPU (the upper bound).

    python bench/predict_gpu.py [--slices 64] [--size 2048] [--tile 2048] [--batch 4]
                                [--chunk 512] [--compile] [--out bench/out/predict_gpu.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet.checkpoint import save_model
from unet.geometry import TilePlan
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.prediction.tiles import Predictor, read_batch, tile_plan


def synthetic_em(slices: int, size: int, seed: int = 0) -> np.ndarray:
    """``(slices, size, size)`` uint8: 32-pixel blobs plus noise (compresses like EM)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 210, (slices, size // 32, size // 32), dtype=np.uint8)
    img = np.repeat(np.repeat(coarse, 32, axis=1), 32, axis=2)
    noise = rng.integers(-20, 21, (1, size, size), dtype=np.int16)  # one noise field, shifted
    for z in range(slices):
        img[z] = np.clip(img[z] + np.roll(noise[0], 7 * z, axis=1), 0, 255)
    return img


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bare_rate(
    net: UNet,
    tile_in: tuple[int, ...],
    tile_out: int,
    batch: int,
    precision: str,
    channels_last: bool,
    device: str,
    repeats: int = 5,
) -> float:
    """Output pixels/s of ``model(x)`` alone on a resident batch (same shapes as the run)."""
    pred = Predictor(net, device, precision, channels_last)  # type: ignore[arg-type]
    x = torch.rand(batch, 1, *tile_in, device=device)
    for _ in range(2):
        pred.forward(x)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        pred.forward(x)
    sync()
    return repeats * batch * tile_out**2 / (time.perf_counter() - start)


def host_io(work: Path, plan: TilePlan, batch: int, block_slices: int) -> dict[str, float]:
    """Seconds for the host side of one batch (read + mirror + stack into pinned memory) and
    one block write (uint8, compressed), each on one thread: what the GPU must not wait for."""
    raw = ngff.open_array(work / "raw.zarr")
    tiles = [plan[i] for i in range(batch)]
    dest = torch.empty(
        (batch, 1, *plan.input_shape[1:]), dtype=torch.uint8, pin_memory=torch.cuda.is_available()
    )
    out = ngff.create(work / "io.zarr", raw.shape, np.uint8, (1, 512, 512), (1, 1, 1))
    values = np.asarray(raw[:block_slices])
    times: dict[str, list[float]] = {"read batch": [], "write block": []}
    for _ in range(3):
        start = time.perf_counter()
        read_batch(raw, tiles, True, 0, dest)
        times["read batch"].append(time.perf_counter() - start)
        start = time.perf_counter()
        out[:block_slices] = values
        times["write block"].append(time.perf_counter() - start)
    shutil.rmtree(work / "io.zarr")
    return {k: statistics.median(v) for k, v in times.items()}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=2048, help="output tile edge (multiple of 16)")
    ap.add_argument("--batch", type=int, default=4, help="tiles (slices) per forward pass")
    ap.add_argument("--block-slices", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=512, help="raw and output chunk edge (y, x)")
    ap.add_argument("--prefetch", type=int, default=2, help="batches read ahead per block")
    ap.add_argument("--concurrent-blocks", type=int, default=2, help="blocks in flight per GPU")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="add a torch.compile row")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: smoke test with tiny sizes only")
    ap.add_argument("--base", type=int, default=64, help="base channels (64: the paper)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/predict_gpu.json"))
    return ap.parse_args()


def write_inputs(
    args: argparse.Namespace, work: Path
) -> tuple[UNet, np.ndarray, tuple[int, int, int]]:
    """The paper's net (random weights) as ``m.pt`` and the synthetic raw volume as
    ``raw.zarr`` in ``work``; the net, the volume and its chunks."""
    torch.manual_seed(0)
    net = UNet(base_channels=args.base, depth=4, dropout=0.0).eval()
    save_model(work / "m.pt", net)
    t0 = time.perf_counter()
    raw = synthetic_em(args.slices, args.size)
    chunks = (1, min(args.chunk, args.size), min(args.chunk, args.size))
    ngff.create(work / "raw.zarr", raw.shape, np.uint8, chunks, (1, 1, 1))[:] = raw
    print(f"wrote raw {raw.shape} in {time.perf_counter() - t0:.1f}s", flush=True)
    return net, raw, chunks


def common_settings(
    args: argparse.Namespace, tile: tuple[int, int, int], chunks: tuple[int, int, int]
) -> dict[str, Any]:
    """The PredictConfig fields that every row shares."""
    return {
        "block_shape": (args.block_slices, args.size, args.size),
        "tile_shape": tile,
        "chunks": chunks,
        "tiles_per_batch": args.batch,
        "device": args.device,
        "io_threads": 4,
        "prefetch": args.prefetch,
        "threads": 4,
        "cluster": "none",
        "concurrent_blocks": args.concurrent_blocks,
    }


def settings(args: argparse.Namespace, cluster: Any) -> dict[str, dict[str, object]]:
    """The rows of the table: name -> PredictConfig fields over the common ones."""
    bf16_cl: dict[str, object] = {"precision": "bf16", "channels_last": True}
    modes: dict[str, dict[str, object]] = {
        "fp32": {"precision": "fp32"},
        "bf16": {"precision": "bf16"},
        "bf16 + channels_last": bf16_cl,
        "fp16 + channels_last": {"precision": "fp16", "channels_last": True},
        "bf16 + channels_last, output zstd:5": {**bf16_cl, "compression": "zstd:5"},
        "bf16 + channels_last, 1 block at a time": {**bf16_cl, "concurrent_blocks": 1},
    }
    if args.compile:
        modes["bf16 + channels_last + compile"] = {**bf16_cl, "compile": True}
    if cluster is not None:
        modes["bf16 + channels_last, Dask LocalCluster 1 worker"] = {
            **bf16_cl,
            "cluster": cluster.scheduler_address,
        }
    return modes


def measure(
    args: argparse.Namespace,
    work: Path,
    net: UNet,
    plan: TilePlan,
    cfg: PredictConfig,
    extra: dict[str, object],
    pixels: int,
) -> dict[str, Any]:
    """One row: warm up on the first block, then ``args.repeats`` timed passes, and the bare
    forward pass of the same setting (in this process only)."""

    def run(z_range: tuple[int, int] | None = None) -> tuple[float, float]:
        """Seconds end to end (prepare, blocks, finalise) and of the block phase alone."""
        shutil.rmtree(work / "o.zarr", ignore_errors=True)
        start = time.perf_counter()
        summary = predict_volume(
            work / "m.pt", work / "raw.zarr", work / "o.zarr", cfg, z_range=z_range
        )
        return time.perf_counter() - start, summary["seconds"]

    warm = run((0, args.block_slices))[0]
    passes = [run() for _ in range(args.repeats)]
    times, block_times = [p[0] for p in passes], [p[1] for p in passes]
    bare = None
    if extra.get("cluster") is None:
        bare = bare_rate(
            net,
            plan.input_shape[1:],
            args.tile,
            args.batch,
            str(extra["precision"]),
            bool(extra.get("channels_last")),
            args.device,
        )
    return {
        "seconds": times,
        "block_phase_seconds": block_times,
        "block_phase_mpx_per_s": pixels / statistics.median(block_times) / 1e6,
        "warmup_seconds": warm,
        "mpx_per_s": pixels / statistics.median(times) / 1e6,
        "bare_forward_mpx_per_s": None if bare is None else bare / 1e6,
    }


def print_table(results: dict[str, dict[str, Any]], header: str) -> None:
    print(header)
    print("Mpx/s: end to end (prepare + blocks + finalise) and of the block phase alone")
    print(f"{'setting':<50} {'e2e':>6} {'blocks':>7} {'bare fwd':>9} {'blocks/bare':>12}")
    for name, r in results.items():
        bare = r["bare_forward_mpx_per_s"]
        frac = f"{r['block_phase_mpx_per_s'] / bare:12.0%}" if bare else f"{'':>12}"
        bare_s = f"{bare:9.1f}" if bare else f"{'':>9}"
        print(f"{name:<50} {r['mpx_per_s']:6.1f} {r['block_phase_mpx_per_s']:7.1f} {bare_s} {frac}")


def main() -> None:
    args = parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("predict_gpu.py needs CUDA (--device cpu only for a smoke test)")
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    net, raw, chunks = write_inputs(args, work)
    tile = (1, args.tile, args.tile)
    plan = tile_plan(net, raw.shape, tile)
    base = common_settings(args, tile, chunks)
    cluster = None
    if not args.no_dask:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=1, threads_per_worker=args.concurrent_blocks, dashboard_address=":0"
        )
    modes = settings(args, cluster)
    io = host_io(work, plan, args.batch, args.block_slices)
    print("host I/O, one thread: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in io.items()))
    results = {}
    for name, extra in modes.items():
        cfg = PredictConfig(**{**base, **extra})  # type: ignore[arg-type]
        results[name] = measure(args, work, net, plan, cfg, extra, raw.size)
        if args.device == "cuda":
            torch.cuda.empty_cache()
        times = results[name]["seconds"]
        print(
            f"{name}: {results[name]['mpx_per_s']:.1f} Mpx/s "
            f"(passes {[round(t, 2) for t in times]} s)",
            flush=True,
        )
    if cluster is not None:
        cluster.close()
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print_table(
        results,
        f"\n{dev}, torch {torch.__version__}; U-Net base {args.base}, depth 4, 2D; volume "
        f"{raw.shape} uint8 Zarr -> uint8 Zarr; tile {tile} (net input {plan.input_shape[1:]}),"
        f" {args.batch} tiles per forward; blocks {base['block_shape']}, "
        f"{args.concurrent_blocks} in flight; median of {args.repeats}",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "device": dev,
        "torch": torch.__version__,
        "volume": list(raw.shape),
        "tile": list(tile),
        "net_input": list(plan.input_shape),
        "tiles_per_batch": args.batch,
        "block_shape": list(base["block_shape"]),
        "repeats": args.repeats,
        "host_io_seconds": io,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
