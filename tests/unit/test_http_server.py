"""The proxy port's connection protocol on a real loopback socket, with a handler
that answers from what the connection parsed (no runtime, no upstream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.edge_request import EdgeRequest, MalformedBody
from gateway.http_server import EdgeServer
from gateway.raw_response import RawResponse

Handler = Callable[[EdgeRequest], Awaitable[None]]


async def echo(request: EdgeRequest) -> None:
    """Answer with what was parsed; a path of /slow/N waits N ms first."""
    conn = request.conn
    assert conn is not None
    if request.raw_path.startswith("/slow/"):
        await asyncio.sleep(int(request.raw_path.rsplit("/", 1)[1]) / 1000)
    body = b""
    status = 200
    if request.raw_path.startswith("/read"):
        try:
            while chunk := await request.content.readany():
                body += chunk
        except MalformedBody:
            status = 400
    doc = {
        "path": request.raw_path,
        "method": request.method,
        "body": body.decode(),
        "host": request.host,
        "headers": [name.decode() for name, _ in request.raw_headers],
    }
    keep_alive = conn.keeps_alive(request)
    answer = RawResponse(status=status, reason="OK", raw_headers=[(b"Content-Type", b"application/json")], body=json.dumps(doc).encode())
    conn.write(answer.encode(keep_alive))
    conn.finished(request, keep_alive)


class Served:
    def __init__(self, server: EdgeServer, port: int, refused: list[int]) -> None:
        self.server = server
        self.port = port
        self.refused = refused

    async def exchange(self, data: bytes, *, timeout: float = 10.0) -> bytes:
        """Send ``data``, half-close only if asked by the caller, read until the server closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        out = b""
        try:
            async with asyncio.timeout(timeout):
                while chunk := await reader.read(65536):
                    out += chunk
        finally:
            writer.close()
        return out


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(handler: Handler = echo, **limits: float) -> Served:
        refused: list[int] = []
        edge = EdgeServer(handler, on_refused=refused.append)
        edge.apply_limits(max_header_size=int(limits.get("max_header_size", 8192)), header_timeout=limits.get("header_timeout", 10.0))
        server = await asyncio.get_running_loop().create_server(edge, "127.0.0.1", 0)
        servers.append(server)
        return Served(edge, server.sockets[0].getsockname()[1], refused)

    yield start
    for server in servers:
        server.close()


