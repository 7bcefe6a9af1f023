"""Incremental, bounded Server-Sent Events decoder, and an encoder for our own events.

Theory of operation. The proxy relays a provider's stream to the client
byte for byte; the decoder reads a copy to learn what is in it (usage, the
terminal event, in-stream errors). It follows the WHATWG "event stream
interpretation" (https://html.spec.whatwg.org/multipage/server-sent-events.html):

- lines end with CRLF, LF or a lone CR, and only those (never
  `str.splitlines`, which also splits on U+2028 and friends inside JSON); a
  CR that ends one chunk is a complete line ending, and an LF that starts
  the next chunk is swallowed as its second half;
- `field: value` lines, one optional space after the colon; `data` lines
  accumulate joined by LF, `event` sets the type (default `message`), `id`
  sets the sticky last-event id (unless it contains NUL), `retry` takes
  ASCII digits only; lines starting with `:` are comments; other fields are
  ignored;
- a blank line dispatches the event, unless no data was given (the spec
  drops those);
- one UTF-8 byte-order mark at the very start of the stream is skipped.

Work happens on bytes: lines are found by a compiled regex and decoded to
text one complete line at a time (UTF-8 with replacement, as the spec
says), so a multi-byte character split between chunks decodes the same as
a whole one. The result is the same events for any chunking of the same
bytes, which the tests check byte by byte and on random splits.

Bounds. Memory per decoder is at most `max_line` bytes of an unfinished
line plus `max_event` bytes of data. A longer line or event yields one
`SSEOversize` item and is skipped up to its end; the decoder never raises on
input and never grows without bound. At EOF an unfinished event is
reported as `SSEIncomplete`, never dropped in silence: a stream cut in the
middle of an event is a premature end, and the caller must know.

Raw mode (`keep_raw=True`). Every item then carries the exact bytes it was
decoded from, and bytes that decode to no event (comment-only blocks,
keep-alives, the rest of an oversize event) come out as `SSERaw`, so that
the raw bytes of all items, concatenated, equal the input. The request
machine uses this to forward a stream event by event while leaving out one
event (the usage-only chunk it asked for on the client's behalf). The
decoder then holds back at most the current unfinished event, which a
client could not have used anyway: SSE clients act only on complete events.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

__all__ = [
    "DEFAULT_MAX_EVENT",
    "DEFAULT_MAX_LINE",
    "SSEDecoder",
    "SSEEvent",
    "SSEIncomplete",
    "SSEItem",
    "SSEOversize",
    "SSERaw",
    "encode_event",
]

DEFAULT_MAX_LINE = 1 << 20
DEFAULT_MAX_EVENT = 4 << 20

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_DIGITS = re.compile(r"[0-9]+")


@attrs.frozen(kw_only=True, slots=True)
class SSEEvent:
    """A dispatched event. `id` is the last-event id in force; `retry` is this event's, if any."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    raw: bytes = b""


@attrs.frozen(kw_only=True, slots=True)
class SSEOversize:
    """A line or an event passed its cap and is being skipped to its end."""

    kind: Literal["line", "event"]
    limit: int
    raw: bytes = b""


@attrs.frozen(kw_only=True, slots=True)
class SSEIncomplete:
    """The stream ended inside an event: what had arrived of it (the event was not dispatched)."""

    data: str
    event: str = "message"
    raw: bytes = b""


@attrs.frozen(kw_only=True, slots=True)
class SSERaw:
    """Raw mode only: bytes that belong to no event (comments, keep-alives, skipped data)."""

    raw: bytes


SSEItem = SSEEvent | SSEOversize | SSEIncomplete | SSERaw


