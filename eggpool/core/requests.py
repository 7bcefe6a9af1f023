"""Client request bodies: validate what the proxy relies on, rewrite only what it must.

Theory of operation. `parse_request(protocol, body, provider_ids=...)` turns
the raw bytes of a `POST /v1/chat/completions` (OpenAI) or `POST
/v1/messages` (Anthropic) body into a `ParsedRequest`, or a `LocalFailure`
naming the problem (docs/protocols.md has the full rules). It checks only
the fields the proxy itself acts on; everything else is the upstream's
business and is forwarded untouched.

1. The body must be UTF-8, strict RFC 8259 JSON (no `NaN` / `Infinity`), and
   an object. It is decoded once with `json.loads` for the semantics.
2. Keys the proxy interprets (`model`, `stream`, the output-token fields,
   OpenAI's `stream_options`) must not be repeated at the top level:
   upstreams differ on which copy wins, so the request would be ambiguous.
3. `model` is a non-empty string. A `model/provider` suffix pins a
   configured provider: the model is split at its LAST `/`, and only when the
   part after it is a configured provider id (and the part before it is not
   empty), so `openai/gpt-oss-20b` stays whole while `openai/gpt-oss-20b/groq`
   becomes `openai/gpt-oss-20b` pinned to `groq`.
4. `stream` is a boolean; `null` or absent means false (OpenAI documents it
   as `boolean | null`). Output-token fields (`max_completion_tokens`, then
   legacy `max_tokens`, for OpenAI; `max_tokens` for Anthropic) are integers
   in [0, 2**31 - 1] when present; `null` means absent. A missing Anthropic
   `max_tokens` is left for the upstream to reject: it owns that rule, and
   some Anthropic-compatible providers apply a default instead.
5. OpenAI streams are made to report usage: `stream_options.include_usage`
   is set to true (the member is added, or the key added to an existing
   object, or a `false` / `null` value replaced). `usage_injected` tells the
   stream relay to drop the usage-only chunk the client did not ask for. A
   `stream_options` that is not an object (or `null`) is left for the
   upstream to reject. Non-streaming requests are never changed this way.

Byte fidelity. The upstream body is the client's bytes object itself when
nothing changes. Otherwise `_json_spans` finds the byte spans of the
members and the edits are spliced in; every other byte is kept, so number
spellings, escapes, whitespace and key order reach the provider as sent.
The new `model` string keeps the client's escaping when the unsuffixed
value is a prefix of the original token (the usual case), and is otherwise
re-encoded minimally (`json.dumps(..., ensure_ascii=False)`).

Input estimate. `estimate_input_tokens` is deterministic and cheap (two C
scans of the body, no decoding): base64 media payloads (data URLs, or 1,024+
base64 characters under a `data` key) count `MEDIA_TOKENS` each, whatever
their size, since base64 bytes say nothing about image tokens; a `\\uXXXX` escape
counts as the 3 UTF-8 bytes it usually stands for, and every other byte of
the body counts 1/4 token. It feeds reservations and the context guard, not
billing.

Context guard. `check_limits(request, limits)` (also run by `parse_request`
when limits are given) refuses what the upstream would refuse anyway,
without spending an attempt: the requested output above the model's output
limit (exact), or the input, or input plus requested output, above the
input or context limit. Because the input is only estimated it is taken at
80% of the estimate (`guard_input_tokens`): a request is refused on its
input only when the estimate exceeds the limit by 25%, so a request a real
tokenizer would accept is not refused for a rough count. Messages follow
the providers' own wording, so clients that parse them (Claude Code reads
`input length and `max_tokens` exceed context limit: A + B > C` to shrink
`max_tokens`; "prompt is too long" and "maximum context length" are what
clients look for to detect an overflow) react as they would to the provider.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Collection
from typing import Any

from eggpool.core._catalog_rules import EffectiveLimits
from eggpool.core._json_spans import Member, object_members, splice
from eggpool.core._parsed import ParsedRequest
from eggpool.core.config import Protocol
from eggpool.core.errors import FailureKind, LocalFailure, _shown

__all__ = [
    "MAX_TOKENS_FIELD",
    "MEDIA_TOKENS",
    "ParsedRequest",
    "check_limits",
    "estimate_input_tokens",
    "guard_input_tokens",
    "parse_request",
    "split_model",
]

MAX_TOKENS_FIELD = 2**31 - 1
"""The largest output-token value accepted (no model comes near; it keeps counters bounded)."""

MEDIA_TOKENS = 1_600
"""Tokens counted per base64 media payload: about one large image for either provider."""

_MEDIA_MIN_CHARS = 1_024
# Base64 media in a request: a data URL (OpenAI `image_url.url`, `file.file_data`), or a long
# base64 string under a `data` key (Anthropic `source.data`, OpenAI `input_audio.data`).
# `\\` is allowed in the alphabet because some encoders write `/` as `\/`.
_B64 = rb"[A-Za-z0-9+/_\\-]"
_MEDIA = re.compile(
    rb'"data:[^",]{0,200}?;base64,%s*+={0,2}"|"data"[ \t\n\r]*+:[ \t\n\r]*+"%s{%d,}+={0,2}"'
    % (_B64, _B64, _MEDIA_MIN_CHARS)
)
_USAGE_OBJECT = b'{"include_usage":true}'
_USAGE_MEMBER = b'"stream_options":' + _USAGE_OBJECT
_INTERPRETED = {
    Protocol.OPENAI: ("model", "stream", "stream_options", "max_tokens", "max_completion_tokens"),
    Protocol.ANTHROPIC: ("model", "stream", "max_tokens"),
}
_OUTPUT_FIELDS = {
    Protocol.OPENAI: ("max_completion_tokens", "max_tokens"),
    Protocol.ANTHROPIC: ("max_tokens",),
}


def parse_request(
    protocol: Protocol,
    body: bytes,
    *,
    split: Callable[[str], tuple[str, str | None]],
    limits: EffectiveLimits | None = None,
    fingerprint: bool = True,
) -> ParsedRequest | LocalFailure:
    """Validate a client body and prepare the upstream body; see the module docstring.

    `split` applies the model/provider suffix rule (`split_model`, as the
    catalog sees it: `Catalog.split_model_id`). `fingerprint=False` skips the
    conversation fingerprint (the caller knows the session from a header).
    """
    document = _load(body)
    if isinstance(document, LocalFailure):
        return document
    # The member spans are found only when they are needed: a key that may be repeated,
    # a model to rewrite or a `stream_options` to edit (most requests need none of it).
    spans: dict[str, Member] | None = None
    if _may_repeat(body, protocol):
        found = _interpreted_spans(body, protocol)
        if isinstance(found, LocalFailure):
            return found
        spans = found

    requested_model = document.get("model")
    if requested_model is None:
        return LocalFailure.missing_field("model")
    if not isinstance(requested_model, str):
        return LocalFailure.invalid_type("model", "a string", _describe(requested_model))
    if not requested_model:
        return LocalFailure.invalid_value("model", "it must not be empty")
    if not _is_unicode(requested_model):
        return LocalFailure.invalid_value("model", "it contains an unpaired surrogate escape")

    stream = document.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return LocalFailure.invalid_type("stream", "a boolean", _describe(stream))

    max_output: int | None = None
    max_output_param: str | None = None
    for field in _OUTPUT_FIELDS[protocol]:
        value = _token_field(document, field)
        if isinstance(value, LocalFailure):
            return value
        if value is not None and max_output is None:
            max_output, max_output_param = value, field

    edits: list[tuple[int, int, bytes]] = []
    model, pinned = split(requested_model)
    if pinned is not None:
        span = _spans(body, protocol, spans)["model"]
        token = body[span.value_start : span.value_end]
        edits.append((span.value_start, span.value_end, _model_token(token, model, pinned)))

    client_usage = injected = False
    if protocol is Protocol.OPENAI and stream:
        options = (
            _spans(body, protocol, spans)["stream_options"]
            if "stream_options" in document
            else None
        )
        usage = _usage_edits(body, document, options)
        if isinstance(usage, LocalFailure):
            return usage
        usage_edits, client_usage = usage
        injected = bool(usage_edits)
        edits += usage_edits

    parsed = ParsedRequest(
        protocol=protocol,
        requested_model=requested_model,
        model=model,
        pinned_provider=pinned,
        stream=bool(stream),
        max_output_tokens=max_output,
        max_output_param=max_output_param,
        client_include_usage=client_usage,
        usage_injected=injected,
        input_tokens_estimate=estimate_input_tokens(body),
        body=splice(body, edits) if edits else body,
        fingerprint=(conversation_fingerprint(protocol, document) if fingerprint else None),
    )
    if limits is not None:
        failure = check_limits(parsed, limits)
        if failure is not None:
            return failure
    return parsed


def split_model(
    model: str,
    provider_ids: Collection[str],
    *,
    served: Callable[[str, str | None], bool] | None = None,
) -> tuple[str, str | None]:
    """`("x/groq", {"groq"})` -> `("x", "groq")`; anything else stays whole, unpinned.

    The split is at the last `/` and only when the suffix is a configured
    provider, so Groq's `openai/gpt-oss-20b` stays whole. With `served`
    (`served(model_id, provider_or_None)`: is it routable), a whole id that is
    served wins over a split pair that is not: should a provider be called
    `gpt-oss-20b`, Groq's `openai/gpt-oss-20b` still routes.
    """
    base, slash, suffix = model.rpartition("/")
    if not (slash and base and suffix in provider_ids):
        return model, None
    if served is not None and not served(base, suffix) and served(model, None):
        return model, None
    return base, suffix


# -- validation ------------------------------------------------------------------------


class _NonStandardConstant(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NonStandardConstant(name)


# Made once: `json.loads` with an argument builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _load(body: bytes) -> dict[str, Any] | LocalFailure:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LocalFailure.invalid_json(
            f"it is not valid UTF-8 (bad byte at offset {exc.start})."
        )
    if not text.strip(" \t\r\n"):
        return LocalFailure.invalid_json("the body is empty.")
    try:
        value = _DECODER.decode(text)
    except _NonStandardConstant as exc:
        return LocalFailure.invalid_json(f"{exc} is not a JSON value.")
    except json.JSONDecodeError as exc:
        return LocalFailure.invalid_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}.")
    except RecursionError:
        return LocalFailure.invalid_json("it is nested too deeply.")
    except ValueError:  # an integer past Python's digit limit
        return LocalFailure.invalid_json("it holds a number too long to read.")
    if not isinstance(value, dict):
        return LocalFailure.not_an_object(_describe(value))
    return value


def _token_field(document: dict[str, Any], field: str) -> int | LocalFailure | None:
    value = document.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return LocalFailure.invalid_type(field, "an integer", _describe(value))
    if not 0 <= value <= MAX_TOKENS_FIELD:
        shown = f", but got {value}" if abs(value) < 10**12 else ""
        return LocalFailure.invalid_value(
            field, f"expected a value between 0 and {MAX_TOKENS_FIELD}{shown}"
        )
    return value


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- member spans ----------------------------------------------------------------------

_WHITESPACE = b" \t\r\n"
_QUOTED_KEYS = {
    protocol: tuple(b'"%s"' % key.encode() for key in keys)
    for protocol, keys in _INTERPRETED.items()
}
# A `\u00XX` escape that could spell a letter or `_` of an interpreted key.
_KEY_ESCAPE = re.compile(rb"\\u00[5-7]")


def _may_repeat(body: bytes, protocol: Protocol) -> bool:
    """Whether an interpreted key could occur twice at the top level: written out twice
    somewhere in the body, or spelled with escapes. False is certain; True needs a look."""
    return any(body.count(key) > 1 for key in _QUOTED_KEYS[protocol]) or (
        b"\\u00" in body and _KEY_ESCAPE.search(body) is not None
    )


def _interpreted_spans(body: bytes, protocol: Protocol) -> dict[str, Member] | LocalFailure:
    """The top-level members the proxy interprets, by key, or the one that is repeated."""
    members, _, _ = object_members(body)
    spans: dict[str, Member] = {}
    for member in members:
        if member.key in _INTERPRETED[protocol]:
            if member.key in spans:
                return LocalFailure.duplicate_field(member.key)
            spans[member.key] = member
    return spans


def _spans(body: bytes, protocol: Protocol, known: dict[str, Member] | None) -> dict[str, Member]:
    """`known`, or the spans found now (after `_may_repeat` ruled out repeated keys)."""
    if known is not None:
        return known
    found = _interpreted_spans(body, protocol)
    assert not isinstance(found, LocalFailure)
    return found


# -- rewriting -------------------------------------------------------------------------


def _model_token(token: bytes, model: str, provider: str) -> bytes:
    """The JSON string for `model`, cut from the client's `token` when that is exact."""
    tail = b"/" + provider.encode("utf-8") + b'"'
    if token.endswith(tail):
        candidate = token[: -len(tail)] + b'"'
        try:
            if json.loads(candidate.decode("utf-8")) == model:
                return candidate
        except ValueError:  # the `/` was the end of an escape such as `\/`
            pass
    return json.dumps(model, ensure_ascii=False).encode("utf-8")


