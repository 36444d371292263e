"""The prepared GPU check (bench/gpu_check.py) and the fast prediction path it measures.

The check itself runs end to end in CI as ``make smoke`` (CPU, tiny sizes); these tests pin its
parts: results written through after every row, the summary table, the config adapter, the
carried wheel list, and the fast path's settings (exact on the CPU; CUDA graphs on a GPU).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from unet.checkpoint import save_model
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.prediction.tiles import Predictor, predict_array

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import check_train  # noqa: E402
import gpu_check  # noqa: E402
import gpu_wheels  # noqa: E402


def test_results_are_written_through_after_every_row(tmp_path: Path) -> None:
    results = gpu_check.Results(tmp_path)
    results.set("steps/train/result/split", {"train": "0-24"})
    results.set("steps/train/status", "ok")
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())  # as a killed run leaves it
    assert on_disk == {"steps": {"train": {"result": {"split": {"train": "0-24"}}, "status": "ok"}}}
    assert gpu_check.Results(tmp_path).data == on_disk  # a later step's process continues it
    assert "steps/train/status" in (tmp_path / "gpu_check.log").read_text()


def test_summary_table_ratios_and_errors() -> None:
    data = {
        "total_seconds": 500,
        "steps": {
            "throughput": {
                "status": "ok",
                "result": {
                    "modes": {
                        "bf16": {"mpx_per_s": 150.0, "gigapixels": 8.6},
                        "fast": {"error": "RuntimeError: boom"},
                    },
                    "bare_forward": {"bf16": {"mpx_per_s": 200.0}},
                    "monai": {"mpx_per_s": 50.0, "gigapixels": 1.0},
                },
            }
        },
    }
    lines = gpu_check.summary(data).splitlines()
    bf16 = next(line for line in lines if line.startswith("ours: bf16"))
    assert bf16.split()[-3:] == ["150.0", "3.00", "8.60"]
    assert "RuntimeError: boom" in next(line for line in lines if "fast" in line)
    bare = next(line for line in lines if line.startswith("bare forward"))
    assert bare.split()[-1] == "200.0"  # no MONAI ratio for the ceiling


def test_config_adapter_merges_and_drops_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("train: {steps: 5, lr: 0.1}\nmodel: {depth: 4}\n")
    (tmp_path / "b.yaml").write_text("train: {steps: 7, future_key: 1}\nresults: r\n")
    cfg = check_train.merged_config(tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert cfg == {
        "train": {"steps": 7, "lr": 0.1, "future_key": 1},
        "model": {"depth": 4},
        "results": "r",
    }
    fields = check_train.known(check_train.TrainConfig, {**cfg["train"], "output_tile": [4, 4]})
    assert fields == {"steps": 7, "lr": 0.1, "output_tile": (4, 4)}


def test_carried_wheels_are_the_tested_versions(tmp_path: Path) -> None:
    """The GPU node gets each listed package at the version the tests run with, for its
    CPython 3.12 on x86-64; the list covers what the check imports beyond the node's image."""
    listed = gpu_wheels.names()
    assert {"zarr", "numcodecs", "dask", "distributed", "monai"} <= set(listed)
    cmd = gpu_wheels.pip_command(tmp_path, "3.12")
    for name in listed:
        assert f"{name}=={version(name)}" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert "manylinux_2_17_x86_64" in cmd and "--no-deps" in cmd


def _volume(tmp_path: Path) -> tuple[UNet, np.ndarray]:
    torch.manual_seed(0)
    net = UNet(base_channels=4, depth=2, dropout=0.0).eval()
    save_model(tmp_path / "m.pt", net)
    raw = np.random.default_rng(0).integers(0, 256, (4, 96, 80), dtype=np.uint8)
    ngff.create(tmp_path / "raw.zarr", raw.shape, np.uint8, (1, 32, 32), (1, 1, 1))[:] = raw
    return net, raw


def _fast(device: str, **kw: object) -> PredictConfig:
    return PredictConfig(
        **{
            "block_shape": (2, 64, 64),
            "chunks": (1, 32, 32),
            "tile_shape": (1, 32, 32),
            "tiles_per_batch": 8,
            "device": device,
            "channels_last": True,
            "cuda_graphs": True,
            "concurrent_blocks": 3,
            "io_threads": 3,
            "prefetch": 2,
            "output_dtype": "float32",
            "cluster": "none",
            **kw,
        }  # type: ignore[arg-type]
    )


def test_fast_path_settings_are_exact_on_the_cpu(tmp_path: Path) -> None:
    """Channels-last, big batches, several blocks in flight (and cuda_graphs, ignored on the
    CPU): the stitched prediction still equals one NCHW pass over the whole volume."""
    net, raw = _volume(tmp_path)
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "o.zarr", _fast("cpu"))
    whole = predict_array(Predictor(net), raw)
    got = ngff.open_array(tmp_path / "o.zarr")[:]
    np.testing.assert_allclose(got, whole, atol=1e-5)
    assert 0.01 < got.std()  # a real prediction, not a constant
    assert ngff.attributes(tmp_path / "o.zarr")["config"]["cuda_graphs"] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graphs_predict_what_eager_mode_predicts(tmp_path: Path, precision: str) -> None:
    net, raw = _volume(tmp_path)
    ngff.create(tmp_path / "short.zarr", (3, 96, 80), np.uint8, (1, 32, 32), (1, 1, 1))[:] = raw[
        :3
    ]  # a short last batch: the graph's batch shape stays fixed
    for name in ("raw", "short"):
        outs = []
        for graphs in (False, True):
            out = tmp_path / f"{name}-{graphs}.zarr"
            cfg = _fast("cuda", cuda_graphs=graphs, precision=precision, output_dtype="uint8")
            predict_volume(tmp_path / "m.pt", tmp_path / f"{name}.zarr", out, cfg)
            outs.append(ngff.open_array(out)[:].astype(int))
        assert np.abs(outs[0] - outs[1]).max() <= 1  # the same kernels up to cuDNN's choice
        assert outs[1].std() > 1
