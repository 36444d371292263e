"""Every setting of the config schema against its config dataclass: the same default, and the
same bounds (each ``minimum``/``maximum``/``exclusive*``/``enum``/``pattern`` and item bound of
the schema is probed: a value the schema accepts must construct the dataclass, a value it
refuses must raise ``InputError``).  A new schema setting without a dataclass field, or a new
field without a schema setting, fails here until it is added or listed below with a reason."""

from __future__ import annotations

import dataclasses
import doctest
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from unet.errors import InputError
from unet.evaluation.evaluate import EvaluateConfig
from unet.io.ingest import IngestConfig
from unet.prediction.config import PredictConfig
from unet.segmentation.config import SegmentConfig
from unet.settings import schema
from unet.stages.pipeline import WeightsConfig
from unet.training.augment import AugmentConfig
from unet.training.config import TrainConfig

# schema section -> its dataclass, and the keys of the section it holds (None: all)
SECTIONS: dict[str, tuple[type, set[str] | None]] = {
    "ingest": (IngestConfig, None),
    "dataset": (IngestConfig, {"voxel_size", "membrane_value"}),
    "weights": (WeightsConfig, None),
    "model": (TrainConfig, None),
    "train": (TrainConfig, None),
    "train.augment": (AugmentConfig, None),
    "predict": (PredictConfig, None),
    "segment": (SegmentConfig, None),
    "evaluate": (EvaluateConfig, None),
}
WORKFLOW_ONLY = {
    "predict.shards": "the number of SLURM array jobs: rule structure (workflow/rules/predict.smk)",
    "segment.shards": "the number of SLURM array jobs: rule structure (workflow/rules/segment.smk)",
    "segment.tune": "whether rule segment_tune runs first (workflow/rules/common.smk)",
    "train.augment": "a nested section (train.augment), checked as one",
}
API_ONLY = {  # dataclass fields that the workflow sets from elsewhere, or never
    (IngestConfig, "kind"): "from the dataset's labels and labels_format",
    (TrainConfig, "train_slices"): "dataset.train_slices",
    (TrainConfig, "val_slices"): "dataset.val_slices",
    (TrainConfig, "augment"): "the section train.augment",
    (PredictConfig, "processes"): "tests: local workers as threads",
    (PredictConfig, "max_in_flight"): "derived from workers x concurrent_blocks",
    (PredictConfig, "overwrite"): "the workflow never overwrites a final output",
    (SegmentConfig, "processes"): "tests: local workers as threads",
    (SegmentConfig, "overwrite"): "the workflow never overwrites a final output",
    (EvaluateConfig, "slices"): "dataset.eval_slices",
    (WeightsConfig, "separation"): "train.separation (the training target's border)",
}
# settings whose probe needs other settings to be consistent: (setting, value) -> kwargs
COMPANIONS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "model.ndim": lambda v: {"output_tile": (388,) * v},
    "evaluate.threshold": lambda v: {"seed_threshold": max(v, 0.9)},
    "evaluate.seed_threshold": lambda v: {"threshold": min(v, 0.5)},
    "train.val_every": lambda v: {"val_slices": (0,)} if v else {},
    "ingest.rescale": lambda v: {"kind": "raw"},
}
# known disagreements, each a request to the owner of the dataclass (xfail: strict)
GAPS: dict[str, str] = {}


def _settings() -> Iterator[tuple[str, str]]:
    for name, (_, keys) in SECTIONS.items():
        for key in schema.section(name):
            if keys is None or key in keys:
                yield name, key


SETTINGS = [f"{s}.{k}" for s, k in _settings()]


def _param(setting: str) -> Any:
    marks = [pytest.mark.xfail(reason=GAPS[setting], strict=True)] if setting in GAPS else []
    return pytest.param(setting, id=setting, marks=marks)


def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return dict(value) if isinstance(value, dict) else value


def _build(setting: str, value: Any) -> Any:
    name, _, key = setting.rpartition(".")
    cls = SECTIONS[name][0]
    companions = COMPANIONS.get(setting, lambda v: {})(value)
    return cls(**{**companions, key: value})


def _accepts(setting: str, value: Any) -> str | None:
    """``None`` if the dataclass takes ``value``, else why not."""
    try:
        _build(setting, value)
    except InputError as err:
        return f"{setting}={value!r}: the schema accepts it, the dataclass refuses it ({err})"
    return None


