"""``unet export-model``: a model file -> a bioimage.io model package (spec 0.5, a zip file).

The package holds the description ``rdf.yaml``, the weights twice (``pytorch_state_dict`` with
:mod:`unet.model` as its self-contained architecture source, and ``torchscript`` scripted from it,
valid for every input size), a test input and its output, sample images, a cover image and a
model card.  The description states what a consumer (ilastik, deepImageJ, Fiji, QuPath, napari)
needs:

* input ``raw`` (batch, channel, [z,] y, x) of the training dtype, pre-processed as
  :func:`unet.io.normalize.to_unit` does (integers divided by their dtype's maximum);
* valid sizes ``min + n * step`` per convolved axis: ``step = 2^depth`` and ``min`` the
  smallest input with an output (188 and 16 for depth 4);
* output ``probabilities`` (background, foreground) after a softmax, smaller than the input by
  the net's context (184 for depth 4): the halo the net crops itself, which the spec records
  as the output size's ``offset`` (the spec's ``halo`` field is for halos still to be cropped).

Packaging and validation use ``bioimageio.spec`` (the ``bioimageio`` extra), offline: the
description names no URL, and nothing is downloaded.  Reading packages:
:mod:`unet.interop.bioimageio`.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import yaml

from unet import __version__
from unet import model as model_module
from unet.checkpoint import MODEL_FORMAT, read, resolve
from unet.errors import InputError
from unet.interop.bioimageio_rdf import PAPER, describe, smallest_input
from unet.io import outputs
from unet.io.normalize import to_unit
from unet.model import UNet

TEST_OUTPUT_AT_LEAST = 64  # px per convolved axis of the test output (2D; 3D: 16)


def scripted(model: UNet) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of ``model`` (in eval mode): valid for every valid input size."""
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; bioimage.io reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model.eval())


