"""The one rule: nothing under eggpool/core does I/O or reads the clock or entropy.

Checked by reading the source of every core module (docs/architecture.md,
"The one rule"): forbidden imports, `open()`, `__import__`, clock reads such
as `datetime.now()`, and concrete (non-Pure) pathlib classes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eggpool.core

CORE = Path(eggpool.core.__file__).parent

FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "anyio",
        "trio",
        "socket",
        "ssl",
        "select",
        "selectors",
        "time",
        "random",
        "uuid",
        "secrets",
        "os",
        "io",
        "sys",
        "shutil",
        "tempfile",
        "glob",
        "signal",
        "sqlite3",
        "sqlite_utils",
        "h11",
        "wsproto",
        "quart",
        "hypercorn",
        "logging",
        "threading",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "http",
        "importlib",
        "builtins",
        "click",
    }
)
FORBIDDEN_SUBMODULES = frozenset({"urllib.request", "urllib.robotparser"})
ALLOWED_PATHLIB = frozenset({"PurePath", "PurePosixPath", "PureWindowsPath"})
CLOCK_READS = frozenset({"now", "utcnow", "today", "monotonic", "perf_counter"})


def violations(source: str) -> list[str]:
    """Every way `source` breaks the one rule, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "pathlib":
                bad = [a.name for a in node.names if a.name not in ALLOWED_PATHLIB]
                found += [f"{node.lineno}: imports pathlib.{name}" for name in bad]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES or name in FORBIDDEN_SUBMODULES:
                found.append(f"{node.lineno}: imports {name}")
            if name == "pathlib" and isinstance(node, ast.Import):
                found.append(f"{node.lineno}: imports pathlib (use PurePosixPath)")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"open", "__import__", "input"}:
                found.append(f"{node.lineno}: calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
                found.append(f"{node.lineno}: reads the clock via .{func.attr}()")
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules_to_check() -> None:
    assert len(core_modules()) >= 5


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_does_no_io(path: Path) -> None:
    assert violations(path.read_text("utf-8")) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time", "1: imports time"),
        ("import os.path", "1: imports os.path"),
        ("from asyncio import sleep", "1: imports asyncio"),
        ("from urllib.request import urlopen", "1: imports urllib.request"),
        ("from pathlib import Path", "1: imports pathlib.Path"),
        ("import pathlib", "1: imports pathlib (use PurePosixPath)"),
        ("x = open('f')", "1: calls open()"),
        ("import datetime\nx = datetime.datetime.now()", "2: reads the clock via .now()"),
    ],
)
def test_guard_catches_each_kind_of_violation(source: str, expected: str) -> None:
    assert expected in violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import json, re, enum, hashlib",
        "from urllib.parse import urlsplit",
        "from pathlib import PurePosixPath",
        "from email.utils import parsedate_to_datetime",
        "from eggpool.core.secret import Secret",
    ],
)
def test_guard_allows_pure_helpers(source: str) -> None:
    assert violations(source) == []
