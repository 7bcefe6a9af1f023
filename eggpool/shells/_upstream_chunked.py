"""A chunked response body (RFC 9112 section 7.1), decoded incrementally. Pure: bytes in,
body bytes out.

Theory of operation. h11 reads the response head and then, for a chunked
body, hands every chunk to its caller as one `Data` event through its state
machine: about 5 µs a chunk, and providers stream one SSE event per chunk.
`ChunkedDecoder` does only the framing, on whole reads: `feed` takes what
one read returned and gives back the body bytes it held, joined, so a read
carrying twenty events costs one pass over a buffer and a few `find`s.
It accepts what h11 accepts (a 1-20 digit hexadecimal size, extensions
after `;` ignored, optional spaces or tabs before the CRLF; trailer lines,
ending in LF or CRLF and folded or not, read and dropped) and rejects the
rest; `error` then says what was wrong and no more body comes out. Bytes
after the body's end are kept in `extra`: a well-behaved server sends
none, so a connection that has some is not reused.
"""

from __future__ import annotations

import re

__all__ = ["ChunkedDecoder"]

_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
_HEX = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Decodes one chunked body; `feed` every read until `done` or `error`."""

    __slots__ = ("_left", "_partial", "_state", "_trailer_size", "error", "extra", "max_line")

    def __init__(self, max_line: int = 64 * 1024) -> None:
        self.max_line = max_line  # a size line or the whole trailer longer than this is an error
        self.error: str | None = None
        self.extra = b""
        self._state = _SIZE
        self._left = 0  # bytes of the current chunk's data still to come
        self._partial = b""  # an incomplete size line, CRLF or trailer line
        self._trailer_size = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """The body bytes in `data`. After an error or the end, nothing more is read."""
        if self.error is not None or self._state == _DONE:
            if self._state == _DONE:
                self.extra += data
            return b""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        body: list[bytes] = []
        position = 0
        end = len(data)
        state = self._state
        while position < end:
            if state == _DATA:
                take = min(self._left, end - position)
                body.append(data[position : position + take])
                position += take
                self._left -= take
                if self._left:
                    break
                state = _DATA_END
            elif state == _DATA_END:
                if end - position < 2:
                    if data[position:end] != b"\r"[: end - position]:
                        return self._fail(body, "a chunk did not end with CRLF")
                    self._partial = data[position:end]
                    break
                if data[position : position + 2] != b"\r\n":
                    return self._fail(body, "a chunk did not end with CRLF")
                position += 2
                state = _SIZE
            else:  # a size line (CRLF) or a trailer line (LF, CR before it optional)
                line_end = data.find(b"\r\n" if state == _SIZE else b"\n", position)
                if line_end < 0:
                    rest = data[position:end]
                    if len(rest) > self.max_line or self._trailer_size + len(rest) > self.max_line:
                        return self._fail(body, "a chunk size line or trailer is too long")
                    self._partial = rest
                    break
                line = data[position:line_end]
                if state == _SIZE:
                    position = line_end + 2
                else:
                    position = line_end + 1
                    if line[-1:] == b"\r":
                        line = line[:-1]
                if state == _SIZE:
                    if 0 < len(line) <= 20 and not line.strip(_HEX):  # the usual: digits only
                        size = int(line, 16)
                    else:
                        match = _SIZE_LINE.fullmatch(line)
                        if match is None:
                            return self._fail(body, "invalid chunk size line")
                        size = int(match[1], 16)
                    after = position + size
                    if size and after + 2 <= end:  # the whole chunk is here: take it at once
                        if data[after : after + 2] != b"\r\n":
                            body.append(data[position:after])
                            return self._fail(body, "a chunk did not end with CRLF")
                        body.append(data[position:after])
                        position = after + 2
                        continue
                    self._left = size
                    state = _DATA if size else _TRAILER
                elif not line:
                    state = _DONE
                    self.extra = data[position:end]
                    break
                else:
                    # A line starting with a space or tab continues the one before
                    # (obsolete line folding, which h11 accepts too).
                    folded = line[:1] in (b" ", b"\t") and self._trailer_size > 0
                    self._trailer_size += len(line) + 2
                    if self._trailer_size > self.max_line or not (folded or b":" in line):
                        return self._fail(body, "invalid trailer")
        self._state = state
        return body[0] if len(body) == 1 else b"".join(body)

    def _fail(self, body: list[bytes], error: str) -> bytes:
        self.error = error
        self._partial = b""
        return b"".join(body)
