"""Where a client's bytes are cut into reads must not change what the connection
parses: a property test of ``EdgeConnection`` fed through a fake transport, so every
generated cut point is a separate ``data_received`` call (on a real socket the kernel
would coalesce them)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge_request import EdgeRequest
from gateway.http_server import EdgeServer
from gateway.raw_response import RawResponse

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ;=/.,", min_size=0, max_size=40).map(str.strip)


@st.composite
def _request(draw: Any) -> tuple[bytes, dict[str, Any]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    path = "/" + "/".join(draw(st.lists(_TOKEN, max_size=4)))
    query = draw(st.one_of(st.just(""), _TOKEN.map(lambda t: f"?q={t}")))
    headers = [("Host", "h")] + [
        (f"X-{name}", value) for name, value in draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=5))
    ]
    body = draw(st.binary(max_size=300)) if method in ("POST", "PUT") else b""
    framing = draw(st.sampled_from(["length", "chunked"])) if body else "none"
    lines = [f"{method} {path}{query} HTTP/1.1"] + [f"{n}: {v}" for n, v in headers]
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        lines.append(f"Content-Length: {len(body)}")
        wire = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 64), min_size=1, max_size=8))
        wire, at = b"", 0
        for size in sizes:
            piece = body[at : at + size]
            if not piece:
                break
            wire += b"%x\r\n%s\r\n" % (len(piece), piece)
            at += len(piece)
        if at < len(body):
            wire += b"%x\r\n%s\r\n" % (len(body) - at, body[at:])
        wire += b"0\r\n\r\n"
    else:
        wire = b""
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + wire
    expected = {
        "method": method,
        "target": path + query,
        "headers": [(n.encode(), v.encode()) for n, v in headers],
        "body": body,
    }
    return raw, expected


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 40000) if name == "peername" else default


@settings(deadline=None)
@given(requests=st.lists(_request(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_any_cut_of_a_pipeline_parses_to_the_same_requests(requests: list[tuple[bytes, dict[str, Any]]], cuts: list[int]) -> None:
    stream = b"".join(raw for raw, _ in requests)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in zip(points, points[1:]) if b > a]

    async def scenario() -> tuple[list[dict[str, Any]], bytes]:
        seen: list[dict[str, Any]] = []

        async def handler(request: EdgeRequest) -> None:
            body = b""
            while chunk := await request.content.readany():
                body += chunk
            seen.append(
                {"method": request.method, "target": request.raw_path, "headers": list(request.raw_headers), "body": body}
            )
            conn = request.conn
            assert conn is not None
            keep_alive = conn.keeps_alive(request)
            conn.write(RawResponse(status=200, reason="OK", raw_headers=[], body=b"ok").encode(keep_alive))
            conn.finished(request, keep_alive)

        server = EdgeServer(handler)
        server.loop = asyncio.get_running_loop()
        transport = _Transport()
        conn = server()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            conn.data_received(piece)
            await asyncio.sleep(0)
        for _ in range(200):
            if len(seen) == len(requests):
                break
            await asyncio.sleep(0)
        conn.connection_lost(None)
        await server.shutdown(0)
        return seen, bytes(transport.written)

    seen, written = asyncio.run(scenario())
    assert seen == [expected for _, expected in requests]
    assert written.count(b"HTTP/1.1 200 OK\r\n") == len(requests)
