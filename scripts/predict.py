"""Snakemake script of rules predict / predict_shard / predict_finalize: see unet.prediction.run."""

import json
from pathlib import Path
from typing import Any

from unet.io import ngff
from unet.io.slices import slice_range
from unet.prediction import run as predict
from unet.prediction.config import PredictConfig
from unet.stages.runner import limit_threads, run


def main(
    step: str,
    model: str,
    raw: str,
    out: str,
    settings: dict[str, Any],
    slices: str,
    shard: int = 0,
    marker: str | None = None,
) -> Any:
    """Run one prediction step; ``marker`` receives the step's summary (shards, prepare)."""
    n_shards = int(settings.get("shards", 1))
    config = PredictConfig.from_settings(settings)
    z_range = slice_range(slices, ngff.open_array(raw).shape[0], "predict_slices")
    if step == "all":
        return predict.predict_volume(model, raw, out, config, z_range=z_range)
    if step == "prepare":
        layout = predict.prepare_output(model, raw, out, config, z_range=z_range)
        result: Any = {"hash": layout.hash, **layout.record()}
    elif step == "shard":
        result = predict.run_shard(
            model, raw, out, config, shard=shard, n_shards=n_shards, z_range=z_range
        )
    else:
        return predict.finalize_output(out, config)
    if marker is not None:
        Path(marker).write_text(json.dumps(result, indent=2, default=str))
    return result


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    limit_threads(sm.threads)
    step = sm.params.step
    run(
        "predict",
        main,
        step,
        sm.input.model,
        sm.input.raw,
        sm.output[0] if step in ("all", "finalize") else sm.params.out,
        dict(sm.params.predict),
        sm.params.slices,
        shard=int(sm.wildcards.get("shard", 0)),
        marker=sm.output[0] if step in ("prepare", "shard") else None,
        log_file=sm.log[0],
    )
