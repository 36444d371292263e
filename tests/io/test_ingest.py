from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from unet.io import ngff
from unet.io.ingest import IngestConfig, ingest


def _tif(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def test_tiff_to_ome_zarr_roundtrip(tmp_path: Path, raw: np.ndarray, cells: np.ndarray) -> None:
    src = _tif(tmp_path / "raw.tif", raw)
    summary = ingest(
        src, tmp_path / "raw.zarr", IngestConfig(voxel_size=(50, 4, 4), chunks=(2, 32, 32))
    )
    assert summary["shape"] == raw.shape
    out = ngff.open_array(tmp_path / "raw.zarr")
    np.testing.assert_array_equal(out[:], raw)
    assert out.chunks == (2, 32, 32)
    assert ngff.voxel_size(tmp_path / "raw.zarr") == (50.0, 4.0, 4.0)
    lab = _tif(tmp_path / "lab.tif", cells)
    ingest(lab, tmp_path / "lab.zarr", IngestConfig(kind="binary"), like=tmp_path / "raw.zarr")
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "lab.zarr")[:], cells)
    # an existing Zarr volume is a valid source too, and a 2D image becomes (1, Y, X)
    ingest(tmp_path / "raw.zarr", tmp_path / "copy.zarr", IngestConfig())
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "copy.zarr")[:], raw)
    ingest(_tif(tmp_path / "2d.tif", raw[0]), tmp_path / "2d.zarr", IngestConfig())
    assert ngff.open_array(tmp_path / "2d.zarr").shape == (1, 64, 64)


