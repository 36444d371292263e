"""Overlap-tile inference of one model: tile plans from the model's geometry and the forward pass.

A 2D net (``model.ndim == 2``) runs on (z, y, x) volumes slice by slice: ``z`` is a batch axis
with no context.  A 3D net convolves all three axes.  Either way a tile is planned by
:class:`unet.geometry.TilePlan` so that stitched tiles equal one pass over the whole volume.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
import torch

from unet.errors import InputError
from unet.geometry import Box, Coord, Tile, TilePlan, check_multiple, read_mirrored
from unet.io.normalize import to_unit
from unet.model import UNet

Precision = Literal["fp32", "bf16", "fp16"]

DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))
"""Test-time augmentation: rotate the y-x plane by ``k`` * 90 degrees after an optional x flip."""


def spatial_axes(model: UNet) -> tuple[int, ...]:
    """The (z, y, x) axes the model convolves: (1, 2) for a 2D net, (0, 1, 2) for a 3D net."""
    return (1, 2) if model.ndim == 2 else (0, 1, 2)


def net_factor(model: UNet) -> Coord:
    """Per-axis (z, y, x) alignment that keeps all tiles on the same max-pool grid."""
    return tuple(model.factor if ax in spatial_axes(model) else 1 for ax in range(3))


def tile_plan(
    model: UNet, volume_shape: Sequence[int], block_shape: Sequence[int], name: str = "block shape"
) -> TilePlan:
    """The overlap-tile plan writing ``block_shape`` blocks of a (z, y, x) volume (``name``:
    the setting it came from, for messages).

    Along convolved axes the block must be a multiple of the net's factor ``2^depth``; the net
    output is the smallest valid size ``>= block`` exceeding it by an even amount.
    """
    block = tuple(int(b) for b in block_shape)
    if len(block) != 3 or len(volume_shape) != 3:
        raise InputError(f"volume {tuple(volume_shape)} and block {block} must be (z, y, x)")
    check_multiple(block, net_factor(model), name, "the net's down-sampling factor")
    out, inp = list(block), list(block)
    for ax in spatial_axes(model):
        o = model.valid_output(block[ax])
        while (o - block[ax]) % 2:
            o = model.valid_output(o + 1)
        out[ax], inp[ax] = o, o + model.context
    return TilePlan(tuple(volume_shape), block, tuple(inp), tuple(out))


def check_context(model: UNet, volume_shape: Sequence[int], name: str = "volume") -> None:
    """Refuse volumes smaller than the net's context along a convolved axis: mirroring would
    invent most of every tile."""
    for ax in spatial_axes(model):
        if volume_shape[ax] < model.context:
            raise InputError(
                f"{name} of shape {tuple(volume_shape)} is smaller than the network context "
                f"{model.context} along axis {'zyx'[ax]}; use a shallower net (depth) or a "
                "bigger volume"
            )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``InputError`` for CUDA without CUDA.

    A bare ``cuda`` (or ``auto`` on a GPU node) with several GPUs picks one: inside a Dask
    worker named by an integer (LocalCluster) GPU ``name % device_count`` (one worker per
    GPU), elsewhere GPU 0.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(
                f"device {name!r} requested but this torch {torch.__version__} sees no "
                "CUDA device (CPU-only build, or no GPU allocated to the job?)"
            )
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        device = torch.device(f"cuda:{_worker_number() % torch.cuda.device_count()}")
    return device


def _worker_number() -> int:
    """The integer name of the Dask worker running this (LocalCluster's), else 0."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    return name if isinstance(name, int) else 0


def autocast(device: torch.device, precision: Precision, cache: bool = True) -> Any:
    """Autocast context for ``bf16``/``fp16``; nothing for ``fp32``.  ``cache=False`` casts the
    weights at every call (needed inside a CUDA graph capture, whose memory autocast's weight
    cache must not hold)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


class Predictor:
    """Runs ``model`` on tiles and returns foreground probabilities ``1 - p(background)``.

    Parameters
    ----------
    model : the U-Net (moved to ``device`` and put in eval mode).
    device : a torch device string.
    precision : ``fp32``, or autocast to ``bf16``/``fp16`` (CUDA).
    channels_last : use channels-last memory format (faster convolutions on GPUs).
    tta : average the probabilities over the 8 rotations by 90 degrees and flips of the y-x
        plane (:data:`DIHEDRAL`; 8x the forward passes).  Each tile's input is transformed about
        its centre and the output transformed back; every valid input length is the same modulo
        ``2^depth``, so the transformed tiles of a plan share one max-pool grid and the stitched
        result stays independent of the tiling.
    """

    def __init__(
        self,
        model: UNet,
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        channels_last: bool = False,
        tta: bool = False,
    ) -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.tta = bool(tta)
        self.autocast_cache = True  # False while captured by CudaGraphs
        self.memory_format = torch.preserve_format
        if channels_last:
            self.memory_format = torch.channels_last if model.ndim == 2 else torch.channels_last_3d
            net: Any = self.model  # torch's stubs omit Module.to(memory_format=...)
            net.to(memory_format=self.memory_format)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *S_in)`` grey values (float32 in [0, 1], or raw uint8, normalised here on the
        device by the same float32 division as :func:`unet.io.normalize.to_unit`) ->
        foreground probability ``(B, *S_out)`` float32; with ``tta`` the mean over the 8
        rotations/flips of the y-x plane."""
        x = batch.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float() / 255
        if not self.tta:
            return self._probability(x)
        total = torch.zeros((), device=self.device)
        for k, flip in DIHEDRAL:
            moved = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            back = torch.rot90(self._probability(moved), -k, dims=(-2, -1))
            total = total + (back.flip(-1) if flip else back)
        return total / len(DIHEDRAL)

    def _probability(self, x: torch.Tensor) -> torch.Tensor:
        preserve = self.memory_format == torch.preserve_format  # contiguous() refuses it
        x = x.contiguous() if preserve else x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.precision, self.autocast_cache):
            logits = self.model(x)
        return 1.0 - torch.softmax(logits.float(), dim=1)[:, 0]

    def to_batch(self, data: np.ndarray) -> torch.Tensor:
        """A read box ``(z, y, x)`` of normalised grey values -> the net's input batch."""
        t = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        return t[:, None] if self.model.ndim == 2 else t[None, None]

    def predict_tile(self, array: Any, tile: Tile) -> np.ndarray:
        """Probabilities for ``tile.write`` of ``array`` (mirror-extrapolated at its border)."""
        two_d = self.model.ndim == 2
        values = self.forward(read_batch(array, [tile], two_d)).cpu().numpy()
        return next(tile_outputs(values, [tile], two_d))[1]


