"""OME-Zarr (NGFF 0.5 on Zarr v3) volumes: create, open, describe.

Layout of every volume the pipeline writes::

    name.zarr/            group; attrs["ome"] = NGFF 0.5 multiscales, attrs["unet"] = provenance
    name.zarr/0           level 0, axes (z, y, x), chunked and compressed
    name.zarr/1 ...       optional pyramid levels (y and x halved per level)

Each level's ``coordinateTransformations`` place it in physical space (nanometres): ``scale``
(the voxel size) and, where not zero, ``translation`` (the centre of its first voxel: a
prediction of slices ``z0..`` starts at ``z0 * voxel_z``; a level averaged from 2**l x 2**l
voxels is shifted by half of its extra width).  Volumes of other tools (NGFF 0.4 on Zarr v2,
0.5 on v3, any dataset paths) are read through :func:`multiscale` (:mod:`unet.io.foreign`);
the compression codecs are :mod:`unet.io.codecs`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from unet import __version__
from unet.errors import InputError
from unet.geometry import check_multiple
from unet.io import foreign
from unet.io.codecs import CNAMES as CNAMES  # re-exported: ngff.compressor(...)
from unet.io.codecs import DEFAULT_COMPRESSION as DEFAULT_COMPRESSION
from unet.io.codecs import compression_of as compression_of
from unet.io.codecs import compressor as compressor
from unet.io.roles import ROLES as ROLES  # re-exported: ngff.check_role(...)
from unet.io.roles import check_role as check_role

AXES = ("z", "y", "x")
NGFF_VERSION = "0.5"


def level_transforms(
    voxel_size: Sequence[float],
    level: int,
    translation: Sequence[float] | None = None,
    method: str = "mean",
) -> list[dict[str, Any]]:
    """``coordinateTransformations`` of pyramid level ``level`` (y, x halved per level) of a
    volume whose level 0 has ``voxel_size`` and ``translation``: level ``l`` of a ``mean``
    pyramid averages 2**l voxels, so its first voxel's centre lies (2**l - 1) / 2 level-0
    voxels further; a ``nearest`` (subsampled) level keeps level 0's origin.

    >>> scale, shift = level_transforms((50, 4, 4), 1, (100, 0, 0))
    >>> scale["scale"], shift["translation"]
    ([50.0, 8.0, 8.0], [100.0, 2.0, 2.0])
    >>> level_transforms((50, 4, 4), 0)
    [{'type': 'scale', 'scale': [50.0, 4.0, 4.0]}]
    """
    if method not in ("mean", "nearest"):
        raise InputError(f"pyramid method must be 'mean' or 'nearest', got {method!r}")
    f = 2**level
    shift = (f - 1) / 2 if method == "mean" else 0.0
    origin = [0.0, 0.0, 0.0] if translation is None else [float(t) for t in translation]
    scale = [float(voxel_size[0])] + [float(v) * f for v in voxel_size[1:]]
    moved = [origin[0]]
    moved += [t + shift * float(v) for t, v in zip(origin[1:], voxel_size[1:], strict=True)]
    out: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if any(moved):
        out.append({"type": "translation", "translation": moved})
    return out


def multiscales(
    voxel_size: Sequence[float],
    levels: int = 1,
    name: str = "",
    unit: str = "nanometer",
    translation: Sequence[float] | None = None,
    method: str = "mean",
) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attribute for ``levels`` levels, each halving y and x
    (:func:`level_transforms`)."""
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": level_transforms(voxel_size, level, translation, method),
        }
        for level in range(levels)
    ]
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


def label_image(
    voxel_size: Sequence[float],
    levels: int = 1,
    name: str = "",
    source: str | None = None,
    translation: Sequence[float] | None = None,
) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attribute of a label image: :func:`multiscales` (levels subsampled:
    ``nearest``) plus ``image-label`` (which viewers such as napari and neuroglancer read as
    "segmentation"); ``source``: the relative path of the image it labels.

    >>> label_image((1, 2, 2), source="../pred.zarr")["image-label"]
    {'source': {'image': '../pred.zarr'}}
    """
    ome = multiscales(voxel_size, levels, name, translation=translation, method="nearest")
    ome["image-label"] = {} if source is None else {"source": {"image": source}}
    return ome


def provenance(**extra: Any) -> dict[str, Any]:
    """Provenance attributes stored under ``attrs["unet"]`` of every volume we write."""
    from unet.io.provenance import library_versions

    return {
        "package_version": __version__,
        "libraries": library_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def grid_shapes(
    shape: Sequence[int], chunks: Sequence[int], shards: Sequence[int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Chunks clipped to ``shape``, and shards clipped to ``shape`` rounded up to whole chunks.

    >>> grid_shapes((3, 1000, 100), (1, 512, 512), (2, 2048, 2048))
    ((1, 512, 100), (2, 1024, 100))
    """
    clipped = tuple(min(int(c), int(s)) for c, s in zip(chunks, shape, strict=True))
    if shards is None:
        return clipped, None
    check_multiple(shards, chunks, "shards", "the chunks")
    outer = tuple(
        -(-min(int(h), int(s)) // c) * c for h, s, c in zip(shards, shape, clipped, strict=True)
    )
    return clipped, outer


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
    compression: str = DEFAULT_COMPRESSION,
    shards: Sequence[int] | None = None,
    translation: Sequence[float] | None = None,
) -> zarr.Array:
    """Create a new OME-Zarr volume at ``path`` and return its level-0 array.

    ``compression``: see :func:`compressor` (checked before anything is written).  ``shards``:
    Zarr v3 shard shape, a multiple of ``chunks`` (one file per shard instead of per chunk: far
    fewer files on a parallel file system); see :func:`grid_shapes`.  ``translation``: the
    physical position (z, y, x) of the first voxel's centre, e.g. of a sub-range of slices.

    ``path`` must not exist (use :func:`unet.io.outputs.staging` to write atomically).
    """
    path = Path(path)
    if len(shape) != 3:
        raise InputError(f"{path}: volumes are (z, y, x), got shape {tuple(shape)}")
    if len(voxel_size) != 3 or any(float(v) <= 0 for v in voxel_size):
        raise InputError(f"{path}: voxel size must be 3 positive numbers, got {voxel_size}")
    if path.exists():
        raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    codec = compressor(compression)
    chunks, shard_shape = grid_shapes(shape, chunks, shards)
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    if translation is not None and len(translation) != 3:
        raise InputError(f"{path}: translation must be 3 numbers, got {translation}")
    group.attrs["ome"] = multiscales(voxel_size, 1, name or path.stem, translation=translation)
    group.attrs["unet"] = provenance(**dict(attrs or {}))
    return group.create_array(
        "0",
        shape=tuple(int(s) for s in shape),
        chunks=chunks,
        shards=shard_shape,
        dtype=np.dtype(dtype),
        compressors=codec,
        fill_value=fill_value,
        dimension_names=AXES,
    )


