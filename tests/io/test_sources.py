"""Ingest of what other tools write: OME-Zarr of ome-zarr-py (NGFF 0.4 / 0.5), hand-written NGFF
metadata, folders of PNG / TIFF sections, compressed TIFFs, RGB(A) images of grey data."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from unet.io import ngff, sources
from unet.io.ingest import IngestConfig, ingest

VOXEL = (50.0, 4.0, 4.0)


def test_doctests() -> None:
    assert doctest.testmod(sources).failed == 0


def _data(shape: tuple[int, ...] = (5, 40, 36), dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, shape).astype(dtype)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_volume_ingests_with_its_voxel_size(tmp_path: Path, version: str) -> None:
    """ome-zarr-py writes datasets s0, s1 in micrometres (NGFF 0.4: Zarr v2; 0.5: v3)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    data = _data()
    group = zarr.open_group(str(tmp_path / "em.zarr"), mode="w", zarr_format=fmt.zarr_format)
    um = {a: "micrometer" for a in "zyx"}
    scale = {"z": 0.05, "y": 0.004, "x": 0.004}
    write_image(data, group, axes="zyx", fmt=fmt, scale=scale, axes_units=um, scale_factors=(2,))
    assert sorted(p.name for p in (tmp_path / "em.zarr").iterdir() if p.is_dir()) == ["s0", "s1"]
    ingest(tmp_path / "em.zarr", tmp_path / "raw.zarr", IngestConfig(chunks=(1, 16, 16)))
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data)
    assert ngff.voxel_size(tmp_path / "raw.zarr") == VOXEL
    assert ngff.translation(tmp_path / "raw.zarr") == (0.0, 0.0, 0.0)


def _ngff04(path: Path, data: np.ndarray, axes: str, ms_extra: dict | None = None) -> None:
    """A hand-written NGFF 0.4 group (Zarr v2), dataset path 'scale0'."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("scale0", data=data, chunks=data.shape)
    n = len(axes)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space" if a in "zyx" else "channel"} for a in axes],
            "datasets": [
                {
                    "path": "scale0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0] * (n - 3) + [25.0, 4.0, 4.0]},
                        {"type": "translation", "translation": [0.0] * (n - 3) + [50, 8, 12]},
                    ],
                }
            ],
            **(ms_extra or {}),
        }
    ]


def test_translation_and_multiscale_transform_are_kept(tmp_path: Path) -> None:
    data = _data()
    outer = {"coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]}]}
    _ngff04(tmp_path / "t.zarr", data, "zyx", outer)
    ingest(tmp_path / "t.zarr", tmp_path / "raw.zarr", IngestConfig(pyramid_levels=1))
    assert ngff.voxel_size(tmp_path / "raw.zarr") == VOXEL
    assert ngff.translation(tmp_path / "raw.zarr") == (100.0, 8.0, 12.0)
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data)
    # an explicit voxel size wins over the metadata (a tool may have written a wrong one)
    ingest(tmp_path / "t.zarr", tmp_path / "b.zarr", IngestConfig(voxel_size=(40, 4, 4)))
    assert ngff.voxel_size(tmp_path / "b.zarr") == (40.0, 4.0, 4.0)


def test_singleton_channel_dropped_real_channels_refused(tmp_path: Path) -> None:
    data = _data((1, 3, 20, 16))
    _ngff04(tmp_path / "c1.zarr", data, "czyx")
    ingest(tmp_path / "c1.zarr", tmp_path / "raw.zarr", IngestConfig())
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data[0])
    _ngff04(tmp_path / "c2.zarr", _data((2, 3, 20, 16)), "czyx")
    with pytest.raises(ValueError, match=r"c2\.zarr: axis 'c' holds 2 entries"):
        ingest(tmp_path / "c2.zarr", tmp_path / "x.zarr", IngestConfig())
    assert not (tmp_path / "x.zarr").exists()


def test_folder_of_png_sections_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "sections"
    folder.mkdir()
    data = _data((3, 24, 20), np.uint16) * 300  # 16-bit PNGs
    for z, name in enumerate(["s1.png", "s2.png", "s10.png"]):
        Image.fromarray(data[z]).save(folder / name)
    (folder / "notes.txt").write_text("not a section")
    summary = ingest(folder, tmp_path / "raw.zarr", IngestConfig())
    assert summary["dtype"] == "uint16"
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data)


def test_folder_of_tiff_sections_and_its_errors(tmp_path: Path) -> None:
    folder = tmp_path / "tif"
    folder.mkdir()
    data = _data((4, 16, 12))
    for z in range(4):
        tifffile.imwrite(folder / f"{z + 8}.tif", data[z], compression="zlib")
    ingest(folder, tmp_path / "raw.zarr", IngestConfig())
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data)
    tifffile.imwrite(folder / "12.tif", data[0, :8])
    with pytest.raises(ValueError, match=r"12\.tif: section 4 is uint8 \(8, 12\), the first"):
        ingest(folder, tmp_path / "bad.zarr", IngestConfig())
    Image.fromarray(data[0]).save(folder / "13.png")
    with pytest.raises(ValueError, match=r"tif: holds both TIFF and PNG files"):
        ingest(folder, tmp_path / "bad.zarr", IngestConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: a folder without TIFF or PNG sections"):
        ingest(tmp_path / "empty", tmp_path / "bad.zarr", IngestConfig())
    assert not (tmp_path / "bad.zarr").exists()


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd"])
def test_compressed_tiff(tmp_path: Path, compression: str) -> None:
    data = _data((3, 32, 32), np.uint16)
    tifffile.imwrite(
        tmp_path / "c.tif", data, photometric="minisblack", compression=compression, predictor=True
    )
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.pages[0].compression != 1
    ingest(tmp_path / "c.tif", tmp_path / "raw.zarr", IngestConfig())
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "raw.zarr")[:], data)


def test_undecodable_compression_is_not_called_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without imagecodecs, tifffile cannot decode LZW: the file is readable, not corrupt."""
    tifffile.imwrite(tmp_path / "lzw.tif", _data((2, 16, 16)), compression="lzw")
    monkeypatch.setattr(tifffile.tifffile, "imagecodecs", None)
    monkeypatch.setattr(tifffile.TIFF.DECOMPRESSORS, "_codecs", {})
    with pytest.raises(
        ValueError, match=r"lzw\.tif: compressed with LZW, which .* cannot decode"
    ) as err:
        ingest(tmp_path / "lzw.tif", tmp_path / "raw.zarr", IngestConfig())
    assert "truncated or corrupt" not in str(err.value)


