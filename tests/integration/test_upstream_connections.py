"""What the gateway does with its keep-alive connections to upstreams, seen from a raw
upstream that counts connections and records the bytes it receives.

Each test here is a defect found in review: a connection reused when it must not be
(unsolicited bytes, a half-sent request body), one thrown away when it need not be
(HEAD), the gateway's own queueing punished as an upstream failure, and a response
held back until complete.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import zlib
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tests.integration.conftest import simple_config
from tests.integration.test_proxy import problem, raw_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class CountingServer:
    """A raw upstream: ``handle(reader, writer, connection_number)`` per connection."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.handle(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def start(self) -> CountingServer:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self._handlers:
            task.cancel()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_unsolicited_bytes_after_a_response_are_not_merged_and_close_the_connection(gateway_factory):
    # A second response glued to the first must never reach the client (its headers
    # appended, its body concatenated), and that connection is never reused.
    async def handle(reader, writer, number):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            if number == 1:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                    b"HTTP/1.1 200 OK\r\nSet-Cookie: evil=1\r\nContent-Length: 5\r\n\r\nhello"
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")
            await writer.drain()

    upstream = await CountingServer(handle).start()
    try:
        gw = gateway_factory(simple_config(upstream.url))
        async with aiohttp.ClientSession() as client:
            async with client.get(gw.url + "/a") as resp:
                assert (resp.status, await resp.read()) == (200, b"hi")
                assert "Set-Cookie" not in resp.headers
            for _ in range(3):
                async with client.get(gw.url + "/b") as resp:
                    assert resp.status == 200
                    assert await resp.read() == b"clean"
                    assert "Set-Cookie" not in resp.headers
        # the polluted connection was dropped: the next requests used a second one
        assert upstream.connections == 2
    finally:
        upstream.close()


async def test_head_responses_keep_their_upstream_connection(gateway_factory):
    async def handle(reader, writer, number):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            body = b"" if head.startswith(b"HEAD ") else b"hello"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n" + body)
            await writer.drain()

    upstream = await CountingServer(handle).start()
    try:
        gw = gateway_factory(simple_config(upstream.url))
        async with aiohttp.ClientSession() as client:
            for method in ("HEAD", "GET", "HEAD", "HEAD", "GET"):
                async with client.request(method, gw.url + "/x") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Length"] == "5"
                    assert await resp.read() == (b"" if method == "HEAD" else b"hello")
        assert upstream.connections == 1
    finally:
        upstream.close()


async def test_a_head_answer_carrying_a_body_is_not_reused(gateway_factory):
    # An upstream that (wrongly) sends a body after a HEAD answer: those bytes must not
    # be read as the answer to the next request on that connection.
    async def handle(reader, writer, number):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"HEAD "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
            await writer.drain()

    upstream = await CountingServer(handle).start()
    try:
        gw = gateway_factory(simple_config(upstream.url))
        async with aiohttp.ClientSession() as client:
            async with client.head(gw.url + "/x") as resp:
                assert resp.status == 200
            async with client.get(gw.url + "/x") as resp:
                assert resp.status == 200
                assert await resp.read() == b"good"
        assert upstream.connections == 2
    finally:
        upstream.close()


