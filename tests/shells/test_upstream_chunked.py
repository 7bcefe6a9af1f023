"""ChunkedDecoder against h11, the parser it stands in for on the upstream hot path."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.shells._upstream_chunked import ChunkedDecoder

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def h11_body(wire: bytes) -> tuple[bytes, bool]:
    """What h11 makes of `wire` as a chunked response body: (body, reached the end)."""
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(HEAD + wire)
    body = b""
    try:
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return body, True
            elif event is h11.NEED_DATA:
                return body, False
    except h11.RemoteProtocolError:
        return body, False


def decode(pieces: list[bytes]) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder()
    return b"".join(decoder.feed(piece) for piece in pieces), decoder


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(the wire bytes of a valid chunked body, the body they carry)."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
    wire = b""
    for data in chunks:
        size = b"%x" % len(data)
        if draw(st.booleans()):
            size = size.upper()
        if draw(st.booleans()):
            size = b"0" * draw(st.integers(0, 3)) + size
        ext = draw(st.sampled_from([b"", b";name=value", b';a="b c";d']))
        space = draw(st.sampled_from([b"", b" ", b"\t "]))
        wire += size + ext + space + b"\r\n" + data + b"\r\n"
    trailers = draw(st.sampled_from([b"", b"X-Checksum: abc\r\n", b"A: 1\r\nB: 2\r\n"]))
    wire += b"0\r\n" + trailers + b"\r\n"
    return wire, b"".join(chunks)


@given(chunked_bodies(), st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_any_valid_body_in_any_pieces_decodes_as_h11_does(
    case: tuple[bytes, bytes], cuts: list[int]
) -> None:
    wire, body = case
    decoded, decoder = decode(split(wire, cuts))
    assert (decoded, decoder.done, decoder.error, decoder.extra) == (body, True, None, b"")
    assert h11_body(wire) == (body, True)


_EDIT_BYTES = st.sampled_from([b"\r", b"\n", b"\r\n", b";", b"0", b"f", b"G", b" ", b":", b"x"])


@st.composite
def edited_wires(draw: st.DrawFn) -> bytes:
    """A valid chunked body with a few edits (a byte replaced, bytes cut out, a framing
    byte put in): mostly near misses, the inputs where a hand-written parser and h11
    could disagree (random bytes are almost never close to valid)."""
    wire = bytearray(draw(chunked_bodies())[0])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(wire)))
        edit = draw(st.sampled_from(["replace", "cut", "insert"]))
        if edit == "replace" and at < len(wire):
            wire[at : at + 1] = draw(_EDIT_BYTES)[:1]
        elif edit == "cut":
            del wire[at : at + draw(st.integers(min_value=1, max_value=4))]
        else:
            wire[at:at] = draw(_EDIT_BYTES)
    return bytes(wire)


@given(
    st.one_of(edited_wires(), st.binary(max_size=200)),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
)
def test_whatever_h11_accepts_decodes_the_same(wire: bytes, cuts: list[int]) -> None:
    expected, ended = h11_body(wire)
    decoded, decoder = decode(split(wire, cuts))
    if ended:
        assert (decoded, decoder.done) == (expected, True)
    else:
        assert not decoder.done or decoder.error is None  # may accept a lax trailer h11 refuses
        assert expected.startswith(decoded) or decoded.startswith(expected)


@given(chunked_bodies(), st.binary(min_size=1, max_size=50))
def test_bytes_after_the_end_are_kept_apart(case: tuple[bytes, bytes], after: bytes) -> None:
    wire, body = case
    decoded, decoder = decode([wire + after[:1], after[1:]])
    assert (decoded, decoder.done, decoder.extra) == (body, True, after)


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"zz\r\nhello\r\n", "invalid chunk size line"),
        (b"0x5\r\nhello\r\n", "invalid chunk size line"),
        (b"+5\r\nhello\r\n", "invalid chunk size line"),
        (b" 5\r\nhello\r\n", "invalid chunk size line"),
        (b"5_0\r\nhello\r\n", "invalid chunk size line"),
        (b"1" * 21 + b"\r\n", "invalid chunk size line"),
        (b"\r\n", "invalid chunk size line"),
        (b"5\r\nhelloXY", "a chunk did not end with CRLF"),
        (b"5\r\nhello\rX", "a chunk did not end with CRLF"),
        (b"0\r\nno colon\r\n\r\n", "invalid trailer"),
        (b"5" * 70_000, "a chunk size line or trailer is too long"),
        (b"0\r\n" + b"X: " + b"a" * 70_000, "a chunk size line or trailer is too long"),
    ],
)
def test_invalid_framing_is_an_error_and_h11_refuses_it_too(wire: bytes, error: str) -> None:
    _, decoder = decode([wire[:3], wire[3:]])
    assert (decoder.error, decoder.done) == (error, False)
    assert h11_body(wire)[1] is False
    assert decoder.feed(b"0\r\n\r\n") == b""  # nothing more after an error


@pytest.mark.parametrize(
    "trailer",
    [
        b"\n",  # no trailer, the blank line a bare LF
        b"A: 1\nB: 2\n\n",  # LF line ends
        b"A: 1\r\nB: 2\n\r\n",  # mixed
        b"A:\r\n 1\r\n\tand 2\r\n\r\n",  # folded lines
    ],
)
def test_trailers_end_the_body_as_h11_reads_them(trailer: bytes) -> None:
    wire = b"5\r\nhello\r\n0\r\n" + trailer
    decoded, decoder = decode([wire[:9], wire[9:]])
    assert (decoded, decoder.done, decoder.error, decoder.extra) == (b"hello", True, None, b"")
    assert h11_body(wire) == (b"hello", True)


def test_a_folded_line_cannot_open_the_trailer() -> None:
    wire = b"5\r\nhello\r\n0\r\n continued\r\n\r\n"
    _, decoder = decode([wire])
    assert decoder.error == "invalid trailer"
    assert h11_body(wire)[1] is False


def test_the_body_before_an_error_is_delivered() -> None:
    decoded, decoder = decode([b"5\r\nhello\r\n3\r\nabc\r\nzz\r\n"])
    assert (decoded, decoder.error) == (b"helloabc", "invalid chunk size line")


def test_a_read_of_many_chunks_is_one_piece_of_body() -> None:
    events = [b"data: %d\n\n" % i for i in range(20)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    assert decoder.feed(wire) == b"".join(events)
    assert decoder.done
