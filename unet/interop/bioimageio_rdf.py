"""The description (``rdf.yaml``, bioimage.io spec 0.5) of a model package that
:mod:`unet.interop.bioimageio_export` writes: the input and output tensors with their valid sizes,
pre- and post-processing, both weights formats and unet-em's own record of the model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet import __version__
from unet.checkpoint import MODEL_FORMAT
from unet.interop.bioimageio import ARCHITECTURE, CONFIG_KEY
from unet.model import UNet, nearest_valid_inputs

PAPER = {
    "text": "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015, LNCS 9351, pp. 234-241.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def smallest_input(depth: int) -> int:
    """The smallest valid input length (188 for depth 4): the ``min`` of the valid sizes."""
    return nearest_valid_inputs(1, depth)[1]


def describe(folder: Path, net: UNet, meta: dict[str, Any], test_in: np.ndarray) -> dict[str, Any]:
    """The description of the package files in ``folder`` without format version, name,
    authors and license; ``meta``: the model file's record of its training."""
    file = lambda name: {"source": name, "sha256": _sha256(folder / name)}  # noqa: E731
    return {
        "type": "model",
        "description": f"U-Net (Ronneberger et al. 2015) for EM membrane segmentation, "
        f"{net.ndim}D, valid convolutions, trained with unet-em {__version__}.",
        "cite": [PAPER],
        "documentation": file("README.md"),
        "covers": [file("cover.png")],
        "tags": ["unet", "semantic-segmentation", "electron-microscopy", f"{net.ndim}d", "pytorch"],
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": [_input(net, test_in, file)],
        "outputs": [_output(net, file)],
        "weights": _weights(net, file),
        "config": {
            CONFIG_KEY: {
                "format": MODEL_FORMAT,
                "version": __version__,
                "meta": json.loads(json.dumps(meta, default=str)),
            }
        },
    }


File = Callable[[str], dict[str, str]]  # a package file's name -> its source and checksum


def _spatial(net: UNet) -> str:
    return "zyx"[3 - net.ndim :]


def _input(net: UNet, test_in: np.ndarray, file: File) -> dict[str, Any]:
    """Tensor ``raw``: the valid sizes ``min + n * step``, scaled to [0, 1] as
    :func:`unet.io.normalize.to_unit` does."""
    pre: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if test_in.dtype.kind in "ui":
        gain = 1.0 / float(np.iinfo(test_in.dtype).max)
        pre.append({"id": "scale_linear", "kwargs": {"gain": gain, "offset": 0.0}})
        pre.append(pre[0])  # the spec would end with the input's own dtype otherwise
    return {
        "id": "raw",
        "description": "EM grey values, one channel",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": ["raw"]},
            *(
                {
                    "type": "space",
                    "id": a,
                    "size": {"min": smallest_input(net.depth), "step": net.factor},
                }
                for a in _spatial(net)
            ),
        ],
        "test_tensor": file("test_input.npy"),
        "sample_tensor": file("sample_input.tif"),
        "data": {"type": str(test_in.dtype)},
        "preprocessing": pre,
    }


def _output(net: UNet, file: File) -> dict[str, Any]:
    """Tensor ``probabilities``: smaller than ``raw`` by the net's context."""
    return {
        "id": "probabilities",
        "description": "softmax over (background = membrane, foreground = cell)",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": ["background", "foreground"]},
            *(
                {
                    "type": "space",
                    "id": a,
                    "size": {"tensor_id": "raw", "axis_id": a, "offset": -net.context},
                }
                for a in _spatial(net)
            ),
        ],
        "test_tensor": file("test_output.npy"),
        "sample_tensor": file("sample_output.tif"),
        "data": {"type": "float32", "range": [0.0, 1.0]},
        "postprocessing": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
    }


def _weights(net: UNet, file: File) -> dict[str, Any]:
    """The state dict with :mod:`unet.model` as its architecture, and TorchScript."""
    torch_version = torch.__version__.split("+")[0]
    return {
        "pytorch_state_dict": {
            **file("weights.pt"),
            "architecture": {
                **file("unet_model.py"),
                "callable": ARCHITECTURE,
                "kwargs": dict(net.arch),
            },
            "pytorch_version": torch_version,
        },
        "torchscript": {
            **file("weights.torchscript.pt"),
            "parent": "pytorch_state_dict",
            "pytorch_version": torch_version,
        },
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
