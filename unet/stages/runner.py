"""Running one pipeline stage: logging into the rule's log file, one clear error, exit codes,
and one summary line on success."""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the exit statuses live in unet.errors, so that unet.training.state needs no import of stages
from unet.errors import EXIT_FAILED, EXIT_PREEMPTED, InputError, StageError


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, if given, to ``log_file`` (the Snakemake rule's ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` CPU threads in torch (the rule's ``threads``): oversubscribed
    cores slow convolutions down many times on shared nodes."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def run(
    stage: str,
    func: Callable[..., Any],
    *args: Any,
    log_file: str | Path | None = None,
    outputs: Sequence[str | Path] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``func`` as pipeline stage ``stage``; turn errors into one log line and an exit code.

    On success it logs one line, ``<stage>: done in <seconds> s: <output> (<shape> <dtype>)``
    per output, so no rule log stays empty; ``outputs`` defaults to the rule's outputs when
    called from a Snakemake script (the ``snakemake`` object of ``__main__``).

    Bad input (:class:`unet.errors.InputError`, a missing or existing file), a stage that could
    not finish (:class:`unet.errors.StageError`: failed blocks), an operating-system
    error (read-only or full disk: the path and errno) and a diverged training
    (``FloatingPointError``) are reported as ``<stage>: <message>`` without a traceback; a
    preempted run exits with ``EXIT_PREEMPTED``.  Any other exception is a bug: its traceback
    goes to the log (and so to the rule's log file) before the exit.
    """
    setup_logging(log_file)
    log = logging.getLogger(f"unet.{stage}")
    started = time.monotonic()
    try:
        result = func(*args, **kwargs)
    except (InputError, StageError, FloatingPointError) as err:  # the message says what to do
        log.error("%s: %s", stage, err)
        sys.exit(EXIT_FAILED)
    except OSError as err:
        log.error("%s: %s", stage, describe_os_error(err))
        sys.exit(EXIT_FAILED)
    except Exception as err:
        from unet.training.state import Preempted  # only training raises it (and needs torch)

        if isinstance(err, Preempted):
            log.warning("%s: preempted, checkpoint written (%s); rerun to resume", stage, err)
            sys.exit(EXIT_PREEMPTED)
        log.exception(
            "%s: internal error (%s: %s); please report it", stage, type(err).__name__, err
        )
        sys.exit(EXIT_FAILED)
    seconds = time.monotonic() - started
    paths = rule_outputs() if outputs is None else [str(path) for path in outputs]
    log.info("%s", summary(stage, seconds, paths))
    return result


def rule_outputs() -> list[str]:
    """The outputs of the Snakemake rule whose script is running (none outside Snakemake)."""
    snakemake = getattr(sys.modules.get("__main__"), "snakemake", None)
    output = getattr(snakemake, "output", None)
    return [str(path) for path in output] if output is not None else []


def summary(stage: str, seconds: float, outputs: Sequence[str]) -> str:
    """``<stage>: done in 3.2 s: a.zarr (4, 96, 96) uint8; b.json (1.2 KiB)``."""
    line = f"{stage}: done in {seconds:.1f} s"
    if outputs:
        line += ": " + "; ".join(f"{path} ({describe_output(path)})" for path in outputs)
    return line


def describe_output(path: str | Path) -> str:
    """Shape and dtype of a Zarr volume, size of a file; never raises."""
    path = Path(path)
    try:
        if path.is_dir():
            return _describe_folder(path)
        if path.is_file():
            return _size(path.stat().st_size)
    except OSError as err:  # a summary must never fail a stage that succeeded
        return f"not readable: {err.strerror or err}"
    return "not written"


def _describe_folder(path: Path) -> str:
    if not (path / "zarr.json").exists() and not (path / ".zgroup").exists():
        return "folder"
    from unet.io import ngff  # zarr only where a volume is described

    try:
        array = ngff.open_array(path)
    except Exception:  # a Zarr store that is not one volume
        return "Zarr store"
    return f"{tuple(array.shape)} {array.dtype}"


def _size(n_bytes: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(n_bytes), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{n_bytes} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system error: the path, the problem and the errno name.

    ``FileNotFoundError`` and friends raised by this package already carry a full message.
    """
    if err.errno is None or err.strerror is None:
        return str(err)
    name = errno.errorcode.get(err.errno, str(err.errno))
    where = err.filename if err.filename is not None else "?"
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    hint = {
        errno.ENOSPC: "; free space or choose another output folder, then rerun to resume",
        errno.EROFS: "; choose a writable output folder",
        errno.EACCES: "; check the permissions, or choose another output folder",
        errno.EDQUOT: "; the disk quota is exceeded",
    }.get(err.errno, "")
    return f"{where}: {err.strerror} ({name}){hint}"
