"""The grey values a model was trained on, and the check that a volume to predict matches them.

Training records the raw volume's dtype and the statistics of its normalised grey values
(:func:`unet.io.normalize.to_unit`: integers by their dtype's maximum) in the model file;
prediction compares the volume it is given:

* another dtype *family* (unsigned / signed integer / float: int16 data for a uint8 model) is an
  error unless the prediction's ``normalize`` is set explicitly, because ``to_unit`` maps the
  families differently (a float volume of 0..255 would not be scaled at all);
* a grey range that is shifted or stretched beyond :data:`TOLERANCE` is a warning that names the
  fix.

Statistics are taken on a strided sample of at most :data:`MAX_SLICES` slices, so that the check
costs little even for a terabyte volume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from unet.errors import InputError
from unet.io.normalize import to_unit

log = logging.getLogger("unet.io.intensity")

MAX_SLICES = 8
MAX_PIXELS = 1 << 20  # per slice, strided
PERCENTILES = (1.0, 99.0)
TOLERANCE = 0.15  # of the normalised range [0, 1]
FAMILIES = {"u": "unsigned integer", "i": "signed integer", "f": "float", "b": "bool"}


def family(dtype: Any) -> str:
    """The dtype family that :func:`unet.io.normalize.to_unit` treats alike."""
    return FAMILIES.get(np.dtype(dtype).kind, np.dtype(dtype).kind)


def sample_stats(array: Any, slices: Sequence[int] | None = None) -> dict[str, Any]:
    """dtype and statistics (``p1``, ``p99``, ``mean``, ``std``) of the normalised grey values
    of (z, y, x) ``array``, over at most :data:`MAX_SLICES` of ``slices`` (default all)."""
    z = list(range(array.shape[0])) if slices is None else list(slices)
    if not z:
        raise InputError("no slices to take grey-value statistics from")
    picked = z[:: max(1, -(-len(z) // MAX_SLICES))]
    step = max(1, int(np.sqrt(array.shape[1] * array.shape[2] / MAX_PIXELS)))
    values = np.concatenate([to_unit(np.asarray(array[i, ::step, ::step])).ravel() for i in picked])
    lo, hi = np.percentile(values, PERCENTILES)
    return {
        "dtype": str(np.dtype(array.dtype)),
        "p1": round(float(lo), 6),
        "p99": round(float(hi), 6),
        "mean": round(float(values.mean()), 6),
        "std": round(float(values.std()), 6),
    }


def check(trained: dict[str, Any] | None, given: dict[str, Any], name: str, explicit: bool) -> None:
    """Compare the statistics of a volume ``name`` to predict with those the model was
    ``trained`` on (None: an older model file without them: nothing to compare).

    Raises :class:`InputError` for another dtype family unless ``explicit`` (the user chose the
    normalisation); logs a warning when the grey range moved by more than :data:`TOLERANCE`.
    """
    if not trained:
        return
    want, got = family(trained["dtype"]), family(given["dtype"])
    if want != got and not explicit:
        raise InputError(
            f"{name}: grey values of dtype {given['dtype']} ({got}), but the model was trained "
            f"on {trained['dtype']} ({want}); they are normalised differently, so the "
            "probabilities would be wrong. Convert the volume to the training dtype, or set "
            "predict.normalize (--normalize) to 'dtype' to accept it as it is"
        )
    moved = max(abs(given[k] - trained[k]) for k in ("p1", "p99", "mean"))
    if moved > TOLERANCE:
        log.warning(
            "%s: normalised grey values [p1 %.3f, p99 %.3f, mean %.3f] differ from the "
            "training data's [%.3f, %.3f, %.3f] by up to %.2f: expect worse probabilities; "
            "convert or rescale the volume to the training data's grey range",
            name,
            given["p1"],
            given["p99"],
            given["mean"],
            trained["p1"],
            trained["p99"],
            trained["mean"],
            moved,
        )