def is_volume(path: str | Path) -> bool:
    """True if ``path`` is an OME-Zarr image (a group with multiscales metadata whose first
    dataset exists), ours or another tool's."""
    try:
        found = multiscale(path)
    except (InputError, FileNotFoundError):
        return False
    return found is not None and found.present


def open_array(path: str | Path, level: int = 0, mode: str = "r") -> zarr.Array:
    """Open level ``level`` of an OME-Zarr volume (its ``multiscales[0].datasets[level].path``,
    ``"0"`` in ours) or a plain Zarr array, read-only by default."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr volume")
    try:
        node = zarr.open(str(path), mode=cast(Literal["r", "r+", "a"], mode))
    except Exception as err:  # zarr raises several types for unreadable stores
        raise InputError(f"{path}: not a readable Zarr store ({err})") from err
    if isinstance(node, zarr.Array):
        return node
    key = str(level)
    found = foreign.read_multiscale(node, path)
    if found is not None and level < len(found.paths):
        key = found.paths[level]
    if key not in node:
        raise InputError(
            f"{path}: Zarr group has no array '{key}'"
            + (" (named by its multiscales metadata)" if found else " (not an OME-Zarr volume?)")
        )
    array = node[key]
    if not isinstance(array, zarr.Array):
        raise InputError(f"{path}/{key} is not an array")
    return array


def multiscale(path: str | Path) -> foreign.Multiscale | None:
    """The multiscales metadata of the group ``path`` (NGFF 0.4 or 0.5; None: none there)."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # a plain array, no store, or not Zarr at all
        return None
    return foreign.read_multiscale(group, path)


def voxel_size(path: str | Path) -> tuple[float, float, float]:
    """Level-0 voxel size (z, y, x) in nanometres from the NGFF metadata; (1, 1, 1) if none."""
    found = multiscale(path)
    return (1.0, 1.0, 1.0) if found is None else found.scale


def translation(path: str | Path) -> tuple[float, float, float]:
    """Level-0 translation (z, y, x) in nanometres from the NGFF metadata; 0 if none."""
    found = multiscale(path)
    return (0.0, 0.0, 0.0) if found is None else found.translation


def placement(
    path: str | Path, offset: Sequence[int] = (0, 0, 0)
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(voxel_size, translation)`` of a volume cut from ``path`` at voxel ``offset`` (e.g. a
    prediction of slices ``z0..``), so that viewers draw it over ``path``."""
    vox, origin = voxel_size(path), translation(path)
    moved = tuple(t + int(o) * v for t, o, v in zip(origin, offset, vox, strict=True))
    return vox, (moved[0], moved[1], moved[2])


def set_levels(path: str | Path, levels: int, method: str = "mean") -> None:
    """Rewrite the datasets of our volume ``path`` for ``levels`` levels (:func:`level_transforms`
    from level 0's transforms), keeping its name, axes and ``image-label``."""
    group = zarr.open_group(str(path), mode="r+")
    ome: dict[str, Any] = dict(group.attrs["ome"])  # type: ignore[arg-type]
    vox, origin = voxel_size(path), translation(path)
    head = dict(ome["multiscales"][0])
    head["datasets"] = [
        {"path": str(lv), "coordinateTransformations": level_transforms(vox, lv, origin, method)}
        for lv in range(levels)
    ]
    ome["multiscales"] = [head, *ome["multiscales"][1:]]
    group.attrs["ome"] = ome


def attributes(path: str | Path) -> dict[str, Any]:
    """The ``unet`` provenance attributes of a volume (empty if absent)."""
    group = zarr.open_group(str(path), mode="r")
    return dict(group.attrs.get("unet", {}))  # type: ignore[arg-type]
