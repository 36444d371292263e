"""A tiny synthetic EM dataset and config for real Snakemake runs of the workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

TINY_CONFIG: dict[str, Any] = {
    "model": {"base_channels": 4, "depth": 2, "batch_norm": True, "dropout": 0.0},
    "train": {
        "output_tile": [48, 48],
        "steps": 6,
        "val_every": 3,
        "checkpoint_every": 3,
        "workers": 0,
        "device": "cpu",
    },
    "weights": {"block": [1, 48, 48]},
    "ingest": {"chunks": [1, 48, 48]},
    "predict": {
        "block_shape": [1, 48, 48],
        "chunks": [1, 48, 48],
        "device": "cpu",
        "threads": 1,
        "cluster": "none",
        "progress_seconds": 5,
        "pyramid_levels": 2,
    },
    "evaluate": {"warping": True},
    "resources": {
        rule: {
            "mem_mb": 500,
            "runtime": 5,
            "cpus_per_task": 1,
            "gpu": 1 if rule in ("train", "predict") else 0,
        }
        for rule in ("ingest", "weights", "train", "predict", "evaluate")
    },
}


def write_tiny_dataset(
    folder: Path, shape: tuple[int, int, int] = (4, 96, 96)
) -> tuple[Path, Path]:
    """Square cells with 1-px membranes (0) and noisy grey values; returns (raw, labels) TIFFs."""
    rng = np.random.default_rng(0)
    mask = np.full(shape, 255, dtype=np.uint8)
    mask[:, ::24, :] = 0
    mask[:, :, ::24] = 0
    mask[:, shape[1] // 3 : shape[1] // 3 * 2, shape[2] // 2 - 8] = 0  # an extra wall
    img = np.clip(np.where(mask > 0, 170, 70) + rng.normal(0, 15, shape), 0, 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    raw, labels = folder / "raw.tif", folder / "labels.tif"
    tifffile.imwrite(raw, img, photometric="minisblack")
    tifffile.imwrite(labels, mask, photometric="minisblack")
    return raw, labels


def write_config(folder: Path, **overrides: Any) -> Path:
    """A config for one tiny dataset in ``folder`` (absolute paths), with section overrides."""
    raw, labels = write_tiny_dataset(folder / "data")
    config: dict[str, Any] = {
        "results": str(folder / "results"),
        "work": str(folder / "work"),
        "datasets": {
            "tiny": {
                "raw": str(raw),
                "labels": str(labels),
                "voxel_size": [50, 4, 4],
                "train_slices": "0-2",
                "eval_slices": "3",
                "predict_slices": "2-3",
            }
        },
        **{k: dict(v) for k, v in TINY_CONFIG.items()},
    }
    for key, value in overrides.items():
        config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the project's workflow in ``workdir`` with its config.yaml (never the demo config)."""
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_config(tmp_path)
    return tmp_path


SHEET_HEADER = ["name", "raw", "labels", "train_slices", "eval_slices", "predict_slices", "model"]


def write_sheet_run(folder: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    """Three datasets from a sample sheet: ``a`` and ``b`` train (each with its ``overrides``),
    ``c`` has no labels and is predicted by ``a``'s model.  Returns the config file."""
    rows = []
    for name in ("a", "b", "c"):
        raw, labels = write_tiny_dataset(folder / "data" / name)
        if name == "c":
            rows.append([name, str(raw), "", "", "", "all", "a"])
        else:
            rows.append([name, str(raw), str(labels), "0-2", "3", "2-3", ""])
    write_sheet(folder, rows, overrides)
    config = {
        "sheet": str(folder / "datasets.tsv"),
        "results": str(folder / "results"),
        "work": str(folder / "work"),
        **{k: dict(v) for k, v in TINY_CONFIG.items()},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_sheet(folder: Path, rows: list[list[str]], overrides: dict[str, dict[str, Any]]) -> None:
    """``folder/datasets.tsv`` with an ``overrides`` column (flow-style YAML) after ``rows``."""
    lines = ["\t".join([*SHEET_HEADER, "overrides"])]
    for row in rows:
        over = overrides.get(row[0])
        cell = yaml.safe_dump(over, default_flow_style=True).strip() if over else ""
        lines.append("\t".join([*row, cell]))
    (folder / "datasets.tsv").write_text("\n".join(lines) + "\n")


def set_overrides(folder: Path, name: str, overrides: dict[str, Any]) -> None:
    """Rewrite dataset ``name``'s ``overrides`` cell of ``folder/datasets.tsv``."""
    lines = (folder / "datasets.tsv").read_text().splitlines()
    for i, line in enumerate(lines):
        cells = line.split("\t")
        if cells[0] == name:
            cells[-1] = yaml.safe_dump(overrides, default_flow_style=True).strip()
            lines[i] = "\t".join(cells)
    (folder / "datasets.tsv").write_text("\n".join(lines) + "\n")