def test_sharded_ingest_streams_whole_shards(tmp_path: Path, raw: np.ndarray) -> None:
    cfg = IngestConfig(chunks=(1, 16, 16), shards=(2, 32, 64))
    ingest(_tif(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr", cfg)
    out = ngff.open_array(tmp_path / "raw.zarr")
    np.testing.assert_array_equal(out[:], raw)
    assert out.chunks == (1, 16, 16) and out.shards == (2, 32, 64)
    files = [f for f in (tmp_path / "raw.zarr" / "0" / "c").rglob("*") if f.is_file()]
    assert len(files) == -(-raw.shape[0] // 2) * 2 * 1


def test_instances_accepted(tmp_path: Path) -> None:
    inst = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    ingest(_tif(tmp_path / "i.tif", inst), tmp_path / "i.zarr", IngestConfig(kind="instances"))
    assert ngff.open_array(tmp_path / "i.zarr").dtype == np.uint16


def _no_output(tmp_path: Path, name: str) -> None:
    assert not (tmp_path / name).exists()
    assert not (tmp_path / (name + ".partial")).exists()


def test_truncated_tiff(tmp_path: Path, raw: np.ndarray) -> None:
    src = _tif(tmp_path / "raw.tif", raw)
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"trunc\.tif: .*(truncated|not a readable)"):
        ingest(bad, tmp_path / "out.zarr", IngestConfig())
    _no_output(tmp_path, "out.zarr")


def test_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image")
    with pytest.raises(ValueError, match=r"notes\.tif: not a readable TIFF image"):
        ingest(bad, tmp_path / "out.zarr", IngestConfig())
    _no_output(tmp_path, "out.zarr")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.tif: no such file"):
        ingest(tmp_path / "nothere.tif", tmp_path / "out.zarr", IngestConfig())


def test_nan_raw(tmp_path: Path) -> None:
    data = np.ones((3, 8, 8), np.float32)
    data[2, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    with pytest.raises(ValueError, match=r"nan\.tif \(slices 2\.\.2\): raw image holds 2 NaN/inf"):
        ingest(_tif(tmp_path / "nan.tif", data), tmp_path / "out.zarr", IngestConfig())
    _no_output(tmp_path, "out.zarr")


def test_labels_shape_mismatch(tmp_path: Path, raw: np.ndarray, cells: np.ndarray) -> None:
    ingest(_tif(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr", IngestConfig())
    with pytest.raises(ValueError, match=r"lab\.tif: labels of shape \(3, 64, 32\) do not match"):
        ingest(
            _tif(tmp_path / "lab.tif", cells[:, :, :32]),
            tmp_path / "l.zarr",
            IngestConfig(kind="binary"),
            like=tmp_path / "raw.zarr",
        )
    _no_output(tmp_path, "l.zarr")


@pytest.mark.parametrize(
    ("data", "kind", "match"),
    [
        (np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8), "binary", "at most two values"),
        (np.full((3, 8, 8), 0.5, np.float32), "instances", "whole numbers"),
        (-np.ones((3, 8, 8), np.int16), "instances", "must be >= 0, found -1"),
        (np.zeros((3, 8, 8, 3), np.uint8), "raw", "multi-channel"),
    ],
)
def test_bad_labels(tmp_path: Path, data: np.ndarray, kind: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ingest(_tif(tmp_path / "x.tif", data), tmp_path / "out.zarr", IngestConfig(kind=kind))  # type: ignore[arg-type]
    _no_output(tmp_path, "out.zarr")


def test_refuses_to_overwrite_unrelated_data(tmp_path: Path, raw: np.ndarray) -> None:
    precious = tmp_path / "out.zarr"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not lose me")
    with pytest.raises(FileExistsError, match=r"out\.zarr: output already exists"):
        ingest(_tif(tmp_path / "raw.tif", raw), precious, IngestConfig())
    assert (precious / "thesis.txt").read_text() == "do not lose me"


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="kind must be raw, binary or instances, got 'rgb'"):
        IngestConfig(kind="rgb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunks must be 3 positive ints"):
        IngestConfig(chunks=(0, 1, 1))
    with pytest.raises(ValueError, match=r"shards \(2, 24, 32\) must be a multiple of the chunks"):
        IngestConfig(chunks=(1, 16, 16), shards=(2, 24, 32))
    with pytest.raises(ValueError, match=r"voxel size must be 3 positive numbers .*\('a', 4, 4\)"):
        IngestConfig(voxel_size=("a", 4, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"percentiles must satisfy .* got \(True, 99\)"):
        IngestConfig(percentiles=(True, 99))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown ingest setting\(s\) \['pyramids'\]"):
        IngestConfig.from_settings({"pyramids": 2})
    rule = {"kind": "raw", "voxel_size": [50, 4, 4], "chunks": [1, 8, 8], "pyramid_levels": 2}
    config = IngestConfig.from_settings(rule)  # as the rules pass them: lists
    assert config.voxel_size == (50.0, 4.0, 4.0) and config.chunks == (1, 8, 8)
    assert config.pyramid_levels == 2 and config.percentiles == (0.5, 99.5)


def test_non_numeric_raw_and_empty_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"raw images must be numeric, got dtype bool"):
        ingest(
            _tif(tmp_path / "b.tif", np.zeros((2, 8, 8), bool)), tmp_path / "o.zarr", IngestConfig()
        )
    _no_output(tmp_path, "o.zarr")
    import zarr

    zarr.create_array(str(tmp_path / "empty.zarr"), shape=(0, 8, 8), dtype="uint8")
    with pytest.raises(ValueError, match=r"empty\.zarr: empty image of shape \(0, 8, 8\)"):
        ingest(tmp_path / "empty.zarr", tmp_path / "o.zarr", IngestConfig())


def test_percentile_rescale_of_uint16(tmp_path) -> None:
    """uint16 EM in a narrow band [30000, 30999] -> uint8 over the full range; the window is
    recorded; a constant image cannot be stretched."""
    from unet.io.rescale import to_uint8

    data = (30000 + np.arange(5 * 40 * 25) % 1000).reshape(5, 40, 25).astype(np.uint16)
    tifffile.imwrite(tmp_path / "em16.tif", data, photometric="minisblack")
    config = IngestConfig(rescale="percentile", percentiles=(0.0, 100.0))
    summary = ingest(tmp_path / "em16.tif", tmp_path / "em.zarr", config)
    assert summary["dtype"] == "uint8"
    out = ngff.open_array(tmp_path / "em.zarr")[...]
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(out, to_uint8(data, 30000, 30999))
    rescale = ngff.attributes(tmp_path / "em.zarr")["rescale"]
    assert rescale == {
        "percentiles": [0.0, 100.0],
        "window": [30000.0, 30999.0],
        "source_dtype": "uint16",
    }
    tifffile.imwrite(tmp_path / "flat.tif", np.full((2, 8, 8), 7, np.uint16))
    with pytest.raises(ValueError, match=r"flat\.tif: the grey values at percentiles .* are equal"):
        ingest(tmp_path / "flat.tif", tmp_path / "flat.zarr", config)
    assert not (tmp_path / "flat.zarr").exists() and not (tmp_path / "flat.zarr.partial").exists()
    with pytest.raises(ValueError, match="rescale applies to raw images only"):
        IngestConfig(kind="binary", rescale="percentile")
    with pytest.raises(ValueError, match="percentiles must satisfy"):
        ingest(
            tmp_path / "em16.tif",
            tmp_path / "x.zarr",
            IngestConfig(rescale="percentile", percentiles=(90, 10)),
        )
