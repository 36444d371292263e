"""Checks of a labels volume's class balance: no cells, no membrane, or a suspicious fraction.

Run at ingest (on the whole volume, before the output is renamed into place) and again by the
weights stage (on the counts it used), so that a mask of the wrong polarity or encoding (e.g.
values {1, 2}: every pixel "cell") stops the pipeline before training instead of going through it
silently.
"""

from __future__ import annotations

import logging

from unet.errors import InputError

log = logging.getLogger("unet.labels")

RARE_FRACTION = 0.01  # a class below 1 % of the pixels gets a loud warning


def check_counts(name: str, background: int, foreground: int, kind: str) -> float:
    """Raise :class:`InputError` if ``name`` has no cell (foreground) pixels, or no membrane
    (background) pixels in a binary mask; warn if a class is rare.  Returns the foreground
    fraction.

    >>> check_counts("labels.tif", 30, 70, "binary")
    0.7
    """
    total = background + foreground
    if total == 0:
        raise InputError(f"{name}: labels volume is empty")
    fraction = foreground / total
    fix = (
        "check the encoding and polarity: which value marks membrane/background "
        "(datasets.<name>.membrane_value, unet ingest --membrane-value)"
    )
    if foreground == 0:
        raise InputError(f"{name}: labels hold no cell (foreground) pixels; {fix}")
    if background == 0 and kind == "binary":
        raise InputError(f"{name}: every pixel of the binary mask is cell, none is membrane; {fix}")
    if background == 0:
        log.warning(
            "%s: no background pixels: cells touch everywhere (only borders between cells "
            "separate them)",
            name,
        )
    elif min(fraction, 1 - fraction) < RARE_FRACTION:
        rare = "cell (foreground)" if fraction < 0.5 else "membrane (background)"
        log.warning(
            "%s: the %s class is rare (%.2f %% of %d pixels): check the labels' polarity "
            "(membrane_value); its balanced class weight is capped at weights.class_weight_cap",
            name,
            rare,
            100 * min(fraction, 1 - fraction),
            total,
        )
    return fraction
