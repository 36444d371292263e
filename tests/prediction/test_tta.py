"""Test-time augmentation over the 8 rotations / flips (Predictor(tta=True))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet.model import UNet
from unet.prediction.tiles import DIHEDRAL, Predictor, predict_array


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=2, depth=2, batch_norm=False, dropout=0.0).eval()


def test_tta_is_exact_under_tiling(model: UNet) -> None:
    """Stitched tiles of any block shape give the same averaged probabilities (non-square)."""
    vol = np.random.default_rng(0).integers(0, 256, (2, 52, 76), dtype=np.uint8)
    predictor = Predictor(model, "cpu", tta=True)
    whole = predict_array(predictor, vol)
    for block in ((1, 16, 16), (2, 24, 40), (1, 52, 20)):
        np.testing.assert_allclose(predict_array(predictor, vol, block), whole, atol=1e-6)


def test_tta_averages_the_eight_symmetries(model: UNet) -> None:
    """On a square volume: the mean of g^-1(predict(g(volume))) over the 8 symmetries g."""
    vol = np.random.default_rng(1).integers(0, 256, (1, 48, 48), dtype=np.uint8)
    plain = Predictor(model, "cpu")
    expected = np.zeros(vol.shape)
    for k, flip in DIHEDRAL:
        moved = np.rot90(vol[..., ::-1] if flip else vol, k, axes=(1, 2))
        back = np.rot90(predict_array(plain, np.ascontiguousarray(moved)), -k, axes=(1, 2))
        expected += back[..., ::-1] if flip else back
    got = predict_array(Predictor(model, "cpu", tta=True), vol)
    np.testing.assert_allclose(got, expected / 8, atol=1e-6)
    assert not np.allclose(got, predict_array(plain, vol), atol=1e-4)  # it does change something
