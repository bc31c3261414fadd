"""`H2Tracker` on real HTTP/2 conversations (`h2` as client and server), fed in every chunking: pure, no sockets."""

from __future__ import annotations

from h2.exceptions import H2Error
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, SettingsFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.exchange import Exchange
from sidecar.http2.tracker import H2Tracker
from tests.h2_support import (
    CLIENT,
    GRPC_REQUEST,
    GRPC_RESPONSE,
    SERVER,
    Conversation,
    Flight,
    replay,
    summary,
)


def everywhere(flights: list[Flight], expected: list[tuple[object, ...]], *, dense: int = 0) -> None:
    """The flights give `expected` fed whole, one byte at a time, and cut at each offset (every `dense`-th if set)."""
    _, done = replay(flights)
    assert [summary(ex) for ex in done] == expected
    tracker, done = replay(flights, byte_by_byte=True)
    assert [summary(ex) for ex in done] == expected
    assert tracker.live == 0 and not tracker.broken
    longest = max(len(f.data) for f in flights)
    for cut in range(1, longest, dense or 1):
        tracker, done = replay(flights, split=cut)
        assert [summary(ex) for ex in done] == expected, cut
        assert not tracker.broken, tracker.why


def test_a_request_and_its_response() -> None:
    c = Conversation().start()
    sid = c.request("/users/42?x=1", headers=[("user-agent", "curl/8.5.0")])
    c.respond(sid, 200, b"hello world", headers=[("content-type", "text/plain")])
    # flights: 101 client preface+SETTINGS, 102 server SETTINGS, 103 client ACK, 104 request, 105 response
    everywhere(c.flights, [
        (b"GET", b"/users/42?x=1", b"curl/8.5.0", 200, "", "h2", None, "", 104.0, 105.0, 105.0, 0, 11, None, False),
    ])


def test_streams_are_live_until_both_ends_end_them_and_finish_in_the_order_they_end() -> None:
    c = Conversation().start()
    tracker, _ = replay(c.flights)
    mark = len(c.flights)
    one = c.request("/one", "POST", b"abc", end=False)
    three = c.request("/three")
    tracker, _ = replay(c.flights[mark:], tracker)
    assert tracker.live == 2
    mark = len(c.flights)
    c.respond(three, 204)
    c.respond(one, 200, b"early")  # the response ends first; the request is still open
    tracker, done = replay(c.flights[mark:], tracker)
    assert [ex.target for ex in done] == [b"/three"] and tracker.live == 1
    mark = len(c.flights)
    c.client.send_data(one, b"defg", end_stream=True)
    c.send_client()
    tracker, done = replay(c.flights[mark:], tracker)
    assert [(ex.target, ex.bytes_in, ex.bytes_out, ex.t_first, ex.t_end, ex.error) for ex in done] == [
        (b"/one", 7, 5, 107.0, 108.0, None)]  # t_end: the later END_STREAM, the request's
    assert tracker.live == 0


def test_grpc_calls_report_the_mapped_status_and_the_decoded_message() -> None:
    c = Conversation().start()
    c.grpc_call("/pkg.Users/Get")
    c.grpc_call("/pkg.Users/Find", code=5, grpc_message="no user 42: caf\u00e9 100%")
    # Trailers-Only: the status comes in the only HEADERS there is.
    sid = c.request("/pkg.Users/Put", "POST", b"\x00\x00\x00\x00\x00", headers=GRPC_REQUEST)
    c.respond(sid, 200, headers=[*GRPC_RESPONSE, ("grpc-status", "14"), ("grpc-message", "down%21")])
    agent = b"grpc-python/1.60.0"
    everywhere(c.flights, [
        (b"POST", b"/pkg.Users/Get", agent, 200, "OK", "grpc", 0, "", 104.0, 105.0, 105.0, 8, 7, None, False),
        (b"POST", b"/pkg.Users/Find", agent, 404, "NOT_FOUND", "grpc", 5, "no user 42: caf\u00e9 100%",
         106.0, 107.0, 107.0, 8, 7, None, False),
        (b"POST", b"/pkg.Users/Put", agent, 503, "UNAVAILABLE", "grpc", 14, "down!", 108.0, 109.0, 109.0, 5, 0,
         None, False),
    ])


