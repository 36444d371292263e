"""The SLURM path: profiles/slurm, its site check, and a real run through a local SLURM cluster.

The cluster test starts a real single-node SLURM (tests/slurm/start-local-slurm.sh: munge,
MariaDB, slurmdbd, slurmctld, slurmd, one fake GPU), runs the workflow on the tiny synthetic
config with ``--profile profiles/slurm --profile tests/slurm/profile`` and asks ``sacct`` what
really ran. Where the cluster cannot be started (not root, no apt-get) it is skipped, except
under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.workflow.conftest import REPO, TINY_CONFIG, snakemake, write_config

PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
START = REPO / "tests" / "slurm" / "start-local-slurm.sh"
STOP = REPO / "tests" / "slurm" / "stop-local-slurm.sh"
PLACEHOLDER = "EDIT_ME"

# Rules the tiny config sends through sbatch (`scores` and `all` are local rules).
SUBMITTED = {"ingest_raw", "ingest_labels", "weights", "train", "predict", "segment", "evaluate"}
GPU_RULES = {"train", "predict"}


def _profile(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "config.yaml").read_text())


def _site_values(profile: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """{(scope, key): value} of default-resources and set-resources, flattened."""
    values = {("default-resources", k): v for k, v in profile["default-resources"].items()}
    for rule, resources in profile["set-resources"].items():
        values.update({(f"set-resources: {rule}", k): v for k, v in resources.items()})
    return values


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# ------------------------------------------------------------------ fast checks (no cluster) ---


def test_test_profile_mirrors_the_site_profile() -> None:
    """A later --profile replaces whole keys, so the override repeats the site block: same keys,
    same values, except that every placeholder is filled in."""
    site, test = _site_values(_profile(PROFILE)), _site_values(_profile(TEST_PROFILE))
    assert set(test) == set(site)
    placeholders = {key for key, value in site.items() if value == PLACEHOLDER}
    assert placeholders >= {
        ("default-resources", "slurm_account"),
        ("default-resources", "slurm_partition"),
        ("set-resources: train", "slurm_partition"),
        ("set-resources: predict", "slurm_partition"),
        ("set-resources: doctor", "slurm_partition"),
    }
    assert {k: v for k, v in test.items() if k not in placeholders} == {
        k: v for k, v in site.items() if k not in placeholders
    }
    assert all(PLACEHOLDER not in str(test[key]) for key in placeholders)


def test_placeholder_site_settings_stop_the_run_before_submission(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--profile", str(PROFILE), timeout=120)
    assert result.returncode == 1, _output(result)
    for scope, key in [
        ("default-resources", "slurm_account"),
        ("default-resources", "slurm_partition"),
        ("set-resources: train", "slurm_partition"),
        ("set-resources: predict", "slurm_partition"),
        ("set-resources: doctor", "slurm_partition"),
    ]:
        assert (
            f"profiles/slurm/config.yaml: site setting '{key}' under '{scope}' is still "
            f"the placeholder '{PLACEHOLDER}'"
        ) in _output(result)
    assert "Nothing was submitted" in _output(result)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("default-resources", "slurm_account"), "'slurm_account' under 'default-resources'"),
        (
            ("set-resources", "train", "slurm_partition"),
            "'slurm_partition' under 'set-resources: train'",
        ),
    ],
)
def test_missing_site_setting_stops_the_run(
    workdir: Path, path: tuple[str, ...], expected: str
) -> None:
    profile = _profile(TEST_PROFILE)
    parent = profile
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    broken = workdir / "broken-profile"
    broken.mkdir()
    (broken / "config.yaml").write_text(yaml.safe_dump(profile))
    result = snakemake(
        workdir, "-n", "--profile", str(PROFILE), "--profile", str(broken), timeout=120
    )
    assert result.returncode == 1, _output(result)
    assert f"profiles/slurm/config.yaml: site setting {expected} is missing" in _output(result)


def test_filled_in_profile_passes_the_site_check(workdir: Path) -> None:
    result = snakemake(
        workdir, "-n", "--profile", str(PROFILE), "--profile", str(TEST_PROFILE), timeout=120
    )
    assert result.returncode == 0, _output(result)
    assert "site setting" not in _output(result)


# ------------------------------------------------------------------- the real SLURM cluster ---


@dataclass(frozen=True)
class Cluster:
    account: str
    partition: str
    gpu_partition: str


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the local SLURM cluster is unavailable: {reason}")
    pytest.skip(f"no local SLURM cluster: {reason}")


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running single-node SLURM with accounting, configured to match tests/slurm/profile.

    The start script records the pids it starts under this session's own STATE_DIR, so the
    stop script afterwards stops exactly those: a cluster that was already up stays up.
    """
    site = _profile(TEST_PROFILE)
    cluster = Cluster(
        account=site["default-resources"]["slurm_account"],
        partition=site["default-resources"]["slurm_partition"],
        gpu_partition=site["set-resources"]["train"]["slurm_partition"],
    )
    if os.geteuid() != 0:
        _unavailable("tests/slurm/start-local-slurm.sh needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        _unavailable("SLURM is not installed and there is no apt-get to install it")
    env = {
        **os.environ,
        "STATE_DIR": str(tmp_path_factory.mktemp("local-slurm")),
        "ACCOUNT": cluster.account,
        "PARTITION": cluster.partition,
        "GPU_PARTITION": cluster.gpu_partition,
    }
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(START)], env=env, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        _unavailable("start-local-slurm.sh took more than 600 s")
    if result.returncode != 0:
        _unavailable(f"start-local-slurm.sh failed:\n{result.stderr}")
    print(f"local SLURM up in {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        stop = subprocess.run(
            ["bash", str(STOP)], env=env, capture_output=True, text=True, timeout=300
        )
        assert stop.returncode == 0, f"stop-local-slurm.sh failed:\n{stop.stderr}"


