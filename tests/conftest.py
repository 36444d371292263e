"""Shared fixtures: tiny synthetic EM-like volumes and deterministic torch settings."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import dask
import numpy as np
import pytest
import torch

# `make test` runs two pytest-xdist workers, one test module at a time each (--dist loadscope,
# which keeps a module's fixtures in one process). The longest modules (pytest --durations of a
# whole run) go first, so that no worker is left with one of them at the end.
LONGEST_FIRST = (
    "tests/test_readme.py",
    "tests/workflow/test_your_data.py",
    "tests/workflow/test_slurm.py",
    "tests/workflow/test_workflow.py",
    "tests/workflow/test_stop_resume.py",
    "tests/workflow/test_datasets.py",
    "tests/prediction/test_kill.py",
    "tests/segmentation/test_kill.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """``unet.stages.runner.setup_logging`` replaces the root handlers (``force=True``): put
    pytest's
    back and close the file handlers the test opened, so no later test logs into a stale file
    or stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _dask_config() -> Iterator[None]:
    """Each test starts from the same Dask config: a ``Client`` whose connection fails (the
    TLS refusal tests) leaves ``scheduler: dask.distributed`` set behind, and later tests would
    ask for a cluster that no longer exists."""
    keys = ("scheduler", "shuffle")  # what Client() sets globally until it is closed
    _drop_a_closed_clients_scheduler(keys)  # left by a module-scoped fixture (before this one)
    saved = {k: copy.deepcopy(dask.config.config[k]) for k in keys if k in dask.config.config}
    yield
    for key in keys:
        if key in saved:
            dask.config.config[key] = saved[key]
        else:
            dask.config.config.pop(key, None)


def _drop_a_closed_clients_scheduler(keys: tuple[str, ...]) -> None:
    if dask.config.get("scheduler", None) != "dask.distributed":
        return
    from distributed import default_client

    try:
        default_client()
    except ValueError:  # no Client is active: the setting points at nothing
        for key in keys:
            dask.config.config.pop(key, None)


@pytest.fixture
def cells() -> np.ndarray:
    """A (3, 64, 64) binary membrane mask (ISBI coding: 0 membrane, 255 cell) of square cells."""
    mask = np.full((3, 64, 64), 255, dtype=np.uint8)
    mask[:, ::16, :] = 0
    mask[:, :, ::16] = 0
    mask[1, 20:40, 30] = 0  # an extra wall in the middle slice
    return mask


@pytest.fixture
def raw(cells: np.ndarray) -> np.ndarray:
    """Grey values that make the mask learnable: dark membranes, noisy bright cells."""
    rng = np.random.default_rng(0)
    img = np.where(cells > 0, 180, 60) + rng.normal(0, 20, cells.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