def test_grpc_streaming_counts_every_message_both_ways() -> None:
    c = Conversation().start()
    sid = c.request("/pkg.Chat/Talk", "POST", headers=GRPC_REQUEST, end=False)
    c.respond(sid, 200, headers=GRPC_RESPONSE, end=False)
    for i in range(5):
        c.client.send_data(sid, b"\x00\x00\x00\x00\x03" + b"ask", end_stream=i == 4)
        c.send_client()
        c.server.send_data(sid, b"\x00\x00\x00\x00\x06" + b"answer")
        c.send_server()
    c.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    c.send_server()
    c.pump()  # WINDOW_UPDATEs
    everywhere(c.flights, [
        (b"POST", b"/pkg.Chat/Talk", b"grpc-python/1.60.0", 200, "OK", "grpc", 0, "", 104.0, 105.0, 116.0,
         40, 55, None, False),
    ])


def test_a_grpc_status_is_not_read_from_plain_http2() -> None:
    c = Conversation().start()
    sid = c.request("/x")
    c.respond(sid, 200, b"body", trailers=[("grpc-status", "13")])
    _, (ex,) = replay(c.flights)
    assert (ex.status, ex.protocol, ex.grpc_status, ex.reason) == (200, "h2", None, "")


def test_interim_responses_time_the_first_byte_and_request_trailers_end_the_request() -> None:
    c = Conversation().start()
    sid = c.request("/upload", "PUT", headers=[("expect", "100-continue")], end=False)
    c.server.send_headers(sid, [(":status", "100")])
    c.send_server()
    c.client.send_data(sid, b"x" * 3000)
    c.client.send_headers(sid, [("checksum", "abc")], end_stream=True)  # request trailers
    c.send_client()
    c.respond(sid, 201)
    everywhere(c.flights, [
        (b"PUT", b"/upload", b"", 201, "", "h2", None, "", 104.0, 105.0, 107.0, 3000, 0, None, False),
    ])


def test_a_response_is_complete_with_its_declared_length_before_its_end_stream() -> None:
    c = Conversation().start()
    sid = c.request("/users/1")
    c.server.send_headers(sid, [(":status", "200"), ("content-type", "text/plain"), ("content-length", "11")])
    c.send_server()
    c.server.send_data(sid, b"hello ")
    c.send_server()
    c.server.send_data(sid, b"world")
    c.send_server()
    # As hypercorn does: END_STREAM alone in an empty DATA frame; the client has what it needs before it.
    c.server.send_data(sid, b"", end_stream=True)
    c.send_server()
    whole = (b"GET", b"/users/1", b"", 200, "", "h2", None, "", 104.0, 105.0, 107.0, 0, 11, None, False)
    everywhere(c.flights, [whole])
    tracker, done = replay(c.flights[:-1])  # the client leaves before the empty frame was read
    tracker.close("client", 300.0)
    assert [summary(ex) for ex in done + tracker.take_finished()] == [whole]
    tracker, done = replay(c.flights[:-2])  # ...but not before the last of the body
    tracker.close("client", 300.0)
    assert [(ex.bytes_out, ex.t_end, ex.error) for ex in done + tracker.take_finished()] == [
        (6, 300.0, "client_closed")]


def test_a_declared_length_of_zero_completes_the_response_at_its_headers() -> None:
    c = Conversation().start()
    sid = c.request("/empty")
    c.server.send_headers(sid, [(":status", "200"), ("content-length", "0")])
    c.send_server()
    c.server.send_data(sid, b"", end_stream=True)
    c.send_server()
    tracker, done = replay(c.flights[:-1])
    assert [(ex.status, ex.t_end, ex.error) for ex in done] == [(200, 105.0, None)] and tracker.live == 0


