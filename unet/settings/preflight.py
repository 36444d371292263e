"""Checks of a whole run before its first job: the settings against the input volumes' shapes.

Whatever follows from the config and the shapes in the inputs' headers (a TIFF's first IFDs, a
Zarr array's metadata; no pixel data is read) is checked here, by the same functions the stages
call later: training tiles the net cannot produce, prediction blocks off the net's ``2^depth``
grid, slices outside the volume, volumes smaller than the net's context.  Every problem of every
dataset is reported, one line each, naming the dataset, the key and the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from unet.checkpoint import load_model
from unet.errors import InputError
from unet.io.ingest import IngestConfig, Source
from unet.io.slices import parse_slices, slice_range
from unet.model import UNet
from unet.prediction.config import WORKFLOW_KEYS as PREDICT_WORKFLOW_KEYS
from unet.prediction.config import PredictConfig
from unet.prediction.tiles import check_context, net_factor, tile_plan
from unet.settings.workflow import DatasetSettings, external_model, model_of
from unet.training.config import TrainConfig

Shape = tuple[int, int, int]


def check_run(run: Mapping[str, DatasetSettings], val_slices: Callable[[str], str | None]) -> None:
    """Raise one ``InputError`` listing every dataset's problems (one line each).

    ``val_slices(name)`` gives the held-out slices the train rule passes for dataset ``name``.
    """
    shapes: dict[str, Shape] = {}
    problems = []
    for name in run:
        try:
            check_dataset(run, name, val_slices(name), shapes)
        except InputError as err:
            problems.append(str(err))
    if problems:
        raise InputError("\n".join(problems))


def check_dataset(
    run: Mapping[str, DatasetSettings],
    name: str,
    val_slices: str | None,
    shapes: dict[str, Shape] | None = None,
) -> None:
    """Check one dataset's settings against its input shapes; the first problem raises."""
    ds, external = run[name], external_model(run, name)
    src = None if external else run[model_of(run, name)]
    entry = ds.dataset
    shapes = {} if shapes is None else shapes
    shape = _shape(ds, "raw", shapes)
    if entry["labels"] is not None and _shape(ds, "labels", shapes) != shape:
        raise InputError(
            f"{ds.where('labels')}: shape {_shape(ds, 'labels', shapes)} differs from the raw "
            f"volume's {shape}"
        )
    ingest = ds.sections["ingest"]
    _setting(ds, "ingest", IngestConfig, chunks=tuple(ingest["chunks"]), shards=ingest["shards"])
    net = _net(src) if src is not None else load_model(str(external))  # a shipped model
    nz = shape[0]
    z0, z1 = slice_range(entry["predict_slices"], nz, ds.where("predict_slices"))
    _check_eval_slices(ds, nz, (z0, z1))
    if entry["labels"] is not None and entry["val_slices"] is not None:  # segment_tune's too
        parse_slices(entry["val_slices"], nz, ds.where("val_slices"))
    if entry["train_slices"] is not None:
        _check_training(ds, name, net, shape, val_slices)
    _check_prediction(ds, net, shape, z0, src.name if src else None, external)


def _check_eval_slices(ds: DatasetSettings, nz: int, predicted: tuple[int, int]) -> None:
    """Every eval slice must be predicted."""
    entry, (z0, z1) = ds.dataset, predicted
    if entry["eval_slices"] is None:
        return
    outside = [
        z
        for z in parse_slices(entry["eval_slices"], nz, ds.where("eval_slices"))
        if not z0 <= z < z1
    ]
    if outside:
        raise InputError(
            f"{ds.where('eval_slices')}: slices {outside} of {entry['eval_slices']!r} are "
            f"not predicted (predict_slices {entry['predict_slices']!r})"
        )


def _check_training(
    ds: DatasetSettings, name: str, net: UNet, shape: Shape, val_slices: str | None
) -> None:
    """The training settings, slices and tile against the net and the raw volume."""
    entry, nz = ds.dataset, shape[0]
    train = ds.sections["train"]
    try:
        net.input_shape(train["output_tile"])
    except InputError as err:
        raise InputError(f"{ds.where_setting('train', 'output_tile')}: {err}") from None
    config = _setting(
        ds,
        "train",
        TrainConfig,
        **ds.sections["model"],
        **train,
        train_slices=entry["train_slices"],
        val_slices=val_slices or (),
    )
    parse_slices(entry["train_slices"], nz, ds.where("train_slices"))
    if val_slices is not None:
        key = "val_slices" if entry.get("val_slices") is not None else "eval_slices"
        parse_slices(val_slices, nz, ds.where(key))
    try:
        config.slices(nz)
    except InputError as err:
        raise InputError(f"dataset {name!r}: {err}") from None
    check_context(net, shape, name=f"{ds.where('raw')} {entry['raw']}")


def _check_prediction(
    ds: DatasetSettings,
    net: UNet,
    shape: Shape,
    z0: int,
    model_name: str | None,
    external: str | None,
) -> None:
    """The prediction settings and tile against the net; a 3D net's first predicted slice."""
    entry = ds.dataset
    predict = {k: v for k, v in ds.sections["predict"].items() if k not in PREDICT_WORKFLOW_KEYS}
    config = _setting(ds, "predict", PredictConfig, **predict)
    tile_key = "tile_shape" if config.tile_shape is not None else "block_shape"
    try:
        tile_plan(net, shape, config.tile_shape or config.block_shape)
    except InputError as err:
        raise InputError(
            f"{ds.where_setting('predict', tile_key)}: {err} (model "
            f"{f'of {model_name!r}' if model_name else external}: depth {net.depth})"
        ) from None
    if z0 % net_factor(net)[0]:
        raise InputError(
            f"{ds.where('predict_slices')}: a 3D net needs predict_slices to start at a multiple "
            f"of {net.factor}, got {entry['predict_slices']!r}"
        )


def _net(ds: DatasetSettings) -> UNet:
    """The net of ``ds``'s model section, one channel wide: its geometry is all we need."""
    model = ds.sections["model"]
    return _setting(
        ds, "model", UNet, base_channels=1, depth=model["depth"], ndim=model["ndim"], dropout=0.0
    )


def _setting(ds: DatasetSettings, section: str, build: Callable[..., Any], **kwargs: Any) -> Any:
    """``build(**kwargs)``; its ``InputError`` names the setting its message starts with."""
    try:
        return build(**kwargs)
    except InputError as err:
        message, keys = str(err), ds.sections[section]
        named = [k for k in keys if re.search(rf"\b{k}\b", message)]
        overridden = [k for k in named if k in ds.dataset["overrides"].get(section, {})]
        first = message.split(" ", 1)[0].rstrip(":")
        key = next(iter(overridden + [first] * (first in keys) + named), None)
        where = (
            ds.where_setting(section, key) if key else f"config: {section} (dataset {ds.name!r})"
        )
        raise InputError(f"{where}: {err}") from None


def _shape(ds: DatasetSettings, key: str, shapes: dict[str, Shape]) -> Shape:
    """The (z, y, x) shape of the dataset's ``raw`` or ``labels`` file, from its header."""
    path = ds.dataset[key]
    if path not in shapes:
        try:
            source = Source(path)
        except FileNotFoundError:
            raise InputError(f"{ds.where(key)}: {path}: no such file") from None
        except InputError as err:
            raise InputError(f"{ds.where(key)}: {err}") from None
        shapes[path] = source.shape
        source.close()
    return shapes[path]
