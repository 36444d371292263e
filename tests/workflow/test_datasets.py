"""A facility's run: three datasets from a sample sheet, per-dataset overrides, named targets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.workflow.conftest import set_overrides, snakemake, write_sheet_run
from tests.workflow.test_workflow import _jobs

OVERRIDES = {
    "a": {"train": {"steps": 4}, "evaluate": {"threshold": 0.4}},
    "b": {"weights": {"w0": 5.0}, "predict": {"tiles_per_batch": 2}},
}


@pytest.fixture
def sheet_run(tmp_path: Path) -> Path:
    write_sheet_run(tmp_path, OVERRIDES)
    return tmp_path


def _blocks(output: str) -> list[str]:
    """The job blocks of a dry run (each starts with a timestamp line)."""
    return re.split(r"^\[\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\]$", output, flags=re.M)


def _planned(output: str) -> dict[str, list[str]]:
    """{rule: sorted datasets} of the jobs a dry run lists."""
    jobs: dict[str, list[str]] = {}
    for block in _blocks(output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        dataset = re.search(r"wildcards: dataset=([\w-]+)", block)
        if rule:
            jobs.setdefault(rule[1], []).append(dataset[1] if dataset else "-")
    return {rule: sorted(names) for rule, names in jobs.items()}


def test_dry_run_plans_exactly_the_sheets_jobs_and_no_demo(sheet_run: Path) -> None:
    result = snakemake(sheet_run, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _planned(result.stdout) == {
        "ingest_raw": ["a", "b", "c"],
        "ingest_labels": ["a", "b"],
        "weights": ["a", "b"],
        "train": ["a", "b"],
        "predict": ["a", "b", "c"],
        "segment": ["a", "b", "c"],
        "evaluate": ["a", "b"],
        "scores": ["-"],
        "all": ["-"],
    }
    assert "isbi2012" not in result.stdout + result.stderr
    predict_c = next(b for b in _blocks(result.stdout) if "rule predict:" in b and "dataset=c" in b)
    assert f"{sheet_run}/results/a/model/model.pt" in predict_c  # c is predicted by a's model


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("train_all", {"train": ["a", "b"], "train_all": ["-"]}),
        ("predict_all", {"train": ["a", "b"], "predict": ["a", "b", "c"], "predict_all": ["-"]}),
        (
            "all_b",
            {"train": ["b"], "predict": ["b"], "segment": ["b"], "evaluate": ["b"], "all_b": ["-"]},
        ),
        ("segment_all", {"predict": ["a", "b", "c"], "segment": ["a", "b", "c"], "evaluate": None}),
        ("predict_c", {"train": ["a"], "predict": ["c"], "predict_c": ["-"]}),
        ("train_a", {"train": ["a"], "train_a": ["-"]}),
    ],
)
def test_named_targets(sheet_run: Path, target: str, expected: dict[str, list[str]]) -> None:
    result = snakemake(sheet_run, "-n", "--", target)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = _planned(result.stdout)
    assert {rule: planned.get(rule) for rule in expected} == expected
    assert "scores" not in planned or target.startswith("all")


def test_the_configfile_target_trap_and_the_working_forms(sheet_run: Path) -> None:
    """`--configfile` takes every following word as a file; targets go first or after `--`."""
    trap = snakemake(sheet_run, "train_all", "-n")  # right after the helper's --configfile
    assert trap.returncode != 0
    assert "No such file or directory: 'train_all'" in trap.stdout + trap.stderr
    assert snakemake(sheet_run, "-n", "--", "train_all").returncode == 0
    none = snakemake(sheet_run, "-n", "--", "train_c")  # c does not train: no such target
    assert none.returncode != 0 and "No rule to produce train_c" in none.stdout + none.stderr


def test_a_bad_override_stops_the_dry_run_naming_sheet_line_and_key(sheet_run: Path) -> None:
    set_overrides(sheet_run, "b", {"predict": {"block_shape": [1, 42, 42], "chunks": [1, 42, 42]}})
    result = snakemake(sheet_run, "-n")
    assert result.returncode != 0
    assert (
        f"{sheet_run}/datasets.tsv: line 3, column 'overrides' (dataset 'b'), key "
        "predict.block_shape: block shape (1, 42, 42) must be a multiple of the net's "
        "down-sampling factor (1, 4, 4)"
    ) in result.stdout + result.stderr
    assert "Nothing was run." in result.stdout + result.stderr


@pytest.mark.slow
def test_run_then_one_override_replans_one_dataset_and_one_stage_reruns(sheet_run: Path) -> None:
    result = snakemake(sheet_run, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in (sheet_run / "results").iterdir()) == ["a", "b", "c", "scores.md"]
    assert "Nothing to be done" in snakemake(sheet_run, "-n").stdout

    # b's threshold changes: only b's evaluation (and the score table) is planned again
    set_overrides(sheet_run, "b", {**OVERRIDES["b"], "evaluate": {"threshold": 0.3}})
    plan = _planned(snakemake(sheet_run, "-n").stdout)
    assert plan == {"evaluate": ["b"], "scores": ["-"], "all": ["-"]}
    set_overrides(sheet_run, "b", OVERRIDES["b"])

    # a's training changes: a's model, and what it predicts (a and c), are planned again
    set_overrides(sheet_run, "a", {**OVERRIDES["a"], "train": {"steps": 5}})
    plan = _planned(snakemake(sheet_run, "-n").stdout)
    assert plan == {
        "train": ["a"],
        "predict": ["a", "c"],
        "segment": ["a", "c"],
        "evaluate": ["a"],
        "scores": ["-"],
        "all": ["-"],
    }
    set_overrides(sheet_run, "a", OVERRIDES["a"])
    assert "Nothing to be done" in snakemake(sheet_run, "-n").stdout

    # rerun one stage of one dataset: --forcerun predict with b's target only
    stamps = {p: p.stat().st_mtime_ns for p in (sheet_run / "results").glob("*/prediction.zarr")}
    rerun = snakemake(sheet_run, "--cores", "2", "--forcerun", "predict", "--", "all_b")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert _jobs(rerun.stderr) == {
        "predict": 1,
        "segment": 1,
        "evaluate": 1,
        "all_b": 1,
        "total": 4,
    }
    for path, stamp in stamps.items():
        changed = path.stat().st_mtime_ns != stamp
        assert changed == (path.parent.name == "b"), path


def test_segment_tune_is_planned_for_labelled_val_slices_only(tmp_path: Path) -> None:
    """segment_tune runs for a dataset with labels and val_slices (trained or predicted by
    another's model) unless its segment.tune is false; its segment job reads the choice."""
    write_sheet_run(tmp_path, {})
    data = {
        n: (tmp_path / "data" / n / "raw.tif", tmp_path / "data" / n / "labels.tif") for n in "ab"
    }
    rows = [  # name, raw, labels, train, val, eval, predict, model, overrides
        ["a", *data["a"], "0-1", "2", "3", "2-3", "", ""],
        ["b", *data["b"], "0-2", "", "3", "2-3", "", ""],  # no val_slices
        ["c", data["b"][0], "", "", "", "", "all", "a", ""],  # no labels
        ["d", *data["b"], "", "2", "3", "2-3", "a", ""],  # a's model
        ["e", *data["a"], "0-1", "2", "3", "2-3", "", "{segment: {tune: false}}"],
    ]
    header = "name raw labels train_slices val_slices eval_slices predict_slices model overrides"
    lines = ["\t".join(header.split()), *("\t".join(map(str, row)) for row in rows)]
    (tmp_path / "datasets.tsv").write_text("\n".join(lines) + "\n")
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = _planned(result.stdout)
    assert planned["segment_tune"] == ["a", "d"]
    assert planned["segment"] == ["a", "b", "c", "d", "e"]
    blocks = {
        (rule[1], name[1]): block
        for block in _blocks(result.stdout)
        if (rule := re.search(r"^rule (\w+):", block, re.M))
        and (name := re.search(r"wildcards: dataset=(\w+)", block))
    }
    assert f"{tmp_path}/results/a/model/model.pt" in blocks[("segment_tune", "d")]
    for name in "abcde":
        tuned = f"{tmp_path}/results/{name}/segment_settings.json"
        assert (tuned in blocks[("segment", name)]) == (name in "ad"), name

    # segment.shards: every job of the split segmentation reads the choice
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["segment"] = {"shards": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--", "segment_a")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = r"^rule segment_(prepare|shard|finalize):"
    split = [b for b in _blocks(result.stdout) if re.search(steps, b, re.M)]
    assert len(split) == 4 and _planned(result.stdout)["segment_tune"] == ["a"]
    assert all(f"{tmp_path}/results/a/segment_settings.json" in b for b in split)
