"""Snakemake script of rules segment / segment_prepare / segment_shard / segment_finalize: see
unet.segmentation.run."""

import json
from pathlib import Path
from typing import Any

from unet.segmentation import run as segment
from unet.segmentation.run import SegmentConfig
from unet.segmentation.tune import chosen_settings
from unet.stages.runner import run


def main(
    step: str,
    prediction: str,
    out: str,
    settings: dict[str, Any],
    shard: int = 0,
    marker: str | None = None,
    tuned: str | None = None,
) -> Any:
    """Run one segmentation step; ``marker`` receives the step's summary (prepare, shard);
    ``tuned``: the JSON of rule segment_tune, whose chosen settings replace the config's."""
    n_shards = int(settings.get("shards", 1))
    config = SegmentConfig.from_settings(settings, **(chosen_settings(tuned) if tuned else {}))
    if step == "all":
        return segment.segment_volume(prediction, out, config)
    if step == "finalize":
        return segment.finish_shards(prediction, out, config)
    if step == "prepare":
        layout = segment.prepare_output(prediction, out, config)
        result: Any = {"hash": layout.hash, **layout.record()}
    else:
        result = segment.run_shard(prediction, out, config, shard=shard, n_shards=n_shards)
    if marker is not None:
        Path(marker).write_text(json.dumps(result, indent=2, default=str))
    return result


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    step = sm.params.step
    run(
        "segment",
        main,
        step,
        sm.input.prediction,
        sm.output[0] if step in ("all", "finalize") else sm.params.out,
        dict(sm.params.segment),
        shard=int(sm.wildcards.get("shard", 0)),
        marker=sm.output[0] if step in ("prepare", "shard") else None,
        tuned=sm.input.get("tuned"),
        log_file=sm.log[0],
    )
