"""The one source of every setting's default and bounds: ``workflow/schemas/config.schema.yaml``.

Snakemake fills a run's config from the schema; the config dataclasses
(:class:`unet.prediction.config.PredictConfig`, :class:`unet.training.config.TrainConfig`, ...)
take their defaults from it too (``pyramid_levels: int = default("predict", "pyramid_levels")``),
so the CLI and the workflow start from the same values.  Their bounds are checked in the
dataclasses' ``__post_init__``; ``tests/settings/test_defaults.py`` probes every schema bound
against them.

This module imports nothing from the package, so that every package may import it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# unet/settings/schemas is a link to workflow/schemas in the repository; a built wheel holds copies
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


@functools.cache
def config_schema() -> dict[str, Any]:
    """The config schema as a dict (read once per process)."""
    try:
        return dict(yaml.safe_load(SCHEMA.read_text()))
    except FileNotFoundError as err:  # an installed copy without its workflow folder
        raise ImportError(
            f"{SCHEMA}: the config schema, the source of every setting's default, is missing "
            "(install the package from its repository, or from a wheel built there)"
        ) from err


def section(name: str) -> dict[str, Any]:
    """The properties of section ``name``: a top-level section (``predict``), a nested one
    (``train.augment``) or ``dataset`` (one entry of ``datasets``)."""
    schema = config_schema()
    head, *rest = name.split(".")
    node = schema["$defs"]["dataset"] if head == "dataset" else schema["properties"][head]
    for part in rest:
        node = node["properties"][part]
    return dict(node["properties"])


def prop(section_name: str, key: str) -> dict[str, Any]:
    """The schema of one setting with its ``$ref`` resolved (the property's own keys win)."""
    node = dict(section(section_name)[key])
    ref = node.pop("$ref", None)
    if ref is not None:
        node = {**resolve(ref), **node}
    return node


def resolve(ref: str) -> dict[str, Any]:
    """The schema that a local reference ``#/$defs/<name>`` points at."""
    node: Any = config_schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def default(section_name: str, key: str) -> Any:
    """The default of ``section.key``, lists as tuples (a frozen dataclass's default must be
    hashable); a mapping default needs :func:`factory`.

    >>> default("predict", "block_shape"), default("train.augment", "flips")
    ((1, 1024, 1024), True)
    """
    value = prop(section_name, key)["default"]
    if isinstance(value, dict):
        raise TypeError(f"{section_name}.{key}: a mapping default needs factory(), not default()")
    return _frozen(value)


def factory(section_name: str, key: str) -> Callable[[], Any]:
    """A ``default_factory`` giving a fresh copy of the (mapping) default of ``section.key``."""
    value = prop(section_name, key)["default"]
    return lambda: copy.deepcopy(value)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value
