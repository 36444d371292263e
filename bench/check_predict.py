"""Step 3 of ``bench/gpu_check.py``: prediction throughput of the paper net, Zarr -> Zarr.

A synthetic uint8 EM-like volume (:func:`predict_gpu.synthetic_em`, written slab by slab by a
thread pool) is predicted by ``unet.prediction.run.predict_volume`` in each mode of :data:`MODES`:
fp32 (cuDNN may use TF32), bf16 autocast, and the fast path (bf16, channels-last, one CUDA graph
per batch, more tiles per forward, more blocks in flight and I/O threads).  Each mode warms up on
one block of slices (cuDNN autotuning, graph capture), then predicts as many whole blocks of
slices as its time budget allows at the warm-up rate (all of them if they fit) and records
output Mpx/s end to end.  Beside them: the bare forward pass of each precision on a resident
batch (the ceiling), and MONAI ``sliding_window_inference`` (the paper net same-padded, roi =
our output tile, overlap 0.25, gaussian, same precision and batch) reading and writing the same
Zarr volumes slice by slice, as the anchor.  Results go to ``record`` after every row.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from predict_gpu import bare_rate, synthetic_em

from unet.checkpoint import save_model
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.prediction.tiles import CudaGraphs, Predictor, autocast, tile_plan

Record = Callable[[str, Any], None]

MODES: dict[str, dict[str, Any]] = {
    "fp32 (TF32 convolutions)": {"precision": "fp32", "channels_last": True},
    "bf16 autocast": {"precision": "bf16", "channels_last": True},
    "fast: bf16, CUDA graphs, 8 tiles per batch, 3 blocks in flight": {
        "precision": "bf16",
        "channels_last": True,
        "cuda_graphs": True,
        "tiles_per_batch": 8,
        "concurrent_blocks": 3,
        "io_threads": 6,
        "prefetch": 2,
    },
}


def write_volume(path: Path, shape: tuple[int, int, int], chunks: tuple[int, ...], threads: int):
    """Create the raw OME-Zarr volume, 8-slice slabs generated and written by ``threads``."""
    arr = ngff.create(path, shape, np.uint8, chunks, (1, 1, 1))
    step = max(chunks[0], 8)

    def slab(z0: int) -> None:
        n = min(step, shape[0] - z0)
        arr[z0 : z0 + n] = synthetic_em(n, shape[1], seed=z0)[:, : shape[1], : shape[2]]

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(slab, range(0, shape[0], step)))
    return arr


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_mode(
    work: Path, base: dict[str, Any], extra: dict[str, Any], budget: float, volume: tuple
) -> dict[str, Any]:
    """Warm up on one block of slices, then time a pass over as many blocks as fit ``budget``."""
    cfg = PredictConfig(**{**base, **extra})
    bz = cfg.block_shape[0]
    slice_px = volume[1] * volume[2]

    def once(z1: int) -> tuple[float, dict[str, Any]]:
        shutil.rmtree(work / "o.zarr", ignore_errors=True)
        start = time.perf_counter()
        summary = predict_volume(
            work / "m.pt", work / "raw.zarr", work / "o.zarr", cfg, z_range=(0, z1)
        )
        return time.perf_counter() - start, summary

    warm, _ = once(bz)
    warm_rate = bz * slice_px / warm
    z1 = int(min(volume[0], max(bz, budget * warm_rate / slice_px // bz * bz)))
    seconds, summary = once(z1)
    shutil.rmtree(work / "o.zarr", ignore_errors=True)
    return {
        "settings": extra,
        "slices": z1,
        "gigapixels": z1 * slice_px / 1e9,
        "seconds": seconds,
        "mpx_per_s": z1 * slice_px / seconds / 1e6,
        "block_phase_mpx_per_s": summary["voxels"] / summary["seconds"] / 1e6,
        "warmup_seconds": warm,
    }


def graphed_bare_rate(net: UNet, tile_in: tuple, tile_out: int, batch: int, device: str) -> float:
    """Output pixels/s of the fast path's graphed forward (uint8 in, uint8 out) on a resident
    batch."""
    pred = Predictor(net, device, "bf16", True)
    pred.autocast_cache = False

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.round(pred.forward(x.float() / 255) * 255).to(torch.uint8)

    graphs = CudaGraphs(fn, torch.device(device))
    x = torch.randint(0, 256, (batch, 1, *tile_in), dtype=torch.uint8, device=device)
    graphs(x)
    sync()
    start, n = time.perf_counter(), 5
    for _ in range(n):
        graphs(x)
    sync()
    return n * batch * tile_out**2 / (time.perf_counter() - start)


def run_monai(
    work: Path, net: torch.nn.Module, tile: int, batch: int, device: str, budget: float, shape
) -> dict[str, Any]:
    """MONAI sliding-window inference over whole slices read from and written to Zarr."""
    from monai.inferers import sliding_window_inference

    raw = ngff.open_array(work / "raw.zarr")
    out = ngff.create(work / "monai.zarr", shape, np.uint8, raw.chunks, (1, 1, 1))
    dev = torch.device(device)
    fmt = torch.channels_last
    net = net.to(dev).eval().to(memory_format=fmt)  # type: ignore[call-overload]
    precision = "bf16" if dev.type == "cuda" else "fp32"

    def fn(x: torch.Tensor) -> torch.Tensor:
        with autocast(dev, precision):  # type: ignore[arg-type]
            return torch.softmax(net(x.contiguous(memory_format=fmt)).float(), 1)

    @torch.inference_mode()
    def predict(slice_: torch.Tensor) -> np.ndarray:
        img = slice_.to(dev).float()[None, None] / 255
        prob = sliding_window_inference(img, (tile, tile), batch, fn, overlap=0.25, mode="gaussian")
        return torch.round(prob[0, 1] * 255).to(torch.uint8).cpu().numpy()  # type: ignore

    predict(torch.from_numpy(np.asarray(raw[0])))  # warm-up: cuDNN autotuning of the window
    sync()
    reader, writer = ThreadPoolExecutor(2), ThreadPoolExecutor(4)  # as ours: I/O overlapped
    start, z, writes = time.perf_counter(), 0, []

    def load(k: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(raw[min(k, shape[0] - 1)]))

    ahead = [reader.submit(load, k) for k in (0, 1)]
    while z < shape[0] and (z == 0 or time.perf_counter() - start < budget):
        img = ahead.pop(0).result()
        ahead.append(reader.submit(load, z + 2))
        writes.append(writer.submit(out.__setitem__, z, predict(img)))
        z += 1
    for w in writes:
        w.result()
    seconds = time.perf_counter() - start
    reader.shutdown(cancel_futures=True)
    writer.shutdown()
    shutil.rmtree(work / "monai.zarr", ignore_errors=True)
    px = z * shape[1] * shape[2]
    return {
        "slices": z,
        "gigapixels": px / 1e9,
        "seconds": seconds,
        "mpx_per_s": px / seconds / 1e6,
        "roi": [tile, tile],
        "sw_batch_size": batch,
        "precision": precision,
    }


def throughput(work: Path, opts: dict[str, Any], record: Record) -> None:
    """Run the throughput step; ``opts``: shape, tile, batch, block_slices, base, device,
    chunk, budgets (per mode name, ``monai``, ``bare``), threads."""
    device, shape, tile = opts["device"], tuple(opts["shape"]), opts["tile"]
    torch.manual_seed(0)
    net = UNet(base_channels=opts["base"], depth=4, dropout=0.0).eval()
    save_model(work / "m.pt", net)
    chunks = (1, min(opts["chunk"], shape[1]), min(opts["chunk"], shape[2]))
    start = time.perf_counter()
    write_volume(work / "raw.zarr", shape, chunks, opts["threads"])
    size = sum(f.stat().st_size for f in (work / "raw.zarr").rglob("*") if f.is_file())
    record(
        "volume",
        {
            "shape": list(shape),
            "gigabytes": float(np.prod(shape)) / 1e9,
            "stored_gigabytes": size / 1e9,
            "chunks": list(chunks),
            "write_seconds": time.perf_counter() - start,
        },
    )
    plan = tile_plan(net, shape, (1, tile, tile))
    record("tile", {"output": tile, "input": list(plan.input_shape[1:])})
    base = {
        "block_shape": (opts["block_slices"], shape[1], shape[2]),
        "tile_shape": (1, tile, tile),
        "chunks": chunks,
        "tiles_per_batch": opts["batch"],
        "device": device,
        "io_threads": 4,
        "prefetch": 2,
        "threads": opts["threads"],
        "cluster": "none",
        "concurrent_blocks": 2,
        "pyramid_levels": 1,
    }
    record("base_settings", {k: list(v) if isinstance(v, tuple) else v for k, v in base.items()})
    for name, extra in MODES.items():
        if extra.get("cuda_graphs") and device != "cuda":
            extra = {k: v for k, v in extra.items() if k != "cuda_graphs"}
        budget = opts["budgets"].get(name.split(":")[0], opts["budgets"]["default"])
        record(f"modes/{name}", _guard(lambda e=extra, b=budget: run_mode(work, base, e, b, shape)))
        if device == "cuda":
            torch.cuda.empty_cache()
    n_in = plan.input_shape[1:]
    for precision in ("fp32", "bf16"):
        record(
            f"bare_forward/{precision}",
            _guard(
                lambda p=precision: {
                    "mpx_per_s": bare_rate(net, n_in, tile, opts["batch"], p, True, device) / 1e6,
                    "tiles_per_batch": opts["batch"],
                }
            ),
        )
    if device == "cuda":
        record(
            "bare_forward/fast: bf16, CUDA graph, 8 tiles per batch",
            _guard(lambda: {"mpx_per_s": graphed_bare_rate(net, n_in, tile, 8, device) / 1e6}),
        )
    from predict import SameUNet

    same = SameUNet(opts["base"], 4)
    record(
        "monai",
        _guard(
            lambda: run_monai(
                work, same, tile, opts["batch"], device, opts["budgets"]["monai"], shape
            )
        ),
    )


def _guard(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or ``{"error": ...}`` if it raised: one failing row never stops the others."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - recorded, the check goes on
        return {"error": f"{type(err).__name__}: {err}"}
