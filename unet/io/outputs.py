"""Outputs that are complete or absent: never half-written, never silently overwritten.

Every stage writes into ``<output>.partial`` and renames it to ``<output>`` only when the work
succeeded, so Snakemake and later stages never see an incomplete result under the final name.
An existing final output is only replaced when the caller says so (Snakemake deletes a job's
outputs itself before rerunning it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from unet.errors import InputError


def partial_path(path: str | Path) -> Path:
    """Where ``path`` is written while it is incomplete (``.`` is named by its real name)."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.with_name(path.name + ".partial")


def check_writable(
    path: str | Path, overwrite: bool = False, inputs: Sequence[str | Path | None] = ()
) -> None:
    """Raise if ``path`` exists and may not be replaced (it would lose somebody's data), or if
    writing it would touch one of the stage's ``inputs``, ``overwrite`` or not.

    An empty directory is not data (Snakemake creates the folders of a job's outputs).
    """
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists() and not overwrite and not _empty_dir(path):
        raise FileExistsError(
            f"{path}: output already exists; refusing to overwrite it "
            "(remove it, choose another path, or pass --overwrite)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"{parent}: is not a directory, cannot write {path.name} there")


def check_not_input(path: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """Raise :class:`InputError` if the output ``path`` (or its ``.partial``) is one of
    ``inputs``, lies inside one, or contains one: writing or replacing it would destroy the
    stage's own input.  Paths are compared resolved, so symlinks and ``..`` cannot hide it."""
    out = Path(path).resolve()
    tmp = partial_path(out)
    for given in inputs:
        if given is None:
            continue
        inp = Path(given).resolve()
        for target in (out, tmp):
            if target == inp or inp.is_relative_to(target) or target.is_relative_to(inp):
                raise InputError(
                    f"{path}: output would overwrite the stage's input {given}"
                    + (
                        f" (both resolve to {inp})"
                        if target == inp
                        else f" ({inp} and {target} nest)"
                    )
                    + "; choose another output path"
                )


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def remove(path: str | Path) -> None:
    """Remove a file or directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def staging(
    path: str | Path,
    overwrite: bool = False,
    keep_partial: bool = False,
    inputs: Sequence[str | Path | None] = (),
) -> Iterator[Path]:
    """Yield a temporary path for ``path``; on success move it into place atomically.

    ``inputs``: the stage's input paths, which ``path`` must not touch (:func:`check_not_input`).
    On an exception the partial output is removed (unless ``keep_partial``, used by resumable
    stages, whose partial output holds their progress) and the error propagates.
    """
    path = Path(path)
    check_writable(path, overwrite, inputs)
    tmp = partial_path(path)
    if not keep_partial:
        remove(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException as err:
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(tmp)  # e.g. ENOSPC inside a Zarr store: say where it happened
        if not keep_partial:
            remove(tmp)
        raise
    if overwrite or _empty_dir(path):
        remove(path)
    os.replace(tmp, path)
