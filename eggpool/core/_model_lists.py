"""Model-list parsing: upstream `GET /models` bytes -> a bounded, sanitized page.

Theory of operation. `parse_model_list(body)` is total: any bytes give a
`ModelListPage` or a `ModelListFailure` with a short reason, never an
exception (upstream trouble is data, docs/architecture.md). A page holds one
`ListedModel` per valid row; malformed rows are skipped and counted, and a
counted skip makes the page non-authoritative for withdrawals (the catalog
cannot tell which model a broken row was, so it must not conclude that a
model is gone).

Shapes understood (all are `{"data": [...]}` objects; anything else fails):

- OpenAI `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`
  (https://platform.openai.com/docs/api-reference/models/list); Groq, DeepSeek,
  Ollama `/v1/models`, OpenCode Go and most OpenAI-compatible providers
  answer the same way, sometimes with extra keys (Groq `context_window`,
  `max_completion_tokens`, `active`).
- Anthropic `{"data":[{"type":"model","id","display_name","created_at"}],
  "has_more","first_id","last_id"}` (https://docs.anthropic.com/en/api/models-list):
  paginated. The page reports `has_more`/`last_id`; `next_page_cursor` tells
  the shell which `after_id` to fetch next (or to stop), and `combine_pages`
  folds the pages into one. A listing whose last page still says
  `has_more` (the shell stopped at `MAX_PAGES`, a cursor repeated, or a
  later page failed) is incomplete: the catalog uses it to add models,
  never to withdraw them.
- OpenRouter rows with `context_length`, `top_provider.max_completion_tokens`,
  `pricing` (decimal strings, dollars per token), `architecture`
  (https://openrouter.ai/docs/models).

Each row keeps a sanitized metadata mapping under its original keys (the
pricing module reads `pricing`, the limits below read `context_length` ...):
scalars (bounded strings, finite floats, SQLite-sized integers), short lists
of scalars, and one level of nesting only under `NESTED_KEYS`. Limits and a
protocol hint are extracted once, here, so the catalog never re-reads JSON.
Rows with `"active": false` (Groq's deactivated models) are left out, not
counted as malformed: an inactive model is not served.
"""

from __future__ import annotations

import enum
import json
import math
import types
from collections.abc import Mapping, Sequence

import attrs

from eggpool.core._config_model import Protocol

__all__ = [
    "MAX_PAGES",
    "ListShape",
    "ListedModel",
    "ModelListFailure",
    "ModelListPage",
    "TokenLimits",
    "combine_pages",
    "display_name",
    "extract_limits",
    "listed_model",
    "next_page_cursor",
    "parse_model_list",
    "protocol_hint",
    "sanitize_metadata",
    "valid_model_id",
]

MAX_BODY_BYTES = 32 * 1024 * 1024  # OpenRouter's full list is ~1.5 MB; leave headroom
MAX_MODELS_PER_PAGE = 10_000  # further rows count as skipped
MAX_PAGES = 100  # Anthropic pages hold up to 1,000 models (`limit`), 20 by default
MAX_ID_CHARS = 256
MAX_METADATA_KEYS = 64
MAX_NESTED_KEYS = 32
MAX_KEY_CHARS = 64
MAX_STR_CHARS = 2048
MAX_LIST_ITEMS = 64
MAX_TOKEN_LIMIT = 10**9  # a larger "context window" is a provider bug, not a limit
_MAX_INT = 2**63 - 1  # what SQLite stores; larger values overflowed the reference's tables

# Only these keys may hold an object (one level deep); every other object is dropped.
# `pricing` and `cost` (models.dev style) are read by eggpool.core.pricing.metadata_rates.
NESTED_KEYS = frozenset(
    {"architecture", "capabilities", "cost", "per_request_limits", "pricing", "top_provider"}
)
# Looked up in order; dotted names read one level into a nested object.
CONTEXT_KEYS = (
    "max_context_tokens",
    "context_window",
    "context_length",
    "max_position_embeddings",
    "max_context_length",  # Mistral
)
INPUT_KEYS = ("max_input_tokens", "input_token_limit")
OUTPUT_KEYS = (
    "max_output_tokens",
    "output_token_limit",
    "max_completion_tokens",
    "top_provider.max_completion_tokens",
)
PROTOCOL_KEYS = ("api_type", "protocol")
_LIMIT_KEYS = frozenset(k.partition(".")[0] for k in CONTEXT_KEYS + INPUT_KEYS + OUTPUT_KEYS)
# Kept first, so a row with very many keys never loses the ones EggPool reads.
_PREFERRED_KEYS = (
    "id",
    "object",
    "type",
    "created",
    "created_at",
    "owned_by",
    "display_name",
    "name",
    *sorted(_LIMIT_KEYS),
    *PROTOCOL_KEYS,
    *sorted(NESTED_KEYS),
)
_PREFERRED_SET = frozenset(_PREFERRED_KEYS)
_DROP = object()


