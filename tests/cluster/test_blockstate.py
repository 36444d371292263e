from __future__ import annotations

import dataclasses
import doctest
import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from unet.cluster import blockstate
from unet.cluster.blockstate import Layout


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
    for batch in (1, 4, 5, 8, 100):  # whole y-rows per read, at least one
        assert blockstate.read_states(markers, 4, 24, batch).tolist() == states.tolist()
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


def test_read_states_reads_a_bounded_number_of_markers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory of reading the markers must not grow with the number of blocks: every selection
    asks for at most ``batch`` marker chunks (or one y-row, if longer)."""
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    markers = blockstate.create_markers(group, (3, 10, 7))
    for i in (0, 69, 70, 150, 209):
        blockstate.mark(markers, i, blockstate.DONE)
    sizes: list[int] = []
    getitem = type(markers).__getitem__

    def counting(self: zarr.Array, sel: Any) -> Any:
        out = getitem(self, sel)
        sizes.append(int(np.asarray(out).size))
        return out

    monkeypatch.setattr(type(markers), "__getitem__", counting)
    states = blockstate.read_states(markers, 0, 210, batch=20)
    assert np.flatnonzero(states == blockstate.DONE).tolist() == [0, 69, 70, 150, 209]
    assert max(sizes) <= 21 and sum(sizes) == 210  # 2 rows of 7 per read; each plane once
    sizes.clear()
    assert blockstate.read_states(markers, 75, 80, batch=20).tolist() == [0] * 5
    assert sum(sizes) == 70  # only the plane that holds them


def _no_space(self: zarr.Array, sel: Any, value: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk's write() does


def test_a_failed_marker_write_names_its_file_and_the_block_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = _layout()  # grid (5, 2, 2)
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    markers = blockstate.create_markers(group, layout.grid_shape)
    monkeypatch.setattr(zarr.Array, "__setitem__", _no_space)
    with pytest.raises(OSError, match="No space left on device") as err:
        blockstate.mark(markers, 10, blockstate.DONE)
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename == f"{tmp_path}/p.zarr/{blockstate.MARKERS}/c/2/1/0"
    io_error = OSError(errno.EIO, "Input/output error", "r/0")
    what = blockstate.mark_failed(markers, 7, layout.block(7), io_error)
    assert what == (
        "block 7 (z 1:2, y 64:100, x 64:100): OSError: [Errno 5] Input/output error: 'r/0'; "
        "its failed marker was not written either: [Errno 28] No space left on device: "
        f"'{tmp_path}/p.zarr/{blockstate.MARKERS}/c/1/1/1'"
    )
    monkeypatch.undo()
    what = blockstate.mark_failed(markers, 7, layout.block(7), KeyError("k"))
    assert what == "block 7 (z 1:2, y 64:100, x 64:100): KeyError: 'k'"
    assert blockstate.read_states(markers, 0, 20).tolist() == [0] * 7 + [2] + [0] * 12
