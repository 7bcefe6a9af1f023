"""Byte spans of the members of a JSON object, so a body can be edited without re-serializing it.

Theory of operation. The proxy forwards request bodies byte for byte, but
sometimes must change one value (the `model`, without its provider suffix)
or add one member (`stream_options.include_usage`). Decoding and re-encoding
the whole body would change number spellings (`1.0`, `1e2`), escapes, key
order of duplicates and whitespace, so instead the body is scanned for the
byte spans of one object's members and edited in place with `splice`.

The scanner only ever runs on bytes that `json.loads` has already accepted
(strict RFC 8259 JSON, UTF-8), so it need not diagnose errors; it raises
`ValueError` if its assumptions ever fail. It works on bytes, where UTF-8
guarantees that `"` and `\\` never occur inside a multi-byte character.

Speed comes from the regex engine, not from Python loops: one compiled
pattern matches a whole container up to seven levels deep (strings with
their escapes, brackets inside strings, whitespace), which covers the
messages and tool schemas of real requests in one call. Deeper nesting falls
back to counting brackets, where another pattern consumes everything up to
the next bracket outside a string. Nothing recurses in Python, and
possessive quantifiers keep every pattern free of backtracking.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["Member", "object_members", "skip_value", "splice"]

_WS = re.compile(rb"[ \t\n\r]*+")
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_SCALAR = re.compile(rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?|true|false|null")
_STRING_RE = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_FLAT = rb'(?:[^"\[\]{}]++|' + _STRING_RE + rb")*+"  # no bracket outside a string
# Everything up to and including the next bracket that is not inside a string.
_TO_BRACKET = re.compile(_FLAT + rb"[\[\]{}]", re.DOTALL)


def _nested(depth: int) -> bytes:
    """A regex for a whole container nested at most `depth` deep (JSON is valid: brackets pair)."""
    inner = _FLAT
    for _ in range(depth):
        inner = rb'(?:[^"\[\]{}]++|' + _STRING_RE + rb"|[\[{]" + inner + rb"[\]}])*+"
    return rb"[\[{]" + inner + rb"[\]}]"


# Most containers of a request (messages, tools and their schemas) are skipped by one match;
# deeper ones fall back to counting brackets, trying this again one level down.
_CONTAINER = re.compile(_nested(7), re.DOTALL)
_OPEN = frozenset(b"[{")


class Member(NamedTuple):
    """One `"key": value` of an object: the decoded key and byte offsets into the body."""

    key: str
    key_start: int  # the key's opening quote
    value_start: int
    value_end: int  # one past the value's last byte


def object_members(data: bytes, start: int = 0) -> tuple[list[Member], int, int]:
    """The members of the object at `start` (leading whitespace allowed).

    Returns `(members, open, close)`: `data[open]` is the `{` and
    `data[close]` the matching `}`. Members come in body order, duplicates
    included.
    """
    pos = _WS.match(data, start).end()  # type: ignore[union-attr]
    if data[pos : pos + 1] != b"{":
        raise ValueError(f"no JSON object at offset {pos}")
    opening = pos
    members: list[Member] = []
    pos = _skip_ws(data, pos + 1)
    if data[pos : pos + 1] == b"}":
        return members, opening, pos
    while True:
        key_match = _STRING.match(data, pos)
        if key_match is None:
            raise ValueError(f"expected a key at offset {pos}")
        key_end = key_match.end()
        colon = _skip_ws(data, key_end)
        if data[colon : colon + 1] != b":":
            raise ValueError(f"expected ':' at offset {colon}")
        value_start = _skip_ws(data, colon + 1)
        value_end = skip_value(data, value_start)
        members.append(Member(_decode_key(data[pos:key_end]), pos, value_start, value_end))
        pos = _skip_ws(data, value_end)
        separator = data[pos : pos + 1]
        if separator == b"}":
            return members, opening, pos
        if separator != b",":
            raise ValueError(f"expected ',' or '}}' at offset {pos}")
        pos = _skip_ws(data, pos + 1)


def skip_value(data: bytes, pos: int) -> int:
    """The offset just past the JSON value that starts at `pos`."""
    first = data[pos : pos + 1]
    if first == b'"':
        match = _STRING.match(data, pos)
    elif first and first[0] in _OPEN:
        return _skip_container(data, pos)
    else:
        match = _SCALAR.match(data, pos)
    if match is None:
        raise ValueError(f"expected a JSON value at offset {pos}")
    return match.end()


def splice(data: bytes, edits: Iterable[tuple[int, int, bytes]]) -> bytes:
    """`data` with each `(start, end, replacement)` applied; spans must not overlap.

    An insertion is `(at, at, text)`. Bytes outside the spans are copied as is.
    """
    parts = []
    cursor = 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < cursor or end < start:
            raise ValueError("overlapping or inverted edit spans")
        parts += [data[cursor:start], replacement]
        cursor = end
    parts.append(data[cursor:])
    return b"".join(parts)


def _skip_container(data: bytes, pos: int) -> int:
    whole = _CONTAINER.match(data, pos)
    if whole is not None:
        return whole.end()
    depth = 1
    pos += 1
    while depth:
        match = _TO_BRACKET.match(data, pos)
        if match is None:
            raise ValueError(f"unterminated container after offset {pos}")
        pos = match.end()
        if data[pos - 1] not in _OPEN:
            depth -= 1
        elif (whole := _CONTAINER.match(data, pos - 1)) is not None:
            pos = whole.end()
        else:
            depth += 1
    return pos


def _skip_ws(data: bytes, pos: int) -> int:
    return _WS.match(data, pos).end()  # type: ignore[union-attr]


def _decode_key(raw: bytes) -> str:
    if b"\\" in raw:
        decoded = json.loads(raw)
        assert isinstance(decoded, str)
        return decoded
    return raw[1:-1].decode("utf-8")
