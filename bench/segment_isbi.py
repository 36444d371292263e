"""ISBI 2012 held-out slices: the ``2d`` segmentation versus plain thresholding.

Predicts slices 25-29 of the ingested ISBI stack with a trained model, segments them with
``unet segment`` (mode ``2d``, the settings of ``--config``'s ``segment`` section) and scores
both that and the 4-connected components of ``p > 0.5`` per section against the labels:
foreground-restricted V_rand and Rand error per section (:mod:`unet.evaluation.instances`), SEG.

    python bench/segment_isbi.py MODEL.pt [--raw work/isbi2012/raw.zarr]
        [--labels work/isbi2012/labels.zarr] [--out bench/out/segment_isbi.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

from unet.evaluation.instances import instance_scores
from unet.io import ngff
from unet.prediction.run import PredictConfig, predict_volume
from unet.segmentation.kernels import probability
from unet.segmentation.run import SegmentConfig, segment_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--raw", type=Path, default=Path("work/isbi2012/raw.zarr"))
    ap.add_argument("--labels", type=Path, default=Path("work/isbi2012/labels.zarr"))
    ap.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    ap.add_argument("--slices", type=int, nargs=2, default=(25, 30), metavar=("START", "STOP"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/segment_isbi.json"))
    args = ap.parse_args()
    settings = yaml.safe_load(args.config.read_text())["segment"]
    work = Path(tempfile.mkdtemp(prefix="segment-isbi-"))
    try:
        pred = work / "prediction.zarr"
        predict_volume(
            args.model,
            args.raw,
            pred,
            PredictConfig(block_shape=(1, 512, 512), chunks=(1, 512, 512), cluster="none"),
            z_range=tuple(args.slices),
        )
        segment_volume(pred, work / "seg.zarr", SegmentConfig(**settings))
        labels = np.asarray(ngff.open_array(work / "seg.zarr")[:])
        p = probability(ngff.open_array(pred)[:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    truth = np.asarray(ngff.open_array(args.labels)[slice(*args.slices)])
    cross = ndimage.generate_binary_structure(2, 1)
    thresholded = np.stack([ndimage.label(plane > 0.5, cross)[0] for plane in p])
    rows = {
        "threshold 0.5 (4-connected)": instance_scores(thresholded.astype(np.uint32), truth),
        f"segment 2d ({settings})": instance_scores(labels, truth),
    }
    print(f"{'method':<32} {'V_rand':>7} {'Rand err':>8} {'V_info':>7} {'SEG':>6} {'objects':>8}")
    for name, s in rows.items():
        print(
            f"{name[:32]:<32} {s['v_rand']:>7.4f} {s['rand_error']:>8.4f} {s['v_info']:>7.4f} "
            f"{s['seg']:>6.3f} {s['objects']:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
