from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from unet.io import codecs, ngff, outputs


def test_doctests() -> None:
    assert doctest.testmod(ngff).failed == 0
    assert doctest.testmod(codecs).failed == 0


def test_create_open_and_metadata(tmp_path: Path) -> None:
    arr = ngff.create(
        tmp_path / "v.zarr", (4, 10, 12), np.uint8, (1, 8, 8), (50, 4, 4), attrs={"a": 1}
    )
    arr[:] = 7
    assert arr.chunks == (1, 8, 8)
    opened = ngff.open_array(tmp_path / "v.zarr")
    assert opened.shape == (4, 10, 12) and int(opened[3, 9, 11]) == 7
    assert ngff.voxel_size(tmp_path / "v.zarr") == (50.0, 4.0, 4.0)
    assert ngff.attributes(tmp_path / "v.zarr")["a"] == 1
    assert "package_version" in ngff.attributes(tmp_path / "v.zarr")
    assert ngff.is_volume(tmp_path / "v.zarr") and not ngff.is_volume(tmp_path / "none.zarr")
    ms = ngff.multiscales((50, 4, 4), levels=3)["multiscales"][0]
    assert ms["datasets"][2]["coordinateTransformations"][0]["scale"] == [50.0, 16.0, 16.0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]


@pytest.mark.parametrize(
    ("shape", "vox", "match"),
    [((4, 4), (1, 1, 1), r"volumes are \(z, y, x\)"), ((1, 4, 4), (1, 0, 1), "voxel size must be")],
)
def test_create_errors(tmp_path: Path, shape, vox, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        ngff.create(tmp_path / "v.zarr", shape, np.uint8, (1, 4, 4), vox)


@pytest.mark.parametrize("spec", ["zstd:5", "zstd:1", "lz4:5", "none"])
def test_compression_round_trips(tmp_path: Path, spec: str) -> None:
    data = np.random.default_rng(0).integers(0, 256, (3, 20, 24), dtype=np.uint8)
    ngff.create(tmp_path / "v.zarr", data.shape, np.uint8, (1, 8, 8), (1, 1, 1), compression=spec)[
        :
    ] = data
    opened = ngff.open_array(tmp_path / "v.zarr")
    np.testing.assert_array_equal(opened[:], data)
    assert ngff.compression_of(opened) == spec


def test_sharded_volume_has_one_file_per_shard(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (4, 40, 40), dtype=np.uint8)
    arr = ngff.create(
        tmp_path / "v.zarr", data.shape, np.uint8, (1, 8, 8), (1, 1, 1), shards=(2, 16, 64)
    )
    arr[:] = data
    opened = ngff.open_array(tmp_path / "v.zarr")
    np.testing.assert_array_equal(opened[:], data)
    assert opened.chunks == (1, 8, 8) and opened.shards == (2, 16, 40)
    files = [f for f in (tmp_path / "v.zarr" / "0" / "c").rglob("*") if f.is_file()]
    assert len(files) == 2 * 3 * 1
    with pytest.raises(ValueError, match=r"shards \(2, 12, 64\) must be a multiple of the chunks"):
        ngff.create(
            tmp_path / "w.zarr", (4, 40, 40), np.uint8, (1, 8, 8), (1, 1, 1), shards=(2, 12, 64)
        )
    assert not (tmp_path / "w.zarr").exists()


@pytest.mark.parametrize("spec", ["zstd", "gzip:3", "zstd:10", "lz4:x", ""])
def test_bad_compression_writes_nothing(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ValueError, match=f"compression must be .* got {spec!r}"):
        ngff.create(
            tmp_path / "v.zarr", (1, 4, 4), np.uint8, (1, 4, 4), (1, 1, 1), compression=spec
        )
    assert not (tmp_path / "v.zarr").exists()


def test_create_refuses_existing_path(tmp_path: Path) -> None:
    (tmp_path / "v.zarr").mkdir()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        ngff.create(tmp_path / "v.zarr", (1, 4, 4), np.uint8, (1, 4, 4), (1, 1, 1))


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such Zarr volume"):
        ngff.open_array(tmp_path / "missing.zarr")
    import zarr

    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(ValueError, match="has no array '0'"):
        ngff.open_array(tmp_path / "g.zarr")


def test_staging_is_atomic(tmp_path: Path) -> None:
    dst = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="boom"), outputs.staging(dst) as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert not dst.exists() and not outputs.partial_path(dst).exists()
    with outputs.staging(dst) as tmp:
        tmp.mkdir()
        (tmp / "zarr.json").write_text("{}")
    assert dst.is_dir()
    with pytest.raises(FileExistsError, match="refusing to overwrite"), outputs.staging(dst):
        pass
    assert (dst / "zarr.json").read_text() == "{}"
    # an empty folder (Snakemake makes the folders of a job's outputs) is no data: replaced
    empty = tmp_path / "model"
    empty.mkdir()
    with outputs.staging(empty) as tmp:
        tmp.mkdir()
        (tmp / "model.pt").write_text("new")
    assert (empty / "model.pt").read_text() == "new" and not outputs.partial_path(empty).exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        outputs.check_writable(tmp_path / "f" / "sub.zarr")


def test_unreadable_store_and_non_array_level(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{ this is not json")
    with pytest.raises(ValueError, match=r"bad\.zarr: not a readable Zarr store"):
        ngff.open_array(bad)
    import zarr

    group = zarr.open_group(str(tmp_path / "nested.zarr"), mode="w")
    group.create_group("0")
    with pytest.raises(ValueError, match=r"nested\.zarr/0 is not an array"):
        ngff.open_array(tmp_path / "nested.zarr")


def test_normalise_rejects_non_numeric() -> None:
    from unet.io.normalize import to_unit

    assert to_unit(np.array([0, 65535], dtype=np.uint16)).tolist() == [0.0, 1.0]
    with pytest.raises(TypeError, match="cannot normalise grey values of dtype <U1"):
        to_unit(np.array(["a"]))
