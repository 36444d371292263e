from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unet import checkpoint
from unet.checkpoint import checksum, load_model, read, resolve, save_model, shipped_models
from unet.model import UNet


def _net() -> UNet:
    return UNet(base_channels=2, depth=1, dropout=0.0)


def test_roundtrip_keeps_weights_and_architecture(tmp_path: Path) -> None:
    net = _net()
    save_model(tmp_path / "m.pt", net, meta={"steps": 3})
    loaded = load_model(tmp_path / "m.pt", arch=net.arch)
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not loaded.training and read(tmp_path / "m.pt")["meta"] == {"steps": 3}
    assert len(checksum(tmp_path / "m.pt")) == 64
    assert not (tmp_path / "m.pt.tmp").exists()


def test_errors_name_the_file_and_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"none\.pt: no such model/checkpoint file"):
        read(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"junk\.pt: not a readable checkpoint"):
        read(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=r"foreign\.pt: not a unet-em checkpoint"):
        read(tmp_path / "foreign.pt")
    save_model(tmp_path / "m.pt", _net())
    with pytest.raises(
        ValueError, match=r"another architecture \(base_channels: file has 2, expected 8\)"
    ):
        load_model(tmp_path / "m.pt", arch={"base_channels": 8})
    torch.save({"arch": {"colour": "red"}, "state_dict": {}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd\.pt: unknown architecture record"):
        load_model(tmp_path / "odd.pt")
    payload = read(tmp_path / "m.pt")
    payload["arch"]["base_channels"] = 4
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match=r"mismatch\.pt: weights do not fit the architecture"):
        load_model(tmp_path / "mismatch.pt")


def test_code_in_a_pickle_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("executed",))

    torch.save({"arch": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: not a readable checkpoint"):
        read(tmp_path / "evil.pt")


def test_a_shipped_model_resolves_by_name_and_a_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = _net()
    save_model(tmp_path / "demo.pt", net, meta={"steps": 1})
    monkeypatch.setattr(checkpoint, "shipped_models", lambda: {"demo": tmp_path / "demo.pt"})
    assert resolve("demo") == tmp_path / "demo.pt"
    assert read("demo")["meta"] == {"steps": 1}
    assert checksum("demo") == checksum(tmp_path / "demo.pt")
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "demo", _net(), meta={"steps": 2})  # a file of that name wins
    assert read("demo")["meta"] == {"steps": 2}
    with pytest.raises(
        FileNotFoundError,
        match=r"nope: no such model/checkpoint file .*, nor a shipped model \(demo\)",
    ):
        resolve("nope")


def test_the_shipped_isbi2012_model_loads() -> None:
    assert "isbi2012" in shipped_models()
    model = load_model("isbi2012")
    assert model.arch["depth"] == 4 and model.arch["ndim"] == 2
    meta = read("isbi2012")["meta"]
    assert meta["input"]["dtype"] == "uint8"
    assert model.arch["base_channels"] == 32  # the CPU recipe (config/isbi2012-cpu.yaml)
    # float16 weights: 7.8 M parameters in 15 MiB (30 MiB as float32)
    assert meta["weights_dtype"] == "float16"
    assert shipped_models()["isbi2012"].stat().st_size < 16 * 2**20
