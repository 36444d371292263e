"""What ingest reads, as one (z, y, x) stack read slab by slab:

* a TIFF file: multi-page, 2D, compressed (LZW, deflate, zstd, ... decoded by ``imagecodecs``;
  :mod:`unet.io.tiffs`);
* a folder of TIFF or PNG sections, one per file, sorted naturally (``2.png`` before
  ``10.png``), the way EM sections are usually delivered; or a single PNG;
* a Zarr array, or an OME-Zarr image of any tool (NGFF 0.4 / 0.5, Zarr v2 / v3): its first
  dataset (``multiscales[0].datasets[0].path``), with its voxel size and translation
  (:mod:`unet.io.foreign`); singleton ``c`` / ``t`` axes are dropped.

RGB(A) images of grey data (red = green = blue, as screenshots and many exporters write EM
sections) are reduced to one channel (alpha dropped) with a logged note; a colour image is
refused.  A file that is readable but uses a compression this installation cannot decode is
reported as such, never as corrupt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unet.errors import InputError
from unet.geometry import Box, blocks
from unet.io import ngff
from unet.io.tiffs import TiffStack, check_samples, to_grey

log = logging.getLogger("unet.io.sources")

SECTION_SUFFIXES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG"}
GREY_NOTE = "%s: RGB(A) image of grey values (red = green = blue): reduced to one channel"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders numbers by value.

    >>> sorted(["s10.png", "s2.png", "S1.png"], key=natural_key)
    ['S1.png', 's2.png', 's10.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_zarr(path: Path) -> bool:
    """A Zarr store (v2 or v3) rather than a folder of sections."""
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.suffix == ".zarr" or any((path / m).exists() for m in markers)


def read_section(path: Path) -> tuple[np.ndarray, bool]:
    """One 2D section (TIFF or PNG) as (y, x), grey RGB(A) reduced; and whether it was RGB."""
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as opened:
                image: Image.Image = opened
                if opened.mode == "P":
                    image = opened.convert("RGBA" if "transparency" in opened.info else "RGB")
                data = np.asarray(image)
        except Exception as err:  # PIL raises several types for broken files
            raise InputError(f"{path}: not a readable PNG image ({err})") from err
        rgb = data.ndim == 3
    else:
        tif = TiffStack(path)
        try:
            if not tif.flat:
                raise InputError(
                    f"{path}: holds {tif.shape[0]} images; a folder of sections holds one per file"
                )
            return tif.read(0, 1)[0], tif.rgb
        finally:
            tif.close()
    if rgb:
        check_samples(data.shape[-1], str(path))
        data = to_grey(data, str(path))
    if data.ndim != 2:
        raise InputError(f"{path}: expected a 2D section, got shape {data.shape}")
    return data, rgb


class _Sections:
    def __init__(self, path: Path, files: list[Path] | None = None) -> None:
        if files is None:
            files = [
                f
                for f in path.iterdir()
                if f.suffix.lower() in SECTION_SUFFIXES and f.is_file() and f.name[0] != "."
            ]
            files.sort(key=lambda f: natural_key(f.name))
        kinds = {SECTION_SUFFIXES[f.suffix.lower()] for f in files}
        if not files:
            raise InputError(f"{path}: a folder without TIFF or PNG sections (and no Zarr store)")
        if len(kinds) > 1:
            raise InputError(f"{path}: holds both TIFF and PNG files; keep one kind of section")
        self.files = files
        first, self.rgb = read_section(files[0])
        self.first = first
        self.shape = (len(files), *first.shape)
        self.dtype = first.dtype
        log.info("%s: %d sections, %s ... %s", path, len(files), files[0].name, files[-1].name)

    def read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), self.dtype)
        for z in range(z0, z1):
            data = self.first if z == 0 else read_section(self.files[z])[0]
            if data.shape != self.shape[1:] or data.dtype != self.dtype:
                raise InputError(
                    f"{self.files[z]}: section {z} is {data.dtype} {data.shape}, the first "
                    f"({self.files[0].name}) {self.dtype} {self.shape[1:]}; all must agree"
                )
            out[z - z0] = data
        return out

    def close(self) -> None:
        pass


class _Zarr:
    def __init__(self, path: Path) -> None:
        self.array = ngff.open_array(path)
        found = ngff.multiscale(path)
        shape = tuple(self.array.shape)
        axes = found.axes if found else ("z", "y", "x")[-len(shape) :]
        if len(axes) != len(shape) or not {"y", "x"} <= set(axes):
            raise InputError(
                f"{path}: expected a 2D image or a 3D (z, y, x) stack, got shape {shape} "
                "(multi-channel and time series are not supported)"
            )
        for name, size in zip(axes, shape, strict=True):
            if name not in ("z", "y", "x") and size != 1:
                raise InputError(
                    f"{path}: axis {name!r} holds {size} entries (channels or time points); the "
                    "pipeline reads one grey (z, y, x) volume: extract it first"
                )
        self.axes = axes
        self.shape = tuple(shape[axes.index(a)] if a in axes else 1 for a in ("z", "y", "x"))
        self.dtype = np.dtype(self.array.dtype)
        self.found = found
        self.rgb = False

    def read(self, z0: int, z1: int) -> np.ndarray:
        index = tuple(
            slice(z0, z1) if a == "z" else slice(None) if a in ("y", "x") else 0 for a in self.axes
        )
        data = np.asarray(self.array[index])
        kept = [a for a in self.axes if a in ("z", "y", "x")]
        if "z" not in kept:
            data, kept = data[None], ["z", *kept]
        return np.transpose(data, [kept.index(a) for a in ("z", "y", "x")])

    def close(self) -> None:
        pass


class Source:
    """A 3D (z, y, x) view of one of the inputs of the module docstring, read slab by slab.

    ``voxel_size`` / ``translation``: (z, y, x) in nanometres as the source's metadata says
    (OME-Zarr; an ImageJ TIFF's voxel size); None where it says nothing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.voxel_size: tuple[float, float, float] | None = None
        self.translation: tuple[float, float, float] | None = None
        reader: TiffStack | _Sections | _Zarr
        if self.path.suffix == ".zarr" or (self.path.is_dir() and is_zarr(self.path)):
            reader = _Zarr(self.path)
            if reader.found is not None:
                self.voxel_size, self.translation = reader.found.scale, reader.found.translation
        elif self.path.is_dir():
            reader = _Sections(self.path)
        elif self.path.suffix.lower() == ".png":
            reader = _Sections(self.path.parent, [self.path])
        else:
            reader = TiffStack(self.path)
            self.voxel_size = reader.voxel
        self._reader = reader
        shape = tuple(int(s) for s in reader.shape)
        if any(s == 0 for s in shape):
            self.close()
            raise InputError(f"{self.path}: empty image of shape {shape}")
        self.shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.dtype = np.dtype(reader.dtype)
        if reader.rgb:
            log.info(GREY_NOTE, self.path)

    def read(self, box: Box) -> np.ndarray:
        """Read the slab ``box`` (whole y-x planes are read, then cropped)."""
        data = self._reader.read(box.begin[0], box.end[0])
        return np.asarray(data[(slice(None),) + box.to_slices()[1:]])

    def slabs(self, depth: int) -> Iterator[tuple[Box, np.ndarray]]:
        for box in blocks(self.shape, (depth, *self.shape[1:])):
            yield box, self.read(box)

    def close(self) -> None:
        self._reader.close()
