"""Running a stage: bad input becomes one log line and exit 1, preemption exits 75."""

from __future__ import annotations

import logging

import pytest

from unet.errors import InputError, InputTypeError, StageError
from unet.stages import runner as stage
from unet.training import state as train_state

pytestmark = pytest.mark.usefixtures("restore_root_logger")


def fail(err: BaseException):
    def func(*args, **kwargs):
        raise err

    return func


def lines(path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    "error",
    [
        InputError("labels.zarr: bad shape (3, 4)"),
        InputTypeError("labels.zarr: bad dtype float64"),
        FileNotFoundError("raw.zarr: no such Zarr volume"),
        FileExistsError("weights.zarr: already exists"),
        NotADirectoryError("out: is not a directory"),
        FloatingPointError("training diverged: loss nan at step 42 (lr 0.01); lower the lr"),
        StageError("out.zarr.partial: 2 block(s) failed (first: [0, 3]); rerun to resume"),
    ],
)
def test_bad_input_is_one_log_line_and_exit_1(tmp_path, capsys, error):
    log_file = tmp_path / "logs" / "weights" / "isbi.log"  # parents are created
    with pytest.raises(SystemExit) as info:
        stage.run("weights", fail(error), 1, 2, log_file=log_file, key="value")
    assert info.value.code == stage.EXIT_FAILED == 1
    logged = lines(log_file)
    assert len(logged) == 1
    assert logged[0].endswith(f" ERROR unet.weights: weights: {error}")
    assert "Traceback" not in log_file.read_text()
    err = capsys.readouterr().err  # the same line goes to stderr, also without a traceback
    assert f"weights: {error}" in err and "Traceback" not in err


def test_log_file_is_appended(tmp_path):
    log_file = tmp_path / "stage.log"
    log_file.write_text("earlier run\n")
    for message in ("first", "second"):
        with pytest.raises(SystemExit, match="1"):
            stage.run("predict", fail(InputError(message)), log_file=log_file)
    logged = lines(log_file)
    assert len(logged) == 3 and logged[0] == "earlier run"
    assert logged[1].endswith("predict: first") and logged[2].endswith("predict: second")


@pytest.mark.parametrize(
    "error",
    [
        stage.Preempted("SIGUSR1 at step 7"),
        # the train script raises train_state's own class; it must exit 75 as well
        train_state.Preempted("state.pt", 7, "SIGUSR1"),
    ],
    ids=["stage.Preempted", "train_state.Preempted"],
)
def test_preempted_exits_75(tmp_path, error):
    log_file = tmp_path / "train.log"
    with pytest.raises(SystemExit) as info:
        stage.run("train", fail(error), log_file=log_file)
    assert info.value.code == stage.EXIT_PREEMPTED == train_state.EXIT_PREEMPTED == 75
    logged = lines(log_file)
    assert len(logged) == 1
    assert " WARNING unet.train: train: preempted, checkpoint written (" in logged[0]
    assert str(error) in logged[0]
    assert "Traceback" not in log_file.read_text()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory"),
        KeyError("missing"),
        ZeroDivisionError("bug"),
        ValueError("a library's own ValueError is not bad input"),
        TypeError("f() got an unexpected keyword argument 'x'"),
    ],
)
def test_programming_errors_log_their_traceback(tmp_path, error):
    log_file = tmp_path / "stage.log"
    with pytest.raises(SystemExit) as info:
        stage.run("predict", fail(error), log_file=log_file)
    assert info.value.code == stage.EXIT_FAILED
    text = log_file.read_text()
    first = text.splitlines()[0]
    assert f"predict: internal error ({type(error).__name__}: " in first
    assert "please report it" in first
    assert "Traceback (most recent call last)" in text  # the bug can be located from the log
    assert f"{type(error).__name__}: " in text.splitlines()[-1]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(28, "No space left on device", "/scratch/out.zarr.partial/c/0/0/0"),
            "/scratch/out.zarr.partial/c/0/0/0: No space left on device (ENOSPC); free space",
        ),
        (
            PermissionError(13, "Permission denied", "/data/ro/out.zarr"),
            "/data/ro/out.zarr: Permission denied (EACCES); check the permissions",
        ),
        (
            OSError(30, "Read-only file system", "/ro/out.zarr"),
            "/ro/out.zarr: Read-only file system (EROFS); choose a writable output folder",
        ),
        (
            OSError(18, "Invalid cross-device link", "a.partial", None, "a"),
            "a.partial -> a: Invalid cross-device link (EXDEV)",
        ),
        (FileNotFoundError("raw.zarr: no such Zarr volume"), "raw.zarr: no such Zarr volume"),
    ],
)
def test_os_errors_are_one_line_with_path_and_errno(tmp_path, error, expected):
    log_file = tmp_path / "stage.log"
    with pytest.raises(SystemExit) as info:
        stage.run("ingest", fail(error), log_file=log_file)
    assert info.value.code == stage.EXIT_FAILED
    logged = lines(log_file)
    assert len(logged) == 1 and "Traceback" not in log_file.read_text()
    assert f"ERROR unet.ingest: ingest: {expected}" in logged[0]


def test_success_passes_the_return_value_through(tmp_path):
    calls = []

    def func(a, b, *, scale):
        calls.append((a, b, scale))
        logging.getLogger("unet.evaluation.evaluate").info("scored %d slices", 3)
        return {"score": (a + b) * scale}

    log_file = tmp_path / "evaluate.log"
    assert stage.run("evaluate", func, 1, 2, log_file=log_file, scale=10) == {"score": 30}
    assert calls == [(1, 2, 10)]
    logged = lines(log_file)
    assert len(logged) == 1 and logged[0].endswith(
        " INFO unet.evaluation.evaluate: scored 3 slices"
    )


def test_success_without_a_log_file(capsys):
    assert stage.run("ingest", lambda: 42) == 42
    with pytest.raises(SystemExit, match="1"):
        stage.run("ingest", fail(InputError("raw.tif: not 3D")))
    assert "ERROR unet.ingest: ingest: raw.tif: not 3D" in capsys.readouterr().err


def test_setup_logging_writes_file_and_stderr(tmp_path, capsys):
    log_file = tmp_path / "a" / "b.log"
    stage.setup_logging(log_file)
    log = logging.getLogger("unet.test")
    log.info("visible %s", "info")
    log.debug("hidden debug")
    assert lines(log_file)[0].endswith(" INFO unet.test: visible info")
    assert "hidden debug" not in log_file.read_text()
    err = capsys.readouterr().err
    assert "INFO unet.test: visible info" in err and "hidden debug" not in err


def test_setup_logging_level_and_reconfiguration(tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    stage.setup_logging(first)
    stage.setup_logging(second, level=logging.DEBUG)  # replaces the first configuration
    logging.getLogger("unet.test").debug("now visible")
    assert first.read_text() == ""
    assert lines(second)[0].endswith(" DEBUG unet.test: now visible")
    root = logging.getLogger()
    assert sum(isinstance(h, logging.FileHandler) for h in root.handlers) == 1


def test_setup_logging_without_file_only_logs_to_stderr(tmp_path):
    stage.setup_logging(None)
    root = logging.getLogger()
    assert [type(h) for h in root.handlers] == [logging.StreamHandler]
    assert list(tmp_path.iterdir()) == []
