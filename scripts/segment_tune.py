"""Snakemake script of rule segment_tune: see unet.stages.tune and unet.segmentation.tune."""

from typing import Any

from unet.io import ngff
from unet.io.slices import parse_slices
from unet.prediction.config import PredictConfig
from unet.stages.runner import limit_threads, run
from unet.stages.tune import tune_stage


def main(
    model: str,
    raw: str,
    labels: str,
    out: str,
    work: str,
    predict: dict[str, Any],
    mode: str,
    slices: str,
) -> Any:
    config = PredictConfig.from_settings(predict)
    z = parse_slices(slices, ngff.open_array(raw).shape[0], "val_slices")
    return tune_stage(model, raw, labels, z, config, mode, out, work)


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    limit_threads(sm.threads)
    run(
        "segment_tune",
        main,
        sm.input.model,
        sm.input.raw,
        sm.input.labels,
        sm.output[0],
        sm.params.work,
        dict(sm.params.predict),
        sm.params.mode,
        sm.params.slices,
        log_file=sm.log[0],
    )
