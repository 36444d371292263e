"""The sample sheet: typed cells, its own schema, errors naming sheet, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet.errors import InputError
from unet.settings.sheet import read_sheet
from unet.settings.workflow import load_schema

SCHEMA = load_schema(
    Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "datasets.schema.yaml"
)
CONFIG_SCHEMA = load_schema(
    Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
)
HEADER = "name\traw\tlabels\tvoxel_size\ttrain_slices\tmodel\toverrides\n"


def sheet(tmp_path: Path, text: str, name: str = "datasets.tsv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tsv_cells_are_typed_and_empty_cells_left_out(tmp_path: Path) -> None:
    path = sheet(
        tmp_path,
        HEADER
        + "a\ta.tif\ta_lab.tif\t50,4,4\t0-9\t\t{train: {steps: 5}, evaluate: {threshold: 0.4}}\n"
        + "\n# a comment line\n"
        + "b\tb.zarr\t\t30 8 8\t\ta\t\n",
    )
    rows = read_sheet(path, SCHEMA)
    assert rows == [
        (
            2,
            {
                "name": "a",
                "raw": "a.tif",
                "labels": "a_lab.tif",
                "voxel_size": [50.0, 4.0, 4.0],
                "train_slices": "0-9",
                "overrides": {"train": {"steps": 5}, "evaluate": {"threshold": 0.4}},
            },
        ),
        (5, {"name": "b", "raw": "b.zarr", "voxel_size": [30.0, 8.0, 8.0], "model": "a"}),
    ]


def test_csv_with_a_quoted_overrides_cell(tmp_path: Path) -> None:
    path = sheet(
        tmp_path,
        'name,raw,membrane_value,overrides\nc,c.tif,255,"{predict: {tile_shape: [1, 64, 64]}}"\n',
        "d.csv",
    )
    assert read_sheet(path, SCHEMA) == [
        (
            2,
            {
                "name": "c",
                "raw": "c.tif",
                "membrane_value": 255,
                "overrides": {"predict": {"tile_shape": [1, 64, 64]}},
            },
        )
    ]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("a\ta.tif\t\t50,4\t\t\t", r"line 2, column 'voxel_size': \[50.0, 4.0\] is too short"),
        (
            "a\ta.tif\t\t50,x,4\t\t\t",
            r"line 2, column 'voxel_size': '50,x,4' is not a list of numbers",
        ),
        ("a\ta.tif\t\t\t0-9;12\t\t", r"line 2, column 'train_slices': '0-9;12' does not match"),
        ("a b\ta.tif\t\t\t\t\t", r"line 2, column 'name': 'a b' does not match"),
        ("a\t\t\t\t\t\t", r"line 2, column 'raw': 'raw' is a required property"),
        ("a\ta.tif\t\t\t\t\t{train: [", r"line 2, column 'overrides': not a YAML mapping"),
        ("a\ta.tif\t\t\t\t\tsteps=5", r"line 2, column 'overrides': 'steps=5' is not a mapping"),
        ("a\ta.tif\t\t\t\t", r"line 2 has 6 cells, the header 7"),
    ],
)
def test_bad_cells_name_sheet_line_and_column(tmp_path: Path, row: str, match: str) -> None:
    path = sheet(tmp_path, HEADER + row + "\n")
    with pytest.raises(InputError, match=r"datasets\.tsv: " + match):
        read_sheet(path, SCHEMA)


def test_bad_sheets_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.tsv: sample sheet not found"):
        read_sheet(tmp_path / "nope.tsv", SCHEMA)
    with pytest.raises(InputError, match=r"d\.xlsx: a sample sheet must end in \.tsv or \.csv"):
        read_sheet(sheet(tmp_path, "name\n", "d.xlsx"), SCHEMA)
    with pytest.raises(
        InputError, match=r"datasets\.tsv: line 1: unknown column\(s\) \['voxelsize'\]"
    ):
        read_sheet(sheet(tmp_path, "name\traw\tvoxelsize\n"), SCHEMA)
    with pytest.raises(
        InputError, match=r"column 'name': dataset\(s\) \['a'\] appear more than once"
    ):
        read_sheet(sheet(tmp_path, "name\traw\na\tx.tif\na\ty.tif\n"), SCHEMA)
    with pytest.raises(InputError, match=r"the sample sheet is empty"):
        read_sheet(sheet(tmp_path, ""), SCHEMA)


def test_every_dataset_key_has_a_sheet_column() -> None:
    """The sheet schema and the config schema's dataset must not drift apart."""
    dataset_keys = set(CONFIG_SCHEMA["$defs"]["dataset"]["properties"])
    assert set(SCHEMA["properties"]) == dataset_keys | {"name"}
