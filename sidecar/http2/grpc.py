"""gRPC status as the sidecar reports it: code names, the canonical gRPC-to-HTTP mapping, grpc-message decoding.

A gRPC call's outcome travels in `grpc-status` (trailers, or a Trailers-Only
response), not in `:status`; mapping each code to the HTTP status that means
the same (google.rpc.Code's documented mapping) lets error rates, alert dots
and status classes treat gRPC calls and HTTP exchanges alike.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_to_bytes

# (name, HTTP status) by code number, from grpc/doc/statuscodes.md and google/rpc/code.proto.
CODES: Final[tuple[tuple[str, int], ...]] = (
    ("OK", 200),
    ("CANCELLED", 499),  # "Client Closed Request", nginx's code: the client gave up
    ("UNKNOWN", 500),
    ("INVALID_ARGUMENT", 400),
    ("DEADLINE_EXCEEDED", 504),
    ("NOT_FOUND", 404),
    ("ALREADY_EXISTS", 409),
    ("PERMISSION_DENIED", 403),
    ("RESOURCE_EXHAUSTED", 429),
    ("FAILED_PRECONDITION", 400),
    ("ABORTED", 409),
    ("OUT_OF_RANGE", 400),
    ("UNIMPLEMENTED", 501),
    ("INTERNAL", 500),
    ("UNAVAILABLE", 503),
    ("DATA_LOSS", 500),
    ("UNAUTHENTICATED", 401),
)
UNKNOWN: Final = 2
MAX_MESSAGE: Final = 1024  # characters of grpc-message kept: a sample is not a log line


def parse_status(value: bytes) -> int:
    """The code in a grpc-status value; one that is not a number reads as UNKNOWN, as gRPC's clients read it."""
    if 0 < len(value) <= 10 and value.isdigit():  # isdigit on bytes: ASCII digits only
        return int(value)
    return UNKNOWN


def code_name(code: int) -> str:
    """"NOT_FOUND" for 5; a code gRPC does not define is named by its number ("CODE_42")."""
    return CODES[code][0] if 0 <= code < len(CODES) else f"CODE_{code}"


def http_status(code: int) -> int:
    """The HTTP status that means what `code` means; codes gRPC does not define are server errors (500)."""
    return CODES[code][1] if 0 <= code < len(CODES) else 500


def decode_message(value: bytes) -> str:
    """grpc-message as text: percent-decoded UTF-8; malformed escapes and bytes are kept, never refused.

    The gRPC spec asks readers not to fail on a bad value, so `%zz` stays as
    it is and invalid UTF-8 becomes U+FFFD.
    """
    if b"%" in value:
        value = unquote_to_bytes(value)
    return value.decode("utf-8", "replace")[:MAX_MESSAGE]


def is_grpc(content_type: bytes) -> bool:
    """application/grpc, application/grpc+proto, application/grpc;... not grpc-web (trailers in its body)."""
    if not content_type.startswith(b"application/grpc"):
        return False
    rest = content_type[16:17]
    return rest in (b"", b"+", b";")
