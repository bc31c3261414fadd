"""A real grpcio server and client through a real sidecar: every answer as going direct, every call one sample.

Generic handlers with bytes in and out (no protobuf code generation): unary,
server, client and bidi streaming, error codes, deadlines, cancellation,
6 MiB messages both ways, hundreds of calls on one channel and many at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.protocol_support import ThreadedSidecar, eventually, sidecar_for

SERVICE = "mothership.test.Echo"
BIG = 16 << 20
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request[::-1]


def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request or b"3")):
        yield b"part %d" % i


def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b"|".join(requests)


def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield request.upper()


def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    code = grpc.StatusCode[request.decode()]
    context.abort(code, f"failed with {code.name}: ü")


def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    deadline = time.monotonic() + float(request)
    while time.monotonic() < deadline and context.is_active():
        time.sleep(0.01)
    return b"late"


def big(request: bytes, context: grpc.ServicerContext) -> bytes:
    return bytes(reversed(request[:16])) + request[16:]


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Big": grpc.unary_unary_rpc_method_handler(big),
}


class Both:
    """The same calls made direct to the app and through the sidecar."""

    def __init__(self, app_port: int, proxy: ThreadedSidecar) -> None:
        self.proxy = proxy
        self.direct = grpc.insecure_channel(f"127.0.0.1:{app_port}", options=OPTIONS)
        self.proxied = grpc.insecure_channel(f"127.0.0.1:{proxy.port}", options=OPTIONS)

    def call(self, kind: str, method: str, request: Any, **kwargs: Any) -> tuple[Any, Any]:
        def make(channel: grpc.Channel) -> Any:
            stub = getattr(channel, kind)(f"/{SERVICE}/{method}")
            got = stub(request() if callable(request) else request, **kwargs)
            return list(got) if kind.endswith("_stream") else got

        return make(self.direct), make(self.proxied)

    def close(self) -> None:
        self.direct.close()
        self.proxied.close()


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=OPTIONS)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait(5)


@pytest.fixture
def both(app_port: int) -> Iterator[Both]:
    with sidecar_for(app_port) as proxy:
        pair = Both(app_port, proxy)
        try:
            yield pair
        finally:
            pair.close()


def settled(both: Both) -> list[dict[str, Any]]:
    both.proxied.close()  # the connection ends: every call is reported by then
    return both.proxy.settled()  # type: ignore[return-value]


def test_unary_and_streaming_calls_answer_as_direct_one_sample_each(both: Both) -> None:
    assert both.call("unary_unary", "Unary", b"hello") == (b"olleh", b"olleh")
    direct, proxied = both.call("unary_stream", "ServerStream", b"4")
    assert proxied == direct == [b"part 0", b"part 1", b"part 2", b"part 3"]
    assert both.call("stream_unary", "ClientStream", lambda: iter([b"a", b"bb", b"ccc"])) == (b"a|bb|ccc",) * 2
    direct, proxied = both.call("stream_stream", "Bidi", lambda: iter([b"x", b"yz"]))
    assert proxied == direct == [b"X", b"YZ"]
    samples = settled(both)
    assert [s["route"] for s in samples] == [f"/{SERVICE}/{m}" for m in ("Unary", "ServerStream", "ClientStream",
                                                                           "Bidi")]
    for sample in samples:
        assert (sample["protocol"], sample["method"], sample["response"]["status"], sample["grpc_status"],
                sample["error"]) == ("grpc", "POST", 200, 0, None), sample
        assert 0 < sample["ttfb"] <= sample["time"]
    # DATA payload: the 5-byte gRPC message prefix and the message.
    assert (samples[0]["bytes_in"], samples[0]["bytes_out"]) == (5 + 5, 5 + 5)
    assert samples[1]["bytes_out"] == 4 * (5 + 6)
    assert both.proxy.counters.protocols["h2"] == 1 and both.proxy.counters.untracked == 0


# The canonical gRPC-to-HTTP mapping (google.rpc.Code's documentation), so status classes mean the same.
MAPPED = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "UNAVAILABLE": 503, "INTERNAL": 500, "PERMISSION_DENIED": 403}


@pytest.mark.parametrize("code", sorted(MAPPED))
def test_error_codes_pass_and_are_in_the_sample(both: Both, code: str) -> None:
    errors = []
    for channel in (both.direct, both.proxied):
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(f"/{SERVICE}/Fail")(code.encode())
        errors.append((caught.value.code(), caught.value.details()))  # type: ignore[attr-defined]
    assert errors[0] == errors[1] == (grpc.StatusCode[code], f"failed with {code}: ü")
    [sample] = settled(both)
    assert (sample["grpc_status"], sample["grpc_message"]) == (grpc.StatusCode[code].value[0],
                                                              f"failed with {code}: ü")
    assert sample["response"]["status"] == MAPPED[code]


def test_a_deadline_and_a_cancellation_reach_the_app_and_are_reported(both: Both) -> None:
    for channel in (both.direct, both.proxied):
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(f"/{SERVICE}/Slow")(b"5", timeout=0.3)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    call = both.proxied.unary_unary(f"/{SERVICE}/Slow").future(b"5")
    time.sleep(0.2)
    assert call.cancel()
    deadline, cancelled = settled(both)
    assert deadline["route"] == cancelled["route"] == f"/{SERVICE}/Slow"
    # At the deadline the client resets the stream; the app, which knows the deadline too, may say so first.
    assert (deadline["error"], deadline["grpc_status"]) in (("stream_reset", None), (None, 4)), deadline
    assert 250 < deadline["time"] < 2000  # ended at the deadline, not when the app gave up
    assert (cancelled["error"], cancelled["grpc_status"]) == ("stream_reset", None), cancelled
    assert 150 < cancelled["time"] < 2000


def test_six_mebibyte_messages_both_ways(both: Both) -> None:
    payload = bytes(range(256)) * (6 << 12)  # 6 MiB
    direct, proxied = both.call("unary_unary", "Big", payload)
    assert proxied == direct and len(proxied) == len(payload) and proxied[16:] == payload[16:]
    [sample] = settled(both)
    assert sample["bytes_in"] == sample["bytes_out"] == len(payload) + 5
    assert sample["grpc_status"] == 0


def test_hundreds_of_calls_on_one_channel_and_many_at_once(both: Both) -> None:
    call = both.proxied.unary_unary(f"/{SERVICE}/Unary")
    for i in range(300):
        assert call(b"%d" % i) == (b"%d" % i)[::-1]
    pending = [call.future(b"at once %d" % i) for i in range(200)]
    assert [f.result(timeout=20) for f in pending] == [(b"at once %d" % i)[::-1] for i in range(200)]
    eventually(lambda: len(both.proxy.samples) == 500, what="500 samples")
    samples = settled(both)
    assert len(samples) == 500
    assert {(s["route"], s["grpc_status"], s["error"]) for s in samples} == {(f"/{SERVICE}/Unary", 0, None)}
    assert both.proxy.counters.protocols["h2"] == 1  # one connection carried them all


def test_many_channels_at_once(both: Both) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            # A subchannel pool of its own: a connection of its own (channels share them otherwise).
            with grpc.insecure_channel(f"127.0.0.1:{both.proxy.port}",
                                       options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                stub = channel.stream_stream(f"/{SERVICE}/Bidi")
                assert list(stub(iter([b"c%d" % n] * 20))) == [b"C%d" % n] * 20
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10, 26)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    samples = settled(both)
    assert len(samples) == 16 and all(s["grpc_status"] == 0 and s["bytes_in"] == 20 * (5 + 3) for s in samples)
    assert both.proxy.counters.protocols["h2"] == 16