def test_a_declared_length_does_not_end_grpc_head_no_content_or_disagreeing_responses() -> None:
    c = Conversation().start()
    # gRPC: the outcome is in the trailers, whatever the length of the message before them.
    call = c.request("/pkg.Users/Get", "POST", b"\x00\x00\x00\x00\x00", headers=GRPC_REQUEST)
    head = c.request("/doc", "HEAD")
    unchanged = c.request("/cached", headers=[("if-none-match", '"v1"')])
    disagree = c.request("/odd")
    c.server.send_headers(call, [(":status", "200"), *GRPC_RESPONSE, ("content-length", "7")])
    c.server.send_data(call, b"\x00\x00\x00\x00\x02ok")
    c.server.send_headers(head, [(":status", "200"), ("content-length", "1000")])
    c.server.send_headers(unchanged, [(":status", "304"), ("content-length", "0")])
    c.send_server()
    # Two lengths that disagree (h2 would not send it; a broken server might): neither is believed.
    block = c.server.encoder.encode([(":status", "200"), ("content-length", "2"), ("content-length", "3")])
    odd = HeadersFrame(disagree, block, flags=["END_HEADERS"]).serialize() + DataFrame(disagree, b"abc").serialize()
    tracker, done = replay([*c.flights, Flight(SERVER, odd, 200.0)])
    assert done == [] and tracker.live == 4
    tracker.close("client", 300.0)
    assert [(ex.target, ex.error) for ex in tracker.take_finished()] == [
        (b"/pkg.Users/Get", "client_closed"), (b"/doc", "client_closed"), (b"/cached", "client_closed"),
        (b"/odd", "client_closed")]


def test_resets_give_stream_reset_but_not_after_a_complete_response() -> None:
    c = Conversation().start()
    cancelled = c.request("/slow")
    refused = c.request("/refused")
    early = c.request("/early", "POST", b"part", end=False)
    c.client.reset_stream(cancelled, error_code=8)  # CANCEL, as a gRPC client past its deadline
    c.send_client()
    c.server.reset_stream(refused, error_code=7)  # REFUSED_STREAM
    c.send_server()
    c.respond(early, 413, b"too big")
    c.server.reset_stream(early, error_code=0)  # NO_ERROR: "stop sending, the answer is complete"
    c.send_server()
    everywhere(c.flights, [
        (b"GET", b"/slow", b"", 0, "", "h2", None, "", 104.0, None, 107.0, 0, 0, "stream_reset", False),
        (b"GET", b"/refused", b"", 0, "", "h2", None, "", 105.0, None, 108.0, 0, 0, "stream_reset", False),
        (b"POST", b"/early", b"", 413, "", "h2", None, "", 106.0, 109.0, 110.0, 4, 7, None, False),
    ])


def test_a_server_goaway_refuses_the_streams_above_its_last_stream_id() -> None:
    c = Conversation().start()
    for path in ("/a", "/b", "/c"):
        c.request(path)
    c.respond(1, 200, b"a")
    c.server.close_connection(last_stream_id=3)
    c.send_server()
    tracker, done = replay(c.flights)
    assert [(ex.target, ex.error, ex.t_end) for ex in done] == [(b"/a", None, 107.0), (b"/c", "upstream_reset", 108.0)]
    assert tracker.live == 1  # /b was taken: it may still be answered
    # A stream the client opens after it (its GOAWAY still in flight) is refused at once.
    late = c.client.encoder.encode([(":method", "GET"), (":path", "/late"), (":scheme", "http"), (":authority", "a")])
    flight = Flight(CLIENT, HeadersFrame(7, late, flags=["END_HEADERS", "END_STREAM"]).serialize(), 200.0)
    tracker, done = replay([flight], tracker)
    assert [(ex.target, ex.error) for ex in done] == [(b"/late", "upstream_reset")]
    tracker.close("upstream", 201.0)
    assert [(ex.target, ex.error, ex.t_end) for ex in tracker.take_finished()] == [(b"/b", "upstream_reset", 201.0)]