def _usage_edits(
    body: bytes, document: dict[str, Any], member: Member | None
) -> tuple[list[tuple[int, int, bytes]], bool] | LocalFailure:
    """Edits that make an OpenAI stream report usage, and whether the client asked for it."""
    if member is None:
        # After the last member (`model` is present, so there is one): the body is an
        # object, so it ends in `}` and only whitespace separates that from the last value.
        close = len(body.rstrip(_WHITESPACE)) - 1
        end = len(body[:close].rstrip(_WHITESPACE))
        return [(end, end, b"," + _USAGE_MEMBER)], False
    options = document["stream_options"]
    if options is None:
        return [(member.value_start, member.value_end, _USAGE_OBJECT)], False
    if not isinstance(options, dict):
        return [], False  # the upstream's to reject, with its own message
    inner, opening, _ = object_members(body, member.value_start)
    found = [m for m in inner if m.key == "include_usage"]
    if len(found) > 1:
        return LocalFailure.duplicate_field("stream_options.include_usage")
    if not found:
        text = b'"include_usage":true' + (b"," if inner else b"")
        return [(opening + 1, opening + 1, text)], False
    value = options["include_usage"]
    if value is True:
        return [], True
    if value is False or value is None:
        return [(found[0].value_start, found[0].value_end, b"true")], False
    return [], False  # not a boolean: the upstream's to reject


