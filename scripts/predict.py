"""Snakemake script of rule predict: see unet.predict.predict_volume."""

from typing import Any

from unet import ngff
from unet.predict import predict_volume
from unet.predict_config import PredictConfig
from unet.slices import slice_range
from unet.stage import limit_threads, run


def main(model: str, raw: str, out: str, settings: dict[str, Any], slices: str) -> Any:
    settings = {k: v for k, v in settings.items() if k != "shards"}
    for key in ("block_shape", "chunks", "tile_shape"):
        if settings.get(key) is not None:
            settings[key] = tuple(settings[key])
    z_range = slice_range(slices, ngff.open_array(raw).shape[0], "predict_slices")
    return predict_volume(model, raw, out, PredictConfig(**settings), z_range=z_range)


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    limit_threads(sm.threads)
    run(
        "predict",
        main,
        sm.input.model,
        sm.input.raw,
        sm.output[0],
        dict(sm.params.predict),
        sm.params.slices,
        log_file=sm.log[0],
    )
