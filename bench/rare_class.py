"""A rare foreground class (issue 16, part 3): the class-weight recipes side by side.

Target, derived from the ISBI 2012 labels: the *small neurite cross-sections*, the 4-connected
cells of each slice with fewer than ``--area`` pixels (700: 7 % of the pixels).  Everything else
(membrane and larger cells) is background.  Same split as bench/accuracy.py (train 0-19,
validate 21-22, test 25-29), the base recipe of config/config.yaml, the same steps for every
row; only the class weights w_c (counted on the training slices) change.  Every ``--val-every``
steps the validation slices are scored (pixel error at 0.5, foreground IoU at 0.5), so the
stability of the validation curve shows; the test slices are scored once at the end
(foreground IoU at 0.5, best F1 over thresholds 0.1 ... 0.9).

    OMP_NUM_THREADS=1 .venv/bin/python bench/rare_class.py --rows balanced,none,sqrt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy as acc  # noqa: E402

from unet.prediction.tiles import Predictor, predict_array  # noqa: E402
from unet.training.config import TrainConfig  # noqa: E402
from unet.training.sampler import PatchDataset  # noqa: E402
from unet.training.step import Trainer  # noqa: E402
from unet.weights.border import instances_from_mask  # noqa: E402


def small_cells(cells: np.ndarray, area: int) -> np.ndarray:
    """1 where a pixel belongs to a 4-connected cell of its slice smaller than ``area`` px."""
    labels = instances_from_mask(cells)
    sizes = np.bincount(labels.ravel())
    sizes[0] = area  # background never counts
    return (sizes[labels] < area).astype(np.uint8)


def iou(prob: np.ndarray, truth: np.ndarray, t: float = 0.5) -> float:
    pred, true = prob > t, truth > 0
    union = np.count_nonzero(pred | true)
    return float(np.count_nonzero(pred & true) / union) if union else 1.0


def best_f1(prob: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    true, best = truth > 0, (0.0, 0.5)
    for t in np.arange(0.1, 0.95, 0.1):
        pred = prob > t
        tp = np.count_nonzero(pred & true)
        f1 = 2 * tp / max(np.count_nonzero(pred) + np.count_nonzero(true), 1)
        best = max(best, (f1, round(float(t), 1)))
    return best


def run(row: str, args: argparse.Namespace, raw: np.ndarray, target: np.ndarray) -> dict:
    train, weights = acc.base_recipe(args.config)
    train = {**train, "steps": args.steps}
    if args.smoke:
        train.update(base_channels=2, depth=2, output_tile=[20, 20])
    config = TrainConfig(**train)
    wmap = acc.weight_volume(target, weights["w0"], weights["sigma"], row)
    pair = (float(wmap[target == 0].min()), float(wmap[target > 0].min()))
    trainer = Trainer(config, torch.device("cpu"))
    dataset = PatchDataset(
        raw, target, wmap, config.input_tile, config.output_tile, acc.TRAIN, config.seed,
        config.augment,
    )  # fmt: skip
    curve, t0 = [], time.perf_counter()
    for i in range(config.steps):
        image, classes, w = dataset[i]
        loss = float(trainer.step((image[None], classes[None], w[None])))
        if (i + 1) % args.val_every == 0 or i + 1 == config.steps:
            prob = predict_array(Predictor(trainer.model, "cpu"), raw[acc.VAL])
            trainer.model.train()
            truth = target[acc.VAL]
            curve.append(
                {
                    "step": i + 1,
                    "loss": loss,
                    "val_pixel_error": float(np.mean((prob > 0.5) != (truth > 0))),
                    "val_iou": iou(prob, truth),
                }
            )
            print(row, curve[-1], flush=True)
    seconds = time.perf_counter() - t0
    prob = predict_array(Predictor(trainer.model, "cpu"), raw[acc.TEST])
    f1, f1_t = best_f1(prob, target[acc.TEST])
    errors = [c["val_pixel_error"] for c in curve]
    return {
        "row": row,
        "class_weights": pair,
        "steps": config.steps,
        "seconds": seconds,
        "test_iou": iou(prob, target[acc.TEST]),
        "test_best_f1": f1,
        "test_best_f1_threshold": f1_t,
        "val_pixel_error_range_second_half": [
            min(errors[len(errors) // 2 :]),
            max(errors[len(errors) // 2 :]),
        ],
        "curve": curve,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| class weights (w_bg, w_fg) | steps | test fg IoU @0.5 | test best F1 (t) | "
        "val pixel error, 2nd half min-max | val IoU per check |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lo, hi = r["val_pixel_error_range_second_half"]
        ious = " ".join(f"{c['val_iou']:.2f}" for c in r["curve"])
        w = r["class_weights"]
        lines.append(
            f"| {r['row']} ({w[0]:.2f}, {w[1]:.2f}) | {r['steps']} | {r['test_iou']:.3f} | "
            f"{r['test_best_f1']:.3f} ({r['test_best_f1_threshold']}) | {lo:.3f}-{hi:.3f} | "
            f"{ious} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="balanced,none,sqrt")
    p.add_argument("--config", type=Path, default=acc.ROOT / "config/config.yaml")
    p.add_argument("--out", type=Path, default=acc.ROOT / "bench/out/rare_class")
    p.add_argument("--area", type=int, default=700)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--table", action="store_true", help="only print the table of saved rows")
    args = p.parse_args(argv)
    if args.table:
        rows = [args.out / f"{r}.json" for r in args.rows.split(",")]
        print(table([json.loads(f.read_text()) for f in rows if f.exists()]))
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    raw, cells = acc.load_stack(args.smoke)
    target = small_cells(cells, args.area)
    print(f"foreground (cells < {args.area} px): {target.mean():.3%} of pixels")
    results = []
    for row in args.rows.split(","):
        result = run(row, args, raw, target)
        (args.out / f"{row}.json").write_text(json.dumps(result, indent=1))
        results.append(result)
    print(table(results))
    (args.out / "table.md").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
