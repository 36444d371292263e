"""Shared fixtures: tiny synthetic EM-like volumes and deterministic torch settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cells() -> np.ndarray:
    """A (3, 64, 64) binary membrane mask (ISBI coding: 0 membrane, 255 cell) of square cells."""
    mask = np.full((3, 64, 64), 255, dtype=np.uint8)
    mask[:, ::16, :] = 0
    mask[:, :, ::16] = 0
    mask[1, 20:40, 30] = 0  # an extra wall in the middle slice
    return mask


@pytest.fixture
def raw(cells: np.ndarray) -> np.ndarray:
    """Grey values that make the mask learnable: dark membranes, noisy bright cells."""
    rng = np.random.default_rng(0)
    img = np.where(cells > 0, 180, 60) + rng.normal(0, 20, cells.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
