from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

from unet.checkpoint import save_model
from unet.cluster.blockstate import Layout
from unet.io import ngff
from unet.model import UNet
from unet.prediction import blocks as engine
from unet.prediction.run import PredictConfig, predict_volume
from unet.prediction.tiles import Predictor, predict_array, tile_plan


def test_doctests() -> None:
    assert doctest.testmod(engine).failed == 0


@pytest.mark.parametrize("ndim", [2, 3])
def test_block_tiles_cover_each_block_once(ndim: int) -> None:
    net = UNet(base_channels=1, depth=1, ndim=ndim, dropout=0.0)
    block, tile = ((2, 8, 12), (2, 4, 4)) if ndim == 3 else ((2, 8, 12), (1, 4, 4))
    layout = Layout("r", (5, 18, 26), "uint8", (0, 5), block, tile, block, "uint8", "c", "fp32")
    plan = tile_plan(net, layout.volume_shape, tile)
    seen = np.zeros(layout.volume_shape, dtype=int)
    for index in range(layout.n_blocks):
        tiles, row = engine.block_tiles(plan, layout, index)
        assert row == len({t.index[1:] for t in tiles})
        for t in tiles:
            assert layout.block(index).contains(t.write)
            seen[t.write.to_slices()] += 1
    assert (seen == 1).all()


def test_quantise_and_device() -> None:
    p = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0])
    assert engine.quantise(p, "uint8").tolist() == [0, 0, 2, 128, 255]
    assert engine.quantise(p, "float16").dtype == torch.float16
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert engine.resolve_device("auto").type == expect
    assert engine.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_prediction_matches_cpu(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    net = UNet(base_channels=4, depth=2, dropout=0.0).eval()
    save_model(tmp_path / "m.pt", net)
    raw = np.random.default_rng(0).integers(0, 256, (5, 96, 80), dtype=np.uint8)
    ngff.create(tmp_path / "raw.zarr", raw.shape, np.uint8, (1, 32, 32), (1, 1, 1))[:] = raw
    cfg = PredictConfig(
        block_shape=(2, 64, 64),
        chunks=(1, 32, 32),
        tile_shape=(1, 32, 32),
        tiles_per_batch=4,
        device="cuda",
        precision=precision,  # type: ignore[arg-type]
        channels_last=True,
        output_dtype="float32",
        cluster="none",
    )
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "o.zarr", cfg)
    whole = predict_array(Predictor(net), raw)
    tol = 1e-2 if precision == "fp32" else 0.05  # TF32 / bf16 convolutions
    np.testing.assert_allclose(ngff.open_array(tmp_path / "o.zarr")[:], whole, atol=tol)