# -- conversation fingerprint ----------------------------------------------------------

_SYSTEM_ROLES = frozenset({"system", "developer"})


def conversation_fingerprint(protocol: Protocol, document: dict[str, Any]) -> str | None:
    """A stable id of a conversation: its system prompt and first message.

    Session affinity falls back to it when the client sends no session
    header. Every turn of a conversation repeats the same opening, so all
    turns share it. It checksums (CRC-32 and Adler-32) the `repr` of the
    decoded opening: deterministic for the same JSON values, and cheaper
    than scanning the raw bytes again. None when there is no first message.
    """
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    if protocol is Protocol.ANTHROPIC:
        opening: object = (document.get("system"), messages[0])
    else:  # OpenAI: the leading system / developer messages and the first other one
        count = 1
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            if not (isinstance(role, str) and role in _SYSTEM_ROLES):
                break
            count += 1
        opening = messages[:count]
    data = repr(opening).encode("utf-8", "surrogatepass")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


# -- estimate and guard ----------------------------------------------------------------


def estimate_input_tokens(body: bytes) -> int:
    """A rough, deterministic input-token count of a request body (see the module docstring)."""
    media_count = media_bytes = 0
    for match in _MEDIA.finditer(body):
        media_count += 1
        media_bytes += match.end() - match.start()
    text_bytes = max(0, len(body) - media_bytes - 3 * body.count(b"\\u"))
    return -(-text_bytes // 4) + media_count * MEDIA_TOKENS


def guard_input_tokens(estimate: int) -> int:
    """The input count the guard uses: 80% of the estimate, allowing it to run 25% high."""
    return estimate * 4 // 5


def check_limits(request: ParsedRequest, limits: EffectiveLimits) -> LocalFailure | None:
    """The 400 that a request over the model's limits gets, or None (see the module docstring)."""
    if not limits.enforce:
        return None
    anthropic = request.protocol is Protocol.ANTHROPIC
    tokens = guard_input_tokens(request.input_tokens_estimate)
    output = request.max_output_tokens
    context = limits.context

    input_limit, kind = context, "context"
    if limits.input is not None and (input_limit is None or limits.input < input_limit):
        input_limit, kind = limits.input, "input"
    if input_limit is not None and tokens > input_limit:
        if anthropic:
            message = (
                f"prompt is too long: {tokens} tokens > {input_limit} maximum "
                "(input tokens estimated by the proxy)"
            )
        else:
            message = (
                f"This model's maximum {kind} length is {input_limit} tokens. However, your "
                f"messages resulted in about {tokens} tokens (estimated by the proxy). "
                "Please reduce the length of the messages."
            )
        return _too_long(FailureKind.CONTEXT_LENGTH_EXCEEDED, message, "messages")

    if output is None:
        return None
    output_limit = limits.output
    if output_limit is not None and output > output_limit:
        param = request.max_output_param or "max_tokens"
        if anthropic:
            message = (
                f"max_tokens: {output} > {output_limit}, which is the maximum allowed number "
                f"of output tokens for {_shown(request.model)}"
            )
        else:
            message = (
                f"{param} is too large: {output}. This model supports at most {output_limit} "
                f"completion tokens, whereas you provided {output}."
            )
        return _too_long(FailureKind.OUTPUT_LIMIT_EXCEEDED, message, param)

    if context is not None and tokens + output > context:
        if anthropic:
            message = (
                f"input length and `max_tokens` exceed context limit: {tokens} + {output} > "
                f"{context}, decrease input length or `max_tokens` and try again "
                "(input length estimated by the proxy)"
            )
        else:
            message = (
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested about {tokens + output} tokens ({tokens} in the messages, as "
                f"estimated by the proxy, {output} in the completion). Please reduce the "
                "length of the messages or completion."
            )
        return _too_long(FailureKind.CONTEXT_LENGTH_EXCEEDED, message, "messages")
    return None


def _too_long(kind: FailureKind, message: str, param: str | None) -> LocalFailure:
    return LocalFailure(kind=kind, message=message, param=param)
