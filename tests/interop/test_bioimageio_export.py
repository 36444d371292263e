"""bioimage.io export (unet.interop.bioimageio_export) and reading packages
(unet.interop.bioimageio), offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unet.checkpoint import load_model, read, save_model
from unet.errors import InputError
from unet.interop.bioimageio import read_package
from unet.interop.bioimageio_export import export_model, smallest_input
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume

pytest.importorskip("bioimageio.core")

# what unet.io.intensity.sample_stats records for uniform uint8 grey values
INPUT = {"dtype": "uint8", "p1": 0.01, "p99": 0.99, "mean": 0.5, "std": 0.29}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network: any connection attempt fails the test; bioimageio caches into tmp_path."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))


def _model(path: Path, ndim: int, depth: int) -> Path:
    torch.manual_seed(3)
    net = UNet(base_channels=4, depth=depth, ndim=ndim, batch_norm=True, dropout=0.5)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    save_model(path, net, meta={"input": INPUT, "steps": 7})
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("ndim", "depth"), [(2, 3), (3, 1)])
def test_export_passes_bioimageio_test(tmp_path: Path, ndim: int, depth: int) -> None:
    out = export_model(_model(tmp_path / "m.pt", ndim, depth), tmp_path / "m.zip")
    # `bioimageio test` as a user runs it: its own process (its warnings and open files stay
    # there), offline (any HTTP request goes to a closed port), on the CPU
    env = {
        **os.environ,
        "BIOIMAGEIO_CACHE_PATH": str(tmp_path / "cache"),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "CUDA_VISIBLE_DEVICES": "",
    }
    cli = Path(sys.executable).with_name("bioimageio")
    done = subprocess.run(
        [str(cli), "test", str(out), "--summary", str(tmp_path / "summary.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    failed = [d["name"] for d in summary["details"] if d["status"] == "failed"]
    assert done.returncode == 0 and summary["status"] == "passed", (failed, done.stderr[-2000:])
    tested = " ".join(d["name"] for d in summary["details"] if d["status"] == "passed")
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in tested
    assert "Reproduce test outputs from test inputs (torchscript)" in tested

    rdf = yaml.safe_load(zipfile.ZipFile(out).read("rdf.yaml"))
    space = [a for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert [a["id"] for a in space] == list("zyx"[3 - ndim :])
    assert space[0]["size"] == {"min": smallest_input(depth), "step": 2**depth}
    out_axis = [a for a in rdf["outputs"][0]["axes"] if a["type"] == "space"][0]
    assert out_axis["size"]["offset"] == -(12 * 2**depth - 8)  # minus the context
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    assert rdf["license"] == "MIT" and rdf["covers"]


@pytest.mark.slow
def test_predict_from_package_equals_predict_from_checkpoint(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.pt", 2, 2)
    package = export_model(model, tmp_path / "m.zip")
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(folder)
    raw = tmp_path / "raw.zarr"
    data = np.random.default_rng(0).integers(0, 256, (2, 70, 90), dtype=np.uint8)
    ngff.create(raw, data.shape, np.uint8, (1, 32, 32), (30.0, 4.0, 4.0))[:] = data
    config = PredictConfig(
        cluster="none",
        device="cpu",
        output_dtype="float32",
        block_shape=(1, 32, 32),
        chunks=(1, 32, 32),
    )
    results = []
    for i, source in enumerate((model, package, folder / "rdf.yaml")):
        predict_volume(source, raw, tmp_path / f"p{i}.zarr", config)
        results.append(np.asarray(ngff.open_array(tmp_path / f"p{i}.zarr")[:]))
    assert results[0].std() > 0.01  # a real prediction, not a constant
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_array_equal(results[2], results[0])
    assert read(package)["meta"] == {"input": INPUT, "steps": 7}
    assert load_model(package).arch == load_model(model).arch


def test_export_refuses_other_suffix_and_existing_output(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.pt", 2, 1)
    with pytest.raises(InputError, match=r"m\.tar: a bioimage.io package is a \.zip file"):
        export_model(model, tmp_path / "m.tar")
    (tmp_path / "old.zip").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="old.zip: output already exists"):
        export_model(model, tmp_path / "old.zip")
    assert (tmp_path / "old.zip").read_bytes() == b"x"


def test_test_input_is_a_valid_size_crop_of_the_sample() -> None:
    from unet.interop.bioimageio_export import make_test_input

    net = UNet(base_channels=2, depth=2)
    sample = np.arange(200 * 300, dtype=np.uint16).reshape(200, 300)
    x = make_test_input(net, np.dtype(np.uint16), sample)
    assert x.shape == (1, 1, 104, 104) and x.dtype == np.uint16  # output 64 + context 40
    assert x[0, 0, 0, 0] == sample[48, 98]  # centred
    with pytest.raises(InputError, match=r"sample of shape \(50, 50\) must have 2 axes"):
        make_test_input(net, np.dtype(np.uint8), np.zeros((50, 50), np.uint8))


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"x.txt": b""}, "no rdf.yaml or bioimageio.yaml in the zip file"),
        ({"rdf.yaml": b"type: dataset\n"}, "not a bioimage.io model description"),
        ({"rdf.yaml": b"type: model\nweights: {}\n"}, "no pytorch_state_dict weights"),
        (
            {
                "rdf.yaml": b"type: model\nweights:\n  pytorch_state_dict:\n    source: w.pt\n"
                b"    architecture: {callable: ResNet}\n"
            },
            "architecture 'ResNet' is not this project's UNet",
        ),
        (
            {
                "rdf.yaml": b"type: model\nweights:\n  pytorch_state_dict:\n    source: w.pt\n"
                b"    architecture: {callable: UNet}\n"
            },
            "weights file 'w.pt' missing from the package",
        ),
        ({"rdf.yaml": b"type: [model\n"}, "not valid YAML"),
    ],
)
def test_foreign_packages_are_input_errors(tmp_path: Path, files: dict[str, bytes], match: str):  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        read_package(_zip(tmp_path / "p.zip", files))


def test_unreadable_zip_and_missing_weights_beside_rdf(tmp_path: Path) -> None:
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.zip: not a readable zip file"):
        read_package(tmp_path / "bad.zip")
    rdf = tmp_path / "rdf.yaml"
    rdf.write_text(
        "type: model\nweights:\n  pytorch_state_dict:\n    source: w.pt\n"
        "    architecture: {callable: UNet}\n"
    )
    with pytest.raises(InputError, match=r"weights file .*w\.pt not found beside it"):
        read_package(rdf)
    (tmp_path / "w.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="unreadable weights 'w.pt'"):
        read_package(rdf)
    with pytest.raises(FileNotFoundError, match="no such bioimage.io package"):
        read_package(tmp_path / "none.zip")
