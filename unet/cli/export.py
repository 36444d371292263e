"""``unet export-model`` (bioimage.io package) and ``unet export-tiff`` (ImageJ TIFF for Fiji)."""

from __future__ import annotations

import argparse
from typing import Any

from unet.cli.options import finish


def add_export_model(sub: Any) -> None:
    p = sub.add_parser("export-model", help="model.pt -> bioimage.io model package (.zip)")
    p.add_argument("model", help="model.pt written by unet train, or a shipped model (isbi2012)")
    p.add_argument("out", help="new package (.zip): rdf.yaml, state-dict and TorchScript weights")
    p.add_argument("--raw", help="raw OME-Zarr to take the test input from (default synthetic)")
    p.add_argument("--name", help="the package's name")
    p.add_argument("--author", action="append", help="who trained the model (repeatable)")
    p.add_argument("--license", default="MIT", help="SPDX license of the weights (default MIT)")
    p.add_argument("--documentation", help="Markdown model card (default: a generated one)")
    finish(p, _export_model, config=False, overwrite="package")


def _export_model(args: argparse.Namespace) -> Any:
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


def add_export_tiff(sub: Any) -> None:
    p = sub.add_parser("export-tiff", help="OME-Zarr volume or label image -> ImageJ TIFF (Fiji)")
    p.add_argument("volume", help="prediction or segmentation OME-Zarr")
    p.add_argument("tiff", help="new multi-page TIFF (voxel size in the resolution tags)")
    finish(p, _export_tiff, config=False, overwrite="TIFF")


def _export_tiff(args: argparse.Namespace) -> Any:
    from unet.interop.tiff import export_tiff

    return export_tiff(args.volume, args.tiff, overwrite=args.overwrite)
