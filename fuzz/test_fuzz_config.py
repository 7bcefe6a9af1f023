"""Fuzzing the config parser from the example config outwards.

Three layers, each starting from the bundled `config.example.toml` so that
mutations land deep inside providers and accounts rather than being rejected
at the top: line edits of the TOML text, value swaps in the parsed document,
and raw bytes through the CLI loader (UTF-8 and TOML errors included). The
invariant everywhere: a `Config` or `ConfigError` / `LoadError`, nothing else.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.cli._load import ConfigLocation, LoadError, load_config
from eggpool.cli._template import example_config_text
from eggpool.core.config import Config, ConfigError, parse_config
from tests.helpers.documents import leaves
from tests.helpers.example_config import example_env, uncomment_defaults

EXAMPLE = example_config_text()
LINES = EXAMPLE.splitlines()
ENV = example_env(EXAMPLE)
TOKENS = [
    '""', '"x"', "0", "-1", "1e309", "true", "[]", "{}", '["openai"]', '"5m"', '"$1"',
    '"http://h:1"', '"socks5://u:p@h"', "1979-05-27", "nan", '"your-api-key"', '"a\\nb"',
]  # fmt: skip


def _check(document: dict[str, Any], env: dict[str, str]) -> None:
    try:
        config = parse_config(document, env)
    except ConfigError as exc:
        assert exc.problems
        for secret in ENV.values():
            if secret != "/home/user":
                assert secret not in str(exc)
    else:
        assert isinstance(config, Config)


line_edits = st.lists(
    st.tuples(
        st.sampled_from(["delete", "duplicate", "replace_value", "uncomment", "swap"]),
        st.integers(min_value=0, max_value=max(len(LINES) - 1, 0)),
        st.sampled_from(TOKENS),
    ),
    max_size=6,
)


@given(line_edits, st.booleans())
def test_line_edits_of_the_example_parse_or_fail_cleanly(
    edits: list[tuple[str, int, str]], drop_env: bool
) -> None:
    lines = list(LINES) or [""]
    for op, position, token in edits:
        index = position % len(lines)
        line = lines[index]
        if op == "delete":
            del lines[index]
        elif op == "duplicate":
            lines.insert(index, line)
        elif op == "replace_value" and "=" in line:
            lines[index] = line.split("=", 1)[0] + "= " + token
        elif op == "uncomment" and line.startswith("# "):
            lines[index] = line[2:]
        elif op == "swap":
            other = (index * 7 + 3) % len(lines)
            lines[index], lines[other] = lines[other], line
        lines = lines or [""]
    try:
        document = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError:
        return
    _check(document, {} if drop_env else ENV)


BASE = tomllib.loads(uncomment_defaults(EXAMPLE)) if EXAMPLE else {}
PATHS = list(leaves(BASE))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@pytest.mark.skipif(not PATHS, reason="the example config is empty")
@given(st.lists(st.tuples(st.sampled_from(PATHS or [("x",)]), json_values), max_size=5))
def test_value_swaps_deep_in_the_document_parse_or_fail_cleanly(
    swaps: list[tuple[tuple[Any, ...], Any]],
) -> None:
    document = copy.deepcopy(BASE)
    for path, value in swaps:
        parent: Any = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _check(document, ENV)


@given(
    st.binary(max_size=400) | st.sampled_from([EXAMPLE.encode()[:n] for n in range(0, 4000, 97)])
)
def test_any_file_contents_load_or_fail_with_a_load_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-config.toml"
    path.write_bytes(data)
    try:
        load_config(ConfigLocation(Path(path), "--config"), ENV)
    except LoadError as exc:
        assert exc.lines
        assert exc.lines[0].startswith(str(path))
