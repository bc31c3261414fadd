"""HPACK's Huffman decoding a byte at a time: hpack's own state machine, composed from nibbles to bytes.

python-hyper's `hpack` decodes Huffman strings (RFC 7541 section 5.2) with
nghttp2's state machine, four bits per step; in pure Python that is two table
lookups, two flag tests and an append per byte, about 0.4 us a byte. Here the
same machine takes eight bits per step: its table is built from hpack's
(`HUFFMAN_TABLE`), so which strings decode, to what, and which are refused
(an EOS symbol, padding longer than 7 bits or not all ones) are hpack's by
construction, and a step is two list lookups (about 3x faster). The tables
add about 2.6 MB to the process and take about 50 ms to build, so they are
built on first use: a sidecar that never sees a Huffman-coded HTTP/2 field
pays neither. (`hpack.huffman_table` is not re-exported by hpack's package:
setup.py keeps hpack below 5, and the tests compare the two on every input
of up to two bytes.)
"""

from __future__ import annotations

from typing import Final

from hpack import HPACKDecodingError
from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE

_STATES: Final = 256  # hpack's machine: 256 states of 16 nibble transitions each
_DEAD: Final = _STATES  # an extra state for a refused string: it stays there, never complete

# Indexed by state * 256 + byte: the next state (times 256, ready to add the next byte), and what the
# byte emits. Filled by `_build` on first use.
_next: list[int] = []
_emit: list[bytes] = []
_complete = bytearray()  # 1 where the string may end after this byte (hpack's HUFFMAN_COMPLETE)


def _build() -> None:
    """Compose hpack's nibble transitions into byte transitions (each byte: its high nibble, then its low)."""
    shifted = [state << 8 for state in range(_STATES + 1)]  # one int object per state, shared by the entries
    dead = shifted[_DEAD]
    # The second step of every byte, by (state after the high nibble) * 16 + low nibble.
    low_next: list[int] = []
    low_emit: list[bytes] = []
    low_complete = bytearray()
    for end, flags, out in HUFFMAN_TABLE:
        failed = flags & HUFFMAN_FAIL
        low_next.append(dead if failed else shifted[end])
        low_emit.append(bytes((out,)) if flags & HUFFMAN_EMIT_SYMBOL and not failed else b"")
        low_complete.append(1 if flags & HUFFMAN_COMPLETE and not failed else 0)
    pairs: dict[bytes, bytes] = {}  # one object per distinct two-symbol output, not one per entry
    nxt: list[int] = []
    emit: list[bytes] = []
    complete = bytearray()
    for mid, flags, out in HUFFMAN_TABLE:  # the first step, by state * 16 + high nibble
        if flags & HUFFMAN_FAIL:
            nxt += [dead] * 16
            emit += [b""] * 16
            complete += bytes(16)
            continue
        row = slice(mid * 16, mid * 16 + 16)
        nxt += low_next[row]
        complete += low_complete[row]
        if flags & HUFFMAN_EMIT_SYMBOL:
            first = bytes((out,))
            emit += [pairs.setdefault(first + second, first + second) for second in low_emit[row]]
        else:
            emit += low_emit[row]
    nxt += [dead] * 256
    emit += [b""] * 256
    complete += bytes(256)
    global _next, _emit, _complete  # built once, on first use
    _emit, _complete, _next = emit, complete, nxt  # `_next` last: it says the tables are ready


def decode(data: bytes) -> bytes:
    """The string Huffman-coded in `data`, exactly as hpack's `decode_huffman` gives it; raises its error."""
    if not data:
        return b""
    if not _next:
        _build()
    nxt, emit = _next, _emit
    out = []
    state = 0
    i = 0
    for byte in data:
        i = state | byte
        out.append(emit[i])
        state = nxt[i]
    if not _complete[i]:
        raise HPACKDecodingError("Invalid Huffman string")
    return b"".join(out)
