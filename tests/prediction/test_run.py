from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from unet.checkpoint import save_model
from unet.cluster import blockstate
from unet.io import ngff, outputs
from unet.io.pyramid import downsample
from unet.model import UNet
from unet.prediction import blocks as engine
from unet.prediction.run import (
    BlockError,
    PredictConfig,
    finalize_output,
    make_layout,
    predict_volume,
    prepare_output,
    run_shard,
)
from unet.prediction.tiles import Predictor, predict_array


@pytest.fixture(autouse=True)
def _keep_torch_threads():  # type: ignore[no-untyped-def]
    """In-process runs set torch's thread count for this process; restore it afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _model(path: Path, ndim: int, depth: int, seed: int = 1) -> tuple[Path, UNet]:
    torch.manual_seed(seed)
    net = UNet(base_channels=3 if ndim == 2 else 2, depth=depth, ndim=ndim, dropout=0.0).eval()
    save_model(path, net)
    return path, net


def _raw(path: Path, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    ngff.create(path, shape, np.uint8, (2, 16, 16), (30.0, 4.0, 4.0))[:] = data
    return data


def _config(**kw: object) -> PredictConfig:
    base: dict[str, object] = {"cluster": "none", "output_dtype": "float32", "device": "cpu"}
    return PredictConfig(**{**base, **kw})  # type: ignore[arg-type]


# (ndim, depth, volume, block, chunks, tile, tiles_per_batch)
CASES = [
    (2, 2, (3, 70, 90), (2, 32, 32), (1, 16, 32), (1, 16, 16), 3),  # several tiles per block
    (2, 2, (3, 70, 90), (1, 64, 96), (1, 32, 32), None, 1),  # one tile crossing every border
    (3, 1, (5, 22, 26), (2, 8, 8), (2, 4, 8), (2, 4, 4), 2),  # thin stack: 5 < context 16
    (3, 1, (9, 20, 24), (4, 12, 16), (4, 12, 16), None, 1),
]


@pytest.mark.parametrize(("ndim", "depth", "shape", "block", "chunks", "tile", "batch"), CASES)
def test_blockwise_equals_whole_volume_pass(
    tmp_path: Path, ndim, depth, shape, block, chunks, tile, batch
) -> None:  # type: ignore[no-untyped-def]
    model_path, net = _model(tmp_path / "m.pt", ndim, depth)
    raw = _raw(tmp_path / "raw.zarr", shape)
    whole = predict_array(Predictor(net), raw)
    for dtype in ("float32", "uint8"):
        out = tmp_path / f"{dtype}.zarr"
        cfg = _config(
            block_shape=block,
            chunks=chunks,
            tile_shape=tile,
            tiles_per_batch=batch,
            output_dtype=dtype,
        )
        summary = predict_volume(model_path, tmp_path / "raw.zarr", out, cfg)
        got = ngff.open_array(out)[:]
        assert summary["computed"] == summary["total_blocks"] > 1
        if dtype == "float32":
            np.testing.assert_allclose(got, whole, atol=1e-5)
        else:  # quantised both ways: equal except where float noise crosses a rounding edge
            ref = engine.quantise(torch.from_numpy(whole), "uint8").numpy()
            diff = np.abs(got.astype(int) - ref)
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize(
    "extra",
    [
        {"cluster": "local", "workers": 2, "processes": False, "max_in_flight": 3},
        {"cluster": "local", "workers": 2, "processes": True},
        {"cluster": "none", "concurrent_blocks": 2},
    ],
)
def test_dask_and_threads_equal_a_serial_run(tmp_path: Path, extra: dict) -> None:  # type: ignore[type-arg]
    model_path, _ = _model(tmp_path / "m.pt", 2, 2)
    _raw(tmp_path / "raw.zarr", (4, 48, 64))
    kw = {"block_shape": (1, 32, 32), "chunks": (1, 16, 32), "output_dtype": "uint8"}
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "a.zarr", _config(**kw))
    summary = predict_volume(
        model_path, tmp_path / "raw.zarr", tmp_path / "b.zarr", _config(**kw, **extra)
    )
    assert summary["computed"] == 4 * 2 * 2
    a, b = ngff.open_array(tmp_path / "a.zarr")[:], ngff.open_array(tmp_path / "b.zarr")[:]
    np.testing.assert_array_equal(a, b)


def test_sharded_output_equals_the_chunked_one(tmp_path: Path) -> None:
    """Zarr v3 shards: the same values in far fewer files, pyramid levels sharded too; blocks
    of 4 slices written in 2-slice steps never write into one shard twice at once."""
    model_path, _ = _model(tmp_path / "m.pt", 2, 2)
    _raw(tmp_path / "raw.zarr", (8, 70, 90))
    kw = {
        "block_shape": (4, 32, 64),
        "chunks": (1, 16, 16),
        "tile_shape": (1, 16, 32),
        "tiles_per_batch": 3,
        "output_dtype": "uint8",
        "concurrent_blocks": 2,
        "io_threads": 3,
        "pyramid_levels": 2,
    }
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "c.zarr", _config(**kw))
    cfg = _config(**kw, shard_shape=(2, 32, 32))
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "s.zarr", cfg)
    for level in range(2):
        chunked = ngff.open_array(tmp_path / "c.zarr", level)
        sharded = ngff.open_array(tmp_path / "s.zarr", level)
        np.testing.assert_array_equal(sharded[:], chunked[:])
        assert chunked.shards is None and sharded.shards is not None
        assert sharded.chunks == chunked.chunks

    def files(path: Path) -> int:
        return sum(1 for f in (path / "0" / "c").rglob("*") if f.is_file())

    assert files(tmp_path / "s.zarr") == 4 * 3 * 3 < files(tmp_path / "c.zarr") == 8 * 5 * 6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_net_predicts_the_same(tmp_path: Path) -> None:
    """``compile: true`` (torch.compile, inductor; needs a C compiler on the CPU) changes speed,
    not the result beyond float rounding."""
    if shutil.which("cc") is None and os.environ.get("CI") != "true":
        pytest.skip("torch.compile on the CPU needs a C compiler (cc)")
    model_path, _ = _model(tmp_path / "m.pt", 2, 2)
    _raw(tmp_path / "raw.zarr", (2, 48, 64))
    kw = {"block_shape": (1, 32, 32), "chunks": (1, 16, 32)}
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "a.zarr", _config(**kw))
    predict_volume(
        model_path, tmp_path / "raw.zarr", tmp_path / "b.zarr", _config(**kw, compile=True)
    )
    a, b = ngff.open_array(tmp_path / "a.zarr")[:], ngff.open_array(tmp_path / "b.zarr")[:]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert ngff.attributes(tmp_path / "b.zarr")["config"]["compile"] is True


def test_z_range_uses_real_context_and_keeps_the_pool_grid(tmp_path: Path) -> None:
    model_path, net = _model(tmp_path / "m.pt", 3, 1)
    raw = _raw(tmp_path / "raw.zarr", (9, 20, 24))
    cfg = _config(block_shape=(2, 10, 12), chunks=(2, 10, 12))
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "o.zarr", cfg, z_range=(2, 7))
    got = ngff.open_array(tmp_path / "o.zarr")[:]
    np.testing.assert_allclose(got, predict_array(Predictor(net), raw)[2:7], atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the net's z factor 2"):
        make_layout(model_path, tmp_path / "raw.zarr", cfg, z_range=(3, 7))
    with pytest.raises(ValueError, match=r"0 <= start < stop <= 9, got \(4, 12\)"):
        make_layout(model_path, tmp_path / "raw.zarr", cfg, z_range=(4, 12))


def test_pyramid_ngff_metadata_and_provenance(tmp_path: Path) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1)
    _raw(tmp_path / "raw.zarr", (2, 40, 52))
    cfg = _config(
        block_shape=(1, 16, 16),
        chunks=(1, 8, 16),
        output_dtype="uint8",
        pyramid_levels=3,
        compression="lz4:3",
    )
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "o.zarr", cfg)
    group = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    for lv in range(3):  # every level stored with the configured codec
        assert ngff.compression_of(ngff.open_array(tmp_path / "o.zarr", lv)) == "lz4:3"
    level0, level1, level2 = (ngff.open_array(tmp_path / "o.zarr", lv)[:] for lv in range(3))
    assert level1.shape == (2, 20, 26) and level2.shape == (2, 10, 13)
    np.testing.assert_array_equal(level1, downsample(level0))
    np.testing.assert_array_equal(level2, downsample(level1))
    assert (
        blockstate.MARKERS not in group and not outputs.partial_path(tmp_path / "o.zarr").exists()
    )
    datasets = dict(group.attrs["ome"])["multiscales"][0]["datasets"]  # type: ignore[call-overload]
    assert [d["coordinateTransformations"][0]["scale"] for d in datasets] == [
        [30.0, 4.0, 4.0],
        [30.0, 8.0, 8.0],
        [30.0, 16.0, 16.0],
    ]
    prov = ngff.attributes(tmp_path / "o.zarr")
    assert (
        prov["model_checksum"] == make_layout(model_path, tmp_path / "raw.zarr", cfg).model_checksum
    )
    assert prov["config"]["block_shape"] == [1, 16, 16] and prov["pyramid_levels"] == 3
    assert {"package_version", "created", "completed", "layout_hash"} <= set(prov)


def test_failed_block_is_reported_never_marked_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1)
    _raw(tmp_path / "raw.zarr", (2, 32, 48))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16), output_dtype="uint8")
    predict_volume(model_path, tmp_path / "raw.zarr", tmp_path / "ref.zarr", cfg)
    real, calls, raised = engine.predict_block, [], []

    def flaky(job: engine.BlockJob) -> dict:  # type: ignore[type-arg]
        calls.append(job.index)
        if job.index == 3 and not raised:
            raised.append(job.index)
            raise OSError("simulated I/O error")
        return real(job)

    monkeypatch.setattr(engine, "predict_block", flaky)
    out = tmp_path / "o.zarr"
    with pytest.raises(BlockError, match=r"1 block\(s\) failed \(first: \[3\]\); 8 not started"):
        predict_volume(model_path, tmp_path / "raw.zarr", out, cfg)
    states = blockstate.read_states(blockstate.open_markers(outputs.partial_path(out)), 0, 12)
    assert states.tolist() == [1, 1, 1, 2] + [0] * 8 and not out.exists()
    with pytest.raises(BlockError, match=r"9 of 12 blocks not done \(1 failed, 8 never"):
        finalize_output(out, cfg)
    calls.clear()
    summary = predict_volume(model_path, tmp_path / "raw.zarr", out, cfg)
    assert calls == list(range(3, 12)) and summary["skipped"] == 3
    ref = ngff.open_array(tmp_path / "ref.zarr")[:]
    np.testing.assert_array_equal(ngff.open_array(out)[:], ref)


def test_shards_equal_a_single_run(tmp_path: Path) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1)
    raw = tmp_path / "raw.zarr"
    _raw(raw, (3, 32, 40))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16), output_dtype="uint8")
    predict_volume(model_path, raw, tmp_path / "ref.zarr", cfg)
    out = tmp_path / "o.zarr"
    prepare_output(model_path, raw, out, cfg)
    counts = [run_shard(model_path, raw, out, cfg, shard=i, n_shards=3)["computed"] for i in (2, 0)]
    assert counts == [6, 6]
    with pytest.raises(BlockError, match="6 of 18 blocks not done"):
        finalize_output(out, cfg)
    prepare_output(model_path, raw, out, cfg)  # idempotent: keeps the finished shards
    assert run_shard(model_path, raw, out, cfg, shard=0, n_shards=3)["computed"] == 0
    run_shard(model_path, raw, out, cfg, shard=1, n_shards=3)
    finalize_output(out, cfg)
    ref = ngff.open_array(tmp_path / "ref.zarr")[:]
    np.testing.assert_array_equal(ngff.open_array(out)[:], ref)


def test_stale_layout_or_model_is_never_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1, seed=1)
    raw = tmp_path / "raw.zarr"
    _raw(raw, (2, 32, 32))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16))
    out = tmp_path / "o.zarr"
    prepare_output(model_path, raw, out, cfg)
    run_shard(model_path, raw, out, cfg, shard=0, n_shards=2)
    _model(model_path, 2, 1, seed=2)  # retrained model under the same name
    with pytest.raises(ValueError, match="prepared for another layout.*model_checksum"):
        run_shard(model_path, raw, out, cfg, shard=1, n_shards=2)
    with caplog.at_level(logging.WARNING, logger="unet.prediction.run"):
        summary = predict_volume(model_path, raw, out, cfg)
    assert "layout changed: model_checksum" in caplog.text and summary["skipped"] == 0
    predict_volume(model_path, raw, tmp_path / "fresh.zarr", cfg)
    np.testing.assert_array_equal(
        ngff.open_array(out)[:], ngff.open_array(tmp_path / "fresh.zarr")[:]
    )


def test_worker_refuses_a_model_changed_after_prepare(tmp_path: Path) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1)
    raw = tmp_path / "raw.zarr"
    _raw(raw, (1, 32, 32))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16))
    layout = prepare_output(model_path, raw, tmp_path / "o.zarr", cfg)
    _model(model_path, 2, 1, seed=5)
    spec = engine.EngineSpec(
        str(model_path), layout.model_checksum, "cpu", "fp32", False, False, 1, 1
    )
    job = engine.BlockJob(spec, layout, str(outputs.partial_path(tmp_path / "o.zarr")), 0, 1, 0)
    with pytest.raises(ValueError, match="model file changed since the run was prepared"):
        engine.predict_block(job)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"block_shape": (1, 24, 24), "chunks": (1, 16, 16)}, r"multiple of the chunks"),
        (
            {"block_shape": (1, 32, 32), "chunks": (1, 16, 16), "tile_shape": (1, 24, 32)},
            r"multiple of tile_shape",
        ),
        ({"precision": "fp64"}, "precision must be one of"),
        ({"output_dtype": "int8"}, "output_dtype must be one of"),
        ({"compression": "gzip:9"}, "compression must be .* got 'gzip:9'"),
        (
            {"chunks": (1, 16, 16), "shard_shape": (1, 24, 32)},
            r"shard_shape \(1, 24, 32\) must be a multiple of the chunks",
        ),
        (
            {"block_shape": (1, 32, 32), "chunks": (1, 16, 16), "shard_shape": (2, 32, 32)},
            r"block_shape \(1, 32, 32\) must be a multiple of shard_shape",
        ),
        ({"device": "gpu0"}, "device must be auto, cpu, cuda or cuda:N, got 'gpu0'"),
        ({"cluster": "pbs"}, "cluster must be 'local', 'slurm', 'none' or a scheduler address"),
        ({"cluster": "local", "slurm": {"queue": "gpu"}}, "slurm options given but cluster"),
        ({"workers": 0}, "workers must be an integer >= 1, got 0"),
        ({"prefetch": -1}, "prefetch must be >= 0"),
        ({"block_shape": (1, 16)}, "block_shape must have 3 entries"),
    ],
)
def test_config_errors(kw: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        PredictConfig(**kw)


def test_input_and_state_errors(tmp_path: Path) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 2)
    raw = tmp_path / "raw.zarr"
    _raw(raw, (1, 32, 32))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16))
    with pytest.raises(ValueError, match=r"multiple of the net's down-sampling factor"):
        tiles = _config(block_shape=(1, 24, 24), tile_shape=(1, 6, 8), chunks=(1, 8, 8))
        make_layout(model_path, raw, tiles)
    flat = zarr.create_array(str(tmp_path / "flat.zarr"), shape=(8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"raw must be a \(z, y, x\) array"):
        make_layout(model_path, flat.store_path.store.root, cfg)  # type: ignore[attr-defined]
    with pytest.raises(FileNotFoundError, match="no prepared \\(partial\\) output"):
        run_shard(model_path, raw, tmp_path / "o.zarr", cfg)
    with pytest.raises(FileNotFoundError, match="no blockwise run in progress"):
        finalize_output(tmp_path / "o.zarr", cfg)
    prepare_output(model_path, raw, tmp_path / "o.zarr", cfg)
    with pytest.raises(ValueError, match=r"shard must be in \[0, n_shards\), got shard 2 of 2"):
        run_shard(model_path, raw, tmp_path / "o.zarr", cfg, shard=2, n_shards=2)
    (tmp_path / "done.zarr").mkdir()
    (tmp_path / "done.zarr" / "zarr.json").write_text("{}")  # (an empty folder holds no data)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        predict_volume(model_path, raw, tmp_path / "done.zarr", cfg)


def test_prepare_starts_over_without_resume_or_for_a_foreign_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_path, _ = _model(tmp_path / "m.pt", 2, 1)
    raw, out = tmp_path / "raw.zarr", tmp_path / "o.zarr"
    _raw(raw, (2, 16, 16))
    cfg = _config(block_shape=(1, 16, 16), chunks=(1, 16, 16))
    partial = outputs.partial_path(out)
    partial.mkdir()
    (partial / "junk.txt").write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="unet.prediction.run"):
        prepare_output(model_path, raw, out, cfg)
        run_shard(model_path, raw, out, cfg)
        prepare_output(model_path, raw, out, PredictConfig(**{**cfg.record(), "resume": False}))
    assert "no valid layout; starting over" in caplog.text
    assert "resume disabled; starting over" in caplog.text
    assert not (partial / "junk.txt").exists()
    assert run_shard(model_path, raw, out, cfg)["computed"] == 2


@pytest.mark.parametrize(("norm", "warned"), [("instance", True), ("group", True), ("none", False)])
def test_a_per_tile_norm_is_named_as_not_exact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, norm: str, warned: bool
) -> None:
    """Instance / group norm normalise each tile by its own statistics: the run says that its
    prediction depends on the blocks; nets without them are exact and get no warning."""
    net = UNet(base_channels=8, depth=1, dropout=0.0, norm=norm).eval()
    save_model(tmp_path / "m.pt", net)
    _raw(tmp_path / "raw.zarr", (1, 32, 32))
    with caplog.at_level(logging.WARNING, logger="unet.prediction.run"):
        make_layout(
            tmp_path / "m.pt",
            tmp_path / "raw.zarr",
            _config(block_shape=(1, 32, 32), chunks=(1, 32, 32)),
        )
    assert ("not exact under tiling" in caplog.text) is warned
