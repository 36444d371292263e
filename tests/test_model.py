from __future__ import annotations

import math

import pytest
import torch

from unet.errors import InputError
from unet.model import UNet, context, input_size, nearest_valid_inputs, output_size


def test_paper_net_parameter_count_and_shapes() -> None:
    net = UNet()
    assert sum(p.numel() for p in net.parameters()) == 31_030_658
    assert net.output_shape((572, 572)) == (388, 388)
    assert net.input_shape((388, 388)) == (572, 572)
    assert net.context == 184 and net.factor == 16


@pytest.mark.parametrize(
    ("ndim", "depth", "size"), [(2, 1, 20), (2, 2, 44), (2, 3, 92), (3, 1, 20), (3, 2, 44)]
)
def test_shape_functions_match_forward(ndim: int, depth: int, size: int) -> None:
    net = UNet(base_channels=2, depth=depth, ndim=ndim, dropout=0.0).eval()
    for s in (size, size + 2**depth):
        shape = (s,) * ndim
        with torch.no_grad():
            out = net(torch.zeros((1, 1, *shape)))
        assert tuple(out.shape[2:]) == net.output_shape(shape)
        assert out.shape[1] == 2
        assert net.input_shape(net.output_shape(shape)) == shape
        assert s - net.output_shape(shape)[0] == context(depth)


def test_valid_sizes_step_by_factor() -> None:
    valid = [s for s in range(1, 700) if output_size(s, 4) is not None]
    assert valid[0] == 188 and all(b - a == 16 for a, b in zip(valid[:-1], valid[1:], strict=True))
    assert nearest_valid_inputs(570, 4) == (556, 572)
    assert nearest_valid_inputs(10, 4) == (0, 188)
    assert input_size(5, 4) is None and input_size(388, 4) == 572


def test_invalid_sizes_name_the_nearest_valid_ones() -> None:
    net = UNet(base_channels=2)
    with pytest.raises(
        ValueError, match=r"input 570x570 gives no valid output: nearest valid inputs 556, 572"
    ):
        net.output_shape((570, 570))
    with pytest.raises(ValueError, match="nearest valid inputs 188"):
        net.output_shape((100, 188))
    with pytest.raises(ValueError, match="output 390x388 is not reachable"):
        net.input_shape((390, 388))
    with pytest.raises(ValueError, match="must have 2 spatial axes"):
        net.output_shape((572, 572, 572))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ndim": 4}, "ndim must be 2 or 3"),
        ({"depth": 0}, "depth must be >= 1"),
        ({"base_channels": 0}, "must be >= 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_constructor_errors(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_gaussian_init_std_sqrt_2_over_fan_in() -> None:
    net = UNet(base_channels=32, depth=2)
    conv = net.downs[1].conv.block[0]  # 64 -> 128 channels, 3x3
    fan_in = 64 * 9
    assert abs(conv.weight.std().item() - math.sqrt(2 / fan_in)) < 0.1 * math.sqrt(2 / fan_in)
    assert torch.count_nonzero(conv.bias) == 0
    up = net.ups[0].up
    assert abs(up.weight.std().item() - math.sqrt(2 / up.in_channels)) < 0.1 * math.sqrt(
        2 / up.in_channels
    )


def test_batch_norm_and_dropout_options() -> None:
    net = UNet(base_channels=2, depth=1, batch_norm=True, dropout=0.3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net.dropout.p == 0.3
    assert net.arch["batch_norm"] is True


@pytest.mark.parametrize(
    ("norm", "ndim", "layer"),
    [
        ("batch", 2, torch.nn.BatchNorm2d),
        ("instance", 2, torch.nn.InstanceNorm2d),
        ("instance", 3, torch.nn.InstanceNorm3d),
        ("group", 2, torch.nn.GroupNorm),
    ],
)
def test_norm_options(norm: str, ndim: int, layer: type) -> None:
    net = UNet(base_channels=4, depth=1, ndim=ndim, norm=norm)
    assert any(isinstance(m, layer) for m in net.modules())
    assert net.arch["norm"] == norm and net.arch["batch_norm"] is (norm == "batch")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d)]
    assert all(m.bias is None for m in convs if m.kernel_size[0] == 3)  # the norm has one
    again = UNet(**net.arch)  # the record rebuilds the same net
    again.load_state_dict(net.state_dict())


def test_norm_none_is_the_paper_and_overrides_batch_norm() -> None:
    net = UNet(base_channels=2, depth=1, batch_norm=True, norm="none")
    norms = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in net.modules())
    assert net.arch["batch_norm"] is False
    with pytest.raises(InputError, match="norm must be one of"):
        UNet(base_channels=2, depth=1, norm="layer")


def test_a_record_without_norm_still_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints written before ``norm`` existed record only ``batch_norm``."""
    from unet.checkpoint import load_model, save_model

    net = UNet(base_channels=2, depth=1, batch_norm=True).eval()
    save_model(tmp_path / "m.pt", net)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["arch"].pop("norm")
    torch.save(payload, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt", arch={**net.arch})
    assert old.arch["norm"] == "batch"
    load_model(tmp_path / "old.pt", arch={k: v for k, v in net.arch.items() if k != "norm"})
    x = torch.rand(1, 1, *net.input_shape((8, 8)))
    torch.testing.assert_close(old(x), net(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_torchscript_every_norm(norm: str) -> None:
    net = UNet(base_channels=4, depth=2, norm=norm).eval()
    x = torch.randn((1, 1, *net.input_shape((12, 12))))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(x), net(x), rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("ndim", "depth", "sizes"), [(2, 3, (92, 100, 124)), (3, 1, (20, 22, 28))])
def test_torchscript_equals_eager_at_every_valid_size(ndim: int, depth: int, sizes) -> None:  # type: ignore[no-untyped-def]
    net = UNet(base_channels=2, depth=depth, ndim=ndim, batch_norm=True).eval()
    scripted = torch.jit.script(net)
    for i, s in enumerate(sizes):
        shape = (s,) * (ndim - 1) + (sizes[-1 - i],)  # non-square inputs too
        x = torch.randn((2, 1, *shape))
        with torch.no_grad():
            want, got = net(x), scripted(x)
        assert tuple(got.shape[2:]) == net.output_shape(shape)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    with pytest.raises(torch.jit.Error, match=r"odd spatial size \(is the input a valid size"):
        scripted(torch.zeros((1, 1, *(sizes[0] + 1,) * ndim)))


def test_model_module_imports_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bioimage.io consumer gets unet/model.py alone: it must need only torch."""
    import importlib.util
    import sys

    import unet.model

    for name in [n for n in sys.modules if n == "unet" or n.startswith("unet.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]  # import fails
    spec = importlib.util.spec_from_file_location("alone", unet.model.__file__)
    assert spec is not None and spec.loader is not None
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    assert alone.InputError is ValueError
    net = alone.UNet(base_channels=2, depth=1, dropout=0.0).eval()
    assert net(torch.zeros((1, 1, 20, 20))).shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        alone.UNet(ndim=4)
    with pytest.raises(ValueError, match="odd spatial size"):
        net(torch.zeros((1, 1, 21, 20)))
