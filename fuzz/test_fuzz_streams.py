"""Fuzzing the stream parsers: the SSE decoder against a naive model, and the usage observers.

The model below is the WHATWG algorithm written the obvious way: whole
input, text first, one line at a time, no caps. Whatever the chunking, the
incremental decoder must produce the same events and the same unfinished
tail. The observers must never raise and must report the same result for
any chunking of the same bytes.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.sse import SSEDecoder, SSEEvent, SSEIncomplete, SSEItem
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver


def model_decode(data: bytes) -> list[tuple[str, ...]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    *complete, tail = re.split(rb"\r\n|\r|\n", data)
    events: list[tuple[str, ...]] = []
    state: dict[str, object] = {"data": [], "has_data": False, "type": None, "id": None}

    def field(line: bytes) -> None:
        if line.startswith(b":"):
            return
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            state["data"].append(value)  # type: ignore[attr-defined]
            state["has_data"] = True
        elif name == b"event":
            state["type"] = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            state["id"] = value.decode("utf-8", "replace")

    def text() -> str:
        return b"\n".join(state["data"]).decode("utf-8", "replace")  # type: ignore[arg-type]

    for line in complete:
        if line:
            field(line)
            continue
        if state["has_data"]:
            events.append(("event", str(state["type"] or "message"), text(), str(state["id"])))
        state.update(data=[], has_data=False, type=None)
    if tail:  # the unfinished last line still counts as a field
        field(tail)
    if state["has_data"] or state["type"] is not None:
        events.append(("incomplete", str(state["type"] or "message"), text()))
    return events


def decoded(items: list[SSEItem]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for item in items:
        if isinstance(item, SSEEvent):
            out.append(("event", item.event, item.data, str(item.id)))
        elif isinstance(item, SSEIncomplete):
            out.append(("incomplete", item.event, item.data))
    return out


fragments = st.sampled_from(
    [b"data", b"data:", b"data: ", b"event: x", b"id: 1", b"id", b": c", b"retry: 5", b"\r", b"\n",
     b"\r\n", b"\n\n", b"\xef\xbb\xbf", b"\xc3", b"\xa9", b"{}", b"[DONE]", b" ", b":", b"\0"]
)  # fmt: skip
streams = st.lists(fragments | st.binary(max_size=8), max_size=60).map(b"".join)


@given(streams, st.lists(st.integers(min_value=1, max_value=200), max_size=12), st.booleans())
def test_decoder_matches_the_naive_model_for_any_chunking(
    data: bytes, cuts: list[int], raw: bool
) -> None:
    decoder = SSEDecoder(keep_raw=raw)
    items: list[SSEItem] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c < len(data)}), len(data)]:
        items += decoder.feed(data[start:cut])
        start = cut
    items += decoder.feed_eof()
    assert decoded(items) == model_decode(data)
    if raw:
        assert b"".join(item.raw for item in items) == data


@given(streams, st.integers(min_value=1, max_value=64), st.booleans())
def test_observers_give_one_result_for_any_chunking(data: bytes, size: int, strip: bool) -> None:
    for make in (lambda: OpenAIStreamObserver(strip_usage_chunk=strip), AnthropicStreamObserver):
        whole, split = make(), make()
        whole.feed(data)
        whole.feed_eof()
        for i in range(0, len(data), size):
            split.feed(data[i : i + size])
        split.feed_eof()
        assert split.result() == whole.result()
