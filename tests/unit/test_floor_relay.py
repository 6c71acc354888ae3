"""bench/floor_relay.py, the Python floor row of `make bench`: what it promises to relay
(keep-alive both sides, Content-Length and chunked responses, however the bytes are
split), relayed byte for byte, and pooled upstream connections.

A floor that drops a response's end or reconnects per request would measure something
else, so these are checked against a scripted upstream that records what it was sent.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]


def _load_relay() -> ModuleType:
    spec = importlib.util.spec_from_file_location("floor_relay", REPO / "bench" / "floor_relay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


relay = _load_relay()

GET = b"GET /%d HTTP/1.1\r\nHost: bench\r\n\r\n"
POST = b"POST /up HTTP/1.1\r\nHost: bench\r\nContent-Length: 5\r\n\r\nhello"


def content_length(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def chunked(chunks: list[bytes]) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


class ScriptedUpstream:
    """Answers the n-th request it reads with answers[n], written in the given pieces,
    and records every connection and the raw bytes each received."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = list(answers)
        self.received: list[bytearray] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = bytearray()
        self.received.append(seen)
        while self.answers:
            head = await reader.readuntil(b"\r\n\r\n")
            seen += head
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            seen += await reader.readexactly(length)
            for piece in self.answers.pop(0):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0)  # let each piece arrive in a read of its own
        await reader.read()  # keep the connection open until the relay closes it
        writer.close()


async def _with_relay(upstream: ScriptedUpstream, exchange) -> None:
    loop = asyncio.get_running_loop()
    up_server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    up_port = up_server.sockets[0].getsockname()[1]
    pool = relay.Pool("127.0.0.1", up_port, 64)
    server = await loop.create_server(lambda: relay.Client(pool), "127.0.0.1", 0)
    try:
        await asyncio.wait_for(exchange(server.sockets[0].getsockname()[1], pool), 10)
    finally:
        server.close()
        up_server.close()
        for idle in pool.idle:
            idle.transport.close()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def test_keep_alive_relays_content_length_and_chunked_answers_verbatim_over_one_upstream_connection() -> None:
    answers = [content_length(b'{"a":1}'), chunked([b'{"b":', b"2}"]), content_length(b"ok")]
    upstream = ScriptedUpstream([[a] for a in answers])

    async def exchange(port: int, pool) -> None:
        reader, writer = await _open(port)
        for n, request in enumerate([GET % 1, GET % 2, POST]):
            writer.write(request)
            assert await reader.readexactly(len(answers[n])) == answers[n]
        writer.close()

    asyncio.run(_with_relay(upstream, exchange))
    assert len(upstream.received) == 1
    assert bytes(upstream.received[0]) == GET % 1 + GET % 2 + POST


def test_a_second_client_reuses_the_pooled_upstream_connection() -> None:
    answer = content_length(b"{}")
    upstream = ScriptedUpstream([[answer], [answer]])

    async def exchange(port: int, pool) -> None:
        for n in range(2):
            reader, writer = await _open(port)
            writer.write(GET % n)
            assert await reader.readexactly(len(answer)) == answer
            writer.close()
        assert len(pool.idle) == 1

    asyncio.run(_with_relay(upstream, exchange))
    assert len(upstream.received) == 1


def test_an_upstream_that_closes_is_not_pooled_and_closes_the_client() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    upstream = ScriptedUpstream([[answer]])

    async def exchange(port: int, pool) -> None:
        reader, writer = await _open(port)
        writer.write(GET % 1)
        assert await reader.read() == answer  # read() returns at EOF: the relay closed
        assert pool.idle == []

    asyncio.run(_with_relay(upstream, exchange))


def test_an_unreachable_upstream_is_a_502() -> None:
    async def exchange() -> None:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        dead_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        pool = relay.Pool("127.0.0.1", dead_port, 64)
        server = await asyncio.get_running_loop().create_server(lambda: relay.Client(pool), "127.0.0.1", 0)
        reader, writer = await _open(server.sockets[0].getsockname()[1])
        writer.write(GET % 1)
        assert await asyncio.wait_for(reader.read(), 10) == relay.BAD_GATEWAY
        server.close()

    asyncio.run(exchange())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    plain=st.binary(max_size=60),
)
def test_any_split_of_a_chunked_answer_is_relayed_whole_and_its_end_found(
        chunks: list[bytes], cuts: list[int], plain: bytes) -> None:
    # The relay knows a response ended only from httptools; if it missed the end of
    # the chunked answer, the next request on the connection would never be answered.
    first, second = chunked(chunks), content_length(plain)
    points = sorted({c for c in cuts if c < len(first)})
    pieces = [first[a:b] for a, b in zip([0, *points], [*points, len(first)])]
    upstream = ScriptedUpstream([pieces, [second]])

    async def exchange(port: int, pool) -> None:
        reader, writer = await _open(port)
        writer.write(GET % 1)
        assert await reader.readexactly(len(first)) == first
        writer.write(GET % 2)
        assert await reader.readexactly(len(second)) == second
        writer.close()

    asyncio.run(_with_relay(upstream, exchange))
    assert len(upstream.received) == 1