def _refuses(setting: str, value: Any) -> str | None:
    """``None`` if the dataclass raises ``InputError`` for ``value``, else what it did."""
    try:
        _build(setting, value)
    except InputError:
        return None
    except Exception as err:  # a TypeError or ZeroDivisionError: not a one-line input error
        return f"{setting}={value!r}: the schema refuses it, the dataclass raises {err!r}"
    return f"{setting}={value!r}: the schema refuses it, the dataclass accepts it"


def _step(node: dict[str, Any], bound: float) -> float:
    integer = node.get("type") == "integer" or "integer" in (node.get("type") or [])
    return 1 if integer else 1e-6 * max(1.0, abs(bound))


def _number_probes(node: dict[str, Any]) -> Iterator[tuple[Any, bool]]:
    """(value, accepted by the schema) at each numeric bound of ``node``."""
    for key, sign, inclusive in (
        ("minimum", -1, True),
        ("exclusiveMinimum", 1, False),
        ("maximum", 1, True),
        ("exclusiveMaximum", -1, False),
    ):
        if key in node:
            bound = node[key]
            d = _step(node, bound)
            if inclusive:
                yield bound, True
                yield bound + sign * d, False
            else:
                yield bound, False
                yield bound + sign * d, True


def _branch(node: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of a ``oneOf: [X, null]`` property."""
    for option in node.get("oneOf", []):
        option = schema.resolve(option["$ref"]) if "$ref" in option else option
        if option.get("type") != "null":
            return {**option, **{k: v for k, v in node.items() if k != "oneOf"}}
    return node


def _probes(setting: str) -> Iterator[tuple[Any, bool]]:
    section, _, key = setting.rpartition(".")
    node = _branch(schema.prop(section, key))
    default = node["default"]
    for value in node.get("enum", []):
        yield value, True
    if "enum" in node:
        yield (max(node["enum"]) + 1 if isinstance(node["enum"][0], int) else "bogus"), False
    yield from _number_probes(node)
    if "pattern" in node:
        yield "not a match: !", False
    items = node.get("items")
    if items is not None and isinstance(default, list) and default:
        items = schema.resolve(items["$ref"]) if "$ref" in items else items
        for value, ok in _number_probes(items):
            if not ok:  # one bad item in the default
                yield tuple([value, *default[1:]]), False
        if "minItems" in node:
            yield tuple(default[: node["minItems"] - 1]), False
        if "maxItems" in node:
            yield tuple(default + default[-1:] * (node["maxItems"] + 1 - len(default))), False


def test_schema_helper() -> None:
    assert doctest.testmod(schema).failed == 0
    with pytest.raises(TypeError, match="predict.slurm: a mapping default needs factory"):
        schema.default("predict", "slurm")
    assert schema.factory("predict", "slurm")() == {}


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_setting_has_a_field_and_every_field_a_setting(section: str) -> None:
    cls, keys = SECTIONS[section]
    fields = _fields(cls)
    missing = [
        f"{section}.{k}"
        for k in schema.section(section)
        if (keys is None or k in keys) and f"{section}.{k}" not in WORKFLOW_ONLY and k not in fields
    ]
    assert not missing, f"schema settings without a field in {cls.__name__}: {missing}"
    covered = {k for name, (c, _) in SECTIONS.items() if c is cls for k in schema.section(name)}
    extra = [f for f in fields if f not in covered and (cls, f) not in API_ONLY]
    assert not extra, f"{cls.__name__} fields without a schema setting: {extra}"


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTINGS)
def test_default_is_the_schemas(setting: str) -> None:
    if setting in WORKFLOW_ONLY:
        return
    section, _, key = setting.rpartition(".")
    field = _fields(SECTIONS[section][0])[key]
    value = (
        field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    )
    assert _plain(value) == schema.prop(section, key)["default"]


@pytest.mark.parametrize("setting", [_param(s) for s in SETTINGS])
def test_bounds_are_the_schemas(setting: str) -> None:
    if setting in WORKFLOW_ONLY:
        return
    problems = [(_accepts if ok else _refuses)(setting, value) for value, ok in _probes(setting)]
    problems = [p for p in problems if p is not None]
    assert not problems, "\n".join(problems)
