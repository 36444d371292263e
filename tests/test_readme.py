"""The README's command-line block runs exactly as written, in a fresh folder beside the
bundled data and configs (the commands a newcomer copies first)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> list[str]:
    """The commands of the first ```bash block after ``heading`` (comments and blanks dropped)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no bash block after {heading!r}"
    commands, pending = [], ""
    for line in block.group(1).splitlines():
        command = pending + line.split("  #")[0].strip()
        if command.endswith("\\"):  # continued on the next line
            pending = command[:-1] + " "
            continue
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def test_the_command_line_block_is_what_this_test_runs() -> None:
    commands = readme_block("### Command line")
    verbs = [shlex.split(c)[1] for c in commands]
    assert verbs[:6] == ["ingest", "ingest", "weights", "train", "predict", "evaluate"]
    assert all(shlex.split(c)[0] == "unet" for c in commands)


@pytest.mark.slow
def test_readme_command_line_block_runs_as_written(tmp_path: Path) -> None:
    for name in ("data", "config"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in readme_block("### Command line"):
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert 0 <= scores["pixel_error"] < 0.5  # the quick run learned something
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "prediction.zarr").is_dir()
