"""Every Snakemake script logs its errors into its rule's log: all of its work, settings objects
included, runs inside ``unet.stages.runner.run(..., log_file=...)``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.workflow.conftest import REPO

SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_work_runs_inside_stage_run_with_the_rule_log(script: Path) -> None:
    tree = ast.parse(script.read_text())
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n) == "run"]
    assert runs and all(any(k.arg == "log_file" for k in r.keywords) for r in runs), script.name
    # outside a function or lambda (which stage.run calls), only these may run at module level
    allowed = {
        "run",
        "main",
        "limit_threads",
        "globals",
        "get",
        "str",
        "tuple",
        "list",
        "dict",
        "int",
    }
    deferred: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.Lambda):
            deferred |= {id(n) for n in ast.walk(node) if n is not node}
    eager = [
        _name(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and id(n) not in deferred and _name(n) not in allowed
    ]
    assert eager == [], f"{script.name}: {eager} run before stage.run can log their errors"