class SSEDecoder:
    """Feed bytes, get events. One decoder per stream; `feed_eof()` once at the end."""

    __slots__ = (
        "_at_start",
        "_block",
        "_buf",
        "_closed",
        "_data",
        "_data_size",
        "_event",
        "_has_data",
        "_keep_raw",
        "_last_id",
        "_max_event",
        "_max_line",
        "_retry",
        "_skip_event",
        "_skip_line",
        "_swallow_lf",
    )

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_event: int = DEFAULT_MAX_EVENT,
        keep_raw: bool = False,
    ) -> None:
        if max_line < 1 or max_event < 1:
            raise ValueError("max_line and max_event must be positive")
        self._max_line = max_line
        self._max_event = max_event
        self._keep_raw = keep_raw
        self._buf = b""  # the unfinished line (or the start of a possible BOM)
        self._block = bytearray()  # raw mode: scanned bytes of the current event
        self._at_start = True  # a BOM may still come
        self._swallow_lf = False  # the last chunk ended with CR
        self._skip_line = False  # inside an oversize line
        self._skip_event = False  # inside an oversize event
        self._closed = False
        self._last_id: str | None = None
        self._reset_event()

    def _reset_event(self) -> None:
        self._data: list[bytes] = []
        self._data_size = 0
        self._has_data = False
        self._event: str | None = None
        self._retry: int | None = None

    # -- input ---------------------------------------------------------------------

    def feed(self, data: bytes) -> list[SSEItem]:
        """Decode a chunk; return the items it completes (possibly none)."""
        if self._closed:
            raise RuntimeError("feed() after feed_eof()")
        out: list[SSEItem] = []
        if not data:
            return out
        if self._swallow_lf:
            self._swallow_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                self._raw(b"\n", out)
        if self._at_start:
            pending = self._buf + data
            if len(pending) < len(_BOM) and _BOM.startswith(pending):
                self._buf = pending
                return out
            self._at_start = False
            self._buf = b""
            if pending.startswith(_BOM):
                self._raw(_BOM, out)
                pending = pending[len(_BOM) :]
            data = pending
        self._scan(data, out)
        return out

    def feed_eof(self) -> list[SSEItem]:
        """End of stream: report an unfinished event and hand out any remaining raw bytes."""
        if self._closed:
            raise RuntimeError("feed_eof() called twice")
        self._closed = True
        out: list[SSEItem] = []
        rest, self._buf = self._buf, b""
        if self._keep_raw:
            self._block += rest
        if rest and not self._skip_line:
            self._field(rest)  # a last line without its line end still counts
        if (self._has_data or self._event is not None) and not self._skip_event:
            out.append(
                SSEIncomplete(
                    data=self._joined(), event=self._event or "message", raw=self._take_block()
                )
            )
        else:
            self._flush_raw(out)
        self._reset_event()
        return out

    # -- lines ---------------------------------------------------------------------

    def _scan(self, data: bytes, out: list[SSEItem]) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        if self._skip_line or self._skip_event or b"\r" in buf:
            self._scan_any(buf, out)
        else:
            self._scan_lf(buf, out)

    def _scan_any(self, buf: bytes, out: list[SSEItem]) -> None:
        """Every line end (CRLF, CR, LF), skipping in progress: the general rules."""
        pos = 0
        keep_raw = self._keep_raw
        for match in _LINE_END.finditer(buf):
            start, end = match.span()
            if keep_raw:
                self._block += buf[pos:end]
            if self._skip_line:
                self._skip_line = False
                self._flush_raw(out)
            elif start - pos > self._max_line:
                self._oversize("line", self._max_line, out)
            else:
                self._line(buf[pos:start], out)
            pos = end
        if buf.endswith(b"\r"):
            self._swallow_lf = True
        rest = buf[pos:]
        if self._skip_line:
            self._raw(rest, out)
            rest = b""
        elif len(rest) > self._max_line:
            if keep_raw:
                self._block += rest
            self._oversize("line", self._max_line, out)
            self._skip_line = True
            rest = b""
        self._buf = rest

    def _scan_lf(self, buf: bytes, out: list[SSEItem]) -> None:
        """The common case, LF line ends only and nothing being skipped: the rules of
        `_scan_any` + `_line`, with the two lines of nearly every event (`data: ...` and the
        blank line) inlined, and raw bytes taken as slices of `buf` (from `start`) rather
        than line by line. A one-line data event that starts clean (no field pending) is
        built at once. Once something turns oversize, `_scan_any` takes the rest."""
        lines = buf.split(b"\n")
        rest = lines.pop()
        count = len(lines)
        max_line, max_event = self._max_line, self._max_event
        keep_raw = self._keep_raw
        start = pos = 0  # raw mode: buf[start:pos] is scanned but not yet in self._block
        index = 0
        while index < count:
            line = lines[index]
            index += 1
            pos += len(line) + 1
            if not line:
                if keep_raw:
                    self._block += buf[start:pos]
                    start = pos
                self._dispatch(out)
                continue
            if len(line) > max_line:
                if keep_raw:
                    self._block += buf[start:pos]
                self._oversize("line", max_line, out)
            else:
                if line[:6] == b"data: ":
                    value = line[6:]
                    if (
                        index < count
                        and not lines[index]
                        and not self._has_data
                        and self._event is None
                        and self._retry is None
                        and len(value) < max_event
                    ):
                        index += 1  # `data: ...` then the blank line: the whole event
                        pos += 1
                        raw = b""
                        if keep_raw:
                            if self._block:  # bytes held from before this read
                                self._block += buf[start:pos]
                                raw = self._take_block()
                            else:
                                raw = buf[start:pos]
                            start = pos
                        out.append(
                            SSEEvent(
                                data=value.decode("utf-8", "replace"),
                                id=self._last_id,
                                raw=raw,
                            )
                        )
                        continue
                    self._data.append(value)
                    self._data_size += len(value) + 1
                    self._has_data = True
                else:
                    self._field(line)
                if self._data_size <= max_event:
                    continue
                if keep_raw:
                    self._block += buf[start:pos]
                self._oversize("event", max_event, out)
            self._scan_any(buf[pos:], out)
            return
        if keep_raw:
            self._block += buf[start:pos]
        if len(rest) > max_line:
            if keep_raw:
                self._block += rest
            self._oversize("line", max_line, out)
            self._skip_line = True
            rest = b""
        self._buf = rest

    def _line(self, line: bytes, out: list[SSEItem]) -> None:
        if not line:
            self._dispatch(out)
        elif self._skip_event:
            self._flush_raw(out)
        else:
            self._field(line)
            if self._data_size > self._max_event:
                self._oversize("event", self._max_event, out)

    def _oversize(self, kind: Literal["line", "event"], limit: int, out: list[SSEItem]) -> None:
        # A cut line or event is meaningless: skip the whole event up to its blank line.
        out.append(SSEOversize(kind=kind, limit=limit, raw=self._take_block()))
        self._skip_event = True
        self._data = []
        self._data_size = 0

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._data_size += len(value) + 1
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            text = value.decode("ascii", "replace")
            if _DIGITS.fullmatch(text):
                self._retry = int(text)

    def _dispatch(self, out: list[SSEItem]) -> None:
        if self._has_data and not self._skip_event:
            out.append(
                SSEEvent(
                    data=self._joined(),
                    event=self._event or "message",
                    id=self._last_id,
                    retry=self._retry,
                    raw=self._take_block(),
                )
            )
        else:
            self._flush_raw(out)
        self._skip_event = False
        self._reset_event()

    def _joined(self) -> str:
        return b"\n".join(self._data).decode("utf-8", "replace")

    # -- raw mode ------------------------------------------------------------------

    def _take_block(self) -> bytes:
        if not self._keep_raw:
            return b""
        block = bytes(self._block)
        self._block.clear()
        return block

    def _flush_raw(self, out: list[SSEItem]) -> None:
        """Hand out held raw bytes that belong to no event."""
        if self._keep_raw and self._block:
            out.append(SSERaw(raw=self._take_block()))

    def _raw(self, data: bytes, out: list[SSEItem]) -> None:
        """Raw bytes outside any line the decoder keeps: between events they go out at once."""
        if not self._keep_raw or not data:
            return
        self._block += data
        between_events = not self._has_data and self._event is None
        if between_events or self._skip_event or self._skip_line:
            self._flush_raw(out)


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One SSE event as bytes, LF line ends; multi-line `data` becomes several `data:` lines."""
    for name, value in (("event", event), ("id", id)):
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError(f"SSE {name} must not contain a line break")
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        if retry < 0:
            raise ValueError("SSE retry must not be negative")
        lines.append(f"retry: {retry}")
    lines.extend(f"data: {part}" for part in re.split(r"\r\n|\r|\n", data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")
