"""Slice selections such as ``"0-24"``, ``"0-9,20-24"`` or ``"all"`` (inclusive ranges)."""

from __future__ import annotations

import re

from unet.errors import InputError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_slices(spec: str | None, n_slices: int, name: str = "slices") -> list[int]:
    """The z indices selected by ``spec`` in a volume of ``n_slices`` slices.

    >>> parse_slices("0-2,5", 10)
    [0, 1, 2, 5]
    """
    if spec is None:
        return []
    if spec == "all":
        return list(range(n_slices))
    out: list[int] = []
    for part in spec.split(","):
        match = _PART.match(part.strip())
        if not match:
            raise InputError(f"{name}: cannot parse {part!r} in {spec!r} (use e.g. '0-24,30')")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise InputError(f"{name}: range {part!r} runs backwards")
        if hi >= n_slices:
            raise InputError(
                f"{name}: slice {hi} in {spec!r} is outside the volume of {n_slices} slices"
            )
        out.extend(range(lo, hi + 1))
    if len(set(out)) != len(out):
        raise InputError(f"{name}: {spec!r} selects some slices twice")
    return out


def slice_range(spec: str | None, n_slices: int, name: str = "slices") -> tuple[int, int]:
    """A contiguous selection as ``(begin, end)``; raises if ``spec`` has gaps."""
    idx = parse_slices("all" if spec is None else spec, n_slices, name)
    if not idx or idx != list(range(idx[0], idx[-1] + 1)):
        raise InputError(f"{name}: {spec!r} must be one contiguous range")
    return idx[0], idx[-1] + 1
