"""The pixel-wise weighted cross-entropy of Ronneberger et al. (2015), eq. 1.

A valid-convolution net's output is smaller than its input, so the target and weight tiles (cut
with the input's shape ``T``) are centre-cropped to the output shape ``S`` before comparing:
the crop removes ``(T - S) / 2`` pixels on each side, the context the net consumed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet.errors import InputError
from unet.geometry import center_crop


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mean over pixels of ``w(x) * -log softmax(logits)(x)[target(x)]``.

    Parameters
    ----------
    logits : (N, C, *S) float network output (unnormalised scores for ``C`` classes).
    target : (N, *T) int64 class indices in ``[0, C)``; ``T >= S`` with even differences.
    weights : (N, *T) float pixel weights (e.g. :func:`unet.weights.border.weight_map`).

    Returns
    -------
    () scalar loss, differentiable w.r.t. ``logits``.
    """
    if logits.ndim < 3:
        raise InputError(f"logits must be (N, C, *S), got shape {tuple(logits.shape)}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must hold int64 class indices, got dtype {target.dtype}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be floating point, got dtype {weights.dtype}")
    spatial = tuple(logits.shape[2:])
    if target.shape != weights.shape:
        raise InputError(
            f"target {tuple(target.shape)} and weights {tuple(weights.shape)} differ in shape"
        )
    if target.ndim != logits.ndim - 1 or target.shape[0] != logits.shape[0]:
        raise InputError(
            f"target {tuple(target.shape)} must be (N, *T) for logits {tuple(logits.shape)}"
        )
    diff = [t - s for t, s in zip(target.shape[1:], spatial, strict=True)]
    if any(d < 0 or d % 2 for d in diff):
        raise InputError(
            f"target {tuple(target.shape)} cannot be centre-cropped to logits "
            f"{tuple(logits.shape)}: each spatial axis must shrink by a non-negative even amount"
        )
    target = center_crop(target, spatial)
    weights = center_crop(weights, spatial).to(logits.dtype)
    per_pixel = F.cross_entropy(logits, target, reduction="none")  # (N, *S)
    return (weights * per_pixel).mean()
