"""Snakemake script of rule train: see unet.training.loop.train (resumes from params.state)."""

from pathlib import Path

from unet.stages.runner import limit_threads, run
from unet.training.loop import TrainConfig, train

if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    limit_threads(sm.threads)
    run(  # the config is built inside run, so a bad setting is logged too
        "train",
        lambda: train(
            sm.input.raw,
            sm.input.labels,
            sm.input.weights,
            str(Path(sm.output.model).parent),
            sm.params.state,
            TrainConfig(
                **sm.params.model,
                **sm.params.train,
                train_slices=sm.params.train_slices,
                val_slices=sm.params.val_slices or (),
            ),
        ),
        log_file=sm.log[0],
    )
