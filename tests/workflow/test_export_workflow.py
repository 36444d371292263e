"""The workflow outside this checkout: a dataset predicted by a shipped model or a model file
(no training, in the CLI and Snakemake), the workflow embedded in another one as a module
(`use rule * from ...`), and the rules' conda environments (`--sdm conda`)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from tests.workflow.conftest import REPO, SNAKEMAKE, TINY_CONFIG, snakemake, write_tiny_dataset
from unet.checkpoint import save_model, shipped_models
from unet.cli import main
from unet.errors import InputError
from unet.io import ngff
from unet.model import UNet
from unet.prediction.run import PredictConfig, predict_volume
from unet.settings.workflow import external_model, load_schema, resolve

SCHEMAS = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


def _run(datasets: dict[str, Any]) -> Any:
    config = copy.deepcopy({"datasets": datasets})
    validate(config, str(SCHEMAS / "config.schema.yaml"))
    return resolve(
        config,
        load_schema(SCHEMAS / "config.schema.yaml"),
        load_schema(SCHEMAS / "datasets.schema.yaml"),
    )


def test_a_dataset_may_name_a_shipped_model_or_a_model_file(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", UNet(base_channels=2, depth=2))
    run = _run(
        {
            "shipped": {"raw": "a.tif", "model": "isbi2012"},
            "file": {"raw": "b.tif", "model": str(tmp_path / "m.pt")},
            "trains": {"raw": "c.tif", "labels": "c_labels.tif", "train_slices": "0-3"},
            "by_dataset": {"raw": "d.tif", "model": "trains"},
        }
    )
    assert external_model(run, "shipped") == str(shipped_models()["isbi2012"])
    assert external_model(run, "file") == str(tmp_path / "m.pt")
    assert external_model(run, "trains") is None and external_model(run, "by_dataset") is None


def test_a_dataset_of_the_same_name_wins_and_unknown_names_fail() -> None:
    run = _run(
        {
            "isbi2012": {"raw": "a.tif", "labels": "l.tif", "train_slices": "0-3"},
            "b": {"raw": "b.tif", "model": "isbi2012"},
        }
    )
    assert external_model(run, "b") is None  # the dataset's own training
    with pytest.raises(InputError, match=r"datasets\.b\.model names unknown dataset 'nope' \("):
        _run({"b": {"raw": "b.tif", "model": "nope"}})
    with pytest.raises(InputError, match="set its model to a shipped model: isbi2012"):
        _run({"b": {"raw": "b.tif"}})


def test_cli_predict_by_shipped_name_equals_predict_from_its_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw.zarr"
    data = np.random.default_rng(0).integers(0, 256, (1, 64, 64), dtype=np.uint8)
    ngff.create(raw, data.shape, np.uint8, (1, 64, 64), (50.0, 4.0, 4.0))[:] = data
    args = ["--cluster", "none", "--device", "cpu"]
    assert main(["predict", "isbi2012", str(raw), str(tmp_path / "a.zarr"), *args]) == 0
    # the CLI's default blocks: the shipped net's instance norm makes a prediction depend on them
    config = PredictConfig(cluster="none", device="cpu")
    predict_volume(shipped_models()["isbi2012"], raw, tmp_path / "b.zarr", config)
    a = np.asarray(ngff.open_array(tmp_path / "a.zarr")[:])
    np.testing.assert_array_equal(a, np.asarray(ngff.open_array(tmp_path / "b.zarr")[:]))
    assert a.std() > 0  # membranes and cells, not a constant
    assert "isbi2012" in str(ngff.attributes(tmp_path / "a.zarr")["model"])


@pytest.mark.slow
def test_snakemake_predicts_a_raw_only_dataset_with_the_shipped_model(tmp_path: Path) -> None:
    raw, _ = write_tiny_dataset(tmp_path / "data", shape=(2, 64, 64))
    config = {
        "results": str(tmp_path / "results"),
        "work": str(tmp_path / "work"),
        "datasets": {"em": {"raw": str(raw), "model": "isbi2012"}},
        **{k: dict(v) for k, v in TINY_CONFIG.items() if k != "model"},
        "ingest": {"chunks": [1, 64, 64]},
        "predict": {**TINY_CONFIG["predict"], "block_shape": [1, 64, 64], "chunks": [1, 64, 64]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule train" not in result.stdout + result.stderr
    assert not (tmp_path / "results" / "em" / "model").exists()
    predicted = np.asarray(ngff.open_array(tmp_path / "results" / "em" / "prediction.zarr")[:])
    direct = tmp_path / "direct.zarr"
    predict_volume(
        "isbi2012",
        tmp_path / "work" / "em" / "raw.zarr",
        direct,
        PredictConfig(cluster="none", device="cpu", block_shape=(1, 64, 64), chunks=(1, 64, 64)),
    )
    np.testing.assert_array_equal(predicted, np.asarray(ngff.open_array(direct)[:]))
    assert (tmp_path / "results" / "em" / "segmentation.zarr").is_dir()


# ------------------------------------------------------------- embedded as a Snakemake module ---

HOST_SNAKEFILE = """\
configfile: "config.yaml"


