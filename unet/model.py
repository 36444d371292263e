"""The U-Net of Ronneberger, Fischer & Brox (MICCAI 2015), with valid (unpadded) convolutions.

Shape arithmetic for depth ``d`` along one axis (the paper: d = 4, 572 -> 388)::

    down level l:  s -> s - 4 (two 3x3 convs) -> (s - 4) / 2 (2x2 max-pool; must be even)
    bottom:        b + 4 -> b (two convs)
    up level l:    u -> 2u (2x2 up-conv) -> 2u - 4 (two convs)

so for a bottom size ``b`` (after its convs) the input is ``I = 2^d * b + 4 * (2^(d+1) - 1)``,
the output ``O = 2^d * b - 4 * (2^d - 1)`` and the context ``I - O = 12 * 2^d - 8`` (184 for
d = 4; b = 28 gives 572 -> 388).  Valid sizes step by ``2^d``; the smallest keeps ``O >= 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

try:  # in this package, a bad size or setting is the user's input error (one log line)
    from unet.errors import InputError
except ImportError:  # this file alone (a bioimage.io package's architecture): a ValueError
    InputError = ValueError  # type: ignore[assignment,misc]


def output_size(size: int, depth: int) -> int | None:
    """Output length of a valid U-Net along one axis, or ``None`` if ``size`` is not a valid
    input (a max-pool would see an odd length, or the map would vanish)."""
    s = size
    for _ in range(depth):
        s -= 4
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= 4  # bottom convs
    for _ in range(depth):
        s = 2 * s - 4
    return s if s >= 1 else None


def context(depth: int) -> int:
    """Input minus output length along one axis (184 for the paper's depth 4)."""
    return 12 * 2**depth - 8


def input_size(output: int, depth: int) -> int | None:
    """Input length that gives exactly ``output``, or ``None`` if no input does."""
    size = output + context(depth)
    return size if output_size(size, depth) == output else None


def nearest_valid_inputs(size: int, depth: int) -> tuple[int, int]:
    """The nearest valid inputs below and above ``size`` (below may be 0 if there is none)."""
    step = 2**depth
    smallest = input_size(next(o for o in range(1, step + 1) if input_size(o, depth)), depth)
    assert smallest is not None  # there is always one output in the first period
    if size <= smallest:
        return 0, smallest
    k = (size - smallest) // step
    below = smallest + k * step
    return below, below if below == size else below + step


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop the spatial axes of ``x`` (N, C, *S) to those of ``like``, centred.

    Written with tensor sizes only, so that ``torch.jit.script`` keeps it valid for every input
    size (a trace would freeze the sizes it saw).  In a valid U-Net every difference is even.
    """
    for axis in range(2, x.dim()):
        diff = x.size(axis) - like.size(axis)
        if diff < 0 or diff % 2 != 0:
            msg = ": each spatial axis must shrink by a non-negative even amount (a valid size?)"
            raise ValueError("cannot centre-crop " + str(x.shape) + " to " + str(like.shape) + msg)
        x = x.narrow(axis, diff // 2, like.size(axis))
    return x


# after each convolution: BatchNorm, InstanceNorm (affine), GroupNorm (8 groups), none (paper)
NORMS = ("batch", "instance", "group", "none")


def resolve_norm(norm: str | None, batch_norm: bool) -> str:
    """The normalisation of a net: ``norm`` if given, else ``batch`` / ``none`` from the older
    ``batch_norm`` flag (checkpoints written before ``norm`` existed)."""
    if norm is None:
        return "batch" if batch_norm else "none"
    if norm not in NORMS:
        raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def norm_layer(norm: str, channels: int, ndim: int) -> nn.Module:
    """The normalisation module of ``norm`` (not ``none``) for ``channels`` channels."""
    if norm == "batch":
        return nn.BatchNorm2d(channels) if ndim == 2 else nn.BatchNorm3d(channels)
    if norm == "instance":
        cls = nn.InstanceNorm2d if ndim == 2 else nn.InstanceNorm3d
        return cls(channels, affine=True)
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class DoubleConv(nn.Module):
    """Two valid 3x3 convolutions, each followed by (a normalisation and) ReLU."""

    def __init__(self, cin: int, cout: int, ndim: int, norm: str) -> None:
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(conv(c, cout, kernel_size=3, padding=0, bias=norm == "none"))
            if norm != "none":
                layers.append(norm_layer(norm, cout, ndim))
            layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Down(nn.Module):
    """2x2 max-pool, then a double convolution that doubles the channels."""

    def __init__(self, cin: int, cout: int, ndim: int, norm: str) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2)
        self.conv = DoubleConv(cin, cout, ndim, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in range(2, x.dim()):  # an odd length would be floored: not a valid input
            if x.size(axis) % 2 != 0:
                msg = " has an odd spatial size (is the input a valid size? see UNet.output_shape)"
                raise ValueError("max-pool input " + str(x.shape) + msg)
        return self.conv(self.pool(x))


class Up(nn.Module):
    """2x2 up-convolution halving the channels, centre-cropped skip concatenated, double conv."""

    def __init__(self, cin: int, cout: int, ndim: int, norm: str) -> None:
        super().__init__()
        upconv = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.up = upconv(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin // 2 + cout, cout, ndim, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([center_crop(skip, x), x], dim=1))


class UNet(nn.Module):
    """U-Net with valid convolutions; ``ndim=2`` is the paper, ``ndim=3`` the same net in 3D.

    Parameters
    ----------
    in_channels, n_classes : input channels and output classes (logits, no softmax).
    base_channels : channels of the first level (64 in the paper), doubled per level.
    depth : number of max-pools (4 in the paper: 64 -> 1024 channels).
    ndim : 2 or 3 spatial dimensions.
    batch_norm : BatchNorm after every convolution (not in the paper); read only when ``norm``
        is ``None`` (nets saved before ``norm`` existed).
    norm : ``batch``, ``instance``, ``group`` or ``none`` (the paper). Instance and group norm
        use each tile's statistics: not exact under tiling (bench/tile_dependence.py).
    dropout : dropout probability at the end of the contracting path (0 disables it).
    """

    # torch.jit.script compiles ``forward`` only; the shape helpers stay Python
    __jit_unused_properties__ = ["factor", "context"]
    __jit_ignored_attributes__ = ["arch"]
    arch: dict[str, Any]

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        ndim: int = 2,
        batch_norm: bool = False,
        dropout: float = 0.5,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise InputError(f"ndim must be 2 or 3, got {ndim}")
        if depth < 1:
            raise InputError(f"depth must be >= 1, got {depth}")
        if in_channels < 1 or n_classes < 1 or base_channels < 1:
            raise InputError(
                "in_channels, n_classes and base_channels must be >= 1, got "
                f"{in_channels}, {n_classes}, {base_channels}"
            )
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        norm = resolve_norm(norm, batch_norm)
        self.arch = dict(in_channels=in_channels, n_classes=n_classes, base_channels=base_channels)
        self.arch.update(
            depth=depth, ndim=ndim, batch_norm=norm == "batch", dropout=dropout, norm=norm
        )
        self.ndim = ndim
        self.depth = depth
        chans = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(in_channels, chans[0], ndim, norm)
        self.downs = nn.ModuleList(Down(chans[i], chans[i + 1], ndim, norm) for i in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.ups = nn.ModuleList(
            Up(chans[i + 1], chans[i], ndim, norm) for i in reversed(range(depth))
        )
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.outc = conv(chans[0], n_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian init with std sqrt(2 / N), N the incoming connections of one unit (paper)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                fan_in = m.in_channels * math.prod(m.kernel_size)
            elif isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
                # stride == kernel: each output unit sees one tap of every input channel
                fan_in = m.in_channels
            else:
                continue
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, *S_in)`` -> logits ``(N, n_classes, *output_shape(S_in))``."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)

    @property
    def factor(self) -> int:
        """Total down-sampling factor ``2^depth``: valid sizes and tile offsets step by it."""
        return int(2**self.depth)

    @property
    def context(self) -> int:
        """Input minus output length along each spatial axis."""
        return context(self.depth)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape (572x572 -> 388x388).

        Raises ``ValueError`` naming the nearest valid inputs if the shape is not valid.
        """
        shape = self._spatial(input_shape, "input")
        out = []
        for s in shape:
            o = output_size(s, self.depth)
            if o is None:
                lo, hi = nearest_valid_inputs(s, self.depth)
                near = f"{lo}, {hi}" if lo else f"{hi}"
                raise InputError(
                    f"input {'x'.join(map(str, shape))} gives no valid output: "
                    f"nearest valid inputs {near}"
                )
            out.append(o)
        return tuple(out)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial input shape that gives exactly ``output_shape`` (388x388 -> 572x572)."""
        shape = self._spatial(output_shape, "output")
        out = []
        for o in shape:
            i = input_size(o, self.depth)
            if i is None:
                raise InputError(
                    f"output {'x'.join(map(str, shape))} is not reachable: valid outputs are "
                    f"{self.valid_output(o)} - {self.factor} * k (>= 1) for depth {self.depth}"
                )
            out.append(i)
        return tuple(out)

    def valid_output(self, at_least: int) -> int:
        """Smallest valid output length that is ``>= at_least``."""
        o = max(int(at_least), 1)
        while input_size(o, self.depth) is None:
            o += 1
        return o

    def _spatial(self, shape: Sequence[int], what: str) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.ndim:
            raise InputError(
                f"{what} shape {shape} must have {self.ndim} spatial axes for a {self.ndim}D UNet"
            )
        return shape
