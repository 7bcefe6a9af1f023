"""Helpers for reading the bundled example config, shared by tests/ and fuzz/."""

from __future__ import annotations

import re
import tomllib

_HEADER = re.compile(r"\[\[?[^\]]+\]\]?\s*(#.*)?")


def example_env(text: str) -> dict[str, str]:
    """HOME plus a plausible key for every variable the example's api_key_env names."""
    env = {"HOME": "/home/user"}
    for name in re.findall(r'^\s*api_key_env\s*=\s*"([A-Za-z0-9_]+)"', text, re.M):
        env[name] = f"sk-example-{name.lower()}-0123456789"
    return env


def uncomment_defaults(text: str) -> str:
    """Turn the documented defaults (`# key = value`, `# [table]`) into real TOML lines.

    Prose comments and illustrations (`#   key = value`, `## ...`) stay comments.
    """
    out = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") and not line.startswith("#  ") else None
        if body is not None and (_HEADER.fullmatch(body) or _is_key_value(body)):
            out.append(body)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _is_key_value(line: str) -> bool:
    try:
        return len(tomllib.loads(line)) == 1 and "=" in line
    except tomllib.TOMLDecodeError:
        return False
