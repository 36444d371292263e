"""The effective settings of every dataset in a workflow run, callable without Snakemake.

A run's datasets come from the config's ``datasets`` mapping, from its sample sheet
(:mod:`unet.settings.sheet`), or both.  Each dataset may override any global section (``train``,
``predict``, ``evaluate``, ... and any section added to the schema later)::

    effective[dataset][section] = deep_merge(config[section], dataset.overrides[section])

and every section a dataset overrides is validated again against that section's schema, so a
bad override fails before any job starts, with the dataset, the key and the value in the message.
The rules read their settings from the effective sections, so a changed override changes the
params of that dataset's jobs only (``--rerun-triggers params``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from unet.errors import InputError
from unet.settings.sheet import read_sheet

# Settings that shape the rules themselves (which jobs exist), so they cannot differ per dataset.
GLOBAL_ONLY = {
    ("predict", "shards"): "it sets the rule structure of every dataset",
    ("segment", "shards"): "it sets the rule structure of every dataset",
}
# Sections a dataset that does not train takes from the dataset whose model it uses.
MODEL_SECTIONS = ("model", "train")


@dataclass(frozen=True)
class DatasetSettings:
    """One dataset of a run.

    name : the dataset's name (paths and target rules).
    dataset : its entry (raw, labels, slices, model, ...), defaults filled in.
    sections : every global section with the dataset's overrides merged in.
    origin : where it was defined: ``None`` for the config's ``datasets``, else
        ``(sheet path, line)``.
    """

    name: str
    dataset: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]
    origin: tuple[str, int] | None = None

    def where(self, key: str) -> str:
        """Where the dataset's ``key`` (``train_slices``, ``overrides.train.steps``) is set."""
        if self.origin is None:
            return f"config: datasets.{self.name}" + (f".{key}" if key else "")
        sheet, line = self.origin
        column, _, rest = key.partition(".")
        if not column:
            return f"{sheet}: line {line} (dataset {self.name!r})"
        return f"{sheet}: line {line}, column {column!r} (dataset {self.name!r})" + (
            f", key {rest}" if rest else ""
        )

    def where_setting(self, section: str, key: str) -> str:
        """Where ``section.key`` of this dataset's effective settings comes from."""
        node: Any = self.dataset["overrides"].get(section, {})
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return f"config: {section}.{key} (dataset {self.name!r})"
            node = node[part]
        return self.where(f"overrides.{section}.{key}")


def load_schema(path: str | Path) -> dict[str, Any]:
    """A YAML schema file as a dict."""
    return dict(yaml.safe_load(Path(path).read_text()))


def overridable(schema: Mapping[str, Any]) -> list[str]:
    """The sections a dataset may override: every object-valued top-level key but ``datasets``."""
    return [
        name
        for name, prop in schema["properties"].items()
        if prop.get("type") == "object" and name != "datasets"
    ]


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: mappings recursively, everything else replaced.

    >>> deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]})
    {'a': {'b': 1, 'c': 3}, 'd': [2]}
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    sheet_schema: Mapping[str, Any],
    workdir: str | Path = ".",
) -> dict[str, DatasetSettings]:
    """Every dataset of ``config`` with its effective settings, checked against the schema.

    Parameters
    ----------
    config : the validated config (global sections have their defaults).
    schema : the config schema; ``sheet_schema``: the sample sheet's row schema.
    workdir : folder that a relative ``sheet`` path is relative to.
    """
    sections = overridable(schema)
    out: dict[str, DatasetSettings] = {}
    for name, entry, origin in _entries(config, schema, sheet_schema, Path(workdir)):
        probe = DatasetSettings(name, entry, {}, origin)
        unknown = sorted(set(entry["overrides"]) - set(sections))
        if unknown:
            raise InputError(
                f"{probe.where('overrides')}: unknown section(s) {unknown}; "
                f"a dataset may override {sections}"
            )
        for (section, key), why in GLOBAL_ONLY.items():
            if key in entry["overrides"].get(section, {}):
                raise InputError(
                    f"{probe.where(f'overrides.{section}.{key}')}: {section}.{key} cannot differ "
                    f"per dataset ({why}); set it in the global {section!r} section"
                )
        merged = {
            section: deep_merge(config.get(section, {}), entry["overrides"].get(section, {}))
            for section in sections
        }
        for section in entry["overrides"]:
            _validate(merged[section], _section_schema(schema, section), probe, section)
        out[name] = DatasetSettings(name, entry, merged, origin)
    if not out:
        raise InputError(
            "config: no datasets: list them under 'datasets' or in a sample sheet ('sheet')"
        )
    check_references(out)
    return out


