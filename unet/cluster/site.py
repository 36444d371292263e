"""The SLURM site check of ``workflow/rules/site.smk``: no setting may still be a placeholder.

Nothing else is required of a site profile: the SLURM plugin guesses the account when none is
given (``sacctmgr``), and a job without ``slurm_partition`` goes to the partition that
``--slurm-partition-config`` selects, else to the cluster's default partition. So one partition
in ``default-resources``, no account, or a partition file are all fine. What is wrong is a
setting still at the shipped profile's placeholder ``EDIT_ME``: the message names the profile
file (or the command line) that set it, for the profiles this run actually uses.

Imports snakemake (its command-line parser) only to name that file, when there is a problem.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PLACEHOLDER = "EDIT_ME"
COMMAND_LINE = "the command line"
UNKNOWN_SOURCE = "the profile"


def placeholders(
    default_resources: Mapping[str, Any] | None, set_resources: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """``(option, scope, key, value)`` of every resource still at the placeholder.

    ``default_resources`` maps name -> snakemake ``Resource`` (or a plain value), or is None;
    ``set_resources`` maps a rule's name to such a mapping.
    """
    scopes: list[tuple[str, str, Mapping[str, Any]]] = [
        ("default-resources", "default-resources", default_resources or {})
    ]
    scopes += [
        ("set-resources", f"set-resources: {rule}", set_resources[rule])
        for rule in sorted(set_resources)
    ]
    found = []
    for option, scope, resources in scopes:
        for key, resource in resources.items():
            value = str(getattr(resource, "raw", resource)).strip("'\" ")
            if PLACEHOLDER in value:
                found.append((option, scope, key, value))
    return found


def site_problems(
    default_resources: Mapping[str, Any] | None,
    set_resources: Mapping[str, Mapping[str, Any]],
    locate: Callable[[], Mapping[str, str] | None] = lambda: option_sources(sys.argv),
) -> list[str]:
    """One message per placeholder, each naming where it was set.

    ``locate()`` (called only when there is a placeholder) maps a command-line option
    (``default-resources``) to the profile file that set it, or is None where that is unknown;
    by default it reads this process's command line (:func:`option_sources`).
    """
    found = placeholders(default_resources, set_resources)
    if not found:
        return []
    sources = locate()

    def where(option: str) -> str:
        return UNKNOWN_SOURCE if sources is None else sources.get(option, COMMAND_LINE)

    return [
        f"{where(option)}: site setting '{key}' under '{scope}' is still the placeholder {value!r}"
        for option, scope, key, value in found
    ]


def option_sources(argv: Sequence[str]) -> dict[str, str] | None:
    """Which profile file set each option of this ``snakemake`` command line (options absent
    from the result came from the command line); None where ``argv`` cannot be parsed.

    Snakemake merges its profiles with configargparse, which records the file each setting came
    from (a later profile replaces whole top-level keys, the command line replaces them all).
    Snakemake has changed into ``--directory`` by now, so relative profile paths are looked up
    from the directory it was started in (``$PWD``) first.
    """
    if not argv or not _is_snakemake(argv[0]):
        return None
    here = Path.cwd()
    for start in dict.fromkeys([os.environ.get("PWD") or str(here), str(here)]):
        parser = _parse(list(argv[1:]), Path(start))
        if parser is not None:
            return _sources(parser)
    return None


def _is_snakemake(argv0: str) -> bool:
    path = Path(argv0)
    return path.name == "snakemake" or (
        path.name == "__main__.py" and path.parent.name == "snakemake"
    )


def _parse(args: list[str], start: Path) -> Any:
    """Snakemake's own parser after parsing ``args`` from ``start``; None where that fails."""
    from snakemake.cli import parse_args

    if not start.is_dir():
        return None
    here = Path.cwd()
    try:
        os.chdir(start)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parser, _ = parse_args(args)
    except (SystemExit, Exception):  # a profile not found from here, a foreign command line
        return None
    finally:
        os.chdir(here)
    return parser


def _sources(parser: Any) -> dict[str, str]:
    sources: dict[str, str] = {}
    for source, settings in getattr(parser, "_source_to_settings", {}).items():
        kind, _, path = str(source).partition("|")
        if kind == "config_file":
            for key in settings:
                sources.setdefault(key.replace("_", "-"), path)
    return sources
