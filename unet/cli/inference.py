"""``unet predict`` (overlap-tile prediction), ``unet segment`` (instance labels) and
``unet evaluate`` (scores of a prediction)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unet.cli.options import finish, override, section, settings


def add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a prediction (pixel, Rand, warping error, IoU)")
    p.add_argument("prediction", help="prediction OME-Zarr (foreground probabilities)")
    p.add_argument("labels", help="labels OME-Zarr")
    p.add_argument("out_json", help="scores JSON (an overlay PNG and a report go beside it)")
    p.add_argument("--raw", help="raw OME-Zarr for the overlay (default: the prediction)")
    p.add_argument("--slices", help="z slices to score, e.g. 25-29 (default all)")
    p.add_argument("--threshold", type=float)
    p.add_argument("--postprocess", choices=("threshold", "watershed"))
    p.add_argument("--no-warping", action="store_true", help="skip the warping error")
    p.add_argument("--dataset", help="name in the report")
    finish(p, _evaluate)


def _evaluate(args: argparse.Namespace) -> Any:
    from unet.evaluation.evaluate import EvaluateConfig
    from unet.stages.pipeline import evaluate_stage

    fields = section(args, "evaluate")
    override(fields, args, ("threshold", "postprocess"))
    if args.no_warping:
        fields["warping"] = False
    out = Path(args.out_json)
    stem = out.with_suffix("")
    return evaluate_stage(
        args.prediction,
        args.labels,
        args.raw,
        out,
        Path(f"{stem}-overlay.png"),
        Path(f"{stem}-report.html"),
        settings(EvaluateConfig, fields, args, "evaluate"),
        args.slices,
        args.dataset or out.parent.name or "dataset",
    )


def add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="exact overlap-tile prediction (Dask, resumable)")
    p.add_argument(
        "model",
        help="model.pt written by unet train, a bioimage.io package (.zip or rdf.yaml) or the "
        "name of a shipped pretrained model (isbi2012)",
    )
    p.add_argument("raw", help="raw OME-Zarr volume")
    p.add_argument("out", help="new prediction OME-Zarr (resumes an interrupted one)")
    p.add_argument("--slices", help="one z range, e.g. 25-29 (default all)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--cluster", help="local, none, slurm or a scheduler address")
    p.add_argument("--workers", type=int, help="Dask workers (one per GPU)")
    p.add_argument("--threads", type=int, help="torch threads per worker")
    p.add_argument(
        "--normalize",
        choices=("auto", "dtype"),
        help="dtype: accept a volume of another dtype family than the training data",
    )
    finish(p, _predict, overwrite="output")


def _predict(args: argparse.Namespace) -> Any:
    from unet.io import ngff
    from unet.io.slices import slice_range
    from unet.prediction.config import WORKFLOW_KEYS, PredictConfig
    from unet.prediction.run import predict_volume

    fields = section(args, "predict")
    for key in WORKFLOW_KEYS:  # one command is one job
        fields.pop(key, None)
    override(fields, args, ("device", "precision", "workers", "threads", "cluster", "normalize"))
    if args.overwrite:
        fields["overwrite"] = True
    z_range = slice_range(args.slices, ngff.open_array(args.raw).shape[0], "--slices")
    return predict_volume(
        args.model,
        args.raw,
        args.out,
        settings(PredictConfig, fields, args, "predict"),
        z_range=z_range,
    )


def add_segment(sub: Any) -> None:
    p = sub.add_parser("segment", help="probabilities -> OME-Zarr instance labels (blockwise)")
    p.add_argument("prediction", help="prediction OME-Zarr (foreground probabilities)")
    p.add_argument("out", help="new label image OME-Zarr (resumes an interrupted one)")
    p.add_argument("--mode", choices=("2d", "3d", "threshold"))
    p.add_argument("--threshold", type=float, help="confident foreground p > threshold")
    p.add_argument("--merge-threshold", type=float, help="merge below this mean boundary")
    p.add_argument("--cluster", help="none, local, slurm or a scheduler address")
    p.add_argument("--workers", type=int, help="Dask workers")
    finish(p, _segment, overwrite="output")


def _segment(args: argparse.Namespace) -> Any:
    from unet.segmentation.run import SegmentConfig, segment_volume

    # without the workflow's keys: one command is one job (shards), with the config's
    # settings (tune: the workflow chooses them on validation slices first)
    fields = section(args, "segment")
    override(fields, args, ("mode", "threshold", "merge_threshold", "cluster", "workers"))
    if args.overwrite:
        fields["overwrite"] = True
    return segment_volume(args.prediction, args.out, SegmentConfig.from_settings(fields))
