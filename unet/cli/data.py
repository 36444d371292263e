"""``unet ingest`` (TIFF/Zarr -> OME-Zarr) and ``unet weights`` (labels -> border weight maps)."""

from __future__ import annotations

import argparse
from typing import Any

from unet.cli.options import finish, override, section, settings
from unet.settings.schema import default


def add_ingest(sub: Any) -> None:
    p = sub.add_parser("ingest", help="TIFF/Zarr -> chunked OME-Zarr volume (validated)")
    p.add_argument("src", help="multi-page TIFF, 2D TIFF or Zarr array")
    p.add_argument("dst", help="new OME-Zarr volume (.zarr)")
    p.add_argument("--kind", choices=("raw", "binary", "instances"), default="raw")
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=default("dataset", "voxel_size"),
        metavar=("Z", "Y", "X"),
        help="nanometres",
    )
    p.add_argument(
        "--chunks", type=int, nargs=3, default=default("ingest", "chunks"), metavar=("Z", "Y", "X")
    )
    p.add_argument(
        "--shards", type=int, nargs=3, metavar=("Z", "Y", "X"), help="Zarr v3 shards (see README)"
    )
    p.add_argument(
        "--membrane-value",
        type=int,
        default=default("dataset", "membrane_value"),
        help="value marking membrane (background) in a binary mask (default %(default)s, as in "
        "ISBI)",
    )
    p.add_argument(
        "--rescale",
        choices=("none", "percentile"),
        default=default("ingest", "rescale"),
        help="percentile: stretch raw grey values to uint8 between --percentiles (uint16 EM)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        default=default("ingest", "percentiles"),
        metavar=("LOW", "HIGH"),
    )
    p.add_argument(
        "--pyramid-levels",
        type=int,
        default=default("ingest", "pyramid_levels"),
        help="OME-Zarr levels incl. full resolution, for viewers (default %(default)s)",
    )
    p.add_argument("--like", help="raw volume whose shape the labels must match")
    finish(p, _ingest, config=False, overwrite="dst")


def _ingest(args: argparse.Namespace) -> Any:
    from unet.io.ingest import IngestConfig, ingest

    config = IngestConfig(
        kind=args.kind,
        voxel_size=tuple(args.voxel_size),
        chunks=tuple(args.chunks),
        shards=tuple(args.shards) if args.shards else None,
        membrane_value=args.membrane_value,
        rescale=args.rescale,
        percentiles=tuple(args.percentiles),
        pyramid_levels=args.pyramid_levels,
    )
    return ingest(args.src, args.dst, config, like=args.like, overwrite=args.overwrite)


def add_weights(sub: Any) -> None:
    p = sub.add_parser("weights", help="labels volume -> border weight maps (Dask)")
    p.add_argument("labels")
    p.add_argument("dst")
    p.add_argument("--w0", type=float)
    p.add_argument("--sigma", type=float)
    p.add_argument("--ndim", type=int, choices=(2, 3))
    p.add_argument("--class-weights", choices=("balanced", "none"))
    p.add_argument("--class-weight-cap", type=float, help="the most a balanced weight may be")
    p.add_argument("--instances", action="store_true", help="labels are cell ids, not a mask")
    p.add_argument(
        "--count-slices",
        help="count the balanced class weights on these slices only, e.g. 0-19 (the training "
        "slices, as the workflow does; default: all)",
    )
    finish(p, _weights)


def _weights(args: argparse.Namespace) -> Any:
    from unet.stages.pipeline import WeightsConfig, weights_stage

    fields = section(args, "weights")
    override(fields, args, ("w0", "sigma", "ndim", "class_weights", "class_weight_cap"))
    if "block" in fields:
        fields["block"] = tuple(fields["block"])
    config = settings(WeightsConfig, fields, args, "weights")
    return weights_stage(args.labels, args.dst, config, not args.instances, args.count_slices)