def test_a_client_goaway_refuses_the_pushes_above_its_last_stream_id() -> None:
    c = Conversation().start()
    sid = c.request("/page")
    c.server.push_stream(sid, 2, [(":method", "GET"), (":path", "/style.css"), (":scheme", "http"),
                                  (":authority", "app")])
    c.respond(sid, 200, b"<html>")
    c.client.close_connection(last_stream_id=0)
    c.send_client()
    tracker, done = replay(c.flights)
    assert [(ex.target, ex.error) for ex in done] == [(b"/page", None), (b"/style.css", "client_closed")]
    assert tracker.live == 0


def test_pushed_streams_are_exchanges_of_their_own() -> None:
    c = Conversation().start()
    sid = c.request("/page")
    c.server.push_stream(sid, 2, [(":method", "GET"), (":path", "/app.js"), (":scheme", "http"),
                                  (":authority", "app")])
    c.respond(sid, 200, b"<html>")
    c.respond(2, 200, b"js" * 100, headers=[("content-type", "text/javascript")])
    everywhere(c.flights, [
        (b"GET", b"/page", b"", 200, "", "h2", None, "", 104.0, 105.0, 105.0, 0, 6, None, False),
        (b"GET", b"/app.js", b"", 200, "", "h2", None, "", 105.0, 106.0, 106.0, 0, 200, None, False),
    ])


def test_header_table_size_changes_keep_both_tables_in_step() -> None:
    c = Conversation().start()
    expected = []
    for size in (0, 65536, 256, 4096):
        c.client.update_settings({SettingCodes.HEADER_TABLE_SIZE: size})  # bounds the server's encoder
        c.server.update_settings({SettingCodes.HEADER_TABLE_SIZE: size})  # bounds the client's
        c.pump()
        if size:  # and each encoder chooses a smaller table of its own (setting 0 twice would lose hpack's update)
            c.server.encoder.header_table_size = size // 2
            c.client.encoder.header_table_size = size // 2
        for n in range(3):  # repeated headers: indexed from the dynamic table when there is one
            path = f"/size/{size}/{n}"
            sid = c.request(path, headers=[("x-custom", "v" * 40), ("user-agent", f"agent/{size}")])
            c.respond(sid, 404, headers=[("x-served-by", "s" * 40)])
            t = c.flights[-1].now
            expected.append((b"GET", path.encode(), f"agent/{size}".encode(), 404, "", "h2", None, "",
                             t - 1, t, t, 0, 0, None, False))
    everywhere(c.flights, expected, dense=7)


def test_a_table_larger_than_the_acknowledged_setting_stops_tracking() -> None:
    settings = SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 0}).serialize()
    ack = SettingsFrame(0, flags=["ACK"]).serialize()
    block = Encoder().encode([(":status", "200"), ("x-a", "b")])  # uses a 4096-byte table, no size update
    response = HeadersFrame(1, block, flags=["END_HEADERS"]).serialize()
    c = Conversation().start()
    c.request("/", end=False)
    before_ack = [*c.flights, Flight(CLIENT, settings, 200.0), Flight(SERVER, response, 201.0)]
    tracker, _ = replay(before_ack)
    assert not tracker.broken  # not yet acknowledged: the server may not have read it
    c.request("/2", end=False)
    after_ack = [*c.flights, Flight(CLIENT, settings, 200.0), Flight(SERVER, ack + response, 201.0)]
    tracker, done = replay(after_ack)
    assert tracker.broken and "InvalidTableSizeError" in tracker.why
    assert sorted((ex.target, ex.untracked, ex.t_end) for ex in done) == [(b"/", True, 201.0), (b"/2", True, 201.0)]


