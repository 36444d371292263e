"""Snakemake script of rule evaluate: see unet.pipeline.evaluate_stage."""

from unet.evaluate import EvaluateConfig
from unet.pipeline import evaluate_stage
from unet.stage import run

if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    p = sm.params.evaluate
    run(
        "evaluate",
        evaluate_stage,
        sm.input.prediction,
        sm.input.labels,
        sm.input.raw,
        sm.output.scores,
        sm.output.overlay,
        sm.output.report,
        EvaluateConfig(
            threshold=p["threshold"],
            postprocess=p["postprocess"],
            seed_threshold=p["seed_threshold"],
            warping=p["warping"],
        ),
        sm.params.slices,
        sm.wildcards.dataset,
        curve_png=sm.input.curve,
        log_file=sm.log[0],
    )
