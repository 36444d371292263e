"""The done markers of a many-block run stay a few files (compaction), and every marker survives
a kill at any point of a compaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from unet.cluster import markers as mk

GRID = (2, 16, 40)  # 1280 blocks


def _markers(tmp_path: Path) -> zarr.Array:
    return mk.create_markers(zarr.open_group(str(tmp_path / "p.zarr"), mode="w"), GRID)


def test_a_many_block_run_keeps_few_marker_files(tmp_path: Path) -> None:
    markers = _markers(tmp_path)
    n = int(np.prod(GRID))
    compactor = mk.Compactor(markers, 0, n, every=64)
    most = 0
    for i in range(n):
        mk.mark(markers, i, mk.FAILED if i % 250 == 7 else mk.DONE)
        compactor.finished(i)
        if i % 63 == 0:
            most = max(most, len(mk.marker_files(markers)))
    compactor.flush()
    files = mk.marker_files(markers)
    assert most <= 64 + 2  # chunks since the last compaction, zarr.json, the summary
    assert sorted(f.name for f in files) == [f"done-0-{n}.npy", "zarr.json"]
    states = mk.read_states(markers, 0, n)
    assert mk.count(states) == {"done": n - 6, "failed": 6, "pending": 0}
    # a resumed run recomputes the failed blocks: done wins over the compacted failure
    for i in np.flatnonzero(states == mk.FAILED):
        mk.mark(markers, int(i), mk.DONE)
    assert mk.count(mk.read_states(markers, 0, n))["done"] == n


def test_disjoint_ranges_compact_into_their_own_files(tmp_path: Path) -> None:
    markers = _markers(tmp_path)
    n = int(np.prod(GRID))
    halves = [(0, n // 2), (n // 2, n)]
    compactors = [mk.Compactor(markers, a, b, every=50) for a, b in halves]
    for i in range(0, n, 3):
        mk.mark(markers, i, mk.DONE)
        compactors[i >= n // 2].finished(i)
    for c in compactors:
        c.flush()
    names = sorted(f.name for f in mk.marker_files(markers))
    assert names == [f"done-0-{n // 2}.npy", f"done-{n // 2}-{n}.npy", "zarr.json"]
    states = mk.read_states(markers, 10, n - 10)
    assert np.flatnonzero(states == mk.DONE).tolist() == [i - 10 for i in range(12, n - 10, 3)]


def test_a_write_cut_by_a_kill_leaves_a_temporary_file_that_is_ignored(tmp_path: Path) -> None:
    """Zarr writes a chunk to ``<i>.<hex>.partial`` and renames it; SIGKILL in between leaves
    that file. Compaction and resume read past it (a CI run once failed to resume on one)."""
    markers = _markers(tmp_path)
    n = int(np.prod(GRID))
    for i in (0, 1, 41):
        mk.mark(markers, i, mk.DONE)
    chunk = mk.folder(markers) / "c" / "0" / "0" / "2"
    stray = chunk.with_name("2.0f3c9a.partial")
    stray.write_bytes(b"")
    compactor = mk.Compactor(markers, 0, n, settled=(0, 1, 41))
    compactor.flush()
    states = mk.read_states(markers, 0, n)
    assert np.flatnonzero(states == mk.DONE).tolist() == [0, 1, 41] and stray.exists()


@pytest.mark.parametrize("crash", ["summary", "delete"])
def test_a_kill_during_compaction_loses_no_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    markers = _markers(tmp_path)
    done = [0, 5, 77, 300, 1279]
    for i in done:
        mk.mark(markers, i, mk.DONE)
    compactor = mk.Compactor(markers, 0, 1280, settled=done)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after it runs

    target = "os.replace" if crash == "summary" else "pathlib.Path.unlink"
    monkeypatch.setattr(target, killed)
    with pytest.raises(KeyboardInterrupt):
        compactor.flush()
    monkeypatch.undo()
    assert np.flatnonzero(mk.read_states(markers, 0, 1280) == mk.DONE).tolist() == done
    compactor.flush()  # the next run's compaction finishes the job
    assert len(mk.marker_files(markers)) == 2
    assert np.flatnonzero(mk.read_states(markers, 0, 1280) == mk.DONE).tolist() == done


def test_a_failed_compaction_keeps_the_chunk_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    markers = _markers(tmp_path)
    mk.mark(markers, 3, mk.DONE)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    mk.Compactor(markers, 0, 1280, settled=[3]).flush()
    assert "markers not compacted ([Errno 28] No space left on device)" in caplog.text
    assert len(mk.marker_files(markers)) == 3  # zarr.json, the chunk, the temporary file
    assert mk.read_states(markers, 0, 5)[3] == mk.DONE
