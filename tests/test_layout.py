"""The package's layout rules: short modules, and imports that follow each subpackage's docstring.

Each subpackage's ``__init__.py`` docstring has a line ``May import: unet.a, unet.b.c, ...``: its
first sentence lists what the modules of that folder may import from the package (a name allows
its submodules too; ``anything in the package except unet.x`` allows all but ``unet.x``); notes may
follow in later sentences.  Every ``unet.*`` import of every module, the lazy ones inside functions
included, is checked against it with ``ast``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unet"
MAX_LINES = 300

# Modules still over MAX_LINES, owned by others while this test was written: strict xfails, so
# that whoever brings one under the limit removes it from here.
LONG: dict[str, str] = {}

# What every module may import besides the package root (``from unet import __version__``): the
# two modules that import nothing from the package, so that every package may use them.
BASE = ("unet.errors", "unet.settings.schema")

# The top-level modules have no folder docstring: their rules are here.
TOP = {
    "unet.__main__": ("unet.cli",),
    "unet.errors": (),
    "unet.model": (),
    # reads bioimage.io packages as models; unet.interop.bioimageio imports only unet.errors
    "unet.checkpoint": ("unet.model", "unet.interop.bioimageio"),
}

# Subpackages whose docstring is still wrong, owned by others: strict xfails (see REQUESTS.md).
WRONG_DOCSTRING: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _subpackages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def _marked(value: str, reasons: dict[str, str]) -> object:
    if value in reasons:
        return pytest.param(value, marks=pytest.mark.xfail(strict=True, reason=reasons[value]))
    return value


@pytest.mark.parametrize("module", [_marked(str(p.relative_to(PACKAGE)), LONG) for p in _modules()])
def test_module_is_short(module: str) -> None:
    lines = len((PACKAGE / module).read_text().splitlines())
    assert lines <= MAX_LINES, f"unet/{module}: {lines} lines (split it, at most {MAX_LINES})"


def test_long_modules_exist() -> None:
    assert all((PACKAGE / m).is_file() for m in LONG), "LONG names a module that is gone"


def rules(docstring: str, where: str) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """``(anything, allowed, denied)`` of the first sentence after ``May import:``."""
    found = re.search(r"May import:(.*?)(?:\.\s|\.?$)", docstring, re.DOTALL)
    assert found, f"{where}: the docstring has no 'May import:' line"
    text = found.group(1)
    anything = "anything in the package" in text
    allowed, _, denied = text.partition("except")
    names = re.compile(r"unet(?:\.\w+)+")
    return anything, tuple(names.findall(allowed)), tuple(names.findall(denied))


def test_rules_are_parsed() -> None:
    assert rules("May import: unet.a, unet.b.c and one another. Not unet.d.", "x") == (
        False,
        ("unet.a", "unet.b.c"),
        (),
    )
    assert rules("May import: anything in the package except unet.cli.", "x") == (
        True,
        (),
        ("unet.cli",),
    )


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``unet`` import in ``path`` (``from unet.a import b``: the
    module ``unet.a.b`` if that is one, else ``unet.a``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _name(path).split(".")
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = here if path.name == "__init__.py" else here[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + [base]).strip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                is_package = (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").is_file()
                found.append((node.lineno, sub if is_module or is_package else base))
    return [(line, m) for line, m in found if m == "unet" or m.startswith("unet.")]


def _within(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def _violations(paths: list[Path], own: str, rule: tuple[bool, tuple[str, ...], tuple[str, ...]]):
    anything, allowed, denied = rule
    bad = []
    for path in paths:
        for line, module in imports(path):
            if module == "unet" or _within(module, (own,)):
                continue
            ok = (anything or _within(module, allowed + BASE)) and not _within(module, denied)
            if not ok:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module}")
    return bad


@pytest.mark.parametrize("folder", [_marked(f, WRONG_DOCSTRING) for f in _subpackages()])
def test_imports_follow_the_folder_docstring(folder: str) -> None:
    init = PACKAGE / folder / "__init__.py"
    rule = rules(ast.get_docstring(ast.parse(init.read_text())) or "", f"unet/{folder}")
    bad = _violations(sorted((PACKAGE / folder).rglob("*.py")), f"unet.{folder}", rule)
    assert not bad, f"not allowed by unet/{folder}/__init__.py 'May import:': " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(TOP))
def test_imports_of_top_level_modules(module: str) -> None:
    path = PACKAGE / f"{module.removeprefix('unet.')}.py"
    bad = _violations([path], module, (False, TOP[module], ()))
    assert not bad, f"not allowed for {module} (tests/test_layout.py TOP): " + "; ".join(bad)


def test_every_top_level_module_has_rules() -> None:
    top = {_name(p) for p in PACKAGE.glob("*.py")} - {"unet"}
    assert top == set(TOP), "add the new top-level module's rules to TOP"


def test_violations_are_found() -> None:
    """The checker itself: lazy imports (inside functions) count, and so does "except"."""
    runner = [PACKAGE / "stages" / "runner.py"]
    found = _violations(runner, "unet.stages", (False, (), ()))
    assert any(v.endswith(": unet.training.state") for v in found), found
    assert not _violations(runner, "unet.stages", (True, (), ()))
    assert _violations(runner, "unet.stages", (True, (), ("unet.training",)))
