"""Model files: the architecture plus the weights, loaded safely (``weights_only=True``).

A model file is ``{"format": MODEL_FORMAT, "arch": UNet.arch, "state_dict": ..., "meta": {...}}``.
A bioimage.io package (``.zip`` or ``rdf.yaml``, :mod:`unet.interop.bioimageio`) reads as the same
payload, and the name of a model shipped in ``unet/models/`` (``isbi2012``) resolves to its file
(:func:`resolve`).  Full training checkpoints (optimizer, RNG, step) live in
:mod:`unet.training.state`.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from unet.errors import InputError, brief
from unet.interop.bioimageio import is_package, read_package
from unet.model import UNet, resolve_norm

MODEL_FORMAT = "unet-em-model/1"


def canonical_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` with ``norm`` resolved and ``batch_norm`` consistent with it, so that a record
    written before ``norm`` existed compares equal to the same net written after."""
    norm = resolve_norm(arch.get("norm"), bool(arch.get("batch_norm", False)))
    return {**arch, "batch_norm": norm == "batch", "norm": norm}


def shipped_models() -> dict[str, Path]:
    """The pretrained models shipped with the package: name -> model file."""
    root = Path(str(resources.files("unet") / "models"))
    return {p.parent.name: p for p in sorted(root.glob("*/model.pt"))}


def resolve(model: str | Path) -> Path:
    """A model file, package or the name of a shipped model (``isbi2012``) -> its path.

    An existing path wins over a shipped name; anything else is ``FileNotFoundError`` naming
    the shipped models.
    """
    path = Path(model)
    if path.exists():
        return path
    shipped = shipped_models()
    if str(model) in shipped:
        return shipped[str(model)]
    raise FileNotFoundError(
        f"{model}: no such model/checkpoint file or bioimage.io package, nor a shipped "
        f"model ({', '.join(shipped) or 'none shipped'})"
    )


def save_model(path: str | Path, model: UNet, meta: dict[str, Any] | None = None) -> None:
    """Write ``model`` atomically (temporary file + rename)."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": MODEL_FORMAT,
        "arch": dict(model.arch),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint/model file or bioimage.io package (or a shipped model by name) with
    ``weights_only=True``; clear errors for bad files."""
    path = resolve(path)
    if is_package(path):
        return read_package(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model/checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise InputError(f"{path}: not a readable checkpoint ({brief(err)})") from err
    if not isinstance(payload, dict) or "arch" not in payload:
        raise InputError(f"{path}: not a unet-em checkpoint (no architecture record)")
    return payload


def load_model(path: str | Path, arch: dict[str, Any] | None = None) -> UNet:
    """Rebuild the model stored in ``path`` (on the CPU, in eval mode).

    ``arch``: if given, the stored architecture must equal it (ValueError naming the differences).
    """
    payload = read(path)
    stored = dict(payload["arch"])
    if arch is not None:
        have, want = canonical_arch(stored), canonical_arch(arch)
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in diff.items())
            raise InputError(f"{path}: checkpoint is for another architecture ({detail})")
    try:
        model = UNet(**stored)
    except TypeError as err:
        raise InputError(f"{path}: unknown architecture record {stored} ({err})") from err
    key = "state_dict" if "state_dict" in payload else "model"
    try:
        model.load_state_dict(payload[key])
    except (RuntimeError, KeyError) as err:
        raise InputError(f"{path}: weights do not fit the architecture {stored} ({err})") from err
    return model.eval()


def checksum(path: str | Path) -> str:
    """SHA-256 of a file (model provenance in prediction outputs and resume layout hashes)."""
    digest = hashlib.sha256()
    with open(resolve(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
