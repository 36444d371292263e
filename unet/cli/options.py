"""What every subcommand shares: the ``--config`` file and its sections, settings checked against
their dataclass, and the options that several subcommands take."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from unet.errors import InputError, brief


def load_config(path: str | None) -> dict[str, Any]:
    """The ``--config`` YAML as a mapping of sections (empty without one)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no such config file") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or brief(err)
        raise InputError(f"{path}: not valid YAML ({where}{problem})") from err
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file must be a mapping of sections")
    return data


def section(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Section ``name`` of ``--config`` (empty if absent), as a fresh dict."""
    return dict(load_config(getattr(args, "config", None)).get(name) or {})


def override(fields: dict[str, Any], args: argparse.Namespace, keys: tuple[str, ...]) -> None:
    """Put each flag of ``keys`` that was given into ``fields``: explicit flags win."""
    for key in keys:
        if getattr(args, key, None) is not None:
            fields[key] = getattr(args, key)


def settings(cls: Any, fields: dict[str, Any], args: argparse.Namespace, name: str) -> Any:
    """``cls(**fields)``; an unknown setting is bad input naming the config file and section."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        where = getattr(args, "config", None) or "options"
        raise InputError(
            f"{where}: unknown setting(s) {', '.join(unknown)} in section {name} "
            f"(known: {', '.join(sorted(known))})"
        )
    return cls(**fields)


def finish(
    p: argparse.ArgumentParser,
    func: Callable[[argparse.Namespace], Any],
    *,
    config: bool = True,
    overwrite: str | None = None,
) -> None:
    """The options every subcommand ends with (``--overwrite`` of an existing ``overwrite``
    where given, ``--config``, ``--log``), and ``func``, which runs it."""
    if overwrite is not None:
        p.add_argument("--overwrite", action="store_true", help=f"replace an existing {overwrite}")
    if config:
        p.add_argument("--config", help="YAML with the pipeline's sections (config/config.yaml)")
    p.add_argument("--log", help="also log to this file")
    p.set_defaults(func=func)