def read_batch(
    raw: Any, tiles: Sequence[Tile], two_d: bool, z0: int = 0, dest: torch.Tensor | None = None
) -> torch.Tensor:
    """Read the hull of the tiles' read boxes once (``raw`` coordinates are shifted by ``z0``)
    and stack the tiles as the net's batch ``(B, 1, *S_in)``: a 2D net's tile is one sample per
    z slice, a 3D net's one sample.  Into ``dest`` (pinned, CUDA) as raw uint8 to be normalised
    on the device (:meth:`Predictor.forward`), else normalised here with ``to_unit``."""
    hull = Box.from_bounds(
        [min(t.read.begin[a] for t in tiles) for a in range(3)],
        [max(t.read.end[a] for t in tiles) for a in range(3)],
    )
    data = read_mirrored(raw, hull.shift((z0, 0, 0)))
    if dest is None or dest.dtype != torch.uint8:
        data = to_unit(data)
    per = tiles[0].read.shape[0] if two_d else 1
    shape = (len(tiles) * per, 1, *tiles[0].read.shape[3 - (2 if two_d else 3) :])
    out = np.empty(shape, dtype=data.dtype) if dest is None else dest.numpy()
    for i, t in enumerate(tiles):
        out[i * per : (i + 1) * per, 0] = data[t.read.to_slices(relative_to=hull)]
    if dest is None:
        return torch.from_numpy(out)
    out[len(tiles) * per :] = 0  # a short last batch keeps the batch shape (no re-tuning)
    return dest


def tile_outputs(
    values: np.ndarray, tiles: Sequence[Tile], two_d: bool
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Each tile and its write box, cut from the net's output ``(B, *S_out)`` for the batch
    that :func:`read_batch` stacked."""
    per = tiles[0].output.shape[0] if two_d else 1
    for i, tile in enumerate(tiles):
        part = values[i * per : (i + 1) * per] if two_d else values[i]
        yield tile, part[tile.write.to_slices(relative_to=tile.output)]


class CudaGraphs:
    """``fn(x, *args)`` on a CUDA device, captured as one CUDA graph per input shape, dtype and
    ``args`` and then replayed: one launch per batch instead of one per kernel, and the same
    memory every time.  ``fn`` must be static (no host synchronisation, no data-dependent
    shapes); its result is overwritten by the next call, so copy it out first.

    The input is copied (``non_blocking``, from pinned host memory) into the graph's static
    input buffer on the current stream, ahead of the replay.
    """

    def __init__(
        self, fn: Callable[..., torch.Tensor], device: torch.device, warmup: int = 3
    ) -> None:
        self.fn, self.device, self.warmup = fn, device, warmup
        self._graphs: dict[tuple[Any, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, *args: Hashable) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, *args)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, args)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor, args: tuple[Hashable, ...]) -> tuple[Any, ...]:
        static_in = torch.empty(x.shape, dtype=x.dtype, device=self.device)
        static_in.copy_(x)
        side = torch.cuda.Stream(self.device)  # warm-up (cuDNN autotuning) off the main stream
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(static_in, *args)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads' CUDA calls (pinned host buffers of blocks starting
        # meanwhile) must not invalidate the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self.fn(static_in, *args)
        return graph, static_in, static_out


def predict_array(
    predictor: Predictor, array: Any, block_shape: Sequence[int] | None = None
) -> np.ndarray:
    """Predict a whole (z, y, x) array in memory, tile by tile (single process).

    ``block_shape`` defaults to one tile covering the whole array (rounded up to the factor).
    """
    shape = tuple(array.shape)
    if block_shape is None:
        f = net_factor(predictor.model)
        block_shape = tuple(-(-s // k) * k for s, k in zip(shape, f, strict=True))
    plan = tile_plan(predictor.model, shape, block_shape)
    result = np.empty(shape, dtype=np.float32)
    for tile in plan:
        result[tile.write.to_slices()] = predictor.predict_tile(array, tile)
    return result
