"""Running one pipeline stage: logging into the rule's log file, one clear error, exit codes."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unet.errors import InputError, StageError

EXIT_FAILED = 1
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on a signal, rerun to resume


class Preempted(Exception):
    """Raised after a signal-triggered checkpoint: the job should be resubmitted."""


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
    **kwargs: Any,
) -> Any:
    """Call ``func`` as pipeline stage ``stage``; turn errors into one log line and an exit code.

    Bad input (:class:`unet.errors.InputError`, a missing or existing file), a stage that could
    not finish (:class:`unet.errors.StageError`: failed blocks), an operating-system
    error (read-only or full disk: the path and errno) and a diverged training
    (``FloatingPointError``) are reported as ``<stage>: <message>`` without a traceback; a
    preempted run exits with ``EXIT_PREEMPTED``.  Any other exception is a bug: its traceback
    goes to the log (and so to the rule's log file) before the exit.
    """
    setup_logging(log_file)
    log = logging.getLogger(f"unet.{stage}")
    try:
        return func(*args, **kwargs)
    except Preempted as err:
        log.warning("%s: preempted, checkpoint written (%s); rerun to resume", stage, err)
        sys.exit(EXIT_PREEMPTED)
    except (InputError, StageError, FloatingPointError) as err:  # the message says what to do
        log.error("%s: %s", stage, err)
        sys.exit(EXIT_FAILED)
    except OSError as err:
        log.error("%s: %s", stage, describe_os_error(err))
        sys.exit(EXIT_FAILED)
    except Exception as err:
        log.exception(
            "%s: internal error (%s: %s); please report it", stage, type(err).__name__, err
        )
        sys.exit(EXIT_FAILED)


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
