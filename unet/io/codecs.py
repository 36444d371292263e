"""Compression of the volumes the pipeline writes: Blosc codecs named ``"<cname>:<level>"``
(re-exported by :mod:`unet.io.ngff`)."""

from __future__ import annotations

import zarr
from zarr.codecs import BloscCname, BloscCodec, BloscShuffle

from unet.errors import InputError

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