async def test_a_connection_whose_request_body_was_not_fully_sent_is_never_reused(gateway_factory):
    # The upstream answers as soon as it has the head, slowly, without reading the
    # body; meanwhile the client's chunked body passes max_body_size. The connection
    # then carries half a request: it must be closed, not handed to the next request
    # (which the upstream would read as the rest of that body).
    finish = asyncio.Event()
    received_on: dict[int, list[bytes]] = {}

    async def handle(reader, writer, number):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            received_on.setdefault(number, []).append(head)
            if head.startswith(b"POST "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nearly")
                await writer.drain()
                await finish.wait()
                writer.write(b"...")
                await writer.drain()
                # Skip whatever part of the body arrived; a reused connection would
                # now deliver the next request head after it.
                await reader.read(65536)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

    upstream = await CountingServer(handle).start()
    config = simple_config(upstream.url)
    config["server"] = {"max_body_size": "1KiB"}
    try:
        gw = gateway_factory(config)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"200\r\n" + b"x" * 512 + b"\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        # Now overrun the limit while the response is still in flight.
        writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
        await writer.drain()
        await wait_for(lambda: b"POST" in b"".join(b"".join(v) for v in received_on.values()))
        await asyncio.sleep(0.2)  # let the gateway read the overrun (no assertion rests on it)
        finish.set()
        writer.close()
        async with aiohttp.ClientSession() as client:
            for _ in range(3):
                async with client.get(gw.url + "/next") as resp:
                    assert resp.status == 200
                    assert await resp.read() == b"ok"
        # no GET ever arrived on the connection that carried the half-sent POST
        assert all(not h.startswith(b"GET") for h in received_on[1][1:]), received_on
    finally:
        finish.set()
        upstream.close()


async def test_a_response_is_forwarded_as_it_arrives(gateway_factory):
    # An upstream that sends the first 4 KiB of a small response and then thinks: the
    # client gets those 4 KiB now, not when the upstream is done.
    release = asyncio.Event()

    async def handle(reader, writer, number):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\n" + b"a" * 4096)
        await writer.drain()
        await release.wait()
        writer.write(b"b" * 4096)
        await writer.drain()

    upstream = await CountingServer(handle).start()
    try:
        gw = gateway_factory(simple_config(upstream.url))
        async with aiohttp.ClientSession() as client:
            async with client.get(gw.url + "/x") as resp:
                assert resp.status == 200
                first = await asyncio.wait_for(resp.content.readexactly(4096), 10)
                assert first == b"a" * 4096
                release.set()
                assert await resp.read() == b"b" * 4096
    finally:
        release.set()
        upstream.close()


async def test_waiting_for_a_pooled_connection_is_its_own_bounded_503_without_health_penalty(gateway_factory):
    # max_connections: 1 and a slow answer in progress: the next request waits for the
    # pool at most timeouts.queue and is answered 503 with Retry-After. That is the
    # gateway's own queueing, not the target failing: no ejection, no circuit.
    release = asyncio.Event()

    async def handle(reader, writer, number):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /slow"):
                await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = await CountingServer(handle).start()
    config = simple_config(upstream.url)
    config["upstreams"]["app"].update(
        max_connections=1,
        timeouts={"connect": "1s", "response": "20s", "queue": "300ms"},
        passive={"failures": 1, "eject_for": "30s"},
    )
    try:
        gw = gateway_factory(config)
        async with aiohttp.ClientSession() as client:
            slow = asyncio.create_task(client.get(gw.url + "/slow"))
            await wait_for(lambda: upstream.connections == 1)
            started = asyncio.get_running_loop().time()
            async with client.get(gw.url + "/queued") as resp:
                waited = asyncio.get_running_loop().time() - started
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) >= 1
                assert "connection" in problem(await resp.read())["detail"]
            assert waited < 10  # bounded by the queue timeout, not the 20 s response timeout
            release.set()
            async with await slow as resp:
                assert resp.status == 200
            for _ in range(3):
                async with client.get(gw.url + "/after") as resp:
                    assert resp.status == 200, await resp.text()
            async with client.get(gw.admin_url + "/metrics") as resp:
                metrics = await resp.text()
        assert re.search(r'gateway_upstream_queue_timeouts_total\{[^}]*upstream="app"[^}]*\} 1\.0', metrics), metrics
        # not counted as an upstream answer or failure
        assert not re.search(r'gateway_upstream_requests_total\{[^}]*code="timeout"', metrics)
    finally:
        release.set()
        upstream.close()


async def test_a_stalled_head_still_answers_504_not_the_queue_503(gateway_factory):
    async def handle(reader, writer, number):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)

    upstream = await CountingServer(handle).start()
    config = simple_config(upstream.url)
    config["upstreams"]["app"]["timeouts"] = {"response": "300ms", "queue": "5s"}
    try:
        gw = gateway_factory(config)
        reply = await raw_request(gw.port, b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", read_timeout=10)
        assert reply.startswith(b"HTTP/1.1 504")
    finally:
        upstream.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request with a Content-Length body, as raw bytes: (head, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)\r$", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return head, body


@pytest.mark.parametrize("method", ["PUT", "POST"])  # PUT is kept for replay, POST streams
@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(b"A" * (4 * 1024 * 1024), mtime=0),  # inflates far past max_body_size
        b"\x1f\x8b\x08\x00broken gzip",  # malformed: the backend's business, not a 500
        zlib.compress(b"B" * 1000),
    ],
    ids=["gzip-bomb", "broken-gzip", "deflate"],
)
async def test_compressed_request_bodies_cross_as_sent(gateway_factory, method, body):
    received: list[tuple[bytes, bytes]] = []

    async def handle(reader, writer, number):
        while True:
            received.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = await CountingServer(handle).start()
    config = simple_config(upstream.url)
    config["server"] = {"max_body_size": "64KiB"}
    encoding = "deflate" if body[:1] == b"x" else "gzip"
    try:
        gw = gateway_factory(config)
        async with aiohttp.ClientSession(auto_decompress=False) as client:
            async with client.request(
                method, gw.url + "/upload", data=body, headers={"Content-Encoding": encoding}
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert await resp.read() == b"ok"
        assert len(received) == 1
        head, got = received[0]
        assert head.startswith(method.encode() + b" /upload ")
        assert got == body
        assert re.search(rb"(?im)^content-encoding: " + encoding.encode() + rb"\r$", head)
        assert b"Traceback" not in gw.log_path.read_bytes()
    finally:
        upstream.close()
