"""Reading bioimage.io model packages (spec 0.5) written by ``unet export-model``.

A package is a zip file (or a folder with its ``rdf.yaml``) whose ``pytorch_state_dict``
weights name this project's :class:`unet.model.UNet` as their architecture.  Reading it needs
neither the ``bioimageio`` packages nor the network: the description is YAML, the weights are
loaded with ``weights_only=True``.  Writing lives in :mod:`unet.interop.bioimageio_export`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from unet.errors import InputError

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")  # the names the spec allows, preferred first
PACKAGE_SUFFIXES = (".zip", ".yaml", ".yml")
CONFIG_KEY = "unet-em"  # our section of the description's ``config``
ARCHITECTURE = "UNet"  # the callable in the package's architecture source


def is_package(path: str | Path) -> bool:
    """Whether ``path`` names a bioimage.io package (by its suffix) rather than a model.pt."""
    return Path(path).suffix.lower() in PACKAGE_SUFFIXES


def read_package(path: str | Path) -> dict[str, Any]:
    """The model file payload (:mod:`unet.checkpoint`) stored in a bioimage.io package.

    Returns ``{"format", "arch", "state_dict", "meta"}``; ``InputError`` names the file and the
    problem when it is not a package of a :class:`unet.model.UNet`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such bioimage.io package")
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                rdf_name = next((n for n in RDF_NAMES if n in names), None)
                if rdf_name is None:
                    raise InputError(f"{path}: no {' or '.join(RDF_NAMES)} in the zip file")
                rdf = _parse(archive.read(rdf_name), path)
                source = _weights_source(rdf, path)
                if source not in names:
                    raise InputError(f"{path}: weights file {source!r} missing from the package")
                weights = archive.read(source)
        except zipfile.BadZipFile as err:
            raise InputError(f"{path}: not a readable zip file ({err})") from err
    else:
        rdf = _parse(path.read_bytes(), path)
        source = _weights_source(rdf, path)
        weights_path = path.parent / source
        if not weights_path.is_file():
            raise InputError(f"{path}: weights file {weights_path} not found beside it")
        weights = weights_path.read_bytes()
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise InputError(f"{path}: unreadable weights {source!r} ({err})") from err
    ours = rdf.get("config", {}).get(CONFIG_KEY, {})
    return {
        "format": ours.get("format", "bioimageio"),
        "arch": dict(rdf["weights"]["pytorch_state_dict"]["architecture"].get("kwargs", {})),
        "state_dict": state,
        "meta": dict(ours.get("meta", {})),
    }


def _parse(text: bytes, path: Path) -> dict[str, Any]:
    try:
        rdf = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: the model description is not valid YAML ({err})") from err
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise InputError(f"{path}: not a bioimage.io model description (type: model)")
    return rdf


def _weights_source(rdf: dict[str, Any], path: Path) -> str:
    """The state-dict file of a package whose architecture is our UNet."""
    entry = (rdf.get("weights") or {}).get("pytorch_state_dict")
    if not isinstance(entry, dict):
        raise InputError(
            f"{path}: the package has no pytorch_state_dict weights (only "
            f"{', '.join(rdf.get('weights') or {}) or 'none'}); unet predict needs them"
        )
    arch = entry.get("architecture") or {}
    if arch.get("callable") != ARCHITECTURE:
        raise InputError(
            f"{path}: architecture {arch.get('callable')!r} is not this project's "
            f"{ARCHITECTURE} (export the model with unet export-model)"
        )
    return str(entry["source"])
