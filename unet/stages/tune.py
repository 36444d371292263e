"""Rule ``segment_tune``'s stage: predict a dataset's labelled validation slices with its model
and choose the segmentation's kernel settings on them (:mod:`unet.segmentation.tune`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from unet.errors import InputError
from unet.io import ngff, outputs
from unet.prediction.config import PredictConfig
from unet.prediction.run import predict_volume
from unet.segmentation.kernels import probability
from unet.segmentation.tune import MAX_EXTENT, choose, crop

log = logging.getLogger("unet.stages.tune")


def tune_stage(
    model: str | Path,
    raw: str | Path,
    labels: str | Path,
    slices: Sequence[int],
    predict_config: PredictConfig,
    mode: str,
    out_json: str | Path,
    work: str | Path,
    extent: int = MAX_EXTENT,
) -> dict[str, Any]:
    """Predict the labelled ``slices`` of ``raw`` with ``model`` into ``work`` (in this process,
    with ``predict_config`` less its cluster; the whole z range the slices span; ``work`` is
    removed after), choose on their central ``extent``-wide window (:func:`crop`) against
    ``labels`` and write ``out_json`` (atomically: it is the rule's only output).

    Returns the JSON's content: ``mode``, ``val_slices``, ``crop`` (y, x ``[start, stop]``),
    :func:`choose`'s ``chosen`` / ``v_rand`` / ``thresholding`` / ``grid``, and ``seconds``.
    """
    z = sorted(set(slices))
    if not z:
        raise InputError("segment_tune needs at least one validation slice, got none")
    shape, labels_shape = ngff.open_array(raw).shape, ngff.open_array(labels).shape
    if labels_shape != shape:
        raise InputError(f"{labels}: labels of shape {labels_shape} do not match {raw} {shape}")
    if z[0] < 0 or z[-1] >= shape[0]:
        raise InputError(f"validation slices {z} are outside the volume of {shape[0]} slices")
    outputs.check_writable(out_json, overwrite=True, inputs=(model, raw, labels))
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)  # a killed run's leftovers: recomputed
    work.mkdir(parents=True)
    start = time.perf_counter()
    try:
        z_range = (z[0], z[-1] + 1)
        pred = work / "val-prediction.zarr"
        config = replace(predict_config, cluster="none", slurm={}, pyramid_levels=1)
        predict_volume(model, raw, pred, config, z_range=z_range)
        values = ngff.open_array(pred)
        window = crop(values.shape, extent)
        rows = [i - z_range[0] for i in z]
        p = probability(values[window])[rows]
        truth = np.asarray(ngff.open_array(labels)[(slice(*z_range), *window[1:])])[rows]
        sampling = ngff.voxel_size(pred) if mode == "3d" else None
        result: dict[str, Any] = {
            "mode": mode,
            "val_slices": z,
            "crop": [[s.start, s.stop] for s in window[1:]],
        }
        result |= choose(p, truth, mode, sampling=sampling)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    with outputs.staging(out_json, overwrite=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    chosen = ", ".join(f"{k} {v}" for k, v in result["chosen"].items())
    log.info(
        "%s: chose %s (V_rand %.4f; thresholding's best: %s at %s) in %.1f s",
        out_json,
        chosen,
        result["v_rand"],
        round(result["thresholding"]["v_rand"], 4),
        result["thresholding"]["threshold"],
        result["seconds"],
    )
    return result
