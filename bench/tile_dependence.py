"""How much a prediction depends on its blocks (issue 16: instance norm is not exact under tiling).

One model, the ISBI 2012 test slices 25-29, predicted with write blocks of several sizes; for each:
max and mean |dp| against the whole-slice block (one tile per slice), the fraction of pixels whose
side of 0.5 changes, and the challenge's Rand and pixel errors.  A net without per-tile statistics
(norm none, or batch in eval mode) gives dp = 0 at every block size.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tile_dependence.py isbi2012 --out bench/out/tiles.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from unet.checkpoint import load_model, resolve
from unet.evaluation.isbi2012 import challenge_scores
from unet.prediction.tiles import Predictor, predict_array

DATA = Path(__file__).resolve().parents[1] / "data" / "isbi2012"
TEST = slice(25, 30)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="model.pt, bioimage.io package or shipped name")
    p.add_argument("--blocks", default="512,256,128", help="square write blocks (px)")
    p.add_argument("--out", type=Path, default=Path("bench/out/tile_dependence.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(resolve(args.model))
    raw = tifffile.imread(DATA / "train-volume.tif")[TEST]
    labels = tifffile.imread(DATA / "train-labels.tif")[TEST]
    predictor = Predictor(model, "cpu")
    rows, ref = [], None
    for size in (int(b) for b in args.blocks.split(",")):
        t0 = time.perf_counter()
        prob = predict_array(predictor, raw, (1, size, size))
        scores = challenge_scores(list(prob), list(labels), warping=False)
        ref = prob if ref is None else ref
        dp = np.abs(prob - ref)
        rows.append(
            {
                "block": size,
                "rand_error": scores["rand_error"],
                "pixel_error": scores["pixel_error"],
                "max_dp": float(dp.max()),
                "mean_dp": float(dp.mean()),
                "flipped_at_0.5": float(((prob > 0.5) != (ref > 0.5)).mean()),
                "seconds": time.perf_counter() - t0,
            }
        )
    print(f"model {args.model} (norm {model.arch.get('norm')}), test slices 25-29")
    print("| block | Rand error | pixel error | max dp | mean dp | flipped at 0.5 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['block']} | {r['rand_error']:.4f} | {r['pixel_error']:.4f} | {r['max_dp']:.3f} "
            f"| {r['mean_dp']:.4f} | {100 * r['flipped_at_0.5']:.2f} % |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
