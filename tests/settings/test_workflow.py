"""Per-dataset settings: overrides deep-merged over the global sections, checked by the schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from snakemake.utils import validate

from unet.errors import InputError
from unet.settings.workflow import deep_merge, load_schema, overridable, resolve

SCHEMAS = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
SCHEMA = load_schema(SCHEMAS / "config.schema.yaml")
SHEET_SCHEMA = load_schema(SCHEMAS / "datasets.schema.yaml")


def run_of(config: dict[str, Any], workdir: Path = Path("."), schema: Any = SCHEMA) -> Any:
    """Validate ``config`` as common.smk does (defaults filled), then resolve it."""
    config = copy.deepcopy(config)
    validate(config, str(SCHEMAS / "config.schema.yaml"))
    return resolve(config, schema, SHEET_SCHEMA, workdir)


def two_datasets(**b: Any) -> dict[str, Any]:
    return {
        "train": {"steps": 100, "augment": {"elastic": True}},
        "datasets": {
            "a": {"raw": "a.tif", "labels": "a_labels.tif", "train_slices": "0-3"},
            "b": {"raw": "b.tif", "labels": "b_labels.tif", "train_slices": "0-3", **b},
        },
    }


def test_deep_merge_replaces_leaves_and_lists_and_keeps_the_rest() -> None:
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2]}
    out = deep_merge(base, {"a": {"c": {"e": 30}}, "l": [5]})
    assert out == {"a": {"b": 1, "c": {"d": 2, "e": 30}}, "l": [5]}
    assert base["a"]["c"]["e"] == 3  # the base is not modified


def test_override_changes_one_dataset_only() -> None:
    run = run_of(two_datasets(overrides={"train": {"steps": 7, "augment": {"elastic": False}}}))
    a, b = run["a"].sections["train"], run["b"].sections["train"]
    assert (a["steps"], a["augment"]["elastic"]) == (100, True)
    assert (b["steps"], b["augment"]["elastic"]) == (7, False)
    assert b["lr"] == a["lr"] == 0.01 and b["augment"]["rotation"] == 180  # the rest kept
    assert run["a"].sections["evaluate"] == run["b"].sections["evaluate"]


def test_bad_override_names_dataset_key_and_value() -> None:
    with pytest.raises(
        InputError, match=r"config: datasets\.b\.overrides\.train\.steps: -1 is less"
    ):
        run_of(two_datasets(overrides={"train": {"steps": -1}}))
    with pytest.raises(
        InputError, match=r"datasets\.b\.overrides\.train: .*'stpes' was unexpected"
    ):
        run_of(two_datasets(overrides={"train": {"stpes": 5}}))


def test_unknown_section_and_global_only_key_are_refused() -> None:
    with pytest.raises(
        InputError, match=r"datasets\.b\.overrides: unknown section\(s\) \['trian'\]"
    ):
        run_of(two_datasets(overrides={"trian": {}}))
    with pytest.raises(
        InputError, match=r"overrides\.predict\.shards: predict\.shards cannot differ"
    ):
        run_of(two_datasets(overrides={"predict": {"shards": 2}}))


def test_a_section_added_to_the_schema_can_be_overridden() -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["segment"] = {
        "type": "object",
        "default": {},
        "additionalProperties": False,
        "properties": {"min_size": {"type": "integer", "minimum": 0, "default": 10}},
    }
    assert "segment" in overridable(schema) and "datasets" not in overridable(schema)
    config = two_datasets(overrides={"segment": {"min_size": 3}})
    config["segment"] = {"min_size": 10}
    config = copy.deepcopy(config)
    validate(
        {k: v for k, v in config.items() if k != "segment"}, str(SCHEMAS / "config.schema.yaml")
    )
    run = resolve(config, schema, SHEET_SCHEMA)
    assert run["a"].sections["segment"] == {"min_size": 10}
    assert run["b"].sections["segment"] == {"min_size": 3}
    config["datasets"]["b"]["overrides"]["segment"]["min_size"] = -1
    with pytest.raises(InputError, match=r"overrides\.segment\.min_size: -1 is less than"):
        resolve(config, schema, SHEET_SCHEMA)


def test_predict_only_dataset_takes_model_settings_from_its_model() -> None:
    config = two_datasets()
    config["datasets"]["c"] = {"raw": "c.tif", "model": "a", "overrides": {"train": {"steps": 3}}}
    with pytest.raises(
        InputError, match=r"datasets\.c\.overrides\.train: 'c' is predicted by the model of 'a'"
    ):
        run_of(config)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model": "nope"}, r"datasets\.b\.model names unknown dataset 'nope'"),
        ({"labels": None}, r"datasets\.b\.train_slices is set but the dataset has no labels"),
    ],
)
def test_dataset_entries_are_checked(change: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        run_of(two_datasets(**change))


def test_model_of_a_dataset_that_does_not_train_is_refused() -> None:
    config = two_datasets()
    config["datasets"]["c"] = {"raw": "c.tif"}
    config["datasets"]["d"] = {"raw": "d.tif", "model": "c"}
    with pytest.raises(InputError, match=r"dataset 'c' \(model of 'c'\) has no train_slices"):
        run_of(config)


def test_no_datasets_at_all_is_an_error() -> None:
    with pytest.raises(InputError, match="no datasets: list them under 'datasets' or in a sample"):
        run_of({})


def test_sheet_and_inline_datasets_join_and_must_not_share_names(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text(
        "name\traw\tlabels\ttrain_slices\toverrides\n"
        "c\tc.tif\tc_labels.tif\t0-1\t{evaluate: {threshold: 0.3}}\n"
    )
    config = {**two_datasets(), "sheet": "s.tsv"}
    run = run_of(config, tmp_path)
    assert list(run) == ["a", "b", "c"]
    c = run["c"]
    assert c.dataset["labels_format"] == "binary" and c.dataset["predict_slices"] == "all"
    assert (
        c.sections["evaluate"]["threshold"] == 0.3
        and run["a"].sections["evaluate"]["threshold"] == 0.5
    )
    assert c.where_setting("evaluate", "threshold") == (
        "s.tsv: line 2, column 'overrides' (dataset 'c'), key evaluate.threshold"
    )
    assert c.where_setting("train", "steps") == "config: train.steps (dataset 'c')"
    (tmp_path / "s.tsv").write_text("name\traw\na\tx.tif\n")
    with pytest.raises(
        InputError, match=r"s\.tsv: line 2, column 'name' \(dataset 'a'\): 'a' is also"
    ):
        run_of(config, tmp_path)


def test_bad_override_in_the_sheet_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text(
        "name\traw\toverrides\nc\tc.tif\t{predict: {tiles_per_batch: 0}}\n"
    )
    with pytest.raises(
        InputError,
        match=r"s\.tsv: line 2, column 'overrides' \(dataset 'c'\), "
        r"key predict\.tiles_per_batch: 0 is less",
    ):
        run_of({"sheet": "s.tsv"}, tmp_path)
