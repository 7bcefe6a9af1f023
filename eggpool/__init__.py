"""EggPool: one endpoint in front of many LLM provider accounts."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

__version__ = "0.1.0.dev0"


def compiled_modules(package: Path | None = None) -> tuple[str, ...]:
    """The modules this installation runs compiled (the accelerated build, where mypyc
    compiled the hot modules to C extensions: docs/performance.md), or () when it is
    pure Python. Read from the files installed (in `package`, default this one), without
    importing anything."""
    package = Path(__file__).parent if package is None else package
    suffixes = importlib.machinery.EXTENSION_SUFFIXES  # the most specific first
    found = []
    for path in package.rglob("*"):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is not None and path.is_file():
            parts = path.relative_to(package.parent).parts
            found.append(".".join((*parts[:-1], parts[-1].removesuffix(suffix))))
    return tuple(sorted(found))


def build_name() -> str:
    """`eggpool version`'s words for the build: "pure Python" or "accelerated (n modules)"."""
    count = len(compiled_modules())
    return f"accelerated ({count} compiled modules)" if count else "pure Python"
