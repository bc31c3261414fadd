"""`FrameReader` on frames serialized by hyperframe (the frame layer `h2` is built on): pure, no sockets."""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sidecar.http2.frames import (
    GOAWAY,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    FrameError,
    FrameReader,
)

Event = tuple[object, ...]


class Recorder:
    """Collects what a reader reports, as tuples."""

    def __init__(self, *, client: bool = False, max_block: int = 1 << 16) -> None:
        self.events: list[Event] = []
        self.reader = FrameReader(self.headers, self.data, self.control, client=client, max_block=max_block)

    def headers(self, sid: int, flags: int, block: bytes, promised: int) -> None:
        self.events.append(("headers", sid, flags & 0x1, bytes(block), promised))

    def data(self, sid: int, flags: int, size: int) -> None:
        self.events.append(("data", sid, flags & 0x1, size))

    def control(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        self.events.append(("control", ftype, flags, sid, bytes(payload)))


def serialize(*frames: Frame) -> bytes:
    return b"".join(f.serialize() for f in frames)


def frame(cls: type[Frame], *args: object, flags: tuple[str, ...] = (), **kwargs: object) -> Frame:
    f = cls(*args, **kwargs)
    for flag in flags:
        f.flags.add(flag)
    return f


# Unknown types are skipped (RFC 9113 section 5.5); written by hand: hyperframe's ExtensionFrame serializes no body.
UNKNOWN_TYPE = b"\x00\x00\x28\xee\xff\x00\x00\x00\x07" + b"z" * 40
BLOCK = bytes(range(200)) * 3  # the reader does not decode blocks: any bytes stand for one

# Every frame type, padding and priority included, and the events they must give.
MIXED = serialize(
    frame(SettingsFrame, 0, settings={SettingsFrame.HEADER_TABLE_SIZE: 0, SettingsFrame.ENABLE_PUSH: 0}),
    frame(SettingsFrame, 0, flags=("ACK",)),
    frame(HeadersFrame, 1, BLOCK[:100], flags=("END_HEADERS",)),
    frame(HeadersFrame, 3, BLOCK[:300], flags=("PADDED", "PRIORITY"), pad_length=17, depends_on=1,
          stream_weight=200, exclusive=True),
    frame(ContinuationFrame, 3, BLOCK[300:450]),
    frame(ContinuationFrame, 3, BLOCK[450:], flags=("END_HEADERS",)),
    frame(DataFrame, 1, b"x" * 1000),
    frame(DataFrame, 3, b"y" * 500, flags=("PADDED", "END_STREAM"), pad_length=255),
    frame(DataFrame, 1, b"", flags=("END_STREAM",)),
    frame(PingFrame, 0, b"12345678"),
    frame(WindowUpdateFrame, 0, window_increment=65535),
    frame(PriorityFrame, 5, depends_on=1, stream_weight=16),
    frame(PushPromiseFrame, 1, 2, BLOCK[:50], flags=("END_HEADERS", "PADDED"), pad_length=3),
    frame(PushPromiseFrame, 1, 4, BLOCK[:60]),
    frame(ContinuationFrame, 1, BLOCK[60:70], flags=("END_HEADERS",)),
    frame(HeadersFrame, 2, BLOCK[:10], flags=("END_HEADERS", "END_STREAM")),
) + UNKNOWN_TYPE + serialize(
    frame(RstStreamFrame, 4, error_code=8),
    frame(GoAwayFrame, 0, last_stream_id=3, error_code=0, additional_data=b"debug " * 50),
)
MIXED_EVENTS: list[Event] = [
    ("control", SETTINGS, 0, 0, b"\x00\x01\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00"),
    ("control", SETTINGS, 1, 0, b""),
    ("headers", 1, 0, BLOCK[:100], 0),
    ("headers", 3, 0, BLOCK, 0),
    ("data", 1, 0, 1000),
    ("data", 3, 1, 500),
    ("data", 1, 1, 0),
    ("headers", 1, 0, BLOCK[:50], 2),
    ("headers", 1, 0, BLOCK[:70], 4),
    ("headers", 2, 1, BLOCK[:10], 0),
    ("control", RST_STREAM, 0, 4, b"\x00\x00\x00\x08"),
    ("control", GOAWAY, 0, 0, b"\x00\x00\x00\x03\x00\x00\x00\x00"),  # the debug data is skipped
]


def read(data: bytes, cuts: list[int] | tuple[int, ...] = (), **kwargs: bool) -> list[Event]:
    rec = Recorder(**kwargs)
    start = 0
    for cut in [*cuts, len(data)]:
        rec.reader.feed(data[start:cut])
        start = cut
    return rec.events


def test_every_frame_type_gives_its_event_whole() -> None:
    assert read(MIXED) == MIXED_EVENTS


def test_a_cut_anywhere_changes_nothing() -> None:
    for cut in range(1, len(MIXED)):
        assert read(MIXED, [cut]) == MIXED_EVENTS, cut


def test_one_byte_at_a_time_changes_nothing() -> None:
    assert read(MIXED, list(range(1, len(MIXED)))) == MIXED_EVENTS


def test_the_client_preface_is_checked_and_skipped_in_any_chunking() -> None:
    data = PREFACE + MIXED
    assert read(data, client=True) == MIXED_EVENTS
    for cut in range(1, 30):
        assert read(data, [cut], client=True) == MIXED_EVENTS
    with pytest.raises(FrameError, match="preface"):
        read(b"GET / HTTP/1.1\r\n\r\n", client=True)
    with pytest.raises(FrameError, match="preface"):
        read(PREFACE[:10] + b"X", [5], client=True)


def test_data_is_counted_without_being_kept() -> None:
    big = serialize(frame(DataFrame, 1, b"d" * 16384), frame(DataFrame, 1, b"d" * 16384, flags=("END_STREAM",)))
    rec = Recorder()
    for i in range(0, len(big), 1000):
        rec.reader.feed(big[i:i + 1000])
    assert rec.events == [("data", 1, 0, 16384), ("data", 1, 1, 16384)]
    assert len(rec.reader._buf) == 0 and len(rec.reader._head) == 0  # nothing of the payload gathered


@pytest.mark.parametrize(("data", "why"), [
    (serialize(frame(HeadersFrame, 1, b"ab"), frame(DataFrame, 1, b"x")), "inside a header block"),
    (serialize(frame(ContinuationFrame, 1, b"ab", flags=("END_HEADERS",))), "no header block open"),
    (serialize(frame(HeadersFrame, 1, b"ab"), frame(ContinuationFrame, 3, b"c")), "no header block open"),
    (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", "on stream 0"),  # DATA on stream 0
    (b"\x00\x00\x00\x04\x00\x00\x00\x00\x01", "on stream 1"),  # SETTINGS on a stream
    (b"\x00\x00\x03\x03\x00\x00\x00\x00\x01abc", "not 4"),  # RST_STREAM of 3 bytes
    (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00abcdefg", "not 8"),  # PING of 7 bytes
    (b"\x00\x00\x04\x07\x00\x00\x00\x00\x00abcd", "GOAWAY of 4"),
    (b"\x00\x00\x02\x00\x08\x00\x00\x00\x01\x05x", "padding"),  # DATA whose padding is longer than it
    (b"\x00\x00\x00\x00\x08\x00\x00\x00\x01", "padding"),  # padded DATA with no pad length
    (b"\x00\x00\x03\x01\x2c\x00\x00\x00\x01\x00ab", "priority"),  # PADDED|PRIORITY in 3 bytes
    (b"\x00\x00\x00\x01\x0c\x00\x00\x00\x01", "no pad length"),
    (b"\x00\x00\x03\x05\x04\x00\x00\x00\x01abc", "promised stream id"),
    (b"\x00\x00\x04\x05\x04\x00\x00\x00\x01\x00\x00\x00\x00", "stream 0"),
    (b"\x00\x10\x00\x01\x04\x00\x00\x00\x01", "at most"),  # a 4 KiB HEADERS over max_block
], ids=lambda v: v if isinstance(v, str) else "")
def test_bytes_that_are_not_framing_raise(data: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        read(data, max_block=1024)
    for cut in range(1, len(data)):
        with pytest.raises(FrameError, match=why):
            read(data, [cut], max_block=1024)


def test_a_header_block_growing_past_the_bound_through_continuations_raises() -> None:
    data = serialize(frame(HeadersFrame, 1, b"a" * 600), frame(ContinuationFrame, 1, b"b" * 600))
    with pytest.raises(FrameError, match="more than 1024"):
        read(data, max_block=1024)
