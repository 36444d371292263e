"""Bad inputs and faults through the ``unet`` command, as a user meets them.

Every case asserts: the exit status; that the one-line message names the file or value and the
problem (and is not a traceback); that nothing was left behind that looks complete (every new
path lies inside a ``.partial`` output); and that every file that existed before is
byte-identical afterwards.  The cases run in-process (``unet.cli.main``) on a small workspace
that is built once: TIFF stacks, their ingested volumes, weight maps, a 2-step model and a
prediction.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from unet import cli

SHAPE = (4, 48, 48)
TINY = {
    "model": {"base_channels": 2, "depth": 1, "batch_norm": False, "dropout": 0.0},
    "train": {"output_tile": [8, 8], "steps": 2, "workers": 0, "val_every": 0, "log_every": 1},
    "predict": {"block_shape": [1, 48, 48], "chunks": [1, 48, 48], "cluster": "none"},
    "weights": {"block": [1, 48, 48]},
    "evaluate": {"warping": False},
}


pytestmark = pytest.mark.usefixtures("restore_root_logger")


def _imwrite(path: Path | str, array: np.ndarray) -> None:
    tifffile.imwrite(path, array, photometric="minisblack")


def _run(argv: list[str]) -> int:
    try:
        cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where every stage has run once, on a tiny volume."""
    root = tmp_path_factory.mktemp("workspace")
    rng = np.random.default_rng(0)
    labels = np.full(SHAPE, 255, np.uint8)
    labels[:, ::8], labels[:, :, ::8] = 0, 0
    raw = np.clip(np.where(labels > 0, 180, 60) + rng.normal(0, 20, SHAPE), 0, 255)
    _imwrite(root / "raw.tif", raw.astype(np.uint8))
    _imwrite(root / "labels.tif", labels)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = str(root / "tiny.yaml")
    steps = [
        ["ingest", "raw.tif", "raw.zarr", "--voxel-size", "50", "4", "4"],
        ["ingest", "labels.tif", "labels.zarr", "--kind", "binary", "--like", "raw.zarr"],
        ["weights", "labels.zarr", "weights.zarr", "--config", cfg],
        ["train", "raw.zarr", "labels.zarr", "weights.zarr", "model", "--config", cfg],
        ["predict", "model/model.pt", "raw.zarr", "prediction.zarr", "--config", cfg],
    ]
    here = Path.cwd()
    os.chdir(root)
    try:
        for argv in steps:
            assert _run(argv) == 0, argv
    finally:
        os.chdir(here)
    return root


@dataclass
class Case:
    """One bad input: ``setup(dir)`` prepares extra files; ``argv`` runs in ``dir``."""

    name: str
    argv: list[str]
    message: list[str]  # all must appear in the error line
    setup: Callable[[Path], None] | None = None
    status: int = 1
    needs_mount: bool = False
    fixtures: list[str] = field(default_factory=list)


def _write(path: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        target = d / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data)

    return setup


