"""gRPC status codes, their HTTP meaning and grpc-message decoding: pure."""

from __future__ import annotations

import pytest

from sidecar.http2 import grpc

# The canonical mapping (google/rpc/code.proto), written out once more so a slip in either copy shows.
CANONICAL = {
    0: ("OK", 200), 1: ("CANCELLED", 499), 2: ("UNKNOWN", 500), 3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504), 5: ("NOT_FOUND", 404), 6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403), 8: ("RESOURCE_EXHAUSTED", 429), 9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409), 11: ("OUT_OF_RANGE", 400), 12: ("UNIMPLEMENTED", 501), 13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503), 15: ("DATA_LOSS", 500), 16: ("UNAUTHENTICATED", 401),
}


def test_every_code_has_its_name_and_http_status() -> None:
    assert {code: (grpc.code_name(code), grpc.http_status(code)) for code in range(17)} == CANONICAL


def test_codes_grpc_does_not_define_are_server_errors_named_by_number() -> None:
    assert (grpc.code_name(17), grpc.http_status(17)) == ("CODE_17", 500)
    assert (grpc.code_name(-1), grpc.http_status(-1)) == ("CODE_-1", 500)


@pytest.mark.parametrize(("value", "code"), [
    (b"0", 0), (b"5", 5), (b"16", 16), (b"99", 99), (b"007", 7),
    (b"", 2), (b"abc", 2), (b"-1", 2), (b" 5", 2), (b"5 ", 2), (b"1" * 11, 2), (b"\xd9\xa3", 2),
])
def test_grpc_status_values_that_are_not_numbers_read_as_unknown(value: bytes, code: int) -> None:
    assert grpc.parse_status(value) == code


@pytest.mark.parametrize(("value", "text"), [
    (b"plain text", "plain text"),
    (b"caf%C3%A9 100%25", "caf\u00e9 100%"),
    (b"%E2%9C%93 done", "\u2713 done"),
    (b"bad %zz escape and 50%", "bad %zz escape and 50%"),  # kept as sent, never refused
    (b"not utf-8: %E9!", "not utf-8: \ufffd!"),
    (b"", ""),
])
def test_grpc_message_is_percent_decoded_utf8(value: bytes, text: str) -> None:
    assert grpc.decode_message(value) == text


def test_a_long_grpc_message_is_cut() -> None:
    assert grpc.decode_message(b"x" * 5000) == "x" * grpc.MAX_MESSAGE


@pytest.mark.parametrize(("content_type", "yes"), [
    (b"application/grpc", True), (b"application/grpc+proto", True), (b"application/grpc+json", True),
    (b"application/grpc;charset=utf-8", True),
    (b"application/grpc-web", False), (b"application/grpc-web+proto", False), (b"application/json", False),
    (b"application/grpcx", False), (b"", False),
])
def test_grpc_content_types(content_type: bytes, yes: bool) -> None:
    assert grpc.is_grpc(content_type) is yes
