"""ChunkedBody on its own: where a chunked body ends, fed whole and byte by byte, and what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.http1.chunked import MAX_CHUNK_LINE, ChunkedBody
from sidecar.http1.framing import Refusal

BODY = b"5;name=value\r\nhello\r\nA ; ext\r\n0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n"


def walk(body: ChunkedBody, pieces: list[bytes]) -> int:
    """Feed the pieces in turn; the offset, in all of them, where the body ended (-1: not yet)."""
    offset = 0
    for piece in pieces:
        end = body.feed(piece, 0)
        if body.done:
            return offset + end
        assert end == len(piece)
        offset += len(piece)
    return -1


def test_chunked_body_alone() -> None:
    body = ChunkedBody(strict=True, max_trailer=100)
    data = b"3\r\nabc\r\n0\r\n\r\nNEXT"
    assert body.feed(data, 0) == len(data) - 4 and body.done
    with pytest.raises(Refusal):
        ChunkedBody(strict=True, max_trailer=20).feed(b"0\r\n" + b"X-Long: " + b"a" * 30 + b"\r\n\r\n", 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(BODY)), max_size=6))
def test_the_end_does_not_depend_on_the_cuts(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [BODY[a:b] for a, b in zip([0, *points], [*points, len(BODY)], strict=True)]
    assert walk(ChunkedBody(strict=True, max_trailer=1000), [*pieces, b"NEXT"]) == len(BODY)


def test_reset_reads_the_next_body() -> None:
    body = ChunkedBody(strict=True, max_trailer=1000)
    assert body.feed(BODY, 0) == len(BODY) and body.done
    body.reset()
    assert not body.done and body.feed(b"0\r\n\r\n", 0) == 5 and body.done


@pytest.mark.parametrize("bad", [
    b"zz\r\nhi\r\n0\r\n\r\n",  # size not hex
    b"1" * 17 + b"\r\n",  # size past 16 hex digits
    b"2\r\nhiXX0\r\n\r\n",  # data not followed by CRLF
    b"2\nhi\r\n0\r\n\r\n",  # bare LF in a request
    b"0\r\nbad trailer\r\n\r\n",
    b"1;" + b"e" * MAX_CHUNK_LINE + b"\r\n",  # a chunk line without end
])
def test_bad_request_bodies_are_refused(bad: bytes) -> None:
    with pytest.raises(Refusal):
        walk(ChunkedBody(strict=True, max_trailer=1000), [bad])


def test_responses_may_use_bare_lf_and_any_trailer() -> None:
    lenient = b"2\nhi\n0\nnot a field\n\n"
    assert walk(ChunkedBody(strict=False, max_trailer=1000), [lenient]) == len(lenient)
