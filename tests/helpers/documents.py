"""Walking JSON-like documents (for mutation-based fuzzing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in `node` (dict keys and list indexes), parents before children."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from leaves(value, (*path, index))
