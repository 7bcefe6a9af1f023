"""The accelerated build: the hot modules compiled by mypyc (docs/performance.md).

`make test` runs the suite on the checkout (pure Python), then the core,
simulator and parser tests again on the accelerated build (`make accel-unit`,
which sets EGGPOOL_EXPECT_COMPILED=1).
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import tomllib
from pathlib import Path

import pytest

from eggpool import build_name, compiled_modules

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # this interpreter's own


def listed() -> list[str]:
    """The modules pyproject.toml has the build hook compile, as dotted names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    hook = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]
    return sorted(
        path.strip("/").removesuffix(".py").replace("/", ".") for path in hook["include"]
    )


def test_compiled_modules_are_read_from_the_extension_files(tmp_path: Path) -> None:
    package = tmp_path / "eggpool"
    (package / "core").mkdir(parents=True)
    for name in ("core/pool.py", "core/__init__.py", "__init__.py", "core/sse.py"):
        (package / name).touch()
    (package / "core" / f"pool{SUFFIX}").touch()
    (package / f"top{SUFFIX}").touch()
    assert compiled_modules(package) == ("eggpool.core.pool", "eggpool.top")
    assert compiled_modules(tmp_path / "nothing") == ()


@pytest.mark.parametrize("module", listed())
def test_each_module_the_build_compiles_can_be_compiled(module: str) -> None:
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text("utf-8")
    # mypyc checks a class attribute's declared type when the class is made: the
    # `attrs.field(...)` placeholder attrs turns into a field is not a value of it.
    assert not re.search(r"^\s+\w+: .+ = attrs\.(field|Factory)\(", source, re.MULTILINE), (
        f"{module} declares a class attribute with attrs.field()/attrs.Factory(): mypyc "
        "cannot compile it; take it out of the mypyc include list in pyproject.toml"
    )


@pytest.mark.skipif(
    os.environ.get("EGGPOOL_EXPECT_COMPILED") != "1",
    reason="the accelerated build's own run (make accel-unit) checks this",
)
def test_the_accelerated_build_runs_every_listed_module_compiled() -> None:
    assert list(compiled_modules()) == listed()
    assert build_name() == f"accelerated ({len(listed())} compiled modules)"
