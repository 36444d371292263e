"""The ingest rules pass every ingest setting to the stage: a real Snakemake run of
ingest_raw and ingest_labels with ``ingest.pyramid_levels`` other than its default."""

from __future__ import annotations

from pathlib import Path

from tests.workflow.conftest import TINY_CONFIG, snakemake, write_config
from unet.io import ngff
from unet.settings.schema import default


def test_ingest_rules_pass_pyramid_levels(tmp_path: Path) -> None:
    assert default("ingest", "pyramid_levels") != 2
    write_config(tmp_path, ingest={**TINY_CONFIG["ingest"], "pyramid_levels": 2})
    targets = [tmp_path / "work" / "tiny" / f"{name}.zarr" for name in ("raw", "labels")]
    done = snakemake(tmp_path, "--cores", "1", *map(str, targets))
    assert done.returncode == 0, done.stderr[-3000:]
    for target in targets:
        found = ngff.multiscale(target)
        assert found is not None and len(found.paths) == 2, target
        assert ngff.open_array(target, 1).shape == (4, 48, 48)
        assert ngff.voxel_size(target) == (50.0, 4.0, 4.0)
