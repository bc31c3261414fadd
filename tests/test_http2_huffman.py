"""HPACK Huffman decoding a byte a step: the same answers and refusals as hpack's own decoder, for any bytes: pure."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hpack import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.http2 import huffman
from tests.conftest import ROOT

ENCODER = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def hpack_answer(data: bytes) -> bytes | None:
    """hpack's decoding of `data`, or None where hpack refuses it."""
    try:
        return decode_huffman(data)
    except HPACKDecodingError:
        return None


def our_answer(data: bytes) -> bytes | None:
    try:
        return huffman.decode(data)
    except HPACKDecodingError:
        return None


def test_every_string_of_one_or_two_bytes_gets_hpacks_answer() -> None:
    inputs = [bytes((a,)) for a in range(256)] + [bytes((a, b)) for a in range(256) for b in range(256)]
    ours = [our_answer(data) for data in inputs]
    assert ours == [hpack_answer(data) for data in inputs]
    assert 0 < sum(answer is None for answer in ours) < len(inputs)  # both kinds were met


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_coded_string_decodes_to_what_was_coded(text: bytes) -> None:
    assert huffman.decode(ENCODER.encode(text)) == text


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 7), st.integers(0, 255))
def test_damaged_strings_are_refused_exactly_when_hpack_refuses_them(text: bytes, bit: int, where: int) -> None:
    coded = bytearray(ENCODER.encode(text))
    coded[where % len(coded)] ^= 1 << bit
    for data in (bytes(coded), bytes(coded[:-1]), bytes(coded) + b"\xff", bytes(coded) + b"\x00"):
        assert our_answer(data) == hpack_answer(data)


def test_eos_and_long_padding_are_refused() -> None:
    eos = b"\xff\xff\xff\xff"  # the 30-bit EOS code (all ones) and two bits of padding: EOS must not appear
    with pytest.raises(HPACKDecodingError):
        huffman.decode(eos)
    with pytest.raises(HPACKDecodingError):
        huffman.decode(ENCODER.encode(b"a") + b"\xff")  # a whole byte of padding (at most 7 bits)
    assert huffman.decode(b"") == b""


def test_the_tables_are_built_only_when_first_needed() -> None:
    check = ("import sidecar.proxy, sidecar.http2.tracker as t; from sidecar.http2 import huffman; "
             "assert not huffman._next; t.H2Tracker(); assert not huffman._next; "
             "assert huffman.decode(b'\\x1f') == b'a'; assert len(huffman._next) == 257 * 256")
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, check=True, timeout=60)
