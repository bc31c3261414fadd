"""`BlockDecoder`: hpack's answers, table and refusals, with blocks that change nothing remembered: pure."""

from __future__ import annotations

import logging
import random

import pytest
from hpack import Decoder, Encoder, HPACKDecodingError, InvalidTableSizeError
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.http2.blocks import MEMO_BLOCK_BYTES, MEMO_BLOCKS, BlockDecoder

GRPC_CALL = [(":method", "POST"), (":scheme", "http"), (":path", "/pkg.Users/Get"), (":authority", "app"),
             ("content-type", "application/grpc"), ("te", "trailers")]


def test_a_block_of_indexes_only_is_decoded_once_and_remembered() -> None:
    encoder, decoder = Encoder(), BlockDecoder(65536)
    first = encoder.encode(GRPC_CALL)  # literals: they enter the table
    again = encoder.encode(GRPC_CALL)  # now indexes only
    assert again != first and len(again) < 10
    assert decoder.decode(first) == [(n.encode(), v.encode()) for n, v in GRPC_CALL]
    remembered = decoder.decode(again)
    assert remembered == decoder.decode(first[:0] + again)
    assert decoder.decode(bytes(again)) is remembered  # the same list: no decoding


def test_long_blocks_are_not_kept() -> None:
    encoder, decoder = Encoder(), BlockDecoder(65536)
    block = encoder.encode([("x-long", "v" * MEMO_BLOCK_BYTES, True)], huffman=False)  # never indexed: table unchanged
    assert len(block) > MEMO_BLOCK_BYTES
    assert decoder.decode(block) == decoder.decode(block) == [(b"x-long", b"v" * MEMO_BLOCK_BYTES)]
    assert decoder._memo == {}


def test_a_table_change_forgets_what_was_remembered() -> None:
    # The same index bytes mean another header once an entry is added in front of the dynamic table.
    encoder, decoder = Encoder(), BlockDecoder(65536)
    decoder.decode(encoder.encode([("x-a", "1")]))
    index_of_newest = encoder.encode([("x-a", "1")])  # 0xbe: index 62, the newest entry
    assert decoder.decode(index_of_newest) == [(b"x-a", b"1")]
    decoder.decode(encoder.encode([("x-b", "2")]))  # a new newest entry
    assert decoder.decode(index_of_newest) == [(b"x-b", b"2")]


def test_any_sequence_of_blocks_decodes_as_hpack_alone_decodes_it() -> None:
    rng = random.Random(7)
    names = [f"x-{i}" for i in range(12)]
    encoder, plain, decoder = Encoder(), Decoder(), BlockDecoder(65536)
    for step in range(3000):
        if step % 500 == 250:
            encoder.header_table_size = rng.choice([0, 128, 1024, 4096])
        headers = [(":status", rng.choice(["200", "404"]))]
        headers += [(name, str(rng.randrange(3))) for name in rng.sample(names, rng.randrange(1, 5))]
        block = encoder.encode(headers)
        assert decoder.decode(block) == plain.decode(block, raw=True) == [(n.encode(), v.encode()) for n, v in headers]
    assert len(decoder._memo) <= MEMO_BLOCKS


def test_a_smaller_bound_applies_to_remembered_blocks_too() -> None:
    encoder, decoder = Encoder(), BlockDecoder(65536)
    decoder.decode(encoder.encode(GRPC_CALL))
    again = encoder.encode(GRPC_CALL)
    decoder.decode(again)
    decoder.max_allowed_table_size = 0  # acknowledged: the encoder had to shrink its table, and did not
    assert decoder.max_allowed_table_size == 0
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(again)


def test_no_header_value_is_ever_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    BlockDecoder(65536).decode(Encoder().encode([("authorization", "Bearer s3cret"), ("cookie", "id=s3cret")]))
    assert "s3cret" not in caplog.text


# --- generated blocks: the same fields, table and refusals as hpack's own Decoder ----------------

NAMES = st.sampled_from([b":path", b":status", b":method", b"content-type", b"user-agent", b"grpc-status",
                         b"traceparent", b"cookie", b"x-request-id", b"accept"]) | st.binary(max_size=12)
FIELDS = st.lists(st.tuples(NAMES, st.binary(max_size=60), st.booleans()), max_size=8)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("block"), FIELDS, st.booleans()),
    st.tuples(st.just("size"), st.sampled_from([0, 40, 100, 512, 4096])),  # the encoder resizes its table
    st.tuples(st.just("bound"), st.sampled_from([0, 100, 4096, 8192])),  # a SETTINGS acknowledged
), min_size=1, max_size=30)


def encoded(steps: list[tuple[object, ...]]) -> list[tuple[str, object]]:
    """The steps as hpack's Encoder writes them: ("block", bytes) and ("bound", size)."""
    encoder = Encoder()
    out: list[tuple[str, object]] = []
    for step in steps:
        if step[0] == "block":
            fields, huffman = step[1], step[2]
            assert isinstance(fields, list)
            out.append(("block", encoder.encode(fields, huffman=bool(huffman))))
        elif step[0] == "size":
            encoder.header_table_size = step[1]
        else:
            out.append(("bound", step[1]))
    return out


def same_as_hpack(moves: list[tuple[str, object]], max_header_list: int) -> None:
    """Each block decodes (or is refused) as hpack's Decoder decodes it, and leaves the same table."""
    plain, ours = Decoder(max_header_list_size=max_header_list), BlockDecoder(max_header_list)
    for kind, what in moves:
        if kind == "bound":
            assert isinstance(what, int)
            plain.max_allowed_table_size = ours.max_allowed_table_size = what
            continue
        assert isinstance(what, bytes)
        try:
            expected: object = [(bytes(n), bytes(v)) for n, v in plain.decode(what, raw=True)]
        except HPACKDecodingError as e:
            expected = type(e)
        try:
            got: object = [(bytes(n), bytes(v)) for n, v in ours.decode(what)]
        except HPACKDecodingError as e:
            got = type(e)
        assert got == expected, what
        table = ours._table
        assert (list(table.dynamic_entries), table.maxsize, table._current_size) == (
            list(plain.header_table.dynamic_entries), plain.header_table.maxsize, plain.header_table._current_size)
        if isinstance(expected, type):
            return  # after a refusal the connection is over (the tracker stops following it)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.sampled_from([65536, 300]))
def test_generated_blocks_decode_as_hpack_decodes_them(steps: list[tuple[object, ...]], limit: int) -> None:
    same_as_hpack(encoded(steps), limit)


@settings(max_examples=500, deadline=None)
@given(STEPS, st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.binary(max_size=4)),
                       min_size=1, max_size=3))
def test_mangled_blocks_are_refused_exactly_when_hpack_refuses_them(steps: list[tuple[object, ...]],
                                                                    cuts: list[tuple[int, int, bytes]]) -> None:
    moves = encoded(steps)
    blocks = [i for i, (kind, _) in enumerate(moves) if kind == "block"]
    if not blocks:
        return
    for which, where, junk in cuts:
        i = blocks[which % len(blocks)]
        data = bytearray(moves[i][1])  # type: ignore[arg-type]
        at = where % (len(data) + 1)
        data[at:at + len(junk) // 2] = junk  # replace a few bytes (or none), insert some, or cut the end
        moves[i] = ("block", bytes(data))
    same_as_hpack(moves, 4096)
