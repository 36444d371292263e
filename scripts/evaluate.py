"""Snakemake script of rule evaluate: see unet.stages.pipeline.evaluate_stage."""

from typing import Any

from unet.evaluation.evaluate import EvaluateConfig
from unet.stages.pipeline import evaluate_stage
from unet.stages.runner import run


def main(inputs: Any, outputs: Any, settings: dict[str, Any], slices: str, dataset: str) -> Any:
    return evaluate_stage(
        inputs.prediction,
        inputs.labels,
        inputs.raw,
        outputs.scores,
        outputs.overlay,
        outputs.report,
        EvaluateConfig(**settings),
        slices,
        dataset,
        curve_png=inputs.curve,
        segmentation_path=inputs.get("segmentation"),
    )


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    run(
        "evaluate",
        main,
        sm.input,
        sm.output,
        dict(sm.params.evaluate),
        sm.params.slices,
        sm.wildcards.dataset,
        log_file=sm.log[0],
    )
