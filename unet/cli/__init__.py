"""The ``unet`` command: every pipeline stage without Snakemake.

Options that the pipeline reads from ``config/config.yaml`` can be given the same way here with
``--config FILE`` (its ``model``, ``train``, ``predict``, ``segment``, ``weights`` and
``evaluate`` sections); explicit flags win.  Bad input gives one line
``unet <stage>: <problem>`` and exit status 1.  One module per group of subcommands: data
(ingest, weights), training (train, doctor, curve), inference (predict, segment, evaluate),
export (export-model, export-tiff); options: what they share.

May import: anything in the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from unet import __version__
from unet.cli import data, export, inference, training
from unet.stages.runner import run

SUBCOMMANDS = (
    data.add_ingest,
    data.add_weights,
    inference.add_evaluate,
    training.add_train,
    training.add_doctor,
    inference.add_predict,
    inference.add_segment,
    export.add_export_model,
    export.add_export_tiff,
    training.add_curve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet", description="U-Net for EM: the pipeline's stages on the command line."
    )
    parser.add_argument("--version", action="version", version=f"unet-em {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args.command, args.func, args, log_file=args.log)
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
