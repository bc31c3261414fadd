"""CPU per HTTP/2 stream of `H2Tracker` alone, beside the HTTP/1 `ExchangeTracker`'s per exchange in the same run.

Conversations are built once with python-hyper's `h2` as client and server
(each flight of bytes as one read, as the relay would see it), then replayed
through fresh trackers and timed with `time.process_time`; the best of
`--rounds` is kept (the machine is shared: the best is the least disturbed).
Shapes: `h2` (a GET with browser-like headers and an 11-byte answer, paths
from a set of 50), `h2-unique` (the same with a new path and `traceparent`
each time: every request block adds to the table), `grpc`
(a unary call: request message, response message, trailers), and `grpc-big`
(a 1 MiB reply in 16 KiB DATA frames: what skipping DATA costs). The HTTP/1
reference is the same GET and answer on one kept-alive connection.

    python -m bench.h2_tracker_bench                 # 2,000 streams per connection, 7 rounds
    python -m bench.h2_tracker_bench --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived
from h2.settings import SettingCodes

from sidecar.http1.tracker import ExchangeTracker
from sidecar.http2.tracker import H2Tracker

Flights = list[tuple[bool, bytes]]  # (from the client?, bytes)

BROWSER = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"), ("accept", "text/html,*/*;q=0.8"),
           ("accept-encoding", "gzip, deflate, br"), ("accept-language", "en-GB,en;q=0.9")]
GRPC = [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-accept-encoding", "identity,gzip"),
        ("user-agent", "grpc-python/1.60.0 grpc-c/37.0.0 (linux; chttp2)"), ("grpc-timeout", "4S")]


def conversation(shape: str, streams: int) -> Flights:
    """`streams` streams of one shape on one connection, as the bytes each side sent."""
    client = H2Connection(H2Configuration(client_side=True))
    server = H2Connection(H2Configuration(client_side=False))
    flights: Flights = []

    def send(from_client: bool) -> None:
        sender, receiver = (client, server) if from_client else (server, client)
        data = sender.data_to_send()
        if data:
            flights.append((from_client, data))
            for event in receiver.receive_data(data):
                if isinstance(event, DataReceived) and event.flow_controlled_length:
                    receiver.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    client.initiate_connection()
    if shape == "grpc-big":  # as gRPC clients do: windows that a 1 MiB reply does not wait on
        client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        client.increment_flow_control_window(1 << 30)
    server.initiate_connection()
    send(True)
    send(False)
    send(True)
    big = b"x" * 16384
    for n in range(streams):
        sid = client.get_next_available_stream_id()
        method = "GET" if shape.startswith("h2") else "POST"
        base = [(":method", method), (":scheme", "http"), (":authority", "app:8080")]
        if shape == "h2":
            client.send_headers(sid, [*base, (":path", f"/users/{n % 50}"), *BROWSER], end_stream=True)
        elif shape == "h2-unique":  # a new path and trace id each time: new literals, no block repeats
            trace = f"00-{n:032x}-{n:016x}-01"
            client.send_headers(sid, [*base, (":path", f"/users/{n}"), *BROWSER, ("traceparent", trace)],
                                end_stream=True)
        else:
            client.send_headers(sid, [*base, (":path", "/pkg.Users/Get"), *GRPC])
            client.send_data(sid, b"\x00\x00\x00\x00\x05hello", end_stream=True)
        send(True)
        if shape.startswith("h2"):
            server.send_headers(sid, [(":status", "200"), ("content-type", "text/plain"), ("content-length", "11")])
            server.send_data(sid, b"hello world", end_stream=True)
        else:
            server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            if shape == "grpc-big":
                server.send_data(sid, b"\x00\x00\x10\x00\x00")
                for _ in range(64):
                    server.send_data(sid, big)
            else:
                server.send_data(sid, b"\x00\x00\x00\x00\x02ok")
            server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        send(False)
        send(True)  # WINDOW_UPDATEs, when there are any
    return flights


def run_h2(flights: Flights) -> int:
    tracker = H2Tracker()
    n = 0
    now = 0.0
    for from_client, data in flights:
        now += 0.001
        if from_client:
            tracker.feed_client(data, now)
        else:
            tracker.feed_server(data, now)
        n += len(tracker.take_finished())
    assert not tracker.broken, tracker.why
    return n


def http1_flights(exchanges: int) -> Flights:
    flights: Flights = []
    for n in range(exchanges):
        flights.append((True, (f"GET /users/{n % 50} HTTP/1.1\r\nHost: app:8080\r\n"
                               "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
                               "Accept: text/html,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n"
                               "Accept-Language: en-GB,en;q=0.9\r\n\r\n").encode()))
        flights.append((False, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"))
    return flights


def run_http1(flights: Flights) -> int:
    tracker = ExchangeTracker()
    n = 0
    now = 0.0
    for from_client, data in flights:
        now += 0.001
        if from_client:
            tracker.feed_request(data, now)
        else:
            done = tracker.feed_response(data, now)
            if done:
                tracker.sent(done, now)
            n += len(tracker.take_finished())
    return n


def best_us(run: Callable[[Flights], int], flights: Flights, rounds: int) -> float:
    """The least CPU per finished exchange over `rounds` replays, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        n = run(flights)
        spent = time.process_time() - start
        best = min(best, spent / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    streams, rounds = (100, 2) if args.quick else (args.streams, args.rounds)
    reference = best_us(run_http1, http1_flights(streams), rounds)
    print(f"{'HTTP/1 exchange (ExchangeTracker)':36} {reference:7.2f} us")
    for shape in ("h2", "h2-unique", "grpc", "grpc-big"):
        flights = conversation(shape, streams if shape != "grpc-big" else max(10, streams // 20))
        us = best_us(run_h2, flights, rounds)
        print(f"{'HTTP/2 stream, ' + shape:36} {us:7.2f} us   {us / reference:5.2f}x the HTTP/1 exchange")


if __name__ == "__main__":
    main()
