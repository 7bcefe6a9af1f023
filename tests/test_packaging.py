"""The wheel users install carries what the package needs at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (path,) = out.glob("eggpool-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_example_config(wheel: zipfile.ZipFile) -> None:
    shipped = wheel.read("eggpool/config.example.toml").decode("utf-8")
    assert shipped == (ROOT / "eggpool" / "config.example.toml").read_text("utf-8")


def test_wheel_ships_the_themes_directory(wheel: zipfile.ZipFile) -> None:
    themes = {n for n in wheel.namelist() if n.startswith("eggpool/themes/")}
    expected = {f"eggpool/themes/{p.name}" for p in (ROOT / "themes").iterdir() if p.is_file()}
    assert expected
    assert themes == expected


def test_wheel_declares_the_eggpool_console_script(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "eggpool = eggpool.cli:main" in wheel.read(entry_points).decode()


def test_wheel_leaves_tests_and_fuzzers_out(wheel: zipfile.ZipFile) -> None:
    assert not [n for n in wheel.namelist() if n.startswith(("tests/", "fuzz/"))]
