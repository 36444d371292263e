"""Throughput and peak memory of blockwise segmentation on synthetic cell volumes.

The prediction volumes are uint8 OME-Zarr stacks of Voronoi cells (~20 px across) behind
membranes of p ~ 0.05 with a leaky opening here and there, one 1024 x 1024 tile rolled per
section; they are written first (not timed).  Each case runs in a fresh subprocess
(``cluster: none``, blocks of 1 x 1024 x 1024 in this process), whose peak RSS during the
run is the figure (``VmHWM``, reset after the imports: ``ru_maxrss`` would keep the imports'
transient peak, which was higher than the whole run's): the memory goal is a peak that does
not grow with the volume (ratio of the largest to the smallest case <= 1.2, as for prediction).

    python bench/segment.py [--cases 0.2 2] [--mode 2d] [--out bench/out/segment.json]

``--cases`` are sizes in GB (sections of 10240 x 10240 px).  ``--mode 2d`` runs the
watershed and agglomeration per block (about 3 Mvox/s on one core: 20 GB take about two hours);
``--mode threshold`` runs the same four passes with connected components as the block kernel
(about 10 Mvox/s).  In ``threshold`` mode the rolled cells of neighbouring sections overlap,
so every fragment joins one object across z: the largest merge graph a volume of this size
can give (every fragment in it, one edge per touching pair), the worst case of the
components pass, whose memory is the one part of a run that grows with the volume.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from unet.io import ngff

SIDE = 10240  # px per section side
TILE = 1024


def cell_tile(seed: int = 0) -> np.ndarray:
    """A (TILE, TILE) uint8 cell probability: 0.95 in cells, 0.05 on 2-px membranes."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((TILE, TILE), dtype=np.int32)
    n = TILE * TILE // 400
    seeds[rng.integers(0, TILE, n), rng.integers(0, TILE, n)] = np.arange(1, n + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[iy, ix]
    wall = ndimage.morphological_gradient(cells, size=2) > 0
    wall[rng.random(wall.shape) < 0.002] = False  # a few leaky pixels
    p = ndimage.gaussian_filter(np.where(wall, 0.05, 0.95), 0.7)
    return np.round(p * 255).astype(np.uint8)


def make_volume(path: Path, sections: int) -> None:
    tile = cell_tile()
    out = ngff.create(path, (sections, SIDE, SIDE), np.uint8, (1, TILE, TILE), (50, 4, 4))
    reps = SIDE // TILE
    for z in range(sections):
        out[z] = np.tile(np.roll(tile, 7 * z, axis=(0, 1)), (reps, reps))


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def child(pred: Path, out: Path, mode: str) -> None:
    from unet.segmentation.run import SegmentConfig, segment_volume

    # the run's own peak: after the imports (whose transient peak ru_maxrss would keep), reset
    # the kernel's high-water mark (Linux >= 4.0: clear_refs 5), then read VmHWM at the end
    Path("/proc/self/clear_refs").write_text("5")
    base = status_mb("VmRSS")
    config = SegmentConfig(
        mode=mode,  # type: ignore[arg-type]
        block_shape=(1, TILE, TILE),
        chunks=(1, TILE, TILE),
        halo=32,
        threshold=0.5,  # pinned (not the ISBI-chosen default): figures comparable across runs
        seed_distance=2.0,
        merge_threshold=0.3,  # the tile's leaky pixels must not join cells
        cluster="none",
    )
    start = time.perf_counter()
    summary = segment_volume(pred, out, config)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "voxels": summary["voxels"],
                "blocks": summary["blocks"],
                "fragments": summary["fragments_total"],
                "objects": summary["objects"],
                "seconds": seconds,
                "mvox_per_s": summary["voxels"] / seconds / 1e6,
                "baseline_rss_mb": base,  # after the imports
                "peak_rss_mb": status_mb("VmHWM"),  # of the run
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,  # imports too
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=float, nargs="+", default=[0.2, 2.0], help="sizes in GB")
    ap.add_argument("--mode", default="2d", choices=("2d", "threshold"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/segment.json"))
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--child", nargs=3, metavar=("PRED", "OUT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2])
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-segment-"))
    rows = []
    try:
        for gb in args.cases:
            sections = max(1, round(gb * 1e9 / SIDE**2))
            pred, out = work / f"pred-{gb}.zarr", work / f"seg-{gb}.zarr"
            make_volume(pred, sections)
            cmd = [sys.executable, __file__, "--child", str(pred), str(out), args.mode]
            result = subprocess.run(cmd, check=True, capture_output=True, text=True)
            row = {"case_gb": sections * SIDE**2 / 1e9, "mode": args.mode}
            row.update(json.loads(result.stdout.strip().splitlines()[-1]))
            rows.append(row)
            shutil.rmtree(pred)
            shutil.rmtree(out)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{'case':>8} {'blocks':>7} {'fragments':>10} {'objects':>9} {'s':>8} {'Mvox/s':>7} "
        f"{'RSS after import MB':>20} {'peak RSS of the run MB':>23}"
    )
    for r in rows:
        print(
            f"{r['case_gb']:>6.2f}GB {r['blocks']:>7} {r['fragments']:>10} {r['objects']:>9} "
            f"{r['seconds']:>8.1f} {r['mvox_per_s']:>7.2f} {r['baseline_rss_mb']:>20.0f} "
            f"{r['peak_rss_mb']:>23.0f}"
        )
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"peak RSS ratio largest / smallest: {ratio:.2f} (goal <= 1.2)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": rows, "rss_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
