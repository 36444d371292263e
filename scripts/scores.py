"""Snakemake script of rule scores: one Markdown table of every evaluated dataset."""

from pathlib import Path

from unet.stages.pipeline import scores_table
from unet.stages.runner import run


def main(inputs: list[str], out: str) -> None:
    table = scores_table(inputs)
    Path(out).write_text(table)
    print(table)


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    run("scores", main, list(sm.input), sm.output[0], log_file=sm.log[0])