def test_a_larger_table_may_be_used_before_its_setting_is_acknowledged() -> None:
    c = Conversation().start()
    c.request("/")
    settings = SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 65536}).serialize()
    encoder = Encoder()
    encoder.header_table_size = 65536  # the server read the SETTINGS and grew its table before sending the ACK
    big = HeadersFrame(1, encoder.encode([(":status", "200"), ("x-a", "b" * 5000)]), flags=["END_HEADERS"])
    again = HeadersFrame(1, encoder.encode([("x-a", "b" * 5000)]), flags=["END_HEADERS", "END_STREAM"])
    tracker, done = replay([*c.flights, Flight(CLIENT, settings, 200.0),
                            Flight(SERVER, big.serialize() + again.serialize(), 201.0)])
    assert not tracker.broken, tracker.why
    assert [(ex.target, ex.status, ex.t_end) for ex in done] == [(b"/", 200, 201.0)]


def test_large_header_blocks_come_in_continuations() -> None:
    c = Conversation().start()
    sid = c.request("/big", headers=[("x-big", "b" * 40000)])  # over the 16 KiB frame: HEADERS + CONTINUATIONs
    c.respond(sid, 200, headers=[("x-big", "c" * 30000)])
    everywhere(c.flights, [(b"GET", b"/big", b"", 200, "", "h2", None, "", 104.0, 105.0, 105.0, 0, 0, None, False)],
               dense=997)


def test_a_header_list_over_the_limit_stops_tracking_and_nothing_after_it_counts() -> None:
    c = Conversation().start()
    c.request("/open", end=False)
    sid = c.request("/huge", headers=[("x-big", "b" * 9000)])
    c.respond(sid, 200)
    c.respond(1, 200)
    tracker, done = replay(c.flights, H2Tracker(max_header_list=8192))
    assert tracker.broken and "OversizedHeaderListError" in tracker.why
    assert [(ex.target, ex.untracked, ex.t_end) for ex in done] == [(b"/open", True, 105.0)]
    assert tracker.live == 0
    tracker.close("client", 300.0)
    assert tracker.take_finished() == []


def test_bytes_that_are_not_http2_stop_tracking_without_raising() -> None:
    tracker = H2Tracker()
    tracker.feed_client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    assert tracker.broken and "preface" in tracker.why
    tracker.feed_server(b"HTTP/1.1 200 OK\r\n\r\n", 2.0)
    tracker.close("done", 3.0)
    assert tracker.live == 0 and tracker.take_finished() == []


def test_the_connection_ending_gives_each_open_stream_the_word_http1_gives() -> None:
    for cause, word in (("client", "client_closed"), ("timeout", "client_closed"), ("upstream", "upstream_reset"),
                        ("done", "upstream_reset"), ("error", "upstream_reset")):
        c = Conversation().start()
        c.request("/waiting")
        answered = c.request("/answered", "POST", b"abc", end=False)
        c.respond(answered, 200, b"done")  # complete from the app's side; the client never ended its request
        tracker, done = replay(c.flights)
        assert done == [] and tracker.live == 2
        tracker.close(cause, 500.0)
        tracker.close(cause, 600.0)  # a second close changes nothing
        assert [(ex.target, ex.error, ex.t_end) for ex in tracker.take_finished()] == [
            (b"/waiting", word, 500.0), (b"/answered", None, 106.0)], cause
        assert tracker.live == 0
        tracker.feed_server(c.flights[-1].data, 700.0)  # after the end: ignored
        assert tracker.take_finished() == []


