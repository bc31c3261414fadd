"""`BlockDecoder`: hpack's decoding, with blocks that change nothing remembered: pure."""

from __future__ import annotations

import logging
import random

import pytest
from hpack import Decoder, Encoder, InvalidTableSizeError

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
