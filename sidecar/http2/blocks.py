"""`BlockDecoder`: one direction's HPACK decoding (python-hyper's `hpack`), remembering blocks that change nothing.

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

from hpack import Decoder, HeaderTuple
from hpack.table import HeaderTable

MEMO_BLOCKS: Final = 64  # distinct unchanged-table blocks kept per direction (per connection); cleared when full
# Only short blocks are kept: a block of indexes is a byte or two a field, and memory per connection stays small.
MEMO_BLOCK_BYTES: Final = 256

# hpack logs every decoded header at DEBUG, values included (Authorization, Cookie): a sidecar must never
# write those anywhere, whatever logging level its user chose.
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
        self._decoder = Decoder(max_header_list_size=max_header_list)
        self._table = _WatchedTable()
        self._decoder.header_table = self._table
        self._memo: dict[bytes, list[HeaderTuple]] = {}

    @property
    def max_allowed_table_size(self) -> int:
        """The largest table the other side's SETTINGS_HEADER_TABLE_SIZE allows its encoder."""
        return int(self._decoder.max_allowed_table_size)

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, size: int) -> None:
        self._decoder.max_allowed_table_size = size
        self._memo.clear()  # a remembered block was checked against the old bound

    def decode(self, block: bytes) -> list[HeaderTuple]:
        memo = self._memo
        known = memo.get(block)
        if known is not None:
            return known
        table = self._table
        before = table.changes
        headers = self._decoder.decode(block, raw=True)
        if table.changes != before:
            memo.clear()  # what was remembered was decoded against the table as it was
        elif len(block) <= MEMO_BLOCK_BYTES:
            if len(memo) >= MEMO_BLOCKS:
                memo.clear()
            memo[bytes(block)] = headers  # type: ignore[assignment]
        return headers  # type: ignore[return-value]
