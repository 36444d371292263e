"""Every GPU figure this project needs, in one prepared command (``make gpu-check``).

On a fresh single-GPU node that has CUDA PyTorch but none of the project's other dependencies
(they come as wheels: ``make gpu-wheels`` here, ``--wheels .whl`` there), runs in order, each
step in its own process with its own time cap:

1. ``environment``: GPU, driver, torch / CUDA / cuDNN versions, CPUs, memory, disk;
2. ``train``: the paper-size training (``config/isbi2012-paper.yaml``) for a fixed wall time,
   then the test slices predicted and scored; time to accuracy from the validation curve
   (:mod:`check_train`);
3. ``throughput``: prediction Mpx/s of the paper net Zarr -> Zarr on a synthetic uint8 volume
   (8.6 GB): fp32/TF32, bf16, the fast path; the bare forward; MONAI's sliding window as the
   anchor (:mod:`check_predict`).

``<out>/gpu_check.json`` is rewritten after every row and ``<out>/gpu_check.log`` gets every
line, so a killed run still leaves what it measured.  ``--smoke`` runs the same code on the CPU
with tiny sizes (CI runs it).  Fields: bench/README.md.

    python3 bench/gpu_check.py --out DIR [--wheels .whl] [--smoke] [--steps environment train
        throughput] [--total-seconds 540] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STEPS = ("environment", "train", "throughput", "score")
# caps in seconds (GPU, smoke), each also cut to what is left of --total-seconds: the last step
# (the warping error of the test slices, CPU only) gets the rest of the 9 minutes
# (the smoke's caps only catch hangs: about a minute in all on a quiet 2-core machine, several
# while other jobs load it)
CAPS = {"environment": (45, 60), "train": (200, 240), "throughput": (250, 180), "score": (540, 120)}


def settings(smoke: bool) -> dict[str, Any]:
    """Sizes of each step: the real check, or the CPU smoke test's tiny ones."""
    if not smoke:
        return {
            "device": "cuda",
            "train": {
                "config": ["config/isbi2012-paper.yaml"],
                "seconds": 110,
                "calibration_steps": 300,
                "validations": 10,
                "overrides": {"train": {"device": "cuda", "checkpoint_seconds": 0}},
            },
            "throughput": {
                "device": "cuda",
                "shape": [512, 4096, 4096],  # 8.6 GB of uint8
                "tile": 2048,
                "batch": 4,
                "block_slices": 8,
                "chunk": 1024,
                "base": 64,
                "threads": 8,
                "budgets": {"default": 25, "fast": 45, "monai": 30},
            },
        }
    tiny = {"base_channels": 4, "depth": 2, "batch_norm": True}
    return {
        "device": "cpu",
        "score": {"warping": False},  # the warping error: minutes of CPU for one slice
        "train": {
            "config": ["config/isbi2012-paper.yaml"],
            "seconds": 6,
            "calibration_steps": 4,
            "validations": 2,
            "test_slices": "25",
            "overrides": {
                "model": tiny,
                "train": {
                    "output_tile": [128, 128],
                    "device": "cpu",
                    "workers": 0,
                    "lr": 0.01,
                    "precision": "fp32",
                    "checkpoint_seconds": 0,
                    "log_every": 50,
                },
                "predict": {"device": "cpu", "precision": "fp32", "concurrent_blocks": 1},
                "evaluate": {"warping": False},
            },
        },
        "throughput": {
            "device": "cpu",
            "shape": [16, 256, 256],
            "tile": 128,
            "batch": 2,
            "block_slices": 8,
            "chunk": 128,
            "base": 4,
            "threads": 2,
            "budgets": {"default": 1, "monai": 1},
        },
    }


