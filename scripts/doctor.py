"""Snakemake script of rule doctor: see unet.stages.doctor."""

import math
from pathlib import Path

from unet.io import ngff
from unet.stages.doctor import doctor, report
from unet.stages.runner import limit_threads, run
from unet.training.loop import TrainConfig


def main(volumes: list[str], config: TrainConfig, out: str) -> None:
    sizes = {v: int(math.prod(ngff.open_array(v).shape)) for v in volumes}
    text = report(doctor(config, volumes=sizes))
    Path(out).write_text(text + "\n")
    print(text)


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    limit_threads(sm.threads)
    run(  # the config is built inside run, so a bad setting is logged too
        "doctor",
        lambda: main(
            list(sm.input), TrainConfig(**sm.params.model, **sm.params.train), sm.output[0]
        ),
        log_file=sm.log[0],
    )
