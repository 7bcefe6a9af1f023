"""Reading an upstream error body for the retry classifier: bounded, lenient, never raising.

The snippet is decoded as UTF-8 with replacement. When it holds JSON (a
whole document, or the `data:` lines of an SSE frame) the tree is walked,
at most `_MAX_NODES` nodes and `_MAX_DEPTH` levels deep, collecting
structured tokens (`code`, `type`, `status`, `reason`, Gemini `quotaId`),
human messages, retry delays and a status embedded in the body. When it
does not parse (a snippet cut in the middle of a document), lenient
regular expressions pick the same things out of the text.
"""

from __future__ import annotations

import json
import re

import attrs

__all__ = ["Body", "read_body"]

_TOKEN_KEYS = frozenset(
    {"code", "type", "status", "reason", "error_code", "quotaid", "quota_limit"}
)
_TEXT_KEYS = frozenset({"message", "detail", "error", "raw", "msg", "error_message"})
_MAX_NODES = 256
_MAX_DEPTH = 8
_LINE_END = re.compile(r"\r\n|\r|\n")
_LOOSE_TOKEN = re.compile(
    r'"(?:code|type|status|reason|error_code|quotaId|quota_limit)"\s*:\s*"([^"\\]{1,80})"',
    re.IGNORECASE,
)
_LOOSE_STATUS = re.compile(r'"(?:code|status)"\s*:\s*([1-5][0-9]{2})\b')
_LOOSE_TEXT = re.compile(
    r'"(?:message|detail|error|raw|msg|error_message)"\s*:\s*"((?:[^"\\]|\\.){1,2000})',
    re.IGNORECASE,
)
_LOOSE_DELAY = re.compile(r'"retryDelay"\s*:\s*"([^"\\]{1,40})"', re.IGNORECASE)


@attrs.define
class Body:
    """What the classifier learned from a snippet."""

    raw: str = ""
    tokens: list[str] = attrs.Factory(list)
    texts: list[str] = attrs.Factory(list)
    delays: list[str] = attrs.Factory(list)
    embedded: int | None = None
    nodes: int = 0


def read_body(snippet: bytes) -> Body:
    body = Body(raw=snippet.decode("utf-8", "replace"))
    documents = _json_documents(body.raw)
    for document in documents:
        _walk(document, 0, body)
    if not documents:
        body.tokens = [m.group(1) for m in _LOOSE_TOKEN.finditer(body.raw)][:32]
        body.texts = [m.group(1) for m in _LOOSE_TEXT.finditer(body.raw)][:16]
        body.delays = [m.group(1) for m in _LOOSE_DELAY.finditer(body.raw)][:4]
        status = _LOOSE_STATUS.search(body.raw)
        body.embedded = int(status.group(1)) if status else None
    return body


def _json_documents(text: str) -> list[object]:
    """The snippet as JSON, or the JSON `data:` lines of an SSE frame; else nothing."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("{", "["):
        candidates = [stripped]
    elif "data:" in text:
        lines = _LINE_END.split(text)[:64]
        candidates = [line[5:].strip() for line in lines if line.startswith("data:")]
        candidates = [line for line in candidates if line.startswith("{")][:16]
    else:
        return []
    documents = []
    for candidate in candidates:
        try:
            documents.append(json.loads(candidate))
        except (ValueError, RecursionError):  # truncated, not JSON, or nested absurdly
            continue
    return documents


def _walk(node: object, depth: int, body: Body) -> None:
    """Collect error fields wherever they sit: OpenAI/Anthropic `error.*`,
    Mistral's top level, Gemini's `[{"error": ...}]` and `details[]`,
    OpenRouter's `metadata.raw`. Bounded in depth and in nodes visited."""
    body.nodes += 1
    if depth > _MAX_DEPTH or body.nodes > _MAX_NODES:
        return
    if isinstance(node, list):
        for item in node:
            _walk(item, depth + 1, body)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        name = key.lower() if isinstance(key, str) else ""
        if isinstance(value, str):
            if name in _TOKEN_KEYS:
                body.tokens.append(value[:80])
            elif name in _TEXT_KEYS:
                body.texts.append(value)
            elif name == "retrydelay":
                body.delays.append(value[:40])
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if name in ("code", "status") and 100 <= value <= 599 and body.embedded is None:
                body.embedded = value
        else:
            _walk(value, depth + 1, body)
