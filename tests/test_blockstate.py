from __future__ import annotations

import dataclasses
import doctest
from pathlib import Path

import numpy as np
import pytest
import zarr

from unet import blockstate
from unet.blockstate import Layout


def _layout(**kw: object) -> Layout:
    base = Layout(
        "raw.zarr",
        (5, 100, 100),
        "uint8",
        (0, 5),
        (1, 64, 64),
        (1, 32, 32),
        (1, 32, 32),
        "uint8",
        "abc",
        "fp32",
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(blockstate).failed == 0


@pytest.mark.parametrize(
    "change",
    [
        {"raw_shape": (6, 100, 100)},
        {"raw_dtype": "uint16"},
        {"z_range": (1, 5)},
        {"block_shape": (1, 32, 32)},
        {"tile_shape": (1, 64, 64)},
        {"chunks": (1, 64, 64)},
        {"output_dtype": "float16"},
        {"model_checksum": "abd"},
        {"precision": "bf16"},
        {"raw_path": "other.zarr"},
    ],
)
def test_every_layout_field_changes_the_hash(change: dict) -> None:  # type: ignore[type-arg]
    assert _layout(**change).hash != _layout().hash
    assert _layout().hash == Layout.from_record(_layout().record()).hash
    assert next(iter(change)) in _layout().diff(_layout(**change))


def test_markers_states_and_shards(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    markers = blockstate.create_markers(group, (3, 2, 4))
    assert markers.chunks == (1, 1, 1)
    for i, state in [(5, blockstate.DONE), (9, blockstate.FAILED), (23, blockstate.DONE)]:
        blockstate.mark(markers, i, state)
    states = blockstate.read_states(markers, 4, 24)
    assert states[[1, 5, 19]].tolist() == [1, 2, 1] and len(states) == 20
    assert blockstate.count(states) == {"done": 2, "failed": 1, "pending": 17}
    assert blockstate.read_states(markers, 3, 3).size == 0
    ranges = [blockstate.shard_range(24, i, 5) for i in range(5)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 24
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    with pytest.raises(ValueError, match=r"shard must be in \[0, n_shards\), got shard 0 of 0"):
        blockstate.shard_range(24, 0, 0)


def test_stored_layout_absent_or_incomplete(tmp_path: Path) -> None:
    assert blockstate.stored_layout(tmp_path / "none.zarr") is None
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    group.attrs["unet"] = {"layout": _layout().record()}
    assert blockstate.stored_layout(tmp_path / "p.zarr") is None  # no markers yet
    blockstate.create_markers(group, _layout().grid_shape)
    assert blockstate.stored_layout(tmp_path / "p.zarr") == _layout()
    with pytest.raises(ValueError, match="prepared for another layout.*precision"):
        blockstate.require_layout(tmp_path / "p.zarr", _layout(precision="bf16"))
    with pytest.raises(
        blockstate.BlockError, match=r"20 of 20 blocks not done \(0 failed, 20 never"
    ) as err:
        blockstate.require_done(tmp_path / "p.zarr")
    assert err.value.failed == list(range(20))
    assert np.asarray(blockstate.open_markers(tmp_path / "p.zarr", "r")[:]).sum() == 0
