"""`BlockDecoder`: one direction's HPACK decoding on `hpack`'s own table, remembering blocks that change nothing.

A block's fields (RFC 7541 section 6) are read here, not by hpack's
`Decoder.decode`, which spends about 3 us a field on what a sidecar does not
need (a memoryview slice, logging calls, named tuples); every field is still
decoded, Huffman strings by `huffman.decode` (hpack's own state machine, a
byte a step), every literal with incremental indexing enters hpack's own
`HeaderTable`, and every refusal is hpack's error, so the dynamic table and
the answer are hpack's: tests hold the two equal on generated and mangled
blocks.

Peers on a kept-alive connection send the same header blocks again and again
(a gRPC client's requests, `:status 200` with its content-type, `grpc-status:
0` trailers): once every field is in the dynamic table, such a block is only
indexes, and decoding it changes nothing. Its decoded list is then kept and
reused until the table changes (a literal added, a size update, a new bound),
which is exact: a decode depends only on the block and the table. The table
is hpack's own, watched for changes by a subclass.
"""

from __future__ import annotations

import logging
from typing import Final

from hpack import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import decode_integer
from hpack.table import HeaderTable

from sidecar.http2 import huffman

MEMO_BLOCKS: Final = 64  # distinct unchanged-table blocks kept per direction (per connection); cleared when full
# Only short blocks are kept: a block of indexes is a byte or two a field, and memory per connection stays small.
MEMO_BLOCK_BYTES: Final = 256
ENTRY_OVERHEAD: Final = 32  # what RFC 7541 section 4.1 adds to a field's name and value in a size

Header = tuple[bytes, bytes]

# hpack logs every table entry it evicts at DEBUG, values included (Authorization, Cookie): a sidecar must
# never write those anywhere, whatever logging level its user chose.
logging.getLogger("hpack").setLevel(logging.INFO)


class _WatchedTable(HeaderTable):
    """hpack's dynamic table, counting the changes made to it (entries added, size changed)."""

    changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class BlockDecoder:
    """Decodes one direction's header blocks in order, as raw `(name, value)` bytes; raises hpack's errors."""

    def __init__(self, max_header_list: int) -> None:
        self.max_header_list = max_header_list  # the largest decoded list (sizes as RFC 7541 counts them)
        self._table = _WatchedTable()
        self._max_allowed = self._table.maxsize
        self._memo: dict[bytes, list[Header]] = {}

    @property
    def max_allowed_table_size(self) -> int:
        """The largest table the other side's SETTINGS_HEADER_TABLE_SIZE allows its encoder."""
        return self._max_allowed

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, size: int) -> None:
        self._max_allowed = size
        self._memo.clear()  # a remembered block was checked against the old bound

    def decode(self, block: bytes) -> list[Header]:
        memo = self._memo
        known = memo.get(block)
        if known is not None:
            return known
        table = self._table
        before = table.changes
        headers = self._fields(block)
        if table.changes != before:
            memo.clear()  # what was remembered was decoded against the table as it was
        elif len(block) <= MEMO_BLOCK_BYTES:
            if len(memo) >= MEMO_BLOCKS:
                memo.clear()
            memo[bytes(block)] = headers
        return headers

    def _fields(self, data: bytes) -> list[Header]:
        """Every field of a block, in order, the table updated as it goes (hpack's `Decoder.decode`, leaner)."""
        table = self._table
        headers: list[Header] = []
        size = 0
        pos = 0
        end = len(data)
        while pos < end:
            first = data[pos]
            if first & 0x80:  # an indexed field (section 6.1)
                index = first & 0x7F
                if index == 0x7F:
                    index, used = decode_integer(memoryview(data)[pos:], 7)
                    pos += used
                else:
                    pos += 1
                header = table.get_by_index(index)  # hpack's InvalidTableIndex for 0 or past the table
            elif first & 0x40 or not first & 0x20:  # a literal: indexed as it comes (6.2.1), or not (6.2.2, 6.2.3)
                indexing = first & 0x40
                mask = 0x3F if indexing else 0x0F
                index = first & mask
                if not index:
                    name, pos = _string(data, pos + 1)
                else:
                    if index == mask:
                        index, used = decode_integer(memoryview(data)[pos:], 6 if indexing else 4)
                        pos += used
                    else:
                        pos += 1
                    name = table.get_by_index(index)[0]
                value, pos = _string(data, pos)
                header = (name, value)
                if indexing:
                    table.add(name, value)
            else:  # a dynamic table size update (6.3): only before the block's first field
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                new_size, used = decode_integer(memoryview(data)[pos:], 5)
                pos += used
                if new_size > self._max_allowed:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                table.maxsize = new_size
                continue
            headers.append(header)
            size += ENTRY_OVERHEAD + len(header[0]) + len(header[1])
            if size > self.max_header_list:
                raise OversizedHeaderListError(f"A header list larger than {self.max_header_list} has been received")
        if table.maxsize > self._max_allowed:  # a bound made smaller, and the encoder did not follow
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    """The string literal at `pos` (section 5.2), Huffman-decoded if it is coded, and the position after it."""
    if pos >= len(data):
        raise HPACKDecodingError("Truncated header block")
    first = data[pos]
    length = first & 0x7F
    if length == 0x7F:
        length, used = decode_integer(memoryview(data)[pos:], 7)
        pos += used
    else:
        pos += 1
    stop = pos + length
    if stop > len(data):
        raise HPACKDecodingError("Truncated header block")
    raw = data[pos:stop]
    return (huffman.decode(raw) if first & 0x80 else raw), stop
