"""OME-Zarr (NGFF 0.5 on Zarr v3) volumes: create, open, describe.

Layout of every volume the pipeline writes::

    name.zarr/            group; attrs["ome"] = NGFF 0.5 multiscales, attrs["unet"] = provenance
    name.zarr/0           level 0, axes (z, y, x), chunked and compressed
    name.zarr/1 ...       optional pyramid levels (y and x halved per level)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from unet import __version__

AXES = ("z", "y", "x")
NGFF_VERSION = "0.5"


def compressor(level: int = 5) -> BloscCodec:
    """The default codec: Blosc zstd with byte shuffle (fast, good on EM and probabilities)."""
    return BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.shuffle)


def multiscales(
    voxel_size: Sequence[float], levels: int = 1, name: str = "", unit: str = "nanometer"
) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attribute for ``levels`` levels, each halving y and x."""
    datasets = []
    for level in range(levels):
        scale = [float(voxel_size[0])] + [float(v) * 2**level for v in voxel_size[1:]]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": a, "type": "space", "unit": unit} for a in AXES],
                "datasets": datasets,
            }
        ],
    }


def provenance(**extra: Any) -> dict[str, Any]:
    """Provenance attributes stored under ``attrs["unet"]`` of every volume we write."""
    return {
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def create(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    voxel_size: Sequence[float],
    *,
    attrs: Mapping[str, Any] | None = None,
    fill_value: Any = 0,
    name: str = "",
) -> zarr.Array:
    """Create a new OME-Zarr volume at ``path`` and return its level-0 array.

    ``path`` must not exist (use :func:`unet.outputs.staging` to write atomically).
    """
    path = Path(path)
    if len(shape) != 3:
        raise ValueError(f"{path}: volumes are (z, y, x), got shape {tuple(shape)}")
    if len(voxel_size) != 3 or any(float(v) <= 0 for v in voxel_size):
        raise ValueError(f"{path}: voxel size must be 3 positive numbers, got {voxel_size}")
    if path.exists():
        raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    chunks = tuple(min(int(c), int(s)) for c, s in zip(chunks, shape, strict=True))
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    group.attrs["ome"] = multiscales(voxel_size, 1, name or path.stem)
    group.attrs["unet"] = provenance(**dict(attrs or {}))
    return group.create_array(
        "0",
        shape=tuple(int(s) for s in shape),
        chunks=chunks,
        dtype=np.dtype(dtype),
        compressors=compressor(),
        fill_value=fill_value,
        dimension_names=AXES,
    )


def is_volume(path: str | Path) -> bool:
    """True if ``path`` is an OME-Zarr volume in our layout (a group with ``ome`` and ``0``)."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError):
        return False
    return "ome" in group.attrs and "0" in group


def open_array(path: str | Path, level: int = 0, mode: str = "r") -> zarr.Array:
    """Open level ``level`` of an OME-Zarr volume (or a plain Zarr array) read-only by default."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr volume")
    try:
        node = zarr.open(str(path), mode=cast(Literal["r", "r+", "a"], mode))
    except Exception as err:  # zarr raises several types for unreadable stores
        raise ValueError(f"{path}: not a readable Zarr store ({err})") from err
    if isinstance(node, zarr.Array):
        return node
    if str(level) not in node:
        raise ValueError(f"{path}: Zarr group has no array '{level}' (not an OME-Zarr volume?)")
    array = node[str(level)]
    if not isinstance(array, zarr.Array):
        raise ValueError(f"{path}/{level} is not an array")
    return array


def voxel_size(path: str | Path) -> tuple[float, float, float]:
    """Level-0 voxel size (z, y, x) from the NGFF metadata; (1, 1, 1) if there is none."""
    group = zarr.open_group(str(path), mode="r")
    try:
        ome: Any = group.attrs["ome"]
        scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        return (float(scale[0]), float(scale[1]), float(scale[2]))
    except (KeyError, IndexError, TypeError):
        return (1.0, 1.0, 1.0)


def attributes(path: str | Path) -> dict[str, Any]:
    """The ``unet`` provenance attributes of a volume (empty if absent)."""
    group = zarr.open_group(str(path), mode="r")
    return dict(group.attrs.get("unet", {}))  # type: ignore[arg-type]
