"""The sample sheet: one dataset per row of a TSV or CSV file, validated by its own schema.

A row is read cell by cell as its column's schema type says (``workflow/schemas/
datasets.schema.yaml``): an empty cell is left out (the config schema's default applies), a list
column such as ``voxel_size`` holds numbers separated by commas or spaces, ``overrides`` holds a
YAML (or JSON) mapping, integer and number columns hold one number, and every other cell is a
string.  Every error names the sheet, the line
and the column.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from unet.errors import InputError


def read_sheet(path: str | Path, schema: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The rows of the sheet at ``path`` as ``(line, row)``, each row validated by ``schema``.

    Parameters
    ----------
    path : a ``.tsv`` or ``.csv`` file whose first line names the columns.
    schema : the row schema (``datasets.schema.yaml``).

    Returns
    -------
    ``(line number in the file, {column: value})`` per non-empty row, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: sample sheet not found (config: sheet)")
    delimiter = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())
    if delimiter is None:
        raise InputError(f"{path}: a sample sheet must end in .tsv or .csv")
    columns = schema["properties"]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: the sample sheet is empty (it needs a header line)")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in columns]
        if unknown:
            raise InputError(
                f"{path}: line 1: unknown column(s) {unknown}; the columns are {list(columns)}"
            )
        rows: list[tuple[int, dict[str, Any]]] = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if len(cells) != len(header):
                raise InputError(
                    f"{path}: line {line} has {len(cells)} cells, the header {len(header)}"
                )
            row = {
                col: _cell(path, line, col, cell.strip(), columns[col])
                for col, cell in zip(header, cells, strict=True)
                if cell.strip()
            }
            _validate(path, line, row, schema)
            rows.append((line, row))
    names = [row["name"] for _, row in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{path}: column 'name': dataset(s) {twice} appear more than once")
    return rows


def _cell(path: Path, line: int, column: str, text: str, schema: dict[str, Any]) -> Any:
    """One cell as the type its column's schema names."""
    kind = schema.get("type")
    if kind == "array":
        try:
            return [float(v) for v in re.split(r"[,\s]+", text.strip("[]() "))]
        except ValueError:
            raise InputError(
                f"{path}: line {line}, column {column!r}: {text!r} is not a list of numbers "
                "(e.g. 50,4,4)"
            ) from None
    if kind == "object":
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            raise InputError(
                f"{path}: line {line}, column {column!r}: not a YAML mapping ({problem})"
            ) from None
        if not isinstance(value, dict):
            raise InputError(
                f"{path}: line {line}, column {column!r}: {text!r} is not a mapping "
                "(e.g. {train: {steps: 500}})"
            )
        return value
    kind_name = {"integer": "an integer", "number": "a number"}
    if kind in kind_name:
        try:
            return int(text) if kind == "integer" else float(text)
        except ValueError:
            raise InputError(
                f"{path}: line {line}, column {column!r}: {text!r} is not {kind_name[kind]}"
            ) from None
    return text


def _validate(path: Path, line: int, row: dict[str, Any], schema: dict[str, Any]) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(row), key=str)
    if errors:
        err = errors[0]
        if err.path:
            column = err.path[0]
        else:  # a required column left empty
            column = next((c for c in err.validator_value if c not in row), "?")
        raise InputError(
            f"{path}: line {line}, column {column!r}: {err.message}"
            + (f" ({len(errors) - 1} more problem(s) in this row)" if len(errors) > 1 else "")
        )