def model_of(run: Mapping[str, DatasetSettings], name: str) -> str:
    """The dataset whose trained model predicts ``name`` (itself unless ``model`` is set)."""
    return run[name].dataset["model"] or name


def external_model(run: Mapping[str, DatasetSettings], name: str) -> str | None:
    """The model file that predicts ``name`` when its ``model`` is not a dataset of the run: a
    shipped model's name (``isbi2012``), a model.pt or a bioimage.io package; else ``None``."""
    model = run[name].dataset["model"]
    if model is None or model in run:
        return None
    from unet.checkpoint import resolve  # torch: only for runs that name one

    try:
        return str(resolve(model))
    except FileNotFoundError as err:
        raise InputError(
            f"{run[name].where('model')} names unknown dataset {model!r} ({err})"
        ) from None


def check_references(run: Mapping[str, DatasetSettings]) -> None:
    """Refuse datasets that need labels they lack or name a model that will not be trained."""
    for name, ds in run.items():
        entry = ds.dataset
        for key in ("train_slices", "val_slices", "eval_slices"):
            if entry[key] is not None and entry["labels"] is None:
                raise InputError(f"{ds.where(key)} is set but the dataset has no labels")
        if external_model(run, name) is not None:
            continue  # a shipped model or a model file: nothing to train
        source = model_of(run, name)
        if run[source].dataset["train_slices"] is None:
            raise InputError(
                f"{ds.where('model')}: dataset {source!r} (model of {name!r}) has no train_slices"
                " (to predict without training, set its model to a shipped model: isbi2012)"
            )
        if source != name:
            for section in MODEL_SECTIONS:
                if section in entry["overrides"]:
                    raise InputError(
                        f"{ds.where(f'overrides.{section}')}: {name!r} is predicted by the model "
                        f"of {source!r}, so its {section} settings are those of {source!r}"
                    )


def _entries(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    sheet_schema: Mapping[str, Any],
    workdir: Path,
) -> Iterator[tuple[str, dict[str, Any], tuple[str, int] | None]]:
    """(name, entry with defaults, origin) of every dataset, inline ones first."""
    dataset_schema = {**schema["$defs"]["dataset"], "$defs": schema["$defs"]}
    for name, entry in config.get("datasets", {}).items():
        probe = DatasetSettings(name, entry, {})
        yield name, _validate(entry, dataset_schema, probe, None), None
    sheet = config.get("sheet")
    if sheet is None:
        return
    inline = set(config.get("datasets", {}))
    for line, row in read_sheet(workdir / sheet, dict(sheet_schema)):
        name = row.pop("name")
        probe = DatasetSettings(name, row, {}, (sheet, line))
        if name in inline:
            raise InputError(f"{probe.where('name')}: {name!r} is also defined under 'datasets'")
        yield name, _validate(row, dataset_schema, probe, None), (sheet, line)


def _section_schema(schema: Mapping[str, Any], section: str) -> dict[str, Any]:
    return {**schema["properties"][section], "$defs": schema["$defs"]}


def _validate(
    data: Mapping[str, Any], schema: Mapping[str, Any], ds: DatasetSettings, section: str | None
) -> dict[str, Any]:
    """A copy of ``data`` with the schema's defaults filled in; ``InputError`` naming the key."""
    filled = copy.deepcopy(dict(data))
    errors = sorted(_DefaultFilling(schema).iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.path)
        if section is not None:
            where = ds.where_setting(section, key) if key else ds.where(f"overrides.{section}")
        else:
            where = ds.where(key)
        raise InputError(f"{where}: {err.message}")
    return filled


def _fill_defaults(validator_class: Any) -> Any:
    """A validator class that also fills each property's ``default`` (Snakemake's recipe)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator: Any, props: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_DefaultFilling = _fill_defaults(jsonschema.Draft202012Validator)