def test_rgb_of_grey_data_is_one_channel(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    grey = _data((3, 16, 12))
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # 3 pages of (y, x, 3)
    with caplog.at_level(logging.INFO, logger="unet.io.sources"):
        summary = ingest(tmp_path / "rgb.tif", tmp_path / "a.zarr", IngestConfig())
    assert summary["shape"] == (3, 16, 12)  # not a stack of 16 slices of 12 x 3
    assert "reduced to one channel" in caplog.text
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "a.zarr")[:], grey)
    rgba = np.concatenate([rgb[0], np.full((16, 12, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "one.png")
    ingest(tmp_path / "one.png", tmp_path / "b.zarr", IngestConfig())
    np.testing.assert_array_equal(ngff.open_array(tmp_path / "b.zarr")[:], grey[:1])
    colour = rgb.copy()
    colour[1, 3, 4, 0] += 1
    tifffile.imwrite(tmp_path / "colour.tif", colour, photometric="rgb")
    with pytest.raises(ValueError, match=r"colour\.tif \(slices 1\.\.1\): a colour image"):
        ingest(tmp_path / "colour.tif", tmp_path / "c.zarr", IngestConfig())
    assert not (tmp_path / "c.zarr").exists()


def test_imagej_tiff_keeps_its_voxel_size(tmp_path: Path) -> None:
    """``unet export-tiff`` -> ``unet ingest`` keeps the voxel size (ImageJ tags, in um)."""
    from unet.interop.tiff import export_tiff

    tifffile.imwrite(tmp_path / "a.tif", _data((3, 16, 16)), photometric="minisblack")
    ingest(tmp_path / "a.tif", tmp_path / "a.zarr", IngestConfig(voxel_size=(40, 4, 5)))
    export_tiff(tmp_path / "a.zarr", tmp_path / "fiji.tif")
    ingest(tmp_path / "fiji.tif", tmp_path / "b.zarr", IngestConfig())
    assert ngff.voxel_size(tmp_path / "b.zarr") == (40.0, 4.0, 5.0)
    assert ngff.voxel_size(tmp_path / "a.zarr") == (40.0, 4.0, 5.0)
    ingest(tmp_path / "a.tif", tmp_path / "c.zarr", IngestConfig())  # no metadata: unknown
    assert ngff.voxel_size(tmp_path / "c.zarr") == (1.0, 1.0, 1.0)
