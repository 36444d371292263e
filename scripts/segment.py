"""Snakemake script of rule segment: see unet.segmentation.run.segment_volume."""

from typing import Any

from unet.segmentation.run import SegmentConfig, segment_volume
from unet.stages.runner import run


def main(prediction: str, out: str, settings: dict[str, Any]) -> Any:
    return segment_volume(prediction, out, SegmentConfig(**settings))


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    run(
        "segment",
        main,
        sm.input.prediction,
        sm.output[0],
        dict(sm.params.segment),
        log_file=sm.log[0],
    )
