"""Host side of GPU prediction: how fast the engine's Zarr reads and writes run on the CPU.

On one H100 the paper net's bare forward pass ran at 156 Mpx/s (bf16 + channels_last, 2048²
tiles, ``bench/predict_gpu.py``) but Zarr -> Zarr only at 67 Mpx/s: the host side (reading
input boxes, compressing and writing probabilities) is what the GPU waits for.  This measures
that host side alone, on this machine's CPUs, with the engine's own functions:

* read: ``engine._read_batch`` of 4 tiles of the paper net's geometry (2236² read -> 2048²
  output, 4 consecutive slices, an interior position) into a uint8 buffer, as on CUDA;
* write: one (8, 2048, 2048) uint8 block of probabilities into a chunked, compressed output
  (what ``Engine.run`` hands to its writer threads), at distinct interior positions;

for raw and output chunks of 512² and 1024² and output codecs ``zstd:5`` (the codec of every
volume before predictions got their own setting), ``zstd:1`` (the new prediction default) and
``lz4:5``, each with 1 and ``--threads`` threads working on separate batches/blocks.  Output
megapixels/s, medians of ``--repeats``; all settings alternate within one run.

Data: ISBI 2012 training slices (``data/isbi2012``) tiled to (16, 6144, 6144) without repeats
inside a chunk (see :func:`data`); probabilities: its labels smoothed (Gaussian, sigma 2 px)
plus noise of 3 grey levels, as uint8.

    .venv/bin/python bench/predict_host.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

from unet.io import ngff
from unet.model import UNet
from unet.prediction.blocks import _read_batch
from unet.prediction.tiles import tile_plan

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (16, 6144, 6144)
TILE = 2048
BATCH = 4
BLOCK = (8, TILE, TILE)
CODECS = ("zstd:5", "zstd:1", "lz4:5")


def data() -> tuple[np.ndarray, np.ndarray]:
    """Raw EM and a probability map, both (16, 6144, 6144) uint8, tiled from ISBI 2012 so that
    no chunk holds the same image twice: tile (i, j) of slice z is ISBI slice
    (z + 2i + 5j) mod 30, x-flipped where i + j is odd (a compressor finds no repeats)."""
    raw = tifffile.imread(ROOT / "data/isbi2012/train-volume.tif")
    labels = tifffile.imread(ROOT / "data/isbi2012/train-labels.tif")
    smooth = ndi.gaussian_filter(labels.astype(np.float32), (0, 2, 2))
    noise = np.random.default_rng(0).normal(0, 3, labels.shape)
    prob = np.clip(np.round(smooth + noise), 0, 255).astype(np.uint8)
    n, h, w = raw.shape
    out = [np.empty(SHAPE, np.uint8) for _ in range(2)]
    for z in range(SHAPE[0]):
        for i in range(SHAPE[1] // h):
            for j in range(SHAPE[2] // w):
                src = (z + 2 * i + 5 * j) % n
                for dst, img in zip(out, (raw, prob), strict=True):
                    tile = img[src, :, ::-1] if (i + j) % 2 else img[src]
                    dst[z, i * h : (i + 1) * h, j * w : (j + 1) * w] = tile
    return out[0], out[1]


def rate(fn: Callable[[int], None], items: int, threads: int, pixels: int) -> float:
    """Output Mpx/s of ``fn(0) .. fn(items - 1)`` on ``threads`` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(items)))
    return items * pixels / (time.perf_counter() - start) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/out/predict_host.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-host-"))
    raw, prob = data()
    plan = tile_plan(UNet(base_channels=2, depth=4), SHAPE, (1, TILE, TILE))  # paper geometry
    centre = [plan.tile((z, 1, 1)) for z in range(SHAPE[0])]
    batches = [centre[i : i + BATCH] for i in range(0, SHAPE[0], BATCH)]
    positions = [(z, y, x) for z in (0, 8) for y in range(3) for x in range(3)]
    threads = sorted({1, args.threads})
    rows: dict[str, dict[str, list[float]]] = {}
    stored: dict[str, float] = {}
    arrays = {}
    for chunk in (512, 1024):
        chunks = (1, chunk, chunk)
        path = work / f"raw{chunk}.zarr"
        ngff.create(path, SHAPE, np.uint8, chunks, (1, 1, 1))[:] = raw
        arrays[chunk] = ngff.open_array(path)
    dest = torch.empty((BATCH, 1, *plan.input_shape[1:]), dtype=torch.uint8)
    for rep in range(args.repeats):
        for chunk in (512, 1024):
            chunks = (1, chunk, chunk)
            src = arrays[chunk]
            bufs = [torch.empty_like(dest) for _ in range(max(threads))]

            def read(i: int, src=src, bufs=bufs) -> None:  # type: ignore[no-untyped-def]
                _read_batch(src, batches[i % len(batches)], 0, True, bufs[i % len(bufs)])

            for t in threads:
                key = f"read, chunks {chunk}², raw zstd:5"
                rows.setdefault(key, {}).setdefault(str(t), []).append(
                    rate(read, 2 * t * len(batches), t, BATCH * TILE * TILE)
                )
            for codec in CODECS:
                out_path = work / f"out{chunk}-{codec.replace(':', '')}.zarr"
                shutil.rmtree(out_path, ignore_errors=True)
                out = ngff.create(out_path, SHAPE, np.uint8, chunks, (1, 1, 1), compression=codec)

                def write(i: int, out=out) -> None:  # type: ignore[no-untyped-def]
                    z, y, x = positions[i % len(positions)]
                    box = np.s_[
                        z : z + BLOCK[0], y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE
                    ]
                    out[box] = prob[box]

                for t in threads:
                    key = f"write, chunks {chunk}², {codec}"
                    rows.setdefault(key, {}).setdefault(str(t), []).append(
                        rate(write, 2 * t * 2, t, int(np.prod(BLOCK)))
                    )
                if rep == 0:
                    files = [f for f in (out_path / "0" / "c").rglob("*") if f.is_file()]
                    size = sum(f.stat().st_size for f in files)
                    stored[f"chunks {chunk}², {codec}"] = len(files) * chunk * chunk / size
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)
    med = {k: {t: statistics.median(v) for t, v in r.items()} for k, r in rows.items()}
    print(
        f"\nhost side of prediction, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; output Mpx/s, median of {args.repeats}; paper-net geometry "
        f"(2236² reads, 2048² tiles, {BATCH} per batch, blocks {BLOCK})"
    )
    print(f"{'stage':<34}" + "".join(f"{f'{t} thr':>10}" for t in threads) + f"{'ratio':>8}")
    for key, r in med.items():
        ratio = stored.get(key.split(", ", 1)[1])
        print(
            f"{key:<34}"
            + "".join(f"{r[str(t)]:10.0f}" for t in threads)
            + (f"{ratio:8.2f}" if ratio else "")
        )
    print("ratio: uncompressed / stored bytes of the written probabilities")
    for chunk in (512, 1024):
        base = med[f"write, chunks {chunk}², zstd:5"]
        new = med[f"write, chunks {chunk}², zstd:1"]
        print(
            f"chunks {chunk}²: zstd:1 writes {new['1'] / base['1']:.2f}x as fast as zstd:5 "
            f"on 1 thread"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpus": os.cpu_count(), "repeats": args.repeats, "mpx_per_s": med}
    result["compression_ratio"] = stored  # type: ignore[assignment]
    args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