class Results:
    """The check's JSON and log, written through after every change."""

    def __init__(self, out: Path, echo: bool = True) -> None:
        self.json, self.log, self.echo = out / "gpu_check.json", out / "gpu_check.log", echo
        self.data: dict[str, Any] = json.loads(self.json.read_text()) if self.json.exists() else {}

    def set(self, path: str, value: Any) -> None:
        node = self.data
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        tmp = self.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.json)
        self.say(f"{path}: {json.dumps(value, default=str)[:300]}")

    def say(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.echo:  # the parent; a step's own stdout goes to the log already
            with open(self.log, "a") as fh:
                fh.write(f"{stamp} {line}\n")
        print(f"{stamp} {line}", flush=True)


def environment(device: str) -> dict[str, Any]:
    import torch

    from unet.stages.doctor import environment as torch_environment

    env = torch_environment(torch.device(device))
    env["platform"] = platform.platform()
    env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    env["memory_gb"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    env["disk_free_gb"] = shutil.disk_usage(tempfile.gettempdir()).free / 1e9
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    from importlib.metadata import PackageNotFoundError, version

    for name in ("numpy", "zarr", "numcodecs", "dask", "distributed", "monai", "scipy"):
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = None
    return env


def run_step(name: str, out: Path, work: Path, smoke: bool) -> None:
    """One step, in this (child) process."""
    results = Results(out, echo=False)

    def record(key: str, value: Any) -> None:
        results.set(f"steps/{name}/result/{key}", value)

    opts = settings(smoke)
    step_work = work / ("train" if name == "score" else name)  # score reads train's prediction
    if name != "score":
        shutil.rmtree(step_work, ignore_errors=True)
        step_work.mkdir(parents=True)
    try:
        if name == "environment":
            for key, value in environment(opts["device"]).items():
                record(key, value)
        elif name == "train":
            from check_train import train_and_score

            train_and_score(step_work, opts["train"], record)
        elif name == "throughput":
            from check_predict import throughput

            throughput(step_work, opts["throughput"], record)
        else:
            from check_train import score

            record("scores", score(step_work, opts.get("score")))
    finally:
        if name != "train":
            shutil.rmtree(step_work, ignore_errors=True)


def install_wheels(folder: Path, site: Path) -> None:
    """The carried wheels into ``site`` (offline), put first on the path of every step."""
    wheels = sorted(str(p) for p in folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{folder}: no wheels (run `make gpu-wheels` on a machine with PyPI)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(site),
            *wheels,
        ],
        check=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu-check")
    ap.add_argument(
        "--work", type=Path, help="scratch folder for the volumes (default: a temp dir)"
    )
    ap.add_argument("--wheels", type=Path, help="folder of wheels to install first (offline)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (CI)")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument("--total-seconds", type=float, help="cap of the whole check (540; smoke 600)")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.gettempdir()) / "unet-gpu-check"
    if args.step:
        run_step(args.step, args.out, work, args.smoke)
        return 0
    if args.total_seconds is None:
        args.total_seconds = 600.0 if args.smoke else 540.0
    start = time.monotonic()
    for old in (args.out / "gpu_check.json", args.out / "gpu_check.log"):
        old.unlink(missing_ok=True)
    results = Results(args.out)
    results.set("command", " ".join(sys.argv))
    results.set("smoke", args.smoke)
    env = dict(os.environ)
    paths = [str(ROOT), str(BENCH)]
    if args.wheels:
        site = work / "site"
        t0 = time.monotonic()
        install_wheels(args.wheels, site)
        results.set("wheels_install_seconds", round(time.monotonic() - t0, 1))
        paths.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    failed = 0
    for name in args.steps:
        left = args.total_seconds - (time.monotonic() - start)
        cap = min(CAPS[name][args.smoke], left)
        if cap < 5:
            results.set(f"steps/{name}/status", "skipped: no time left")
            continue
        results.set(f"steps/{name}/cap_seconds", round(cap))
        t0 = time.monotonic()
        cmd = [
            sys.executable,
            str(BENCH / "gpu_check.py"),
            "--step",
            name,
            "--out",
            str(args.out),
            "--work",
            str(work),
        ] + (["--smoke"] if args.smoke else [])
        with open(results.log, "a") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                code: int | str = proc.wait(timeout=cap)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = "timeout"
        results.data = Results(args.out).data  # the child's rows
        status = "ok" if code == 0 else ("timeout" if code == "timeout" else f"failed ({code})")
        failed += status != "ok"
        results.set(f"steps/{name}/status", status)
        results.set(f"steps/{name}/seconds", round(time.monotonic() - t0, 1))
    results.set("total_seconds", round(time.monotonic() - start, 1))
    shutil.rmtree(work, ignore_errors=True)
    print(summary(results.data))
    return 1 if failed else 0


def summary(data: dict[str, Any]) -> str:
    """The table the issue asks for: Mpx/s per mode, MONAI, the bare forward, the accuracy."""
    steps = data.get("steps", {})
    env = steps.get("environment", {}).get("result", {})
    lines = [
        f"device {env.get('gpu') or env.get('cpu')}, torch {env.get('torch')}, "
        f"cuDNN {env.get('cudnn')}; total {data.get('total_seconds')} s"
    ]
    for name, step in steps.items():
        lines.append(f"  step {name}: {step.get('status')} in {step.get('seconds')} s")
    thr = steps.get("throughput", {}).get("result", {})
    monai = thr.get("monai", {}).get("mpx_per_s")
    rows = [(f"ours: {k}", v) for k, v in thr.get("modes", {}).items()]
    rows += [(f"bare forward: {k}", v) for k, v in thr.get("bare_forward", {}).items()]
    rows.append(("MONAI sliding_window_inference", thr.get("monai", {})))
    if rows:
        lines.append(f"{'prediction, Zarr -> Zarr':<72} {'Mpx/s':>8} {'/MONAI':>7} {'GB':>6}")
    for name, row in rows:
        rate = row.get("mpx_per_s")
        if rate is None:
            lines.append(f"{name:<72} {row.get('error', 'not run')}")
            continue
        ratio = f"{rate / monai:7.2f}" if monai and "bare" not in name else f"{'':>7}"
        gb = f"{row['gigapixels']:6.2f}" if "gigapixels" in row else f"{'':>6}"
        lines.append(f"{name:<72} {rate:8.1f} {ratio} {gb}")
    test = steps.get("train", {}).get("result", {})
    full = steps.get("score", {}).get("result", {}).get("scores")
    scores = full or test.get("test", {}).get("scores_without_warping")
    if scores:
        keys = ("pixel_error", "rand_error", "warping_error", "v_rand_thinned", "v_info_thinned")
        lines.append(
            f"test slices {test['test']['slices']}"
            + ("" if full else " (no warping: the score step did not finish)")
            + ": "
            + ", ".join(f"{k} {scores.get(k)}" for k in keys if k in scores)
        )
    if "training" in test:
        tr = test["training"]
        lines.append(
            f"training: {tr['steps']} steps in {tr['train_seconds']:.0f} s, "
            f"val pixel error {tr['val_pixel_error']}, time to "
            f"{tr['seconds_to_val_pixel_error']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
