"""The README's "Your data" commands work as written on a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.workflow.conftest import REPO


def your_data_commands() -> list[str]:
    """The command lines of the README's "Your data" block, without their comments."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Your data", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block under 'Your data'"
    return [line.split("  #", 1)[0].strip() for line in block[1].splitlines() if line.strip()]


def fresh_clone(dest: Path) -> Path:
    """The files a clone of this tree has (tracked, and new ones not ignored) and its .venv."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")  # `make setup` is what `make test` already did
    return dest


def test_the_commands_are_the_documented_ones() -> None:
    commands = your_data_commands()
    assert all(c.startswith((".venv/bin/snakemake", "cat ")) for c in commands), commands
    assert any("--forcerun predict" in c for c in commands)


@pytest.mark.slow
def test_your_data_section_runs_as_written(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    outputs = []
    for command in your_data_commands():
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
        outputs.append(result.stdout + result.stderr)
    plan, run, up_to_date, rerun, scores = outputs
    assert "dataset=isbi2012" not in plan + run  # the demo dataset is no part of this run
    assert "Nothing to be done" in up_to_date
    assert re.search(r"^predict\s+1$", rerun, re.M) and "rule train" not in rerun
    assert "| stack_a |" in scores
    assert not (clone / "results").exists()  # the demo's folder: untouched