class ListShape(enum.StrEnum):
    """Which family a list looked like (for diagnostics; both parse the same way)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@attrs.frozen(kw_only=True, slots=True)
class TokenLimits:
    """Token limits of one model; None means unknown."""

    context: int | None = None
    input: int | None = None
    output: int | None = None


@attrs.frozen(kw_only=True, slots=True)
class ListedModel:
    """One valid row of a model list."""

    id: str
    metadata: Mapping[str, object] = attrs.field(factory=lambda: types.MappingProxyType({}))
    display_name: str | None = None
    limits: TokenLimits = TokenLimits()
    protocol_hint: Protocol | None = None


@attrs.frozen(kw_only=True, slots=True)
class ModelListPage:
    """A parsed page, or several pages combined by `combine_pages`.

    `skipped` counts malformed or excess rows, `duplicates` repeated ids
    (the first row wins). `complete` is false while `has_more` is set.
    """

    models: tuple[ListedModel, ...] = ()
    shape: ListShape = ListShape.OPENAI
    skipped: int = 0
    duplicates: int = 0
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
    pages: int = 1

    @property
    def complete(self) -> bool:
        return not self.has_more

    @property
    def authoritative(self) -> bool:
        """Whether a model missing from this listing may count as omitted by the provider."""
        return self.complete and self.skipped == 0

    @property
    def next_after_id(self) -> str | None:
        """The `after_id` cursor for the next page, if this page says there is one."""
        if not self.has_more:
            return None
        if self.last_id is not None:
            return self.last_id
        return self.models[-1].id if self.models else None


@attrs.frozen(kw_only=True, slots=True)
class ModelListFailure:
    """A response that is not a model list; `reason` never quotes the body."""

    reason: str


def parse_model_list(body: bytes) -> ModelListPage | ModelListFailure:
    """Parse one model-list response body. Never raises."""
    if len(body) > MAX_BODY_BYTES:
        return ModelListFailure(reason=f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        return ModelListFailure(reason=f"not JSON: {exc.msg} at offset {exc.pos}")
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, huge integers, nesting
        return ModelListFailure(reason=f"not JSON: {type(exc).__name__}")
    data: object
    if isinstance(document, list):  # Together AI answers with a bare array of models
        document, data = {}, document
    elif not isinstance(document, dict):
        return ModelListFailure(reason=f"expected a JSON object, got {_kind(document)}")
    else:
        data = document.get("data")
    if not isinstance(data, list):
        if "error" in document:
            return ModelListFailure(reason="the provider answered with an error object")
        if data is None:
            return ModelListFailure(reason='the object has no "data" list')
        return ModelListFailure(reason=f'"data" is {_kind(data)}, not a list')
    models: list[ListedModel] = []
    seen: set[str] = set()
    skipped = max(0, len(data) - MAX_MODELS_PER_PAGE)
    duplicates = 0
    for row in data[:MAX_MODELS_PER_PAGE]:
        if isinstance(row, dict) and row.get("active") is False:
            continue
        model = listed_model(row)
        if model is None:
            skipped += 1
        elif model.id in seen:
            duplicates += 1
        else:
            seen.add(model.id)
            models.append(model)
    return ModelListPage(
        models=tuple(models),
        shape=_shape(document, data),
        skipped=skipped,
        duplicates=duplicates,
        has_more=document.get("has_more") is True,
        first_id=_cursor(document.get("first_id")),
        last_id=_cursor(document.get("last_id")),
    )


def next_page_cursor(pages: Sequence[ModelListPage], *, max_pages: int = MAX_PAGES) -> str | None:
    """The `after_id` to fetch next, or None to stop.

    Stops when the last page is final, after `max_pages` pages, or when a
    cursor repeats (a provider looping on the same page).
    """
    if not pages or len(pages) >= max_pages:
        return None
    cursor = pages[-1].next_after_id
    if cursor is None or any(page.next_after_id == cursor for page in pages[:-1]):
        return None
    return cursor


def combine_pages(pages: Sequence[ModelListPage]) -> ModelListPage:
    """Fold the pages of one listing into one page, in order; the first row of an id wins.

    `has_more` is the last page's: a listing the shell stopped early stays
    incomplete. Combining no pages gives an empty, complete listing.
    """
    if not pages:
        return ModelListPage(pages=0)
    models: list[ListedModel] = []
    seen: set[str] = set()
    duplicates = 0
    for page in pages:
        duplicates += page.duplicates
        for model in page.models:
            if model.id in seen:
                duplicates += 1
            else:
                seen.add(model.id)
                models.append(model)
    return ModelListPage(
        models=tuple(models),
        shape=pages[0].shape,
        skipped=sum(page.skipped for page in pages),
        duplicates=duplicates,
        has_more=pages[-1].has_more,
        first_id=pages[0].first_id,
        last_id=pages[-1].last_id,
        pages=sum(page.pages for page in pages),
    )


def listed_model(row: object) -> ListedModel | None:
    """A `ListedModel` from one row (also used for restored snapshot rows), or None."""
    if not isinstance(row, Mapping):
        return None
    model_id = row.get("id")
    if not isinstance(model_id, str) or not valid_model_id(model_id):
        return None
    metadata = sanitize_metadata(row)
    return ListedModel(
        id=model_id,
        metadata=metadata,
        display_name=display_name(metadata),
        limits=extract_limits(metadata),
        protocol_hint=protocol_hint(metadata),
    )


def valid_model_id(model_id: str) -> bool:
    """Non-empty, bounded, printable (no control characters or lone surrogates), unpadded."""
    return (
        0 < len(model_id) <= MAX_ID_CHARS
        and model_id.isprintable()
        and model_id == model_id.strip()
    )


def sanitize_metadata(raw: Mapping[str, object]) -> Mapping[str, object]:
    """A read-only copy of `raw` holding only bounded, JSON- and SQLite-safe values."""
    return _clean_object(raw, MAX_METADATA_KEYS, nested=True)


def display_name(metadata: Mapping[str, object]) -> str | None:
    for key in ("display_name", "name"):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip() and value.isprintable():
            return value.strip()
    return None


def extract_limits(metadata: Mapping[str, object]) -> TokenLimits:
    """Token limits from metadata keys (`CONTEXT_KEYS`, `INPUT_KEYS`, `OUTPUT_KEYS`, in order)."""
    return TokenLimits(
        context=_first_limit(metadata, CONTEXT_KEYS),
        input=_first_limit(metadata, INPUT_KEYS),
        output=_first_limit(metadata, OUTPUT_KEYS),
    )


def protocol_hint(metadata: Mapping[str, object]) -> Protocol | None:
    """The protocol a row declares in `api_type` or `protocol`, if it names one we speak."""
    for key in PROTOCOL_KEYS:
        value = metadata.get(key)
        if isinstance(value, str):
            try:
                return Protocol(value.strip().lower())
            except ValueError:
                continue
    return None


# --- helpers ------------------------------------------------------------------------


def _first_limit(metadata: Mapping[str, object], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        head, _, tail = key.partition(".")
        value = metadata.get(head)
        if tail:
            value = value.get(tail) if isinstance(value, Mapping) else None
        limit = _token_count(value)
        if limit is not None:
            return limit
    return None


def _token_count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        value = int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else None
    if isinstance(value, int) and 0 < value <= MAX_TOKEN_LIMIT:
        return value
    return None


def _clean_object(raw: Mapping[str, object], cap: int, *, nested: bool) -> Mapping[str, object]:
    out: dict[str, object] = {}
    ordered = [k for k in _PREFERRED_KEYS if k in raw] if nested else []
    ordered += [k for k in raw if not (nested and k in _PREFERRED_SET)]
    for key in ordered:
        if len(out) >= cap:
            break
        if not isinstance(key, str) or not _clean_str(key, MAX_KEY_CHARS):
            continue
        value = raw[key]
        if isinstance(value, Mapping):
            if nested and key in NESTED_KEYS:
                out[key] = _clean_object(value, MAX_NESTED_KEYS, nested=False)
            continue
        clean = _clean_value(value)
        if clean is not _DROP:
            out[key] = clean
    return types.MappingProxyType(out)


def _clean_value(value: object) -> object:
    if isinstance(value, list | tuple):
        items = [_clean_scalar(item) for item in value[:MAX_LIST_ITEMS]]
        return tuple(item for item in items if item is not _DROP)
    return _clean_scalar(value)


def _clean_scalar(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else _DROP
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, str):
        return value if _clean_str(value, MAX_STR_CHARS) else _DROP
    return _DROP


def _clean_str(value: str, cap: int) -> bool:
    if len(value) > cap:
        return False
    try:
        value.encode("utf-8")  # lone surrogates (from "\ud800" escapes) cannot be re-encoded
    except UnicodeEncodeError:
        return False
    return True


def _cursor(value: object) -> str | None:
    return value if isinstance(value, str) and valid_model_id(value) else None


def _shape(document: Mapping[str, object], data: list[object]) -> ListShape:
    if any(key in document for key in ("has_more", "first_id", "last_id")):
        return ListShape.ANTHROPIC
    first = data[0] if data else None
    if isinstance(first, dict) and first.get("type") == "model" and "object" not in first:
        return ListShape.ANTHROPIC
    return ListShape.OPENAI


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case _:
            return "an object"