def test_an_h2c_upgrade_request_is_stream_1() -> None:
    client = Conversation().client
    settings_header = client.initiate_upgrade_connection()
    c = Conversation(client=client)
    c.server.initiate_upgrade_connection(settings_header)
    c.send_client()  # the preface and SETTINGS, after the 101
    c.send_server()
    c.respond(1, 200, b"upgraded", headers=[("content-type", "text/plain")])
    sid = c.request("/next")
    c.respond(sid, 204)
    upgrade = Exchange(50.0)
    upgrade.method, upgrade.target, upgrade.status, upgrade.t_first = b"GET", b"/", 101, 51.0
    upgrade.reason, upgrade.tunnel = "Switching Protocols", True  # as the HTTP/1 tracker leaves it
    upgrade.bytes_in, upgrade.bytes_out = 0, len(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    tracker = H2Tracker(upgrade=upgrade)
    assert tracker.live == 1
    tracker, done = replay(c.flights, tracker)
    assert [summary(ex) for ex in done] == [
        (b"GET", b"/", b"", 200, "", "h2", None, "", 50.0, 51.0, 103.0, 0, 8, None, False),
        (b"GET", b"/next", b"", 204, "", "h2", None, "", 104.0, 105.0, 105.0, 0, 0, None, False),
    ]
    assert done[0] is upgrade and tracker.live == 0


def test_settings_acks_and_pings_on_an_idle_connection_begin_nothing() -> None:
    c = Conversation().start()
    c.client.ping(b"12345678")
    c.pump()
    c.server.close_connection()
    c.send_server()
    tracker, done = replay(c.flights)
    assert done == [] and tracker.live == 0 and not tracker.broken
    frame = GoAwayFrame(0, last_stream_id=0).serialize()
    tracker.feed_client(frame, 1.0)
    assert not tracker.broken


# --- generated conversations: whatever the peers do, every stream ends exactly once -------------

PICK = st.integers(0, 50)
SIZE = st.integers(0, 3000)
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("request"), SIZE, st.booleans(), st.booleans()),
    st.tuples(st.just("respond"), PICK, st.sampled_from([200, 204, 404, 503]), SIZE,
              st.sampled_from(["", "trailers", "grpc", "trailers-only"]), st.booleans(), st.booleans()),
    st.tuples(st.just("client_data"), PICK, SIZE, st.booleans()),
    st.tuples(st.just("server_data"), PICK, SIZE, st.booleans()),
    st.tuples(st.just("interim"), PICK),
    st.tuples(st.just("client_trailers"), PICK),
    st.tuples(st.just("client_reset"), PICK, st.sampled_from([0, 8])),
    st.tuples(st.just("server_reset"), PICK, st.sampled_from([0, 2, 7])),
    st.tuples(st.just("push"), PICK),
    st.tuples(st.just("settings"), st.booleans(), st.sampled_from([0, 64, 256, 4096, 65536])),
    st.tuples(st.just("ping")),
    st.tuples(st.just("goaway"), st.booleans(), PICK),
), max_size=40)


