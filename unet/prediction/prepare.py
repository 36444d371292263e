"""The first step of a blockwise prediction (:mod:`unet.prediction.run`): the run's layout,
checked against the model and the raw volume, and the empty ``<out>.partial`` with its done
markers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import zarr

from unet.checkpoint import checksum, load_model, resolve
from unet.checkpoint import read as read_checkpoint
from unet.cluster import blockstate
from unet.cluster.blockstate import Layout
from unet.errors import InputError
from unet.io import intensity, ngff, outputs
from unet.prediction.config import PredictConfig
from unet.prediction.tiles import net_factor, resolve_device, spatial_axes, tile_plan

log = logging.getLogger("unet.prediction.run")  # one logger for the whole run


def make_layout(
    model_path: str | Path,
    raw_path: str | Path,
    config: PredictConfig,
    z_range: tuple[int, int] | None = None,
) -> Layout:
    """The layout of a run, validated against the model (tile vs. the net's factor)."""
    model = load_model(model_path)
    if model.arch.get("norm") in ("instance", "group"):
        log.warning(
            "%s: %s norm uses each tile's own statistics, so this prediction depends on "
            "block_shape / tile_shape %s (not exact under tiling; larger tiles score better, "
            "README 'Overlap-tile prediction')",
            model_path,
            model.arch["norm"],
            config.tile_shape or config.block_shape,
        )
    raw = ngff.open_array(raw_path)
    ngff.check_role(raw_path, "raw")
    if raw.ndim != 3 or np.dtype(raw.dtype).kind not in "uifb":
        raise InputError(
            f"{raw_path}: raw must be a (z, y, x) array of grey values, got shape "
            f"{raw.shape} and dtype {raw.dtype}"
        )
    z0, z1 = (0, raw.shape[0]) if z_range is None else (int(z_range[0]), int(z_range[1]))
    if not 0 <= z0 < z1 <= raw.shape[0]:
        raise InputError(f"z_range must satisfy 0 <= start < stop <= {raw.shape[0]}, got {z_range}")
    fz = net_factor(model)[0]
    if z0 % fz:
        raise InputError(
            f"z_range start {z0} must be a multiple of the net's z factor {fz} "
            "(tiles must stay on the whole volume's max-pool grid)"
        )
    layout = Layout(
        str(Path(raw_path).resolve()),
        raw.shape,
        str(raw.dtype),
        (z0, z1),
        config.block_shape,
        config.tile_shape or config.block_shape,
        config.chunks,
        config.output_dtype,
        checksum(model_path),
        config.precision,
        tta=config.tta,
    )
    setting = "predict.tile_shape" if config.tile_shape else "predict.block_shape"
    tile_plan(model, layout.volume_shape, layout.tile_shape, setting)  # an illegal tile raises
    resolve_device(config.device)  # no CUDA: one clear error before any block starts
    thin = [("zyx"[a], raw.shape[a]) for a in spatial_axes(model) if raw.shape[a] < model.context]
    if thin:
        log.warning(
            "%s is thinner than the net's context %d along %s: border tiles are "
            "mostly mirrored data",
            raw_path,
            model.context,
            thin,
        )
    return layout


def prepare_output(
    model_path: str | Path,
    raw_path: str | Path,
    out_path: str | Path,
    config: PredictConfig,
    *,
    z_range: tuple[int, int] | None = None,
) -> Layout:
    """Create ``<out>.partial`` with its layout hash and done markers, or keep the one there if
    it has the same layout and ``config.resume`` (idempotent).  A different layout, a foreign
    directory or ``resume=False`` starts over (logged)."""
    model_path = resolve(model_path)  # a shipped model's name -> its file
    outputs.check_writable(out_path, config.overwrite, inputs=(model_path, raw_path))
    layout = make_layout(model_path, raw_path, config, z_range)
    raw = ngff.open_array(raw_path)
    intensity.check(
        read_checkpoint(model_path)["meta"].get("input"),
        intensity.sample_stats(raw, range(*layout.z_range)),
        str(raw_path),
        explicit=config.normalize != "auto",
    )
    partial = outputs.partial_path(out_path)
    if _keep(partial, layout, config.resume):
        return layout
    _create(partial, layout, config, model_path, raw_path, Path(out_path).stem)
    log.info("%s: prepared %d blocks of %s", partial, layout.n_blocks, layout.block_shape)
    return layout


def _keep(partial: Path, layout: Layout, resume: bool) -> bool:
    """Whether the ``partial`` output there can be resumed; if not, it is removed (logged)."""
    if not partial.exists():
        return False
    stored = blockstate.stored_layout(partial)
    if stored is not None and stored.hash == layout.hash and resume:
        return True
    why = (
        "resume disabled"
        if stored is not None and stored.hash == layout.hash
        else f"layout changed: {stored.diff(layout)}"
        if stored
        else "no valid layout"
    )
    log.warning("%s: %s; starting over", partial, why)
    outputs.remove(partial)
    return False


def _create(
    partial: Path,
    layout: Layout,
    config: PredictConfig,
    model_path: str | Path,
    raw_path: str | Path,
    name: str,
) -> None:
    """The empty prediction volume ``partial``, placed over the raw, with its done markers."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    voxel, origin = ngff.placement(raw_path, (layout.z_range[0], 0, 0))  # overlays the raw
    attrs = {
        "stage": "predict",
        "model": str(model_path),
        "model_checksum": layout.model_checksum,
        "raw": layout.raw_path,
        "z_range": list(layout.z_range),
        "config": config.record(),
        "layout": layout.record(),
        "layout_hash": layout.hash,
    }
    ngff.create(
        partial,
        layout.volume_shape,
        layout.output_dtype,
        config.chunks,
        voxel,
        attrs=attrs,
        name=name,
        compression=config.compression,
        shards=config.shard_shape,
        translation=origin,
    )
    blockstate.create_markers(zarr.open_group(str(partial), mode="r+"), layout.grid_shape)