module unet_em:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from unet_em as unet_*


rule all:
    default_target: True
    input:
        rules.unet_all.input,
"""


def _raw_only_config(tmp_path: Path) -> dict[str, Any]:
    raw, _ = write_tiny_dataset(tmp_path / "data", shape=(2, 64, 64))
    return {
        "results": str(tmp_path / "results"),
        "work": str(tmp_path / "work"),
        "datasets": {"em": {"raw": str(raw), "model": "isbi2012"}},
        **{k: dict(v) for k, v in TINY_CONFIG.items() if k != "model"},
        "ingest": {"chunks": [1, 64, 64]},
        "predict": {**TINY_CONFIG["predict"], "block_shape": [1, 64, 64], "chunks": [1, 64, 64]},
    }


@pytest.mark.slow
def test_the_workflow_runs_embedded_as_a_module(tmp_path: Path) -> None:
    """Another workflow (its own Snakefile, folder and config) uses every rule of this one; each
    rule log ends in the stage's summary line and the heavy rules write their benchmark."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_raw_only_config(tmp_path)))
    host = tmp_path / "Snakefile"
    host.write_text(HOST_SNAKEFILE.format(snakefile=REPO / "workflow" / "Snakefile"))
    cmd = [str(SNAKEMAKE), "-s", str(host), "--directory", str(tmp_path), "--cores", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule unet_predict:" in result.stdout + result.stderr
    for name in ("prediction", "segmentation"):
        assert ngff.is_volume(tmp_path / "results" / "em" / f"{name}.zarr"), name
    for rule, stage in [("ingest_raw", "ingest"), ("predict", "predict"), ("segment", "segment")]:
        log = (tmp_path / "logs" / rule / "em.log").read_text()
        assert re.search(rf"{stage}: done in \d+\.\d s: \S+\.zarr \(\(", log), (rule, log)
    for rule in ("predict", "segment"):
        assert (tmp_path / "logs" / "benchmarks" / "em" / f"{rule}.tsv").stat().st_size > 0


# ------------------------------------------------------------------ conda environments -------

ENVS = REPO / "workflow" / "envs"
# pyproject name -> conda-forge names
CONDA_NAMES = {
    "torch": ["pytorch"],
    "matplotlib": ["matplotlib-base"],
    "dask": ["dask", "distributed"],
    "snakemake": ["snakemake-minimal"],
}
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}  # Snakemake's own environment


def _name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", spec.strip())
    assert match, spec
    return match.group(0).lower()


def _env_names(path: Path) -> tuple[set[str], list[str]]:
    """The conda package names and the pip lines of an environment file."""
    env = yaml.safe_load(path.read_text())
    assert env["channels"][0] == "conda-forge", path
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = [line for d in env["dependencies"] if isinstance(d, dict) for line in d["pip"]]
    return conda, pip


def _required() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["cluster"]
    return {_name(d) for d in deps}


