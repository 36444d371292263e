"""Multiscales metadata of OME-Zarr images written by any tool: NGFF 0.4 (Zarr v2, attributes
at the top level) and 0.5 (Zarr v3, under ``ome``), any dataset paths (``0``, ``s0``, ...).

Only what the pipeline needs is read: the dataset paths (level 0 first), the axis names, and
level 0's voxel size and translation along z, y and x in nanometres (the dataset's
``coordinateTransformations``, then the multiscale's own, as the specification composes them;
units converted).  Axes other than z, y, x (``c``, ``t``) are named so that a reader can take
index 0 of a singleton one or refuse a real one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet.errors import InputError

log = logging.getLogger("unet.io.foreign")

NM_PER_UNIT = {
    "angstrom": 0.1,
    "picometer": 1e-3,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}
SPATIAL = ("z", "y", "x")


@dataclass(frozen=True)
class Multiscale:
    """Level 0 of an OME-Zarr image: ``paths`` of its datasets, ``axes`` of its arrays,
    ``scale`` (voxel size) and ``translation`` along (z, y, x) in nanometres, NGFF ``version``
    and whether level 0 exists in the group (``present``)."""

    paths: tuple[str, ...]
    axes: tuple[str, ...]
    scale: tuple[float, float, float]
    translation: tuple[float, float, float]
    version: str
    present: bool


def _ome(attrs: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    if isinstance(attrs.get("ome"), Mapping) and "multiscales" in attrs["ome"]:
        ome = attrs["ome"]
        return ome, str(ome.get("version", "0.5"))
    if "multiscales" in attrs:  # NGFF <= 0.4: version inside each multiscale
        ms = attrs["multiscales"]
        version = ms[0].get("version", "0.4") if isinstance(ms, list) and ms else "0.4"
        return attrs, str(version)
    return None, ""


def _axes(raw: Any, where: str) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    names: list[str] = []
    units: list[str | None] = []
    for axis in raw:
        if isinstance(axis, str):  # NGFF 0.3: names only
            names.append(axis)
            units.append(None)
        elif isinstance(axis, Mapping) and "name" in axis:
            names.append(str(axis["name"]))
            units.append(axis.get("unit"))
        else:
            raise InputError(f"{where}: malformed multiscales axis {axis!r}")
    return tuple(names), tuple(units)


def _compose(transforms: Any, n: int, where: str) -> tuple[list[float], list[float]]:
    """Scale and translation of a list of NGFF transformations (scale first, as NGFF says)."""
    scale, shift = [1.0] * n, [0.0] * n
    for t in transforms or ():
        kind = t.get("type") if isinstance(t, Mapping) else None
        if kind == "identity":
            continue
        values = t.get(kind) if kind in ("scale", "translation") else None
        if values is None or len(values) != n:
            raise InputError(
                f"{where}: unsupported or malformed coordinate transformation {t!r} "
                f"(expected scale/translation with {n} values)"
            )
        if kind == "scale":
            scale = [s * float(v) for s, v in zip(scale, values, strict=True)]
            shift = [o * float(v) for o, v in zip(shift, values, strict=True)]
        else:
            shift = [o + float(v) for o, v in zip(shift, values, strict=True)]
    return scale, shift


def _factor(unit: str | None, where: str) -> float:
    if unit is None:
        return 1.0  # no unit: the numbers are taken as nanometres, as the pipeline writes them
    if unit not in NM_PER_UNIT:
        log.warning("%s: unknown axis unit %r; its numbers are taken as nanometres", where, unit)
        return 1.0
    return NM_PER_UNIT[unit]


def read_multiscale(group: Any, path: str | Path) -> Multiscale | None:
    """The first multiscale of the Zarr ``group`` (opened from ``path``), None without one."""
    ome, version = _ome(group.attrs)
    if ome is None:
        return None
    where = str(path)
    try:
        ms = ome["multiscales"][0]
        paths = tuple(str(d["path"]) for d in ms["datasets"])
        first = ms["datasets"][0]
    except (KeyError, IndexError, TypeError) as err:
        raise InputError(f"{where}: malformed multiscales metadata ({err!r})") from err
    present = paths[0] in group
    ndim = len(group[paths[0]].shape) if present else len(ms.get("axes") or SPATIAL)
    names, units = _axes(ms.get("axes") or ("t", "c", *SPATIAL)[-ndim:], where)
    if len(names) != ndim:
        raise InputError(f"{where}: {len(names)} axes {names} for an array of {ndim} dimensions")
    scale, shift = _compose(first.get("coordinateTransformations"), ndim, where)
    outer_scale, outer_shift = _compose(ms.get("coordinateTransformations"), ndim, where)
    scale = [s * o for s, o in zip(scale, outer_scale, strict=True)]
    shift = [t * o + p for t, o, p in zip(shift, outer_scale, outer_shift, strict=True)]
    vox, origin = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    for i, axis in enumerate(SPATIAL):
        if axis in names:
            j = names.index(axis)
            f = _factor(units[j], where)
            vox[i], origin[i] = scale[j] * f, shift[j] * f
    if any(v <= 0 for v in vox):
        raise InputError(f"{where}: voxel size must be positive, got {vox} from its metadata")
    return Multiscale(paths, names, _triple(vox), _triple(origin), version, present)


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
