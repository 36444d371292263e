"""Snakemake script of rule weights: see unet.stages.pipeline.weights_stage."""

from collections.abc import Callable

from unet.stages.pipeline import WeightsConfig, weights_stage
from unet.stages.runner import run


def main(
    labels: str,
    out: str,
    config: Callable[[], WeightsConfig],
    from_mask: bool,
    log: str,
    count_slices: str | None = None,
) -> None:
    """``config()`` runs inside :func:`unet.stages.runner.run`, so a bad setting is logged too."""
    run(
        "weights",
        lambda: weights_stage(labels, out, config(), from_mask, count_slices),
        log_file=log,
    )


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    p = sm.params.weights
    main(
        labels=sm.input[0],
        out=sm.output[0],
        config=lambda: WeightsConfig(
            w0=p["w0"],
            sigma=p["sigma"],
            class_weights=p["class_weights"],
            class_weight_cap=p["class_weight_cap"],
            ndim=p["ndim"],
            block=tuple(p["block"]),
            separation=sm.params.separation,
        ),
        from_mask=sm.params.from_mask,
        log=sm.log[0],
        count_slices=sm.params.count_slices,
    )
