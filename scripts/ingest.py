"""Snakemake script of rules ingest_raw / ingest_labels: see unet.io.ingest."""

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
        config=lambda: IngestConfig(
            kind=sm.params.kind,
            voxel_size=tuple(sm.params.voxel_size),
            chunks=tuple(sm.params.chunks),
            shards=tuple(sm.params.shards) if sm.params.shards else None,
            membrane_value=sm.params.get("membrane_value", 0),
            rescale=sm.params.get("rescale", "none"),
            percentiles=tuple(sm.params.get("percentiles", (0.5, 99.5))),
        ),
        like=sm.input.get("like"),
        log=sm.log[0],
    )
