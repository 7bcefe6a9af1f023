"""The SSE decoder: WHATWG rules, caps, EOF, raw mode, and chunk-indifference."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eggpool import compiled_modules
from eggpool.core.sse import (
    SSEDecoder,
    SSEEvent,
    SSEIncomplete,
    SSEItem,
    SSEOversize,
    SSERaw,
    encode_event,
)


def decode(data: bytes, chunks: list[int] | None = None, **options: int | bool) -> list[SSEItem]:
    """Feed `data` split at the `chunks` cut points (or whole), then EOF."""
    decoder = SSEDecoder(**options)  # type: ignore[arg-type]
    cuts = sorted({c for c in (chunks or []) if 0 < c < len(data)})
    out: list[SSEItem] = []
    start = 0
    for cut in [*cuts, len(data)]:
        out += decoder.feed(data[start:cut])
        start = cut
    return out + decoder.feed_eof()


def events(data: bytes, **options: int | bool) -> list[tuple[str, str]]:
    return [(i.event, i.data) for i in decode(data, **options) if isinstance(i, SSEEvent)]


def without_raw(items: list[SSEItem]) -> list[SSEItem]:
    return [i for i in items if not isinstance(i, SSERaw)]


def test_data_event_dispatches_on_blank_line() -> None:
    assert events(b"data: hello\n\n") == [("message", "hello")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_each_line_ending_is_accepted(newline: bytes) -> None:
    data = b"event: e" + newline + b"data: a" + newline + b"data: b" + newline + newline
    assert events(data) == [("e", "a\nb")]


def test_unicode_line_separators_inside_data_are_not_line_ends() -> None:
    payload = '{"text": "a\u2028b\u0085c\u000cd"}'
    assert events(f"data: {payload}\n\n".encode()) == [("message", payload)]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert events(b"data:  two\n\ndata:none\n\n") == [("message", " two"), ("message", "none")]


def test_a_field_without_colon_has_an_empty_value() -> None:
    assert events(b"data\ndata\n\n") == [("message", "\n")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert events(b": keep-alive\nfoo: bar\ndata: x\n\n") == [("message", "x")]


def test_event_without_data_is_not_dispatched() -> None:
    assert events(b"event: ping\n\ndata: x\n\n") == [("message", "x")]


def test_event_type_resets_after_each_event() -> None:
    assert events(b"event: a\ndata: 1\n\ndata: 2\n\n") == [("a", "1"), ("message", "2")]


def test_last_event_id_is_sticky_and_nul_ids_are_ignored() -> None:
    items = decode(b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\n")
    assert [i.id for i in items if isinstance(i, SSEEvent)] == ["7", "7", "7"]


def test_retry_takes_digits_only() -> None:
    items = decode(b"retry: 1500\ndata: a\n\nretry: 1.5\ndata: b\n\n")
    assert [i.retry for i in items if isinstance(i, SSEEvent)] == [1500, None]


def test_only_a_leading_bom_is_skipped() -> None:
    # A second BOM becomes part of the field name, so that "data" line is not recognised.
    bom = b"\xef\xbb\xbf"
    assert events(bom + b"data: a\n\n" + bom + b"data: b\n\n") == [("message", "a")]


def test_bom_split_across_chunks_is_skipped() -> None:
    data = b"\xef\xbb\xbfdata: a\n\n"
    assert [(i.event, i.data) for i in decode(data, [1, 2]) if isinstance(i, SSEEvent)] == [
        ("message", "a")
    ]


def test_cr_at_chunk_end_followed_by_lf_is_one_line_end() -> None:
    data = b"data: a\r\n\r\ndata: b\r\n\r\n"
    for cut in range(1, len(data)):
        assert [(i.data) for i in decode(data, [cut]) if isinstance(i, SSEEvent)] == ["a", "b"]


def test_multibyte_character_split_across_chunks_decodes_whole() -> None:
    data = "data: héllo ✓\n\n".encode()
    for cut in range(1, len(data)):
        assert [i.data for i in decode(data, [cut]) if isinstance(i, SSEEvent)] == ["héllo ✓"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert events(b"data: \xff\xfe\n\n") == [("message", "\ufffd\ufffd")]


def test_event_cut_by_eof_is_reported_incomplete() -> None:
    items = decode(b'data: {"a":1}\n\ndata: {"b"')
    assert items[-1] == SSEIncomplete(data='{"b"')


def test_last_line_without_line_end_still_counts_at_eof() -> None:
    assert decode(b"event: x\ndata: [DONE]")[-1] == SSEIncomplete(data="[DONE]", event="x")


def test_clean_eof_reports_nothing_more() -> None:
    assert decode(b"data: a\n\n") == [SSEEvent(data="a")]


def test_oversize_line_is_reported_once_and_skipped_to_event_end() -> None:
    data = b"data: " + b"x" * 100 + b"\ndata: more\n\ndata: ok\n\n"
    items = decode(data, max_line=50)
    assert without_raw(items) == [SSEOversize(kind="line", limit=50), SSEEvent(data="ok")]


def test_oversize_line_arriving_in_pieces_is_bounded() -> None:
    data = b"data: " + b"x" * 1000 + b"\n\ndata: ok\n\n"
    decoder = SSEDecoder(max_line=50)
    out = []
    for i in range(0, len(data), 7):
        out += decoder.feed(data[i : i + 7])
        assert len(decoder._buf) <= 50 + 7
    out += decoder.feed_eof()
    assert out == [SSEOversize(kind="line", limit=50), SSEEvent(data="ok")]


def test_oversize_event_is_reported_and_the_next_event_survives() -> None:
    data = b"data: aaaa\n" * 10 + b"\ndata: ok\n\n"
    assert without_raw(decode(data, max_event=30)) == [
        SSEOversize(kind="event", limit=30),
        SSEEvent(data="ok"),
    ]


def test_feed_after_eof_is_a_caller_error() -> None:
    decoder = SSEDecoder()
    decoder.feed_eof()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: x\n\n")


def test_raw_mode_attaches_the_exact_bytes_of_each_event() -> None:
    data = b": ping\n\nevent: a\ndata: 1\n\ndata: 2\r\n\r\n"
    assert decode(data, keep_raw=True) == [
        SSERaw(raw=b": ping\n\n"),
        SSEEvent(event="a", data="1", raw=b"event: a\ndata: 1\n\n"),
        SSEEvent(data="2", raw=b"data: 2\r\n\r\n"),
    ]


def test_encoder_output_decodes_to_the_same_event() -> None:
    raw = encode_event("line1\nline2", event="error", id="9", retry=10)
    assert decode(raw) == [SSEEvent(event="error", data="line1\nline2", id="9", retry=10)]


def test_encoder_rejects_line_breaks_in_event_names() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_event("x", event="a\nb")


# --- properties --------------------------------------------------------------------

lines = st.sampled_from(
    [
        b'data: {"choices":[{"delta":{"content":"h\xc3\xa9"}}]}',
        b"data: [DONE]",
        b"event: message_delta",
        b"data:",
        b"data",
        b": comment",
        b"id: 42",
        b"retry: 100",
        b"",
        b"\xef\xbb\xbfdata: bom",
        b"data: \xe2\x9c",
        b"x" * 40,
    ]
)
newlines = st.sampled_from([b"\n", b"\r\n", b"\r"])
streams = st.lists(st.tuples(lines, newlines), max_size=30).map(
    lambda parts: b"".join(line + nl for line, nl in parts)
) | st.binary(max_size=300)
cut_points = st.lists(st.integers(min_value=1, max_value=400), max_size=20)


@given(streams, cut_points, st.booleans())
def test_any_chunking_gives_the_same_items(data: bytes, cuts: list[int], raw: bool) -> None:
    whole = decode(data, max_line=32, max_event=64, keep_raw=raw)
    split = decode(data, cuts, max_line=32, max_event=64, keep_raw=raw)
    bytewise = decode(data, list(range(1, len(data))), max_line=32, max_event=64, keep_raw=raw)
    strip = lambda items: [  # noqa: E731
        (type(i).__name__, getattr(i, "data", None), getattr(i, "event", None))
        for i in items
        if not isinstance(i, SSERaw)
    ]
    assert strip(split) == strip(whole)
    assert strip(bytewise) == strip(whole)


@given(streams, cut_points)
def test_raw_mode_hands_out_every_input_byte_exactly_once(data: bytes, cuts: list[int]) -> None:
    items = decode(data, cuts, max_line=32, max_event=64, keep_raw=True)
    assert b"".join(i.raw for i in items) == data


@given(streams, cut_points)
def test_raw_mode_changes_no_decoded_item(data: bytes, cuts: list[int]) -> None:
    plain = decode(data, cuts, max_line=32, max_event=64)
    raw = decode(data, cuts, max_line=32, max_event=64, keep_raw=True)
    assert [
        (type(i).__name__, getattr(i, "data", None)) for i in raw if not isinstance(i, SSERaw)
    ] == [(type(i).__name__, getattr(i, "data", None)) for i in plain]


@given(st.lists(st.tuples(st.text(max_size=30), st.sampled_from([None, "e", "message_stop"]))))
def test_encoded_events_round_trip(items: list[tuple[str, str | None]]) -> None:
    data = b"".join(encode_event(text, event=name) for text, name in items)
    expected = [(name or "message", "\n".join(_lines(text))) for text, name in items]
    assert events(data) == expected


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


class _GeneralRulesOnly(SSEDecoder):
    """The decoder with its LF-only fast path turned off: the reference for that path."""

    __slots__ = ()

    def _scan_lf(self, buf: bytes, out: list[SSEItem]) -> None:
        self._scan_any(buf, out)


lf_streams = st.lists(lines, max_size=30).map(lambda parts: b"".join(p + b"\n" for p in parts))


limits = st.sampled_from([(32, 64), (64, 40), (1 << 20, 4 << 20)])  # (max_line, max_event)


@pytest.mark.skipif(
    "eggpool.core.sse" in compiled_modules(),
    reason="a compiled SSEDecoder cannot be subclassed; the checkout's run compares the paths",
)
@given(lf_streams | streams, cut_points, st.booleans(), limits)
@example(b"data: " + b"x" * 50 + b"\n\ndata: y\n\n", [], True, (64, 40))  # event cap
@example(b"data: " + b"x" * 70 + b"\n\ndata: y\n\n", [9], True, (64, 40))  # line cap
def test_the_fast_path_gives_exactly_what_the_general_rules_give(
    data: bytes, cuts: list[int], raw: bool, limit: tuple[int, int]
) -> None:
    def run(decoder: SSEDecoder) -> list[SSEItem]:
        points = sorted({c for c in cuts if 0 < c < len(data)})
        out: list[SSEItem] = []
        for a, b in zip([0, *points], [*points, len(data)], strict=True):
            out += decoder.feed(data[a:b])
        return out + decoder.feed_eof()

    options = {"max_line": limit[0], "max_event": limit[1], "keep_raw": raw}
    assert run(SSEDecoder(**options)) == run(_GeneralRulesOnly(**options))  # type: ignore[arg-type]