def export_model(
    model_path: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    authors: tuple[str, ...] = ("unet-em user",),
    license: str = "MIT",
    documentation: str | Path | None = None,
    sample: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write the bioimage.io package ``out`` (a ``.zip``) of the model file ``model_path``.

    Parameters
    ----------
    model_path : a model.pt of ``unet train`` or a shipped model's name (``isbi2012``).
    name : the package's name (default: derived from the architecture).
    authors : names of the people who trained the model.
    license : SPDX identifier of the weights' license.
    documentation : a Markdown model card (default: a generated one).
    sample : grey values to take the test input from (:func:`make_test_input`), e.g. the raw
        OME-Zarr array; default: a synthetic image.
    overwrite : replace an existing ``out``.
    """
    model_path, out = resolve(model_path), Path(out)
    if out.suffix.lower() != ".zip":
        raise InputError(f"{out}: a bioimage.io package is a .zip file")
    outputs.check_writable(out, overwrite, inputs=(model_path,))
    payload = read(model_path)
    if payload.get("format", MODEL_FORMAT) != MODEL_FORMAT:
        raise InputError(f"{model_path}: already a bioimage.io package")
    net = UNet(**payload["arch"])
    net.load_state_dict(payload["state_dict"])
    net.eval()
    dtype = np.dtype((payload["meta"].get("input") or {}).get("dtype", "uint8"))
    test_in = make_test_input(net, dtype, sample)
    from bioimageio.spec import load_model_description, save_bioimageio_package
    from bioimageio.spec.model.v0_5 import ModelDescr

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rdf = _write_files(folder, net, payload, test_in, documentation)
        rdf.update(
            format_version=ModelDescr.implemented_format_version,
            name=name or f"unet-em {net.ndim}D U-Net depth {net.depth}",
            authors=[{"name": a} for a in authors],
            license=license,
        )
        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        partial = outputs.partial_path(out)
        partial.unlink(missing_ok=True)
        with warnings.catch_warnings():  # bioimageio.spec leaves the files it hashed to the gc
            warnings.simplefilter("ignore", ResourceWarning)
            # an invalid description is a bug here: ValueError with the spec's reasons
            descr = load_model_description(folder / "rdf.yaml", perform_io_checks=True)
            save_bioimageio_package(descr, output_path=partial)
            del descr
            gc.collect()
        partial.replace(out)  # check_writable allowed replacing an existing out
    return out


def make_test_input(net: UNet, dtype: np.dtype, sample: Any = None) -> np.ndarray:
    """A valid-size test input ``(1, 1, *S)`` of ``dtype``: the centre of ``sample`` (an array
    or a zarr array, read lazily; ``(Z, Y, X)`` for a 2D net: its middle slice), or a synthetic
    image of smooth blobs."""
    target = TEST_OUTPUT_AT_LEAST if net.ndim == 2 else 16
    size = net.input_shape((net.valid_output(target),) * net.ndim)
    if sample is None:
        rng = np.random.default_rng(0)
        from scipy.ndimage import gaussian_filter

        blobs = gaussian_filter(rng.standard_normal(size), sigma=4.0)
        unit = (blobs - blobs.min()) / max(float(np.ptp(blobs)), 1e-12)
        sample = _from_unit(unit, dtype)
    shape = tuple(sample.shape)
    lead: tuple[int, ...] = ()
    if net.ndim == 2 and len(shape) == 3:
        lead, shape = (shape[0] // 2,), shape[1:]
    if len(shape) != net.ndim or any(s < t for s, t in zip(shape, size, strict=True)):
        raise InputError(
            f"sample of shape {tuple(sample.shape)} must have {net.ndim} axes of at least "
            f"{size}" + (" (or be a (z, y, x) stack)" if net.ndim == 2 else "")
        )
    lo = [(s - t) // 2 for s, t in zip(shape, size, strict=True)]
    crop = sample[lead + tuple(slice(b, b + t) for b, t in zip(lo, size, strict=True))]
    return np.ascontiguousarray(crop, dtype=dtype)[None, None]


def _from_unit(unit: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        return np.round(unit * np.iinfo(dtype).max).astype(dtype)
    return unit.astype(dtype)


def _write_files(
    folder: Path,
    net: UNet,
    payload: dict[str, Any],
    test_in: np.ndarray,
    documentation: str | Path | None,
) -> dict[str, Any]:
    """Write weights, architecture, test tensors, cover and card into ``folder``; return the
    description without format version, name, authors and license."""
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, folder / "weights.pt")
    scripted(net).save(str(folder / "weights.torchscript.pt"))
    shutil.copyfile(model_module.__file__, folder / "unet_model.py")
    with torch.no_grad():
        x = torch.from_numpy(to_unit(test_in))
        probs = torch.softmax(net(x), dim=1).numpy().astype(np.float32)
    np.save(folder / "test_input.npy", test_in)
    np.save(folder / "test_output.npy", probs)
    tifffile.imwrite(folder / "sample_input.tif", test_in)
    tifffile.imwrite(folder / "sample_output.tif", probs)
    _cover(folder / "cover.png", to_unit(test_in[0, 0]), probs[0, 1])
    card = folder / "README.md"
    if documentation is not None:
        shutil.copyfile(documentation, card)
    else:
        card.write_text(_card(net))
    return describe(folder, net, payload["meta"], test_in)


def _cover(path: Path, raw: np.ndarray, foreground: np.ndarray) -> None:
    """Input (cropped to the output) beside the foreground probability: a 2:1 PNG."""
    import matplotlib.image

    if raw.ndim == 3:  # 3D: the middle slice
        raw, foreground = raw[raw.shape[0] // 2], foreground[foreground.shape[0] // 2]
    off = [(r - f) // 2 for r, f in zip(raw.shape, foreground.shape, strict=True)]
    crop = raw[off[0] : off[0] + foreground.shape[0], off[1] : off[1] + foreground.shape[1]]
    matplotlib.image.imsave(path, np.concatenate([crop, foreground], axis=1), cmap="gray")


def _card(net: UNet) -> str:
    return (
        f"# unet-em {net.ndim}D U-Net\n\n"
        "A U-Net with valid convolutions (Ronneberger, Fischer & Brox, MICCAI 2015, "
        f"doi:{PAPER['doi']}) exported by `unet export-model` (unet-em {__version__}).\n\n"
        f"Architecture: `{net.arch}`.\n\n"
        f"Valid input sizes per convolved axis: {smallest_input(net.depth)} + {net.factor} n; "
        f"the output is {net.context} px smaller (the net's context).\n\n"
        "Input: grey values of the training dtype (integers are divided by their maximum). "
        "Output: softmax probabilities of background (membrane) and foreground (cell).\n\n"
        "# Validation\n\n"
        "No scores are recorded for this export; see the model card of the training run.\n"
    )
