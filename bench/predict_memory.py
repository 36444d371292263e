"""Peak memory of blockwise prediction does not grow with the volume: a 20 GB vs a 0.2 GB raw.

Both raw volumes are uint8 Zarr arrays created without writing a chunk (every read returns the
fill value, generated lazily), so the 20 GB volume costs nothing on disk.  Each run happens in a
fresh subprocess (client, scheduler and two Dask workers as threads of that one process, so its
peak RSS covers all of them) with a tiny 2D U-Net on the CPU:

* 0.2 GB: ``predict_volume`` over the whole volume;
* 20 GB with ``--full``: ``predict_volume`` over the whole volume (80 x 32 x 32 = 81,920
  blocks, about 40 min on 2 cores);
* 20 GB without it (quick): ``prepare_output`` over the whole volume (full layout and its
  markers) and ``run_shard`` for shard 0 of N, N chosen so that it computes about as many
  blocks as the small run.

Memory is bounded by the blocks in flight (``max_in_flight``), not by the volume, which is what
equal peaks show.

    python bench/predict_memory.py [--full] [--block 512] [--out bench/out/predict_memory.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from unet.checkpoint import save_model
from unet.model import UNet

SHAPES = {"0.2 GB": (80, 1536, 1536), "20 GB": (80, 16384, 16384)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class TreeRSS:
    """Peak of the summed RSS of this process and its children (Dask worker processes), and
    the sum every ``log_every`` seconds, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.2, log_every: float = 60.0) -> None:
        import psutil

        self.proc, self.peak, self.series = psutil.Process(), 0.0, []
        self.interval, self.log_every = interval, log_every
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        start = last = time.perf_counter()
        while True:
            procs = [self.proc, *self.proc.children(recursive=True)]
            total = 0.0
            for p in procs:
                try:
                    total += p.memory_info().rss / 2**20
                except Exception:  # a process that just ended
                    pass
            self.peak = max(self.peak, total)
            if time.perf_counter() - last >= self.log_every:
                last = time.perf_counter()
                self.series.append((round(last - start), round(total)))
            time.sleep(self.interval)


def child(work: Path, case: str, block: int, full: bool, processes: bool) -> None:
    from unet.prediction.run import PredictConfig, predict_volume, prepare_output, run_shard

    base = peak_mb()
    tree = TreeRSS()
    cfg = PredictConfig(
        block_shape=(1, block, block),
        chunks=(1, block, block),
        device="cpu",
        cluster="local",
        processes=processes,
        workers=2,
        threads=1,
        io_threads=1,
    )
    raw, out = work / f"{case}.zarr", work / f"{case}-out.zarr"
    start = time.perf_counter()
    shape = SHAPES[case]
    if case == "0.2 GB" or full:
        summary = predict_volume(work / "m.pt", raw, out, cfg)
    else:
        small_blocks = SHAPES["0.2 GB"][0] * (-(-SHAPES["0.2 GB"][1] // block)) ** 2
        n_shards = round(shape[0] * (-(-shape[1] // block)) ** 2 / small_blocks)
        prepare_output(work / "m.pt", raw, out, cfg)
        summary = run_shard(work / "m.pt", raw, out, cfg, shard=0, n_shards=n_shards)
        summary["n_shards"] = n_shards
    print(
        json.dumps(
            {
                "case": case,
                "raw_gb": float(np.prod(shape)) / 1e9,
                "blocks_computed": summary["computed"],
                "seconds": time.perf_counter() - start,
                "baseline_rss_mb": base,
                "peak_rss_mb": peak_mb() if not processes else tree.peak,
                "rss_mb_every_minute": tree.series,
                "n_shards": summary.get("n_shards", 1),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("bench/out/predict_memory.json"))
    ap.add_argument("--full", action="store_true", help="the whole 20 GB volume, not one shard")
    ap.add_argument(
        "--processes",
        action="store_true",
        help="Dask workers as processes (production); peak = summed RSS of the process tree",
    )
    ap.add_argument("--child", nargs=2, metavar=("WORK", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.block, args.full, args.processes)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    torch.manual_seed(0)
    save_model(work / "m.pt", UNet(base_channels=2, depth=1, dropout=0.0))
    for case, shape in SHAPES.items():  # lazily filled: no chunk is ever written
        zarr.create_array(
            str(work / f"{case}.zarr"),
            shape=shape,
            chunks=(1, 1024, 1024),
            dtype=np.uint8,
            fill_value=128,
        )
    rows = []
    for case in SHAPES:
        cmd = [sys.executable, __file__, "--block", str(args.block), "--child", str(work), case]
        cmd += ["--full"] if args.full else []
        cmd += ["--processes"] if args.processes else []
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(
        f"tiny 2D U-Net (base 2, depth 1), blocks (1, {args.block}, {args.block}), CPU, "
        + (
            "2 Dask worker processes, peak of the summed RSS of the process tree"
            if args.processes
            else "2 Dask workers (threads), peak RSS of the whole process"
        )
    )
    print(
        f"{'raw':>8} {'shape':>20} {'shards':>7} {'blocks run':>11} {'s':>7} "
        f"{'RSS after import MB':>20} {'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r['case']:>8} {str(SHAPES[r['case']]):>20} {r['n_shards']:>7} "
            f"{r['blocks_computed']:>11} {r['seconds']:7.1f} {r['baseline_rss_mb']:20.0f} "
            f"{r['peak_rss_mb']:12.0f}"
        )
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"peak RSS ratio 20 GB / 0.2 GB: {ratio:.3f} (goal <= 1.2)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "block": args.block,
        "full": args.full,
        "processes": args.processes,
        "runs": rows,
        "ratio": ratio,
    }
    args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
