"""Snakemake script of rule scores: one Markdown table of every evaluated dataset."""

from pathlib import Path

from unet.pipeline import scores_table
from unet.stage import setup_logging

if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    setup_logging(sm.log[0])
    table = scores_table(list(sm.input))
    Path(sm.output[0]).write_text(table)
    print(table)