def _sacct(
    name: str, fields: list[str], done: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """One allocation record per SLURM job named ``name``, asked again until ``done(records)``.

    slurmctld hands job records to slurmdbd asynchronously, so a ``sacct`` right after the jobs
    ended can show none of them yet (it did, once, in CI); give it up to 60 s."""
    cmd = ["sacct", "-X", "-n", "-P", "-S", "now-1days", f"--name={name}", f"-o{','.join(fields)}"]
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
        records = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
        if done(records) or time.monotonic() > deadline:
            return records
        time.sleep(1)


def _rule(comment: str) -> str:
    return comment.removeprefix("rule_").split("_wildcards_")[0]


@pytest.mark.slow
@pytest.mark.slurm
def test_workflow_runs_through_sbatch(local_slurm: Cluster, tmp_path: Path) -> None:
    # the profile's --signal=USR1@300 fires 5 min before the walltime: give train more than that
    resources = {rule: dict(res) for rule, res in TINY_CONFIG["resources"].items()}
    resources["train"]["runtime"] = 10
    write_config(tmp_path, resources=resources)
    workdir = tmp_path
    started = time.monotonic()
    result = snakemake(
        workdir, "--profile", str(PROFILE), "--profile", str(TEST_PROFILE), timeout=900
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, _output(result)[-6000:]
    print(f"workflow through SLURM in {elapsed:.1f} s")

    run_id = re.search(r"SLURM run ID: (\S+)", _output(result))
    assert run_id, _output(result)[-3000:]
    # the plugin names every job after the run id and writes rule_<rule>[_wildcards_<...>]
    # into its comment
    fields = ["JobID", "Comment", "Partition", "Account", "AllocTRES", "State"]
    records = _sacct(
        run_id.group(1),
        fields,
        lambda rs: len(rs) == len(SUBMITTED) and all(r["State"] == "COMPLETED" for r in rs),
    )
    by_rule = {_rule(r["Comment"]): r for r in records}
    assert Counter(_rule(r["Comment"]) for r in records) == Counter(SUBMITTED), records
    for rule, record in by_rule.items():
        assert record["State"] == "COMPLETED", record
        assert record["Account"] == local_slurm.account, record
        if rule in GPU_RULES:
            assert "gres/gpu=1" in record["AllocTRES"].split(","), record
            assert record["Partition"] == local_slurm.gpu_partition, record
        else:
            assert "gres/gpu" not in record["AllocTRES"], record
            assert record["Partition"] == local_slurm.partition, record

    # SLURM's own logs under the plugin's logdir, one per job, next to the per-rule logs
    for rule, record in by_rule.items():
        assert list(
            (workdir / "logs" / "slurm" / f"rule_{rule}").rglob(f"{record['JobID']}.log")
        ), rule
    assert (workdir / "logs" / "train").is_dir()


@pytest.mark.slow
@pytest.mark.slurm
def test_predict_with_dask_jobqueue_workers_as_slurm_jobs(
    local_slurm: Cluster, tmp_path: Path
) -> None:
    """``predict.cluster: slurm``: dask-jobqueue submits the Dask workers as SLURM jobs; the only
    workers there are, so the run can finish only if those jobs computed the blocks.  The output
    equals an in-process run's, and sacct shows the worker jobs under the given account.  The
    workers talked TLS with the run's temporary credentials, whose files are gone afterwards."""
    import numpy as np
    import torch

    from unet.checkpoint import save_model
    from unet.io import ngff
    from unet.model import UNet
    from unet.prediction.run import PredictConfig, predict_volume

    torch.manual_seed(0)
    save_model(tmp_path / "m.pt", UNet(base_channels=2, depth=2, dropout=0.0).eval())
    data = np.random.default_rng(0).integers(0, 256, (3, 48, 64), dtype=np.uint8)
    ngff.create(tmp_path / "raw.zarr", data.shape, np.uint8, (1, 16, 16), (1, 1, 1))[:] = data
    job_name = f"unet-dask-{os.getpid()}-{int(time.time())}"
    common = {
        "block_shape": (1, 16, 32),
        "chunks": (1, 16, 16),
        "device": "cpu",
        "output_dtype": "float32",
    }
    slurm = {
        "queue": local_slurm.partition,
        "account": local_slurm.account,
        "memory": "2GB",
        "walltime": "00:10:00",
        "job_name": job_name,
        "log_directory": str(tmp_path / "dask-logs"),
        "shared_temp_directory": str(tmp_path / "shared"),  # where the worker jobs read the key
    }
    (tmp_path / "shared").mkdir()
    cfg = PredictConfig(cluster="slurm", workers=2, slurm=slurm, **common)  # type: ignore[arg-type]
    started = time.monotonic()
    summary = predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "s.zarr", cfg)
    print(f"prediction through 2 dask-jobqueue SLURM workers in {time.monotonic() - started:.1f} s")
    assert summary["computed"] == summary["total_blocks"] == 3 * 3 * 2
    assert list((tmp_path / "shared").iterdir()) == []  # the credentials' folder is removed
    worker_logs = "".join(p.read_text() for p in (tmp_path / "dask-logs").iterdir())
    for line in ("Start worker at: +", "Registered to: +"):  # (a late job may not get there)
        assert re.search(line + "tls://", worker_logs), worker_logs[-3000:]
        assert not re.search(line + "tcp://", worker_logs), worker_logs[-3000:]
    here = PredictConfig(cluster="none", **common)  # type: ignore[arg-type]
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "h.zarr", here)
    np.testing.assert_array_equal(
        ngff.open_array(tmp_path / "s.zarr")[:], ngff.open_array(tmp_path / "h.zarr")[:]
    )

    fields = ["JobID", "Partition", "Account", "State", "ElapsedRaw"]
    jobs = _sacct(
        job_name,
        fields,
        lambda rs: (
            len(rs) == 2 and all(r["ElapsedRaw"].isdigit() and int(r["ElapsedRaw"]) > 0 for r in rs)
        ),
    )
    assert len(jobs) == 2, jobs  # one SLURM job per Dask worker
    for job in jobs:
        assert job["Account"] == local_slurm.account and job["Partition"] == local_slurm.partition
        # ran (its end state is dask-jobqueue's shutdown race: cancelled, or exited on its own)
        assert int(job["ElapsedRaw"]) > 0, jobs
