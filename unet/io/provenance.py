"""What made a result: package and library versions, the model's checksum and the settings,
recorded in every volume (``attrs["unet"]``, :func:`unet.io.ngff.provenance`) and in every
report (the evaluate stage's JSON, HTML and scores table)."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from unet import __version__

LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "zarr",
    "dask",
    "scikit-image",
    "tifffile",
    "imagecodecs",
    "snakemake",
)


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Python's and the installed :data:`LIBRARIES`' versions (``"absent"`` if not installed).

    >>> library_versions()["python"] == platform.python_version()
    True
    """
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def report(
    prediction: Mapping[str, Any], prediction_path: str | Path, **settings: Any
) -> dict[str, Any]:
    """The provenance block of a report on the prediction ``prediction_path`` whose ``unet``
    attributes are ``prediction``: its model (path and SHA-256), its predict settings, the
    report's own ``settings`` and the versions that computed it."""
    return {
        "package_version": __version__,
        "libraries": library_versions(),
        "prediction": str(prediction_path),
        "model": prediction.get("model"),
        "model_checksum": prediction.get("model_checksum"),
        "predict_config": prediction.get("config"),
        "predicted_with": prediction.get("package_version"),
        **settings,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def summary(record: Mapping[str, Any]) -> str:
    """One line of a :func:`report` block, for the Markdown scores table.

    >>> summary({"model_checksum": "ab" * 32, "package_version": "0.1.0",
    ...          "libraries": {"torch": "2.5.1", "python": "3.11.9"}})
    'model sha256 abababababab, unet-em 0.1.0, torch 2.5.1, python 3.11.9'
    """
    libraries = record.get("libraries") or {}
    checksum = str(record.get("model_checksum") or "unknown")[:12]
    parts = [f"model sha256 {checksum}", f"unet-em {record.get('package_version', '?')}"]
    parts += [f"{k} {libraries[k]}" for k in ("torch", "python") if k in libraries]
    return ", ".join(parts)
