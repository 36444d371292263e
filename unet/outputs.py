"""Outputs that are complete or absent: never half-written, never silently overwritten.

Every stage writes into ``<output>.partial`` and renames it to ``<output>`` only when the work
succeeded, so Snakemake and later stages never see an incomplete result under the final name.
An existing final output is only replaced when the caller says so (Snakemake deletes a job's
outputs itself before rerunning it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(path: str | Path) -> Path:
    """Where ``path`` is written while it is incomplete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def check_writable(path: str | Path, overwrite: bool = False) -> None:
    """Raise if ``path`` exists and may not be replaced (it would lose somebody's data)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path}: output already exists; refusing to overwrite it "
            "(remove it, choose another path, or pass --overwrite)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"{parent}: is not a directory, cannot write {path.name} there")


def remove(path: str | Path) -> None:
    """Remove a file or directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def staging(
    path: str | Path, overwrite: bool = False, keep_partial: bool = False
) -> Iterator[Path]:
    """Yield a temporary path for ``path``; on success move it into place atomically.

    On an exception the partial output is removed (unless ``keep_partial``, used by resumable
    prediction, whose partial volume carries per-block done markers) and the error propagates.
    """
    path = Path(path)
    check_writable(path, overwrite)
    tmp = partial_path(path)
    if not keep_partial:
        remove(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            remove(tmp)
        raise
    if overwrite:
        remove(path)
    os.replace(tmp, path)
