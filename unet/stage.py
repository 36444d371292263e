"""Running one pipeline stage: logging into the rule's log file, one clear error, exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

    Bad input (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError) and
    a diverged training (FloatingPointError) are reported as ``<stage>: <message>`` without a
    traceback; a preempted run exits with ``EXIT_PREEMPTED``.
    """
    setup_logging(log_file)
    log = logging.getLogger(f"unet.{stage}")
    try:
        return func(*args, **kwargs)
    except Preempted as err:
        log.warning("%s: preempted, checkpoint written (%s); rerun to resume", stage, err)
        sys.exit(EXIT_PREEMPTED)
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        FloatingPointError,  # training diverged: the message says what to change
    ) as err:
        log.error("%s: %s", stage, err)
        sys.exit(EXIT_FAILED)
