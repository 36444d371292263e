"""Download the wheels ``bench/gpu_check.py`` needs on a GPU node (``make gpu-wheels``).

The names are in ``bench/gpu-wheels.txt``; each is pinned to the version installed in the
Python that runs this script (the project's .venv: what the tests ran with), for the node's
CPython 3.12 on manylinux x86-64, one wheel per package, no dependencies.

    .venv/bin/python bench/gpu_wheels.py [--dest .whl] [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
GLIBC = (5, 17, 24, 27, 28, 31, 34)  # pip matches manylinux_2_N tags exactly: name each N


def names(path: Path = BENCH / "gpu-wheels.txt") -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def pip_command(dest: Path, python_version: str) -> list[str]:
    """``pip download`` of every listed package at its installed version."""
    tags = ["--platform", "manylinux1_x86_64", "--platform", "manylinux2014_x86_64"]
    for n in GLIBC:
        tags += ["--platform", f"manylinux_2_{n}_x86_64"]
    pins = [f"{name}=={version(name)}" for name in names()]
    return [
        sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", *tags, "--platform", "any",
        "-d", str(dest), *pins,
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, default=Path(".whl"))
    ap.add_argument("--python-version", default="3.12", help="the GPU node's Python")
    args = ap.parse_args()
    subprocess.run(pip_command(args.dest, args.python_version), check=True)
    wanted = {name.replace("-", "_").lower() for name in names()}
    for old in args.dest.glob("*.whl"):  # one version of each: two stop the whole install
        name, ver = old.name.split("-")[:2]
        if name.lower() in wanted and ver != version(name.replace("_", "-")):
            old.unlink()
    size = sum(p.stat().st_size for p in args.dest.glob("*.whl"))
    print(f"{args.dest}: {len(list(args.dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
