"""The ``unet`` command: every pipeline stage without Snakemake.

Options that the pipeline reads from ``config/config.yaml`` can be given the same way here with
``--config FILE`` (its ``model``, ``train``, ``predict``, ``segment``, ``weights`` and
``evaluate`` sections); explicit flags win.  Bad input gives one line
``unet <stage>: <problem>`` and exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from unet import __version__
from unet.errors import InputError, brief
from unet.stages.runner import run


def _load_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no such config file") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or brief(err)
        raise InputError(f"{path}: not valid YAML ({where}{problem})") from err
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file must be a mapping of sections")
    return data


def _section(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Section ``name`` of ``--config`` (empty if absent), as a fresh dict."""
    return dict(_load_config(getattr(args, "config", None)).get(name) or {})


def _settings(cls: Any, fields: dict[str, Any], args: argparse.Namespace, section: str) -> Any:
    """``cls(**fields)``; an unknown setting is bad input naming the config file and section."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        where = getattr(args, "config", None) or "options"
        raise InputError(
            f"{where}: unknown setting(s) {', '.join(unknown)} in section {section} "
            f"(known: {', '.join(sorted(known))})"
        )
    return cls(**fields)


def _cmd_ingest(args: argparse.Namespace) -> Any:
    from unet.io.ingest import IngestConfig, ingest

    config = IngestConfig(
        kind=args.kind,
        voxel_size=tuple(args.voxel_size),
        chunks=tuple(args.chunks),
        shards=tuple(args.shards) if args.shards else None,
        membrane_value=args.membrane_value,
        rescale=args.rescale,
        percentiles=tuple(args.percentiles),
    )
    return ingest(args.src, args.dst, config, like=args.like, overwrite=args.overwrite)


def _cmd_weights(args: argparse.Namespace) -> Any:
    from unet.stages.pipeline import WeightsConfig, weights_stage

    section = _section(args, "weights")
    for key in ("w0", "sigma", "ndim", "class_weights"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    if "block" in section:
        section["block"] = tuple(section["block"])
    return weights_stage(
        args.labels,
        args.dst,
        _settings(WeightsConfig, section, args, "weights"),
        not args.instances,
    )


def _cmd_evaluate(args: argparse.Namespace) -> Any:
    from unet.evaluation.evaluate import EvaluateConfig
    from unet.stages.pipeline import evaluate_stage

    section = _section(args, "evaluate")
    if args.threshold is not None:
        section["threshold"] = args.threshold
    if args.postprocess is not None:
        section["postprocess"] = args.postprocess
    if args.no_warping:
        section["warping"] = False
    out = Path(args.out_json)
    stem = out.with_suffix("")
    return evaluate_stage(
        args.prediction,
        args.labels,
        args.raw,
        out,
        Path(f"{stem}-overlay.png"),
        Path(f"{stem}-report.html"),
        _settings(EvaluateConfig, section, args, "evaluate"),
        args.slices,
        args.dataset or out.parent.name or "dataset",
    )


def _train_config(args: argparse.Namespace, **fixed: Any) -> Any:
    from unet.training.loop import TrainConfig

    fields = {**_section(args, "model"), **_section(args, "train"), **fixed}
    for key in ("steps", "device", "precision", "seed", "workers"):
        if getattr(args, key, None) is not None:
            fields[key] = getattr(args, key)
    if getattr(args, "train_slices", None) is not None:
        fields["train_slices"] = args.train_slices
    if getattr(args, "val_slices", None) is not None:
        fields["val_slices"] = args.val_slices
    return _settings(TrainConfig, fields, args, "model/train")


def _cmd_train(args: argparse.Namespace) -> Any:
    from unet.stages.runner import limit_threads
    from unet.training.loop import train

    if args.threads:
        limit_threads(args.threads)
    from unet.io.outputs import partial_path

    # by default the state lives in the partial output: gone once the model is complete
    state = args.state or str(partial_path(args.out_dir) / "train_state.pt")
    return train(
        args.raw,
        args.labels,
        args.weights,
        args.out_dir,
        state,
        _train_config(args),
        overwrite=args.overwrite,
    )


def _cmd_doctor(args: argparse.Namespace) -> Any:
    from unet.stages.doctor import doctor, report

    volumes = {str(p): _voxels(p) for p in args.volumes}
    # the doctor times training steps and forward passes: it never validates
    result = doctor(_train_config(args, val_every=0), volumes=volumes or None, seconds=args.seconds)
    print(report(result))
    return None


def _cmd_predict(args: argparse.Namespace) -> Any:
    from unet.io import ngff
    from unet.io.slices import slice_range
    from unet.prediction.config import PredictConfig
    from unet.prediction.run import predict_volume

    section = _section(args, "predict")
    section.pop("shards", None)
    for key in ("device", "precision", "workers", "threads", "cluster", "normalize"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    if args.overwrite:
        section["overwrite"] = True
    z_range = slice_range(args.slices, ngff.open_array(args.raw).shape[0], "--slices")
    return predict_volume(
        args.model,
        args.raw,
        args.out,
        _settings(PredictConfig, section, args, "predict"),
        z_range=z_range,
    )


def _cmd_segment(args: argparse.Namespace) -> Any:
    from unet.segmentation.run import SegmentConfig, segment_volume

    section = _section(args, "segment")
    for key in ("mode", "threshold", "merge_threshold", "cluster", "workers"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    if args.overwrite:
        section["overwrite"] = True
    return segment_volume(args.prediction, args.out, SegmentConfig(**section))


def _cmd_export_model(args: argparse.Namespace) -> Any:
    from unet.interop.bioimageio_export import export_model
    from unet.io import ngff

    out = export_model(
        args.model,
        args.out,
        name=args.name,
        authors=tuple(args.author or ("unet-em user",)),
        license=args.license,
        documentation=args.documentation,
        sample=ngff.open_array(args.raw) if args.raw else None,
        overwrite=args.overwrite,
    )
    return {"package": str(out)}


def _cmd_export_tiff(args: argparse.Namespace) -> Any:
    from unet.interop.tiff import export_tiff

    return export_tiff(args.volume, args.tiff, overwrite=args.overwrite)


def _cmd_curve(args: argparse.Namespace) -> Any:
    import csv

    from unet.training.curves import time_to_error

    path = Path(args.metrics)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file")
    try:
        with open(path, newline="") as fh:
            rows: list[dict[str, Any]] = [
                {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]
    except (UnicodeDecodeError, csv.Error, ValueError) as err:
        raise InputError(f"{path}: not a metrics.csv written by unet train ({err})") from err
    if not rows or "val_pixel_error" not in rows[0]:
        raise InputError(f"{path}: not a metrics.csv written by unet train")
    checked = [r for r in rows if r["val_pixel_error"] is not None]
    return {
        "steps": int(rows[-1]["step"]),
        "seconds": rows[-1]["seconds"],
        "best_val_pixel_error": min((r["val_pixel_error"] for r in checked), default=None),
        f"seconds_to_val_pixel_error_le_{args.error}": time_to_error(rows, args.error),
    }


def _voxels(path: str) -> int:
    from unet.io import ngff

    shape = ngff.open_array(path).shape
    return int(shape[0]) * int(shape[1]) * int(shape[2])


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data-loader processes")


def _add_common(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config:
        p.add_argument("--config", help="YAML with the pipeline's sections (config/config.yaml)")
    p.add_argument("--log", help="also log to this file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet", description="U-Net for EM: the pipeline's stages on the command line."
    )
    parser.add_argument("--version", action="version", version=f"unet-em {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="TIFF/Zarr -> chunked OME-Zarr volume (validated)")
    p.add_argument("src", help="multi-page TIFF, 2D TIFF or Zarr array")
    p.add_argument("dst", help="new OME-Zarr volume (.zarr)")
    p.add_argument("--kind", choices=("raw", "binary", "instances"), default="raw")
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=(1.0, 1.0, 1.0),
        metavar=("Z", "Y", "X"),
        help="nanometres",
    )
    p.add_argument("--chunks", type=int, nargs=3, default=(1, 512, 512), metavar=("Z", "Y", "X"))
    p.add_argument(
        "--shards", type=int, nargs=3, metavar=("Z", "Y", "X"), help="Zarr v3 shards (see README)"
    )
    p.add_argument(
        "--membrane-value",
        type=int,
        default=0,
        help="value marking membrane (background) in a binary mask (default 0, as in ISBI)",
    )
    p.add_argument(
        "--rescale",
        choices=("none", "percentile"),
        default="none",
        help="percentile: stretch raw grey values to uint8 between --percentiles (uint16 EM)",
    )
    p.add_argument(
        "--percentiles", type=float, nargs=2, default=(0.5, 99.5), metavar=("LOW", "HIGH")
    )
    p.add_argument("--like", help="raw volume whose shape the labels must match")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dst")
    _add_common(p, config=False)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("weights", help="labels volume -> border weight maps (Dask)")
    p.add_argument("labels")
    p.add_argument("dst")
    p.add_argument("--w0", type=float)
    p.add_argument("--sigma", type=float)
    p.add_argument("--ndim", type=int, choices=(2, 3))
    p.add_argument("--class-weights", choices=("balanced", "none"))
    p.add_argument("--instances", action="store_true", help="labels are cell ids, not a mask")
    _add_common(p)
    p.set_defaults(func=_cmd_weights)

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
    _add_common(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("train", help="train a U-Net (resumes from --state after a kill)")
    p.add_argument("raw")
    p.add_argument("labels")
    p.add_argument("weights")
    p.add_argument("out_dir", help="receives model.pt, metrics.csv, curve.png")
    p.add_argument("--state", help="training state file (default <out_dir>.partial/train_state.pt)")
    p.add_argument("--train-slices", help="e.g. 0-24 (default: all but the val slices)")
    p.add_argument("--val-slices", help="held-out slices for pixel-error monitoring, e.g. 25-29")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing out_dir when done")
    _add_train_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("doctor", help="versions, device, measured throughput, runtime estimates")
    p.add_argument("volumes", nargs="*", help="OME-Zarr volumes to estimate prediction time for")
    p.add_argument("--seconds", type=float, default=3.0, help="measurement budget")
    _add_train_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_doctor)

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
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_common(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("segment", help="probabilities -> OME-Zarr instance labels (blockwise)")
    p.add_argument("prediction", help="prediction OME-Zarr (foreground probabilities)")
    p.add_argument("out", help="new label image OME-Zarr (resumes an interrupted one)")
    p.add_argument("--mode", choices=("2d", "3d", "threshold"))
    p.add_argument("--threshold", type=float, help="confident foreground p > threshold")
    p.add_argument("--merge-threshold", type=float, help="merge below this mean boundary")
    p.add_argument("--cluster", help="none, local, slurm or a scheduler address")
    p.add_argument("--workers", type=int, help="Dask workers")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_common(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("export-model", help="model.pt -> bioimage.io model package (.zip)")
    p.add_argument("model", help="model.pt written by unet train, or a shipped model (isbi2012)")
    p.add_argument("out", help="new package (.zip): rdf.yaml, state-dict and TorchScript weights")
    p.add_argument("--raw", help="raw OME-Zarr to take the test input from (default synthetic)")
    p.add_argument("--name", help="the package's name")
    p.add_argument("--author", action="append", help="who trained the model (repeatable)")
    p.add_argument("--license", default="MIT", help="SPDX license of the weights (default MIT)")
    p.add_argument("--documentation", help="Markdown model card (default: a generated one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    _add_common(p, config=False)
    p.set_defaults(func=_cmd_export_model)

    p = sub.add_parser("export-tiff", help="OME-Zarr volume or label image -> ImageJ TIFF (Fiji)")
    p.add_argument("volume", help="prediction or segmentation OME-Zarr")
    p.add_argument("tiff", help="new multi-page TIFF (voxel size in the resolution tags)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing TIFF")
    _add_common(p, config=False)
    p.set_defaults(func=_cmd_export_tiff)

    p = sub.add_parser("curve", help="summarise metrics.csv: time to a held-out pixel error")
    p.add_argument("metrics", help="metrics.csv of a training run")
    p.add_argument("--error", type=float, default=0.08, help="pixel error to reach")
    _add_common(p, config=False)
    p.set_defaults(func=_cmd_curve)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args.command, args.func, args, log_file=args.log)
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
