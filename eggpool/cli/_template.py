"""The bundled example config, written by `eggpool init-config`."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["example_config_text", "write_example_config"]


def example_config_text() -> str:
    return resources.files("eggpool").joinpath("config.example.toml").read_text("utf-8")


def write_example_config(path: Path) -> None:
    """Write the example atomically with mode 0600 (the file will hold keys).

    A temporary file in the same directory is renamed over the target, so an
    existing config is either fully replaced or left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(example_config_text())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