def _tif(path: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda d: _imwrite(d / path, array)


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for s in setups:
            s(d)

    return setup


def _symlink(link: str, target: str) -> Callable[[Path], None]:
    return lambda d: (d / link).symlink_to(d / target)


def _config(**sections: dict) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        merged = {k: dict(v) for k, v in TINY.items()}
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        (d / "bad.yaml").write_text(yaml.safe_dump(merged))

    return setup


def _int16_raw(d: Path) -> None:
    _imwrite(d / "raw16.tif", np.zeros(SHAPE, np.int16) + 300)
    assert _run(["ingest", "raw16.tif", "raw16.zarr"]) == 0


def _small_raw(d: Path) -> None:
    _imwrite(d / "small.tif", np.zeros((4, 8, 8), np.uint8))
    assert _run(["ingest", "small.tif", "small.zarr"]) == 0


def _truncated(d: Path) -> None:
    data = (d / "raw.tif").read_bytes()
    (d / "cut.tif").write_bytes(data[: len(data) // 2])


def _mount(d: Path, name: str, size: str, ro: bool = False) -> None:
    target = d / name
    target.mkdir()
    opts = f"size={size}" + (",ro" if ro else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], check=True)


def _full_disk(name: str, size: str = "160k") -> Callable[[Path], None]:
    """A tmpfs of ``size`` (in 4 KiB pages) that the case's output does not fit into."""
    return lambda d: _mount(d, name, size)


def _read_only(name: str) -> Callable[[Path], None]:
    return lambda d: _mount(d, name, "1m", ro=True)


LAB = np.full(SHAPE, 255, np.uint8)
LAB[:, ::8] = 0
CFG = ["--config", "tiny.yaml"]
BAD = ["--config", "bad.yaml"]
TRAIN = ["train", "raw.zarr", "labels.zarr", "weights.zarr"]
PREDICT = ["predict", "model/model.pt", "raw.zarr"]
EVAL = ["evaluate", "prediction.zarr", "labels.zarr"]

CASES = [
    # ---- ingest ------------------------------------------------------------------------------
    Case("ingest: no such file", ["ingest", "nope.tif", "x.zarr"], ["nope.tif", "no such file"]),
    Case(
        "ingest: text file named .tif",
        ["ingest", "fake.tif", "x.zarr"],
        ["fake.tif", "not a readable TIFF"],
        _write("fake.tif", "hello"),
    ),
    Case(
        "ingest: truncated TIFF",
        ["ingest", "cut.tif", "x.zarr"],
        ["cut.tif"],
        _truncated,
    ),
    Case(
        "ingest: 4D TIFF",
        ["ingest", "4d.tif", "x.zarr"],
        ["4d.tif", "expected a 2D image or a 3D (z, y, x) stack"],
        _tif("4d.tif", np.zeros((2, 3, 8, 8), np.uint8)),
    ),
    Case(
        "ingest: folder that is not Zarr",
        ["ingest", "empty.zarr", "x.zarr"],
        ["empty.zarr", "not a readable Zarr store"],
        lambda d: (d / "empty.zarr").mkdir(),
    ),
    Case(
        "ingest: raw with NaN",
        ["ingest", "nan.tif", "x.zarr"],
        ["nan.tif", "NaN/inf"],
        _tif("nan.tif", np.full(SHAPE, np.nan, np.float32)),
    ),
    Case(
        "ingest: binary mask with 3 values",
        ["ingest", "three.tif", "x.zarr", "--kind", "binary"],
        ["three.tif", "at most two values"],
        _tif("three.tif", (np.arange(np.prod(SHAPE)) % 3).reshape(SHAPE).astype(np.uint8)),
    ),
    Case(
        "ingest: negative labels",
        ["ingest", "neg.tif", "x.zarr", "--kind", "instances"],
        ["neg.tif", "labels must be >= 0"],
        _tif("neg.tif", np.full(SHAPE, -1, np.int16)),
    ),
    Case(
        "ingest: fractional labels",
        ["ingest", "frac.tif", "x.zarr", "--kind", "instances"],
        ["frac.tif", "whole numbers"],
        _tif("frac.tif", np.full(SHAPE, 0.5, np.float32)),
    ),
    Case(
        "ingest: labels of another shape than raw",
        ["ingest", "lab2.tif", "x.zarr", "--kind", "binary", "--like", "raw.zarr"],
        ["lab2.tif", "do not match the raw volume"],
        _tif("lab2.tif", LAB[:, :40]),
    ),
    Case(
        "ingest: labels all membrane",
        ["ingest", "zeros.tif", "x.zarr", "--kind", "binary"],
        ["zeros.tif", "no cell (foreground) pixels"],
        _tif("zeros.tif", np.zeros(SHAPE, np.uint8)),
    ),
    Case(
        "ingest: labels all cell",
        ["ingest", "cells.tif", "x.zarr", "--kind", "binary"],
        ["cells.tif", "none of them the membrane value 0"],
        _tif("cells.tif", np.full(SHAPE, 255, np.uint8)),
    ),
    Case(
        "ingest: mask {1, 2} (wrong encoding)",
        ["ingest", "onetwo.tif", "x.zarr", "--kind", "binary"],
        ["onetwo.tif", "[1, 2]", "membrane value 0"],
        _tif("onetwo.tif", np.where(LAB > 0, 2, 1).astype(np.uint8)),
    ),
    Case(
        "ingest: membrane value not in mask",
        ["ingest", "labels.tif", "x.zarr", "--kind", "binary", "--membrane-value", "7"],
        ["labels.tif", "[0, 255]", "membrane value 7"],
    ),
    Case(
        "ingest: instances without any cell",
        ["ingest", "zeros.tif", "x.zarr", "--kind", "instances"],
        ["zeros.tif", "no cell (foreground) pixels"],
        _tif("zeros.tif", np.zeros(SHAPE, np.uint8)),
    ),
    Case(
        "ingest: output exists",
        ["ingest", "raw.tif", "raw.zarr"],
        ["raw.zarr", "already exists", "--overwrite"],
    ),
    Case(
        "ingest: output is its own input (--overwrite)",
        ["ingest", "raw.zarr", "raw.zarr", "--overwrite"],
        ["raw.zarr", "would overwrite the stage's input"],
    ),
    Case(
        "ingest: output is a symlink to its input",
        ["ingest", "raw.zarr", "link.zarr", "--overwrite"],
        ["link.zarr", "would overwrite the stage's input raw.zarr"],
        _symlink("link.zarr", "raw.zarr"),
    ),
    Case(
        "ingest: output's folder is a file",
        ["ingest", "raw.tif", "afile/x.zarr"],
        ["afile", "is not a directory"],
        _write("afile", "x"),
    ),
    Case(
        "ingest: zero chunks",
        ["ingest", "raw.tif", "x.zarr", "--chunks", "0", "0", "0"],
        ["chunks must be 3 positive ints"],
    ),
    Case(
        "ingest: shards not a multiple of chunks",
        ["ingest", "raw.tif", "x.zarr", "--chunks", "1", "16", "16", "--shards", "1", "24", "24"],
        ["shards", "multiple"],
    ),
    Case(
        "ingest: negative voxel size",
        ["ingest", "raw.tif", "x.zarr", "--voxel-size", "-1", "4", "4"],
        ["voxel size must be 3 positive numbers"],
    ),
    Case(
        "ingest: read-only output folder",
        ["ingest", "raw.tif", "ro/x.zarr"],
        ["ro/x.zarr", "Read-only file system (EROFS)"],
        _read_only("ro"),
        needs_mount=True,
    ),
    Case(
        "ingest: disk full",
        ["ingest", "big.tif", "full/x.zarr"],
        ["full/x.zarr", "No space left on device (ENOSPC)"],
        _both(
            _tif("big.tif", np.random.default_rng(1).integers(0, 255, (8, 128, 128), np.uint8)),
            _full_disk("full"),
        ),
        needs_mount=True,
    ),
    # ---- weights -----------------------------------------------------------------------------
    Case("weights: no such labels", ["weights", "nope.zarr", "w.zarr"], ["nope.zarr", "no such"]),
    Case(
        "weights: raw passed as labels",
        ["weights", "raw.zarr", "w.zarr", *CFG],
        ["raw.zarr", "raw volume written by `unet ingest`", "not a labels volume"],
    ),
    Case(
        "weights: binary labels read as instances",
        ["weights", "labels.zarr", "w.zarr", "--instances", *CFG],
        ["labels.zarr", "ingested as binary", "instance ids"],
    ),
    Case(
        "weights: output exists",
        ["weights", "labels.zarr", "weights.zarr", *CFG],
        ["weights.zarr", "already exists"],
    ),
    Case(
        "weights: output inside its input",
        ["weights", "labels.zarr", "labels.zarr/w.zarr", *CFG],
        ["labels.zarr/w.zarr", "would overwrite the stage's input labels.zarr"],
    ),
    Case(
        "weights: sigma 0",
        ["weights", "labels.zarr", "w.zarr", "--sigma", "0", *CFG],
        ["sigma", "0"],
    ),
    Case(
        "weights: config file missing",
        ["weights", "labels.zarr", "w.zarr", "--config", "nope.yaml"],
        ["nope.yaml", "no such config file"],
    ),
    Case(
        "weights: config not a mapping",
        ["weights", "labels.zarr", "w.zarr", "--config", "list.yaml"],
        ["list.yaml", "must be a mapping"],
        _write("list.yaml", "- 1\n- 2\n"),
    ),
    Case(
        "weights: config not YAML",
        ["weights", "labels.zarr", "w.zarr", "--config", "broken.yaml"],
        ["broken.yaml", "not valid YAML (line 2, column 1: expected ',' or ']'"],
        _write("broken.yaml", "weights: [1, 2\n"),
    ),
    Case(
        "weights: unknown setting",
        ["weights", "labels.zarr", "w.zarr", *BAD],
        ["bad.yaml", "unknown setting(s) sigmaa", "weights"],
        _config(weights={"sigmaa": 3}),
    ),
    # ---- train -------------------------------------------------------------------------------
    Case(
        "train: model folder exists",
        [*TRAIN, "model", *CFG],
        ["model", "already exists", "--overwrite"],
    ),
    Case(
        "train: labels passed as weights",
        ["train", "raw.zarr", "labels.zarr", "labels.zarr", "m2", *CFG],
        ["labels.zarr", "not a weights volume"],
    ),
    Case(
        "train: raw passed as labels",
        ["train", "raw.zarr", "raw.zarr", "weights.zarr", "m2", *CFG],
        ["raw.zarr", "not a labels volume"],
    ),
    Case(
        "train: output folder holds the inputs",
        [*TRAIN, ".", *CFG],
        ["would overwrite the stage's input"],
    ),
    Case(
        "train: slices outside the volume",
        [*TRAIN, "m2", "--train-slices", "0-99", *CFG],
        ["0-99"],
    ),
    Case(
        "train: slice spec not a range",
        [*TRAIN, "m2", "--train-slices", "a-b", *CFG],
        ["a-b"],
    ),
    Case(
        "train: zero steps",
        [*TRAIN, "m2", "--steps", "0", *CFG],
        ["steps", "0"],
    ),
    Case(
        "train: volumes of different shapes",
        ["train", "small.zarr", "labels.zarr", "weights.zarr", "m2", *CFG],
        ["must share one (z, y, x) shape"],
        _small_raw,
    ),
    Case(
        "train: foreign state file",
        [*TRAIN, "m2", "--state", "junk.pt", *CFG],
        ["junk.pt"],
        _write("junk.pt", b"\x00not a torch file"),
    ),
    Case(
        "train: unknown model setting",
        [*TRAIN, "m2", *BAD],
        ["bad.yaml", "unknown setting(s) widht"],
        _config(model={"widht": 3}),
    ),
    # ---- predict -----------------------------------------------------------------------------
    Case(
        "predict: no such model",
        ["predict", "nope.pt", "raw.zarr", "p.zarr", *CFG],
        ["nope.pt", "no such model"],
    ),
    Case(
        "predict: model file corrupt",
        ["predict", "bad.pt", "raw.zarr", "p.zarr", *CFG],
        ["bad.pt", "not a readable checkpoint"],
        _write("bad.pt", b"garbage" * 10),
    ),
    Case(
        "predict: a torch file that is not a model",
        ["predict", "other.pt", "raw.zarr", "p.zarr", *CFG],
        ["other.pt", "not a unet-em checkpoint"],
        lambda d: torch.save({"a": 1}, d / "other.pt"),
    ),
    Case(
        "predict: no such raw",
        ["predict", "model/model.pt", "nope.zarr", "p.zarr", *CFG],
        ["nope.zarr", "no such"],
    ),
    Case(
        "predict: labels passed as raw",
        ["predict", "model/model.pt", "labels.zarr", "p.zarr", *CFG],
        ["labels.zarr", "not a raw volume"],
    ),
    Case(
        "predict: output is the raw input (--overwrite)",
        [*PREDICT, "raw.zarr", "--overwrite", *CFG],
        ["raw.zarr", "would overwrite the stage's input"],
    ),
    Case(
        "predict: output is a symlink to the raw input",
        [*PREDICT, "link.zarr", "--overwrite", *CFG],
        ["link.zarr", "would overwrite the stage's input raw.zarr"],
        _symlink("link.zarr", "raw.zarr"),
    ),
    Case(
        "predict: output exists",
        [*PREDICT, "prediction.zarr", *CFG],
        ["prediction.zarr", "already exists"],
    ),
    Case(
        "predict: slices outside the volume",
        [*PREDICT, "p.zarr", "--slices", "2-9", *CFG],
        ["--slices", "2-9"],
    ),
    Case(
        "predict: slice spec not a range",
        [*PREDICT, "p.zarr", "--slices", "x", *CFG],
        ["--slices", "x"],
    ),
    Case(
        "predict: int16 volume for a uint8 model",
        ["predict", "model/model.pt", "raw16.zarr", "p.zarr", *CFG],
        ["raw16.zarr", "int16", "uint8", "normalize"],
        _int16_raw,
    ),
    Case(
        "predict: CUDA asked for on a machine without it",
        [*PREDICT, "p.zarr", "--device", "cuda", *CFG],
        ["cuda", "no CUDA device"],
        fixtures=["no_cuda"],
    ),
    Case(
        "predict: block not a multiple of the chunks",
        [*PREDICT, "p.zarr", *BAD],
        ["block_shape", "multiple"],
        _config(predict={"block_shape": [1, 40, 40], "chunks": [1, 16, 16]}),
    ),
    Case(
        "predict: a tile the net cannot produce",
        [*PREDICT, "p.zarr", *BAD],
        ["predict.tile_shape (1, 5, 5)", "multiple of the net's down-sampling factor"],
        _config(predict={"tile_shape": [1, 5, 5], "block_shape": [1, 45, 45], "chunks": [1, 5, 5]}),
    ),
    Case(
        "predict: precision not offered",
        [*PREDICT, "p.zarr", "--precision", "fp8"],
        ["invalid choice: 'fp8'"],
        status=2,
    ),
    Case(
        "predict: disk full",
        [*PREDICT, "full/p.zarr", *BAD],
        ["full/p.zarr.partial", "block(s) failed", "[Errno 28] No space left on device"],
        _both(_full_disk("full", "32k"), _config(predict={"output_dtype": "float32"})),
        needs_mount=True,
    ),
    # ---- evaluate ----------------------------------------------------------------------------
    Case(
        "evaluate: raw passed as the prediction",
        ["evaluate", "raw.zarr", "labels.zarr", "s.json", *CFG],
        ["raw.zarr", "not a prediction volume"],
    ),
    Case(
        "evaluate: slices not predicted",
        [*EVAL, "s.json", "--slices", "9", *CFG],
        ["9"],
    ),
    Case(
        "evaluate: scores exist",
        [*EVAL, "s.json", *CFG],
        ["s.json", "already exists"],
        _write("s.json", "{}"),
    ),
    Case(
        "evaluate: scores inside the prediction",
        [*EVAL, "prediction.zarr/s.json", *CFG],
        ["prediction.zarr/s.json", "would overwrite the stage's input prediction.zarr"],
    ),
    # ---- curve -------------------------------------------------------------------------------
    Case("curve: no such file", ["curve", "nope.csv"], ["nope.csv", "no such metrics file"]),
    Case(
        "curve: not a metrics file",
        ["curve", "model/model.pt"],
        ["model/model.pt", "not a metrics.csv"],
    ),
]


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path("/tmp") / f"unet-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        if ok.returncode == 0:
            subprocess.run(["umount", str(probe)], check=True)
        return ok.returncode == 0
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


def test_there_are_at_least_50_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(
    case: Case,
    base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.needs_mount and not CAN_MOUNT:
        pytest.skip("needs root and tmpfs mounts")
    if "no_cuda" in case.fixtures:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    work = tmp_path / "w"
    shutil.copytree(base, work, symlinks=True)
    monkeypatch.chdir(work)
    mounts: list[Path] = []
    try:
        if case.setup is not None:
            case.setup(work)
        mounts = [p for p in work.iterdir() if p.is_dir() and os.path.ismount(p)]
        before = _digests(work)
        capsys.readouterr()
        status = _run(case.argv)
        err = capsys.readouterr().err
        after = _digests(work)
    finally:
        for m in mounts:
            leftover = [str(p.relative_to(work)) for p in m.rglob("*")]
            subprocess.run(["umount", str(m)], check=True)
            if leftover:
                # on a full disk, only a .partial output may remain
                assert all(".partial" in p for p in leftover), leftover
    assert status == case.status, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if " ERROR unet." in line or "error:" in line]
    assert errors, err
    assert errors[-1] == len(lines) - 1, f"the error is not the last line: {lines[errors[-1] :]}"
    # before it, only the failed prediction blocks are reported, each on its own line
    reports = [lines[i] for i in errors[:-1]]
    assert all(re.search(r" ERROR unet\.prediction\.run: block \d+ \(z ", r) for r in reports), reports
    message = lines[-1]
    table = os.environ.get("UNET_BAD_INPUT_TABLE")  # opt-in: the table of cases, for a report
    if table:
        with open(table, "a") as fh:
            fh.write(f"| {case.name} | {status} | `{message.split(': ', 1)[-1][:160]}` |\n")
    for part in case.message:
        assert part in message, f"{part!r} not in {message!r}"
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"pre-existing files changed or removed: {changed}"
    new = sorted(set(after) - set(before))
    assert all(".partial" in p for p in new), f"left behind outside a .partial output: {new}"


def test_train_refuses_an_existing_model_and_overwrite_replaces_it_only_when_done(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data-loss case: a retrain into a trained model's folder."""
    work = tmp_path / "w"
    shutil.copytree(base, work)
    monkeypatch.chdir(work)
    old = _digests(work / "model")
    argv = [*TRAIN, "model", *CFG]
    assert _run(argv) == 1 and _digests(work / "model") == old
    # a retrain that is killed (here: raises on a read) leaves the old model complete and alone
    from unet.training import sampler

    real = sampler.PatchDataset.__getitem__

    def crash(self, index):  # type: ignore[no-untyped-def]
        if index == 1:
            raise MemoryError("node failure")
        return real(self, index)

    monkeypatch.setattr(sampler.PatchDataset, "__getitem__", crash)
    assert _run([*argv, "--overwrite"]) == 1
    assert _digests(work / "model") == old
    assert not (work / "model.partial" / "model.pt").exists()
    monkeypatch.setattr(sampler.PatchDataset, "__getitem__", real)
    assert _run([*argv, "--overwrite", "--steps", "3"]) == 0
    assert not (work / "model.partial").exists()
    meta = torch.load(work / "model" / "model.pt", weights_only=True)["meta"]
    assert meta["steps"] == 3 and meta["input"]["dtype"] == "uint8"


def test_oserror_names_the_failed_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without root: a write that fails with EACCES (simulated) is one line with path and
    errno."""
    import unet.io.ngff as ngff

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.zarr.partial"))

    _imwrite(tmp_path / "raw.tif", np.zeros((1, 8, 8), np.uint8))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ngff, "create", refuse)
        status = _run(["ingest", str(tmp_path / "raw.tif"), str(tmp_path / "x.zarr")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert "x.zarr.partial: Permission denied (EACCES)" in err
