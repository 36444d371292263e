"""Exception types that the stages report as one line (:func:`unet.stage.run`).

Everything else (``TypeError``, ``KeyError``, a bare ``ValueError`` from a library, ...) is a
programming error: :func:`unet.stage.run` logs its traceback, so that it can be reported.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input the user can fix: a file, a value or a config setting. The message names the
    file or value and the problem."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type or dtype (a ``TypeError`` too, for callers that expect one)."""
