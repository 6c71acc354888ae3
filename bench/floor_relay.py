"""The Python floor: a raw-bytes HTTP/1.1 relay on uvloop + httptools (row "python floor relay").

Why it exists: it is what Python costs on a proxy's hot path when nothing but the
protocol is done, so the gap between it and nginx is the price of Python and the gap
between it and a gateway row is the price of the gateway's machinery (issue 10).

Per client connection, a request's raw bytes go to a pooled keep-alive upstream
connection as they arrive and the response's raw bytes come straight back; httptools
parses both sides only to find where each message begins and ends. It handles
keep-alive on both sides and Content-Length or chunked responses, nothing else: no
pipelining, no HEAD (a body announced but not sent), no upgrades, no backpressure, no
timeouts. A measuring stick, not a proxy to deploy.

Usage: python bench/floor_relay.py --listen 127.0.0.1:8082 --upstream 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import httptools
import uvloop

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Pool:
    """Idle upstream connections, at most `keepalive` of them (nginx's `keepalive 64`)."""

    def __init__(self, host: str, port: int, keepalive: int) -> None:
        self.host, self.port, self.keepalive, self.idle = host, port, keepalive, []


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool, self.client, self.parser = pool, None, httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.client is None:  # bytes nobody asked for: the connection's state is unknown
            return self.transport.close()
        self.client.transport.write(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        keep = self.parser.should_keep_alive()
        if keep and len(self.pool.idle) < self.pool.keepalive:
            self.pool.idle.append(self)
        else:
            self.transport.close()
        client.response_done(keep)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.client is not None:  # mid-response: the client cannot get a whole answer
            self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool, self.upstream, self.pending = pool, None, None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def on_message_begin(self) -> None:
        if self.pool.idle:
            self.upstream = self.pool.idle.pop()
            self.upstream.client = self
        else:  # bytes wait in `pending` until the new upstream connection is up
            self.pending = bytearray()
            asyncio.get_running_loop().create_task(self.connect())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            return self.transport.close()
        if self.upstream is not None:
            self.upstream.transport.write(data)
        elif self.pending is not None:
            self.pending += data

    async def connect(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(self.pool), self.pool.host, self.pool.port)
        except OSError:
            self.transport.write(BAD_GATEWAY)
            return self.transport.close()
        if self.transport.is_closing():
            return upstream.transport.close()
        self.upstream, upstream.client = upstream, self
        upstream.transport.write(self.pending)
        self.pending = None

    def response_done(self, keep_alive: bool) -> None:
        self.upstream = None
        if not keep_alive:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:  # mid-exchange: the upstream connection cannot be reused
            self.upstream.transport.close()


async def serve(listen: str, upstream: str, keepalive: int) -> None:
    """Serve until SIGTERM/SIGINT, then exit 0 as the harness expects."""
    loop = asyncio.get_running_loop()
    pool = Pool(*split_hostport(upstream), keepalive)
    server = await loop.create_server(lambda: Client(pool), *split_hostport(listen), backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--keepalive", type=int, default=64, help="idle upstream connections kept (64, as nginx's)")
    args = parser.parse_args()
    uvloop.run(serve(args.listen, args.upstream, args.keepalive))


if __name__ == "__main__":
    main()