class Model:
    """What each stream was sent, as the h2 peers accepted it: the tracker must report the same."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self.bytes_in: dict[int, int] = {}
        self.bytes_out: dict[int, int] = {}
        self.valid = True  # False when a receiving h2 peer refused what the other sent


def converse(operations: list[tuple[object, ...]]) -> tuple[Conversation, Model]:
    """Play the operations through two h2 peers; those h2 refuses (a closed stream, a full window...) are skipped."""
    c = Conversation().start()
    model = Model()

    def pick(n: object) -> int:
        ids = sorted(model.paths)
        if not ids:
            raise LookupError("no stream yet")
        return ids[_int(n) % len(ids)]

    for op in operations:
        kind = op[0]
        try:
            if kind == "request":
                size, end, is_grpc = _int(op[1]), bool(op[2]), bool(op[3])
                path = f"/s/{len(model.paths)}"
                sid = c.request(path, "POST" if size else "GET", b"q" * size, end=end,
                                headers=GRPC_REQUEST if is_grpc else (), send=False)
                model.paths[sid], model.bytes_in[sid], model.bytes_out[sid] = path, size, 0
            elif kind == "respond":
                sid, status, size, how, end = pick(op[1]), _int(op[2]), _int(op[3]), op[4], bool(op[5])
                if how == "trailers-only":
                    c.respond(sid, 200, headers=[*GRPC_RESPONSE, ("grpc-status", "5")], end=end, send=False)
                else:
                    trailers = [("grpc-status", "0")] if how == "grpc" else [("x-t", "1")] if how else []
                    length = [("content-length", str(size))] if op[6] and status != 204 else []
                    c.respond(sid, status, b"r" * size, headers=length, trailers=trailers, end=end, send=False)
                    model.bytes_out[sid] += size
            elif kind in ("client_data", "server_data"):
                sid, size, end = pick(op[1]), _int(op[2]), bool(op[3])
                (c.client if kind == "client_data" else c.server).send_data(sid, b"d" * size, end_stream=end)
                (model.bytes_in if kind == "client_data" else model.bytes_out)[sid] += size
            elif kind == "interim":
                c.server.send_headers(pick(op[1]), [(":status", "103")])
            elif kind == "client_trailers":
                c.client.send_headers(pick(op[1]), [("x-checksum", "1")], end_stream=True)
            elif kind == "client_reset":
                c.client.reset_stream(pick(op[1]), error_code=_int(op[2]))
            elif kind == "server_reset":
                c.server.reset_stream(pick(op[1]), error_code=_int(op[2]))
            elif kind == "push":
                promised = c.server.get_next_available_stream_id()
                path = f"/push/{len(model.paths)}"
                c.server.push_stream(pick(op[1]), promised, [(":method", "GET"), (":path", path),
                                                             (":scheme", "http"), (":authority", "app")])
                model.paths[promised], model.bytes_in[promised], model.bytes_out[promised] = path, 0, 0
            elif kind == "settings":
                (c.client if op[1] else c.server).update_settings({SettingCodes.HEADER_TABLE_SIZE: _int(op[2])})
            elif kind == "ping":
                c.client.ping(b"pingpong")
            elif kind == "goaway":
                (c.client if op[1] else c.server).close_connection(last_stream_id=pick(op[2]))
        except (H2Error, LookupError):
            pass  # no stream to act on, or h2 would not send that (a closed stream, a full window): nothing queued
        try:
            c.pump()
        except H2Error:
            model.valid = False
            break  # the receiving peer objected: the conversation is over (its bytes stay recorded)
        if kind == "goaway":
            break  # the connection is going: what a peer may still send is its business
    return c, model


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def feed_all(tracker: H2Tracker, flights: list[Flight], cuts: list[int]) -> list[Exchange]:
    """Feed `flights` cut at `cuts` (offsets into each flight, reused round-robin); the exchanges seen live too."""
    done: list[Exchange] = []
    seen: dict[int, Exchange] = {}
    k = 0
    for flight in flights:
        feed = tracker.feed_client if flight.side == CLIENT else tracker.feed_server
        data, start = flight.data, 0
        while start < len(data):
            step = max(1, cuts[k % len(cuts)]) if cuts else len(data)
            k += 1
            feed(data[start:start + step], flight.now)
            start += step
            seen.update((id(ex), ex) for ex in tracker._streams.values())
            done += tracker.take_finished()
    tracker.close("done", 1e6)
    done += tracker.take_finished()
    assert tracker.live == 0
    assert len({id(ex) for ex in done}) == len(done), "an exchange finished twice"
    assert set(seen) <= {id(ex) for ex in done}, "a stream never finished"
    assert all(ex.t_end is not None and ex.t_end >= ex.t_start for ex in done)
    return done


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS, st.lists(st.integers(1, 1500), max_size=20))
def test_generated_conversations_are_followed_exactly(operations: list[tuple[object, ...]], cuts: list[int]) -> None:
    c, model = converse(operations)
    tracker = H2Tracker()
    done = feed_all(tracker, c.flights, cuts)
    if not model.valid:  # h2 broke the protocol (hpack drops a table size update set twice): the tracker may stop
        return
    assert not tracker.broken, tracker.why
    assert sorted(ex.target.decode() for ex in done) == sorted(model.paths.values())
    sid_of = {path: sid for sid, path in model.paths.items()}
    for ex in done:
        sid = sid_of[ex.target.decode()]
        assert (ex.bytes_in, ex.bytes_out) == (model.bytes_in[sid], model.bytes_out[sid]), ex
        assert ex.t_start <= (ex.t_first or ex.t_start) and ex.t_start <= ex.t_end  # type: ignore[operator]
    whole_tracker, whole = replay(c.flights)  # the same bytes unchunked: the same exchanges
    whole_tracker.close("done", 1e6)
    assert sorted(map(summary, whole + whole_tracker.take_finished())) == sorted(map(summary, done))


MANGLE = st.lists(st.tuples(st.sampled_from(["flip", "drop", "insert", "repeat"]), st.integers(0, 1 << 20),
                            st.integers(0, 1 << 20), st.binary(min_size=1, max_size=12)), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS, MANGLE, st.lists(st.integers(1, 1500), max_size=20))
def test_mangled_conversations_never_raise_and_leave_nothing_open(operations: list[tuple[object, ...]],
                                                                   mangles: list[tuple[str, int, int, bytes]],
                                                                   cuts: list[int]) -> None:
    c, _ = converse(operations)
    flights = list(c.flights)
    for how, which, where, junk in mangles:
        flight = flights[which % len(flights)]
        data = bytearray(flight.data)
        at = where % (len(data) or 1)
        if not data:
            data += junk
        elif how == "flip":
            data[at] ^= junk[0] or 1
        elif how == "drop":
            del data[at:at + len(junk)]
        elif how == "insert":
            data[at:at] = junk
        else:
            data[at:at] = data[at:at + len(junk) * 8]
        flights[flights.index(flight)] = Flight(flight.side, bytes(data), flight.now)
    tracker = H2Tracker(max_header_list=4096)
    feed_all(tracker, flights, cuts)
    assert tracker.broken == bool(tracker.why)


def test_blocks_of_streams_already_over_are_decoded_to_keep_the_table_in_step() -> None:
    c = Conversation().start()
    sid = c.request("/first", end=False)
    c.server.reset_stream(sid, error_code=7)
    c.send_server()
    # Trailers the client sent before the reset reached it: a new literal enters the client's table...
    late = c.client.encoder.encode([("user-agent", "late-agent/1")])
    flights = [*c.flights, Flight(CLIENT, HeadersFrame(sid, late, flags=["END_HEADERS", "END_STREAM"]).serialize(),
                                  200.0)]
    # ...and the next request refers to it by index only.
    block = c.client.encoder.encode([(":method", "GET"), (":path", "/next"), (":scheme", "http"),
                                     (":authority", "app"), ("user-agent", "late-agent/1")])
    flights.append(Flight(CLIENT, HeadersFrame(3, block, flags=["END_HEADERS", "END_STREAM"]).serialize(), 201.0))
    tracker, done = replay(flights)
    assert not tracker.broken, tracker.why
    assert [(ex.target, ex.error) for ex in done] == [(b"/first", "stream_reset")]
    assert [(ex.target, ex.user_agent) for ex in tracker._streams.values()] == [(b"/next", b"late-agent/1")]


def test_a_grpc_call_answered_without_a_grpc_status_keeps_its_http_status() -> None:
    c = Conversation().start()
    refused = c.request("/pkg.Users/Get", "POST", b"\x00\x00\x00\x00\x00", headers=GRPC_REQUEST)
    c.respond(refused, 503, b"upstream down", headers=[("content-type", "text/plain")])  # a proxy's answer
    bare = c.request("/pkg.Users/Get", "POST", b"\x00\x00\x00\x00\x00", headers=GRPC_REQUEST)
    c.respond(bare, 200, b"\x00\x00\x00\x00\x00", headers=GRPC_RESPONSE)  # ended with no trailers at all
    _, done = replay(c.flights)
    assert [(ex.protocol, ex.status, ex.reason, ex.grpc_status, ex.error) for ex in done] == [
        ("grpc", 503, "", None, None), ("grpc", 200, "", None, None)]