def answers(raw: bytes) -> list[tuple[int, dict]]:
    """(status, body document) of each response in ``raw``, in order."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = next(int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length:"))
        out.append((status, json.loads(rest[:length])))
        raw = rest[length:]
    return out


def req(path: str, *, extra: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n{length}{extra}\r\n".encode() + body


async def test_pipelined_requests_are_answered_in_order_even_when_the_first_is_slowest(served):
    s = await served()
    raw = await s.exchange(req("/slow/200") + req("/slow/1") + req("/last", extra="Connection: close\r\n"))
    assert [doc["path"] for _, doc in answers(raw)] == ["/slow/200", "/slow/1", "/last"]


async def test_a_malformed_request_after_good_ones_is_refused_after_their_answers_and_closes(served):
    s = await served()
    bad = b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = await s.exchange(req("/slow/100") + req("/b") + bad + req("/never"))
    statuses = [status for status, _ in answers(raw)]
    assert statuses == [200, 200, 400]
    assert b"/never" not in raw
    assert s.refused == [400]


async def test_head_limits_are_431_and_414_and_close(served):
    s = await served(max_header_size=1024)
    raw = await s.exchange(req("/x", extra="X-Big: " + "a" * 2000 + "\r\n"))
    assert raw.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in raw
    raw = await s.exchange(req("/" + "p" * 9000))
    assert raw.startswith(b"HTTP/1.1 414 ")
    raw = await s.exchange(req("/x", extra="".join(f"X-{i}: v\r\n" for i in range(300))))
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert s.refused == [431, 414, 431]


async def test_an_upgrade_request_is_answered_as_a_plain_one_and_the_connection_closed(served):
    s = await served()
    raw = await s.exchange(req("/ws", extra="Connection: Upgrade\r\nUpgrade: websocket\r\n") + b"\x81\x05hello" + req("/after"))
    assert [doc["path"] for _, doc in answers(raw)] == ["/ws"]
    assert b"Connection: close" in raw


async def test_a_half_closed_client_still_gets_its_answers(served):
    s = await served()
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    writer.write(req("/slow/50") + req("/b"))
    writer.write_eof()
    raw = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert [doc["path"] for _, doc in answers(raw)] == ["/slow/50", "/b"]


async def test_an_unread_body_still_arriving_closes_the_connection_after_the_answer(served):
    s = await served()
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    # 1000 bytes announced, 10 sent: the answer (to /x, which never reads) must not
    # leave the rest of the body to be parsed as the next request.
    writer.write(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
    raw = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in raw


async def test_a_body_is_read_whole_across_many_writes_and_keep_alive_survives(served):
    s = await served()
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    body = b"0123456789" * 50_000
    writer.write(b"POST /read HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 7000):
        writer.write(body[i : i + 7000])
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
    doc = json.loads(await reader.readexactly(length))
    assert doc["body"].encode() == body
    writer.write(req("/again", extra="Connection: close\r\n"))
    rest = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert [d["path"] for _, d in answers(rest)] == ["/again"]


async def test_a_late_head_is_408_and_a_silent_connection_is_just_closed(served):
    s = await served(header_timeout=0.2)
    raw = await s.exchange(b"GET /x HTTP/1.1\r\nHost:")
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert await s.exchange(b"") == b""
    assert s.refused == [408]


async def test_an_idle_keep_alive_connection_is_not_a_late_head(served):
    s = await served(header_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    writer.write(req("/one"))
    await asyncio.wait_for(reader.readuntil(b"}"), 10)
    # Three header timeouts of silence between requests: still open (keep-alive idle).
    await asyncio.sleep(0.6)
    writer.write(req("/two", extra="Connection: close\r\n"))
    rest = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert [d["path"] for _, d in answers(rest)] == ["/two"]
    assert s.refused == []


async def test_shutdown_closes_idle_connections_and_lets_the_answer_in_progress_finish(served):
    s = await served()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", s.port)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", s.port)
    busy_writer.write(req("/slow/300"))
    async with asyncio.timeout(10):
        while not any(conn.active is not None for conn in s.server.connections):
            await asyncio.sleep(0.01)
    await s.server.shutdown(10)
    assert await asyncio.wait_for(idle_reader.read(-1), 10) == b""
    raw = await asyncio.wait_for(busy_reader.read(-1), 10)
    assert [d["path"] for _, d in answers(raw)] == ["/slow/300"]
    assert b"Connection: close" in raw
    idle_writer.close()
    busy_writer.close()


async def test_a_body_the_parser_refuses_midway_fails_its_own_request_and_nothing_after_is_read(served):
    s = await served()
    # A Content-Length trailer on a chunked body: llhttp refuses it after the head and
    # the chunk were handed over. That request is the one refused, not a later one.
    bad = b"POST /read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n"
    raw = await s.exchange(req("/first") + bad + req("/never"))
    assert [(status, doc["path"]) for status, doc in answers(raw)] == [(200, "/first"), (400, "/read")]
    assert b"/never" not in raw


def test_only_llhttps_compiled_parser_is_accepted():
    from gateway.http_server import ParserUnavailable, require_strict_parser

    require_strict_parser()  # the installed httptools

    class PurePython:  # a parser defined in a .py module, as a fallback would be
        pass

    with pytest.raises(ParserUnavailable, match="not llhttp's compiled extension"):
        require_strict_parser(PurePython)


async def test_trailer_fields_never_join_the_request_headers(served):
    s = await served()
    chunked = (
        b"POST /read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nAuthorization: Bearer forged\r\nX-User-Id: admin\r\n\r\n"
    )
    raw = await s.exchange(chunked + req("/after", extra="Connection: close\r\n"))
    (status, doc), (_, after) = answers(raw)
    assert status == 200 and doc["body"] == "abc"
    assert doc["headers"] == ["Host", "Transfer-Encoding"]
    assert after["headers"] == ["Host", "Connection"]


async def test_an_answer_before_the_body_ends_reaches_the_client_not_a_reset(served):
    # The handler answers without reading a large body (a 413 or a 401 does this) and
    # the connection closes. Closing a socket with unread bytes sends a reset, which
    # can destroy the answer before the client reads it: the connection must drain
    # what the client is still sending for a moment (nginx's lingering close).
    s = await served()
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 8000000\r\n\r\n")

        async def upload() -> None:
            try:
                for _ in range(250):
                    writer.write(b"z" * 32000)
                    await writer.drain()
            except ConnectionError:
                pass

        sending = asyncio.create_task(upload())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
        length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
        assert json.loads(await asyncio.wait_for(reader.readexactly(length), 10))["path"] == "/x"
        sending.cancel()
        writer.close()
