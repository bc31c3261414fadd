"""The framing rules of RFC 9112 as pure functions: body lengths, transfer codings, persistence."""

from __future__ import annotations

import pytest

from sidecar.http1.framing import (
    CHUNKED,
    TUNNEL,
    UNTIL_CLOSE,
    Refusal,
    chunked_is_final,
    content_length,
    persistent,
    request_framing,
    response_framing,
)


def test_content_length_rules() -> None:
    assert content_length([b"12"]) == 12
    assert content_length([b"7, 7", b"7"]) == 7  # identical repeats are one length
    for bad in ([b""], [b"-1"], [b" "], [b"1 2"], [b"1", b"2"], [b"9" * 19]):
        with pytest.raises(Refusal):
            content_length(bad)


def test_transfer_coding_rules() -> None:
    assert chunked_is_final(b"chunked") and chunked_is_final(b"gzip, Chunked")
    assert not chunked_is_final(b"chunked, gzip") and not chunked_is_final(b"") and not chunked_is_final(b"x")
    assert request_framing(1, [], b"chunked") == CHUNKED
    assert request_framing(1, [b"3"], None) == 3
    assert request_framing(1, [], None) == 0


@pytest.mark.parametrize(("version", "lengths", "te", "why"), [
    (1, [b"4"], b"chunked", "both Content-Length and Transfer-Encoding"),
    (0, [], b"chunked", "Transfer-Encoding in an HTTP/1.0 request"),
    (1, [], b"chunked, gzip", "Transfer-Encoding without chunked last"),
    (1, [b"4", b"5"], None, "conflicting Content-Length values"),
])
def test_requests_that_cannot_be_framed_safely_are_refused(version: int, lengths: list[bytes], te: bytes | None,
                                                           why: str) -> None:
    with pytest.raises(Refusal) as refused:
        request_framing(version, lengths, te)
    assert (refused.value.status, refused.value.why) == (400, why)


def test_response_framing_rules() -> None:
    assert response_framing(b"HEAD", 200, [b"10"], None) == 0
    assert response_framing(b"GET", 101, [], None) == TUNNEL
    assert response_framing(b"CONNECT", 200, [], None) == TUNNEL
    assert response_framing(b"CONNECT", 407, [b"3"], None) == 3  # a refused CONNECT is an ordinary response
    assert response_framing(b"GET", 304, [b"10"], None) == 0
    assert response_framing(b"GET", 100, [], None) == 0  # interim: the final head follows
    assert response_framing(b"GET", 200, [b"10"], b"chunked") == CHUNKED  # TE wins in a response
    assert response_framing(b"GET", 200, [], b"gzip") == UNTIL_CLOSE
    assert response_framing(b"GET", 200, [b"1", b"2"], None) == UNTIL_CLOSE
    assert response_framing(b"GET", 200, [], None) == UNTIL_CLOSE


def test_persistence_rules() -> None:
    assert persistent(1, b"") and not persistent(0, b"")
    assert not persistent(1, b"Close") and persistent(0, b"Keep-Alive")
    assert not persistent(0, b"keep-alive, close")
    assert not persistent(1, b"upgrade, close") and persistent(1, b"upgrade")