@pytest.mark.parametrize("env_file", [ENVS / "unet.yaml", REPO / "environment.yml"])
def test_environment_files_list_every_dependency(env_file: Path) -> None:
    conda, pip = _env_names(env_file)
    pip_names = {_name(line) for line in pip if not line.startswith("-")}
    for dep in _required() - (DRIVER_ONLY if env_file.parent == ENVS else set()):
        names = CONDA_NAMES.get(dep, [dep])
        assert all(n in conda for n in names) or dep in pip_names, (env_file.name, dep)
    python = {d for d in yaml.safe_load(env_file.read_text())["dependencies"] if d == "python=3.11"}
    assert python, "the rules' Python must be Snakemake's (its search path is appended)"


def test_every_rule_uses_the_rule_environment() -> None:
    """A pip line relative to the environment file (`-e .`) resolves inside .snakemake/conda,
    where Snakemake creates the environment from a copy: the rules' file has none, and its
    post-deploy script (found beside it by name) installs the package."""
    conda, pip = _env_names(ENVS / "unet.yaml")
    assert not [line for line in pip if line.startswith("-e") or line.startswith(".")]
    assert (ENVS / "unet.post-deploy.sh").read_text().startswith("#!/usr/bin/env bash\n")
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = rules.read_text()
        envs = re.findall(r"conda:\s*\n\s*\"([^\"]+)\"", text)
        assert all(env == "../envs/unet.yaml" for env in envs), (rules.name, envs)


def _venv(folder: Path) -> Path:
    """A fresh environment as conda would make it from unet.yaml, less the dependencies: a
    Python with pip and setuptools >= 70.1 (which builds editable installs without `wheel`)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "setuptools>=70.1"]
    if subprocess.run(pip, capture_output=True, timeout=300).returncode != 0:
        pytest.skip("no package index to install setuptools>=70.1 into a fresh venv from")
    return folder


def _post_deploy(env: Path, cwd: Path, source: str | None) -> subprocess.CompletedProcess[str]:
    """Run a copy of the post-deploy script as Snakemake does: from elsewhere, env activated."""
    script = cwd.parent / "hash123.post-deploy.sh"
    shutil.copy(ENVS / "unet.post-deploy.sh", script)
    variables = {k: v for k, v in os.environ.items() if k != "UNET_EM_SOURCE"}
    variables |= {"CONDA_PREFIX": str(env), "PATH": f"{env / 'bin'}:{os.environ['PATH']}"}
    if source is not None:
        variables["UNET_EM_SOURCE"] = source
    return subprocess.run(
        ["bash", str(script)], cwd=cwd, env=variables, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_post_deploy_installs_the_package_from_any_working_directory(tmp_path: Path) -> None:
    env = _venv(tmp_path / "env")
    run_dir = tmp_path / "run" / "work"
    run_dir.mkdir(parents=True)
    missing = _post_deploy(env, run_dir, None)
    assert missing.returncode == 1
    assert "UNET_EM_SOURCE='' is neither a unet-em checkout" in missing.stderr

    editable = _post_deploy(env, run_dir, str(REPO))
    assert editable.returncode == 0, editable.stdout + editable.stderr
    assert f"from {REPO / 'unet' / '__init__.py'}" in editable.stdout  # this checkout's code
    assert list(run_dir.iterdir()) == []  # nothing written where the run works

    wheels = tmp_path / "dist"
    build = [str(env / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps"]
    build += ["--no-build-isolation", "-w", str(wheels), str(REPO)]
    subprocess.run(build, check=True, capture_output=True, timeout=600, cwd=tmp_path)
    (wheel,) = wheels.glob("unet_em-*.whl")
    with zipfile.ZipFile(wheel) as archive:  # the defaults travel with the package
        assert "unet/settings/schemas/config.schema.yaml" in archive.namelist()
    installed = _post_deploy(env, run_dir, str(wheel))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert re.search(r"unet \S+ from \S+/site-packages/unet/__init__\.py", installed.stdout)
