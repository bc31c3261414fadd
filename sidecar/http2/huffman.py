"""HPACK's Huffman decoding a byte at a time: hpack's own state machine, composed from nibbles to bytes.

python-hyper's `hpack` decodes Huffman strings (RFC 7541 section 5.2) with
nghttp2's state machine, four bits per step; in pure Python that is two table
lookups, two flag tests and an append per byte, about 0.4 us a byte. Here the
same machine takes eight bits per step: its table is built from hpack's
(`HUFFMAN_TABLE`), so which strings decode, to what, and which are refused
(an EOS symbol, padding longer than 7 bits or not all ones) are hpack's by
construction, and a step is two list lookups (about 3x faster). Tables
for all 256 states would take 50 ms to build in one go (a stall of every
connection on the loop) and 3.7 MB: they are allocated at the first
Huffman-coded string (about 1 MB), and a state's row is built when a string
first reaches that state (about 0.05 ms; everyday header text reaches about
55 states, 1.4 MB in all). (`hpack.huffman_table` is not re-exported by
hpack's package: setup.py keeps hpack below 5, and the tests compare the
two on every input of up to two bytes.)
"""

from __future__ import annotations

from typing import Final

from hpack import HPACKDecodingError
from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE

_STATES: Final = 256  # hpack's machine: 256 states of 16 nibble transitions each
_DEAD: Final = _STATES << 8  # an extra state for a refused string: it stays there, never complete
_SIZE: Final = (_STATES + 1) << 8
_UNBUILT: Final = 1 << 20  # added to a next state whose row is not built yet: past the tables' end

# Indexed by state * 256 + byte: the next state (times 256, ready to add the next byte), what the byte
# emits, and whether the string may end after it (hpack's HUFFMAN_COMPLETE). Allocated on first use;
# a state's row is built the first time a string reaches that state.
_next: list[int] = []
_emit: list[bytes] = []
_complete = bytearray()
_built = bytearray(_STATES + 1)
_pairs: dict[bytes, bytes] = {}  # one object per distinct two-symbol output, not one per entry


def decode(data: bytes) -> bytes:
    """The string Huffman-coded in `data`, exactly as hpack's `decode_huffman` gives it; raises its error."""
    if not data:
        return b""
    if not _next:
        _allocate()
    nxt, emit = _next, _emit
    out = []
    state = 0
    i = 0
    try:
        for byte in data:
            i = state | byte
            out.append(emit[i])
            state = nxt[i]
    except IndexError:  # a state whose row is not built yet (its index is past the end)
        return _decode_building(data)
    if not _complete[i]:
        raise HPACKDecodingError("Invalid Huffman string")
    return b"".join(out)


def _decode_building(data: bytes) -> bytes:
    """`decode`, building the rows of the states it reaches and pointing the entries it follows at them."""
    nxt, emit = _next, _emit
    out = []
    state = 0
    i = 0
    for byte in data:
        i = state | byte
        state = nxt[i]
        if state >= _UNBUILT:
            state -= _UNBUILT
            if not _built[state >> 8]:
                _build_row(state >> 8)
            nxt[i] = state
        out.append(emit[i])
    if not _complete[i]:
        raise HPACKDecodingError("Invalid Huffman string")
    return b"".join(out)


def _allocate() -> None:
    """The tables with two rows built: the first state's, and the refused state's (it stays refused)."""
    global _next, _emit, _complete  # allocated once, on first use
    _emit, _complete = [b""] * _SIZE, bytearray(_SIZE)
    nxt = [_UNBUILT] * _SIZE
    nxt[_DEAD:] = [_DEAD] * 256
    _built[_STATES] = 1
    _next = nxt
    _build_row(0)


_Step = tuple[list[int], list[bytes], bytes]  # next states, outputs, may-end flags: one nibble from one state
_low: dict[int, _Step] = {}  # the second nibble's step from each state reached after a first
_REFUSED: Final[_Step] = ([_DEAD] * 16, [b""] * 16, bytes(16))


def _low_step(state: int) -> _Step:
    """hpack's 16 transitions from `state`, each next state marked unbuilt (`_decode_building` links it)."""
    step = _low.get(state)
    if step is None:
        nxt, emit, complete = [], [], bytearray()
        for end, flags, out in HUFFMAN_TABLE[state * 16:state * 16 + 16]:
            failed = flags & HUFFMAN_FAIL
            nxt.append(_DEAD if failed else _UNBUILT + (end << 8))
            emit.append(bytes((out,)) if flags & HUFFMAN_EMIT_SYMBOL and not failed else b"")
            complete.append(1 if flags & HUFFMAN_COMPLETE and not failed else 0)
        step = _low[state] = (nxt, emit, bytes(complete))
    return step


def _build_row(state: int) -> None:
    """Compose hpack's transitions from `state` for each byte: its high nibble, then its low."""
    _built[state] = 1
    pairs = _pairs
    for high in range(16):
        mid, flags, out = HUFFMAN_TABLE[state * 16 + high]
        nxt, emit, complete = _REFUSED if flags & HUFFMAN_FAIL else _low_step(mid)
        if flags & HUFFMAN_EMIT_SYMBOL and not flags & HUFFMAN_FAIL:
            first = bytes((out,))
            emit = [pairs.setdefault(first + second, first + second) for second in emit]
        at = state << 8 | high << 4
        _next[at:at + 16] = nxt
        _emit[at:at + 16] = emit
        _complete[at:at + 16] = complete
