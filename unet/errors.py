"""Exception types that the stages report as one line (:func:`unet.stages.runner.run`).

Everything else (``TypeError``, ``KeyError``, a bare ``ValueError`` from a library, ...) is a
programming error: :func:`unet.stages.runner.run` logs its traceback, so that it can be reported.
"""

from __future__ import annotations

EXIT_FAILED = 1  # bad input or a failed stage: one line in the log
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on a signal, rerun to resume


class InputError(ValueError):
    """Bad input the user can fix: a file, a value or a config setting. The message names the
    file or value and the problem."""


class StageError(RuntimeError):
    """The stage ran but could not finish (e.g. blocks failed, whose tracebacks were logged as
    they happened); the message says what failed and how to go on."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type or dtype (a ``TypeError`` too, for callers that expect one)."""


def brief(err: BaseException) -> str:
    """``"TypeName: first line of the message"``: a library's multi-line message made fit for a
    one-line error."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else '?'}"
