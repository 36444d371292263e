"""Snakemake script of rule doctor: see unet.doctor."""

import math
from pathlib import Path

from unet import ngff
from unet.doctor import doctor, report
from unet.stage import limit_threads, run
from unet.train import TrainConfig


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
