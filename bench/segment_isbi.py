"""ISBI 2012: choose the ``2d`` segmentation's settings on the validation slices, score on test.

1. Predicts the validation slices (default 21-22) and the test slices (25-29) of the ingested
   ISBI stack with a trained model (one that did not train on either).
2. Grid search on the validation slices only, as rule ``segment_tune`` does it
   (:func:`unet.segmentation.tune.choose`, its 990-point grid): mask ``threshold`` x
   ``seed_distance`` x ``merge_threshold`` of mode ``2d``, scored by the foreground-restricted
   V_rand per section; the best V_rand wins (ties: the earlier grid point).  Plain
   thresholding's level is chosen the same way, so that both methods get the same chance.
3. Scores on the test slices, once, side by side: thresholding at 0.5 (4-connected components
   of ``p > 0.5``), thresholding at its validation-chosen level, ``unet segment`` (the real
   blockwise run) with the project's defaults (:class:`unet.segmentation.config.SegmentConfig`)
   and with the validation-chosen settings.  The chosen settings are printed next to the
   defaults: the defaults are meant to be the ones chosen here.

    python bench/segment_isbi.py MODEL.pt [--raw work/isbi2012/raw.zarr]
        [--labels work/isbi2012/labels.zarr] [--val 21 23] [--test 25 30]
        [--out bench/out/segment_isbi.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unet.evaluation.instances import instance_scores
from unet.io import ngff
from unet.prediction.run import PredictConfig, predict_volume
from unet.segmentation import tune
from unet.segmentation.kernels import probability
from unet.segmentation.run import SegmentConfig, segment_volume

KEYS = ("threshold", "seed_distance", "merge_threshold")


def predict(model: Path, raw: Path, z: tuple[int, int], out: Path) -> np.ndarray:
    """Predict slices ``z`` of ``raw`` into ``out`` (unless it is there); return p as float32."""
    if out.exists():
        return probability(ngff.open_array(out)[:])
    config = PredictConfig(block_shape=(1, 512, 512), chunks=(1, 512, 512), cluster="none")
    predict_volume(model, raw, out, config, z_range=z)
    return probability(ngff.open_array(out)[:])


def thresholded(p: np.ndarray, level: float) -> np.ndarray:
    """4-connected components of ``p > level`` per section."""
    return tune.components(p, level, "2d")


def segment(pred: Path, work: Path, name: str, **settings: Any) -> np.ndarray:
    """The real blockwise ``unet segment`` run (whole-slice blocks) -> labels."""
    config = SegmentConfig(mode="2d", block_shape=(1, 512, 512), chunks=(1, 512, 512), **settings)
    segment_volume(pred, work / f"{name}.zarr", config)
    return np.asarray(ngff.open_array(work / f"{name}.zarr")[:])


def table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'method':<46} {'V_rand':>7} {'Rand err':>8} {'V_info':>7} {'SEG':>6} {'objects':>8}")
    for name, s in rows.items():
        print(
            f"{name:<46} {s['v_rand']:>7.4f} {s['rand_error']:>8.4f} {s['v_info']:>7.4f} "
            f"{s['seg']:>6.3f} {s['objects']:>8}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--raw", type=Path, default=Path("work/isbi2012/raw.zarr"))
    ap.add_argument("--labels", type=Path, default=Path("work/isbi2012/labels.zarr"))
    ap.add_argument("--val", type=int, nargs=2, default=(21, 23), metavar=("START", "STOP"))
    ap.add_argument("--test", type=int, nargs=2, default=(25, 30), metavar=("START", "STOP"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/segment_isbi.json"))
    ap.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="keep the predictions in this folder and reuse them on a rerun",
    )
    args = ap.parse_args()
    val_z, test_z = tuple(args.val), tuple(args.test)
    if max(val_z[0], test_z[0]) < min(val_z[1], test_z[1]):
        raise SystemExit(f"validation {val_z} and test {test_z} slices overlap")
    labels = ngff.open_array(args.labels)
    truth_val = np.asarray(labels[slice(*val_z)])
    truth_test = np.asarray(labels[slice(*test_z)])
    work = Path(tempfile.mkdtemp(prefix="segment-isbi-"))
    # predictions are kept per model file (its checksum names the folder)
    model = args.model
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12] if model.is_file() else model.name
    preds = work if args.predictions is None else args.predictions / digest
    try:
        start = time.perf_counter()
        p_val = predict(args.model, args.raw, val_z, preds / "val.zarr")
        p_test = predict(args.model, args.raw, test_z, preds / "test.zarr")
        print(f"predicted {val_z} and {test_z} in {time.perf_counter() - start:.0f} s")

        # 1. choose on the validation slices only
        start = time.perf_counter()
        choice = tune.choose(p_val, truth_val, "2d")  # what rule segment_tune does
        grid, chosen = choice["grid"], choice["chosen"]
        level = choice["thresholding"]["threshold"]
        print(f"grid of {len(grid)} points on {val_z} in {time.perf_counter() - start:.0f} s")
        defaults = {k: getattr(SegmentConfig(), k) for k in KEYS}
        print(
            f"chosen on validation: {chosen} (V_rand {choice['v_rand']:.4f}); "
            f"thresholding level {level}; SegmentConfig defaults: {defaults}"
            + (" = chosen" if defaults == chosen else " (NOT the chosen ones)")
        )

        # 2. score once on the test slices (and on the validation slices, for reference)
        results: dict[str, Any] = {
            "val_slices": val_z,
            "test_slices": test_z,
            "chosen": chosen,
            "threshold_level": level,
            "defaults": defaults,
        }
        for split, p, truth, pred in (
            ("validation", p_val, truth_val, preds / "val.zarr"),
            ("test", p_test, truth_test, preds / "test.zarr"),
        ):
            old = {"threshold": 0.5, "seed_distance": 2.0, "merge_threshold": 0.5}
            rows = {
                "threshold 0.5 (4-connected)": instance_scores(thresholded(p, 0.5), truth),
                f"threshold {level} (chosen on val)": instance_scores(thresholded(p, level), truth),
                "segment 2d, old defaults 0.5/2/0.5": instance_scores(
                    segment(pred, work, f"{split}-old", **old), truth
                ),
                "segment 2d, chosen on val {}/{}/{}".format(*chosen.values()): instance_scores(
                    segment(pred, work, f"{split}-chosen", **chosen), truth
                ),
            }
            if defaults != chosen:  # what a user gets without choosing
                name = "segment 2d, defaults {}/{}/{}".format(*defaults.values())
                rows[name] = instance_scores(segment(pred, work, f"{split}-defaults"), truth)
            table(f"{split} slices {p.shape[0]} ({split == 'test' and test_z or val_z})", rows)
            results[split] = rows
        results["grid"] = grid
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
