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
from zarr.codecs import BloscCname, BloscCodec, BloscShuffle

from unet import __version__
from unet.errors import InputError
from unet.geometry import check_multiple

AXES = ("z", "y", "x")
NGFF_VERSION = "0.5"


CNAMES = ("zstd", "lz4", "lz4hc", "zlib", "blosclz")
DEFAULT_COMPRESSION = "zstd:5"


def compressor(spec: str = DEFAULT_COMPRESSION) -> BloscCodec | None:
    """Blosc codec with byte shuffle for ``"<cname>:<level>"`` (``"none"``: uncompressed).

    ``zstd:5`` (the default, for raw data: written once, read often) compresses best; ``zstd:1``
    writes uint8 probabilities 2.6-3.7x faster for ~4% more bytes (``bench/predict_host.py``)
    and suits predictions written at GPU speed.

    >>> compressor("zstd:1").clevel, compressor("none")
    (1, None)
    """
    if spec == "none":
        return None
    cname, _, level = spec.partition(":")
    if cname not in CNAMES or not level.isdigit() or not 0 <= int(level) <= 9:
        raise InputError(
            f"compression must be 'none' or '<codec>:<level>' with codec one of {CNAMES} and "
            f"level 0-9 (e.g. 'zstd:1'), got {spec!r}"
        )
    return BloscCodec(cname=BloscCname(cname), clevel=int(level), shuffle=BloscShuffle.shuffle)


def compression_of(array: zarr.Array) -> str:
    """The ``"<cname>:<level>"`` spec of ``array``'s first Blosc codec (``"none"`` if none)."""
    for codec in array.compressors:
        if isinstance(codec, BloscCodec):
            return f"{codec.cname.value}:{codec.clevel}"
    return "none"


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


def label_image(
    voxel_size: Sequence[float], levels: int = 1, name: str = "", source: str | None = None
) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attribute of a label image: :func:`multiscales` plus ``image-label``
    (which viewers such as napari and neuroglancer read as "segmentation"); ``source``: the
    relative path of the image it labels.

    >>> label_image((1, 2, 2), source="../pred.zarr")["image-label"]
    {'source': {'image': '../pred.zarr'}}
    """
    ome = multiscales(voxel_size, levels, name)
    ome["image-label"] = {} if source is None else {"source": {"image": source}}
    return ome


def provenance(**extra: Any) -> dict[str, Any]:
    """Provenance attributes stored under ``attrs["unet"]`` of every volume we write."""
    return {
        "package_version": __version__,
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
) -> zarr.Array:
    """Create a new OME-Zarr volume at ``path`` and return its level-0 array.

    ``compression``: see :func:`compressor` (checked before anything is written).  ``shards``:
    Zarr v3 shard shape, a multiple of ``chunks`` (one file per shard instead of per chunk: far
    fewer files on a parallel file system); see :func:`grid_shapes`.

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
    group.attrs["ome"] = multiscales(voxel_size, 1, name or path.stem)
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
        raise InputError(f"{path}: not a readable Zarr store ({err})") from err
    if isinstance(node, zarr.Array):
        return node
    if str(level) not in node:
        raise InputError(f"{path}: Zarr group has no array '{level}' (not an OME-Zarr volume?)")
    array = node[str(level)]
    if not isinstance(array, zarr.Array):
        raise InputError(f"{path}/{level} is not an array")
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


# role of an input -> (the stage that writes such volumes, the kinds it may have)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "raw": ("ingest", ("raw",)),
    "labels": ("ingest", ("binary", "instances")),
    "weights": ("weights", ()),
    "prediction": ("predict", ()),
    "segmentation": ("segment", ()),
}
_WRITERS = {
    "ingest": "unet ingest",
    "weights": "unet weights",
    "predict": "unet predict",
    "segment": "unet segment",
}


def check_role(path: str | Path, role: str, *, required: bool = False) -> None:
    """Raise :class:`InputError` if the volume ``path``, passed as the ``role`` input of a
    stage (a key of :data:`ROLES`), records that another stage (or kind) wrote it, e.g. labels
    passed as loss weights.  A volume without a record (written by another tool) passes unless
    ``required``."""
    try:
        record = attributes(path)
    except Exception:  # a plain Zarr array or a foreign store: no record
        record = {}
    stage, kind = record.get("stage"), record.get("kind")
    want, kinds = ROLES[role]
    if stage is None:
        if required:
            raise InputError(
                f"{path}: no record of the stage that wrote it; the {role} input must be "
                f"written by `{_WRITERS[want]}`"
            )
        return
    if stage != want or (kinds and kind not in kinds):
        what = f"{kind} " if kind else ""
        raise InputError(
            f"{path}: is a {what}volume written by `{_WRITERS.get(stage, stage)}`, not a {role} "
            f"volume (expected one written by `{_WRITERS[want]}`"
            + (f" with kind {' or '.join(kinds)}" if kinds else "")
            + f"); check which file was passed as the {role} input"
        )
