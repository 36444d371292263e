from __future__ import annotations

import numpy as np
import pytest
import torch

from unet.model import UNet
from unet.prediction.tiles import Predictor, check_context, predict_array, tile_plan


def _net(ndim: int, depth: int) -> UNet:
    torch.manual_seed(1)
    return UNet(base_channels=3, depth=depth, ndim=ndim, dropout=0.0).eval()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("block", [(1, 16, 16), (2, 32, 48), (3, 64, 96), (1, 4, 8)])
def test_tiled_equals_whole_2d(block: tuple[int, int, int], dtype: type) -> None:
    rng = np.random.default_rng(0)
    vol = rng.random((3, 70, 90))
    vol = (vol * 255).astype(dtype) if dtype == np.uint8 else vol.astype(dtype)
    predictor = Predictor(_net(2, 2))
    whole = predict_array(predictor, vol)  # one tile over the whole mirrored volume
    tiled = predict_array(predictor, vol, block)
    assert len(tile_plan(predictor.model, vol.shape, block)) > 1
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert ((whole >= 0) & (whole <= 1)).all()


@pytest.mark.parametrize("block", [(2, 2, 2), (4, 6, 8)])
def test_tiled_equals_whole_3d_thin_stack(block: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 255, (5, 22, 26), dtype=np.uint8)  # 5 slices < context 16
    predictor = Predictor(_net(3, 1))
    np.testing.assert_allclose(
        predict_array(predictor, vol, block), predict_array(predictor, vol), atol=1e-5
    )


def test_identity_model_stitches_its_input_exactly() -> None:
    """A 'model' whose logits copy the centre of its input reproduces the volume (MONAI's trick)."""

    class Identity(UNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            crop = self.context // 2
            core = x[..., crop:-crop, crop:-crop]
            return torch.cat([torch.zeros_like(core), torch.logit(core.clamp(1e-4, 1 - 1e-4))], 1)

    net = Identity(base_channels=1, depth=2).eval()
    vol = np.random.default_rng(2).integers(1, 254, (2, 50, 61), dtype=np.uint8)
    out = predict_array(Predictor(net), vol, (1, 16, 20))
    np.testing.assert_allclose(out, vol / 255.0, atol=1e-5)


def test_plan_and_context_errors() -> None:
    net = _net(2, 2)
    with pytest.raises(ValueError, match=r"multiple of the net's down-sampling factor \(1, 4, 4\)"):
        tile_plan(net, (1, 64, 64), (1, 18, 16))
    with pytest.raises(ValueError, match=r"must be \(z, y, x\)"):
        tile_plan(net, (64, 64), (16, 16))
    with pytest.raises(ValueError, match="smaller than the network context 40 along axis y"):
        check_context(net, (3, 30, 64))
    with pytest.raises(ValueError, match="precision must be"):
        Predictor(net, precision="fp64")  # type: ignore[arg-type]


def test_bf16_autocast_close_to_fp32_on_cpu() -> None:
    net = _net(2, 1)
    vol = np.random.default_rng(3).integers(0, 255, (1, 40, 40), dtype=np.uint8)
    p32 = predict_array(Predictor(net), vol)
    p16 = predict_array(Predictor(net, precision="bf16", channels_last=True), vol)
    assert np.abs(p32 - p16).max() < 0.05
