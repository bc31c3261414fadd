"""Real HTTP/2 conversations for the tracker's tests: python-hyper's `h2` as client and as server, every byte recorded.

`Conversation` wires an `h2` client connection to an `h2` server connection
in memory (no sockets: the tracker under test is pure code) and records each
flight of bytes with its direction, so a test can replay exactly what a
sidecar would have seen, in any chunking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, Event

from sidecar.exchange import Exchange
from sidecar.http2.tracker import H2Tracker

CLIENT = "client"
SERVER = "server"
Headers = Sequence[tuple[str, str]]


@dataclass
class Flight:
    """Bytes one side sent, and the time the tracker is told they came."""

    side: str
    data: bytes
    now: float


@dataclass
class Conversation:
    """An `h2` client and server talking; `flights` is every byte each sent, in order."""

    client: H2Connection = field(default_factory=lambda: H2Connection(H2Configuration(client_side=True)))
    server: H2Connection = field(default_factory=lambda: H2Connection(H2Configuration(client_side=False)))
    flights: list[Flight] = field(default_factory=list)
    clock: float = 100.0
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)

    def start(self) -> Conversation:
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.pump()
        return self

    def tick(self, seconds: float = 1.0) -> float:
        self.clock += seconds
        return self.clock

    def send_client(self) -> None:
        """What the client has to send goes to the server (and is recorded)."""
        data = self.client.data_to_send()
        if data:
            self.flights.append(Flight(CLIENT, data, self.tick()))
            self.server_events += _read(self.server, data)

    def send_server(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.flights.append(Flight(SERVER, data, self.tick()))
            self.client_events += _read(self.client, data)

    def pump(self) -> None:
        """Both sides send until neither has anything more (SETTINGS ACKs, WINDOW_UPDATEs...)."""
        while True:
            before = len(self.flights)
            self.send_client()
            self.send_server()
            if len(self.flights) == before:
                return

    # --- the usual moves ------------------------------------------------------------

    def request(self, path: str = "/", method: str = "GET", body: bytes = b"", *,
                headers: Headers = (), end: bool = True, authority: str = "app", send: bool = True) -> int:
        sid: int = self.client.get_next_available_stream_id()
        head = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority), *headers]
        self.client.send_headers(sid, head, end_stream=end and not body)
        if body:
            self.client.send_data(sid, body, end_stream=end)
        if send:
            self.send_client()
        return sid

    def respond(self, sid: int, status: int = 200, body: bytes = b"", *, headers: Headers = (),
                trailers: Headers = (), end: bool = True, send: bool = True) -> None:
        bare = end and not body and not trailers
        self.server.send_headers(sid, [(":status", str(status)), *headers], end_stream=bare)
        if body:
            self.server.send_data(sid, body, end_stream=end and not trailers)
        if trailers:
            self.server.send_headers(sid, list(trailers), end_stream=True)
        if send:
            self.send_server()

    def grpc_call(self, method: str = "/pkg.Service/Get", message: bytes = b"\x00\x00\x00\x00\x03abc", *,
                  code: int = 0, grpc_message: str = "", reply: bytes = b"\x00\x00\x00\x00\x02ok") -> int:
        sid = self.request(method, "POST", message, headers=GRPC_REQUEST)
        trailers = [("grpc-status", str(code))]
        if grpc_message:
            trailers.append(("grpc-message", grpc_message))
        self.respond(sid, 200, reply, headers=GRPC_RESPONSE, trailers=trailers)
        return sid


def _read(conn: H2Connection, data: bytes) -> list[Event]:
    """`conn` receives `data` and, as a real peer would, gives back the flow-control window its DATA used."""
    events = conn.receive_data(data)
    for event in events:
        if isinstance(event, DataReceived) and event.flow_controlled_length:
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)  # closed streams too
    return events


GRPC_REQUEST: Headers = (("content-type", "application/grpc"), ("te", "trailers"),
                         ("user-agent", "grpc-python/1.60.0"))
GRPC_RESPONSE: Headers = (("content-type", "application/grpc+proto"),)


def replay(flights: Iterable[Flight], tracker: H2Tracker | None = None, *, split: int | None = None,
           byte_by_byte: bool = False) -> tuple[H2Tracker, list[Exchange]]:
    """Feed the flights to a tracker: whole, each cut at `split` (when inside it), or one byte at a time."""
    tracker = tracker if tracker is not None else H2Tracker()
    done: list[Exchange] = []
    for flight in flights:
        feed = tracker.feed_client if flight.side == CLIENT else tracker.feed_server
        data = flight.data
        if byte_by_byte:
            for i in range(len(data)):
                feed(data[i:i + 1], flight.now)
        elif split is not None and 0 < split < len(data):
            feed(data[:split], flight.now)
            feed(data[split:], flight.now)
        else:
            feed(data, flight.now)
        done += tracker.take_finished()
    return tracker, done


def summary(ex: Exchange) -> tuple[object, ...]:
    """The fields a test compares, in one tuple."""
    return (ex.method, ex.target, ex.user_agent, ex.status, ex.reason, ex.protocol, ex.grpc_status, ex.grpc_message,
            ex.t_start, ex.t_first, ex.t_end, ex.bytes_in, ex.bytes_out, ex.error, ex.untracked)
