"""Snakemake script of rules ingest_raw / ingest_labels: see unet.io.ingest.

Every param of the rule is a setting of :class:`~unet.io.ingest.IngestConfig` (those it leaves
out take their defaults from the schema)."""

from collections.abc import Callable

from unet.io.ingest import IngestConfig, ingest
from unet.stages.runner import run


def main(
    src: str, dst: str, config: Callable[[], IngestConfig], like: str | None, log: str
) -> None:
    """``config()`` runs inside :func:`unet.stages.runner.run`, so a bad setting is logged too."""
    run("ingest", lambda: ingest(src, dst, config(), like=like), log_file=log)


if "snakemake" in globals():
    sm = snakemake  # type: ignore[name-defined]  # noqa: F821
    main(
        src=str(sm.input.get("src", sm.input[0])),
        dst=sm.output[0],
        config=lambda: IngestConfig.from_settings(dict(sm.params.items())),
        like=sm.input.get("like"),
        log=sm.log[0],
    )
