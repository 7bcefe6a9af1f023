"""The contract suites run every test once per shell (tests/helpers/shells.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.shells import SHELLS, backend_of


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(shell: str) -> str:
    return backend_of(shell)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "usage.sqlite3"
