"""One client request on the proxy port, as the connection protocol parsed it.

:class:`EdgeRequest` is built once, from the raw head, in one pass over the header
lines (``http_server.py``): the values later code needs (Host, Content-Length,
chunked, Expect, the Connection tokens, how many Host and Authorization lines came,
the head's size) are slots, so nothing re-derives them from a mapping per stage. The
case-insensitive ``headers`` mapping that stages read is built only on first use
(the pass-through path never builds it).

Its attributes keep the names of aiohttp's ``BaseRequest`` the stages use
(``method``, ``headers``, ``remote``, ``raw_path``, ``version``, ``body_exists``,
``request[EXCHANGE]``), so a stage is the same function under the edge and under a
unit test's mocked request.

:class:`BodyStream` is the request body as it arrives, with flow control: reading
from the client pauses while more than ``_HIGH_WATER`` bytes wait for the upstream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.headers import connection_tokens

if TYPE_CHECKING:
    from gateway.exchange import Exchange
    from gateway.http_server import EdgeConnection

__all__ = ["EdgeRequest", "BodyStream", "EMPTY_BODY", "MalformedBody"]

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class MalformedBody(Exception):
    """The parser refused the request part-way through its body (a bad chunk size, a
    forbidden trailer): the request is answered 400 and the connection closed."""


def _text(raw: bytes) -> str:
    # As aiohttp's parser does: bytes that are not UTF-8 survive as surrogates, so
    # the forwarder can restore them exactly.
    return raw.decode("utf-8", "surrogateescape")


class BodyStream:
    """The request body, fed by the parser, read by the forwarder."""

    __slots__ = ("_conn", "_chunks", "_size", "_eof", "_error", "_waiter")

    def __init__(self, conn: EdgeConnection | None) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- the parser's side ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause_body()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The client went away before its body ended."""
        if not self._eof:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the reader's side ------------------------------------------------------------

    def check(self) -> None:
        """Raise now if the body is already known to be broken (the parser refused it,
        or the client left), before anything of it goes upstream."""
        if self._error is not None:
            raise self._error

    def is_eof(self) -> bool:
        """Every byte of the body has arrived (it may not all have been read)."""
        return self._eof

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None and not self._chunks:
            raise self._error

    def _take(self) -> bytes:
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._size < _LOW_WATER and self._conn is not None:
            self._conn.resume_body()
        return chunk

    async def readany(self) -> bytes:
        """The next bytes of the body; ``b""`` once it has ended. Raises
        ``ConnectionResetError`` when the client left before ending it."""
        while not self._chunks:
            if self._eof:
                return b""
            await self._wait()
        return self._take()

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            if not self._chunks:
                if self._eof:
                    raise asyncio.IncompleteReadError(b"".join(parts), n)
                await self._wait()
                continue
            chunk = self._take()
            if got + len(chunk) > n:
                # More than asked for (cannot happen with Content-Length framing, but
                # the rest stays readable rather than being lost).
                keep = n - got
                self._chunks.appendleft(chunk[keep:])
                self._size += len(chunk) - keep
                chunk = chunk[:keep]
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class _EmptyBody(BodyStream):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None)
        self._eof = True


EMPTY_BODY = _EmptyBody()


class EdgeRequest:
    __slots__ = (
        "conn", "method", "version", "raw_path", "raw_headers", "remote", "keep_alive",
        "host", "host_bytes", "host_count", "authorization", "authorization_count", "content_length", "chunked", "codings",
        "expect_continue", "connection_tokens", "request_id", "head_size", "content", "exchange",
        "_headers",
    )

    def __init__(
        self,
        *,
        conn: EdgeConnection | None,
        method: str,
        version: tuple[int, int],
        raw_path: str,
        raw_headers: list[tuple[bytes, bytes]],
        remote: str,
        keep_alive: bool,
    ) -> None:
        self.conn = conn
        self.method = method
        self.version = version
        self.raw_path = raw_path
        self.raw_headers = raw_headers
        self.remote = remote
        self.keep_alive = keep_alive
        self.exchange: Exchange | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        host: bytes | None = None
        authorization: bytes | None = None
        hosts = authorizations = 0
        length: bytes | None = None
        codings: list[bytes] = []
        expect = False
        connection: list[bytes] | None = None
        request_id: bytes | None = None
        size = 0
        for name, value in raw_headers:
            size += len(name) + len(value) + 4
            # Dispatch on length first: most header names match none of these.
            n = len(name)
            if n == 4:
                if name.lower() == b"host":
                    hosts += 1
                    host = value
            elif n == 13:
                if name.lower() == b"authorization":
                    authorizations += 1
                    authorization = value
            elif n == 14:
                if name.lower() == b"content-length":
                    length = value
            elif n == 17:
                if name.lower() == b"transfer-encoding":
                    codings.append(value)
            elif n == 6:
                if name.lower() == b"expect":
                    expect = value.strip().lower() == b"100-continue"
            elif n == 10:
                if name.lower() == b"connection":
                    connection = (connection or []) + [value]
            elif n == 12 and name.lower() == b"x-request-id":
                request_id = value
        self.head_size = size
        self.host = _text(host) if host is not None else None
        self.host_bytes = host
        """The Host value as the client sent it (forwarded without a decode round trip)."""
        self.host_count = hosts
        self.authorization = _text(authorization) if authorization is not None else None
        """The Authorization value (the auth stage reads it without the header mapping;
        the edge refuses a request with two)."""
        self.authorization_count = authorizations
        # llhttp has already refused a malformed or repeated-and-different length.
        self.content_length = int(length) if length is not None else None
        self.codings = codings
        self.chunked = bool(codings)
        self.expect_continue = expect and version >= (1, 1)
        self.connection_tokens = connection_tokens(connection) if connection else frozenset()
        self.request_id = request_id.decode("latin-1") if request_id is not None else None
        self.content: BodyStream = EMPTY_BODY

    # -- what stages read ---------------------------------------------------------------

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        headers = self._headers
        if headers is None:
            headers = self._headers = CIMultiDictProxy(CIMultiDict([(_text(n), _text(v)) for n, v in self.raw_headers]))
        return headers

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __getitem__(self, key: Any) -> Exchange:
        # Stages look the exchange up as request[EXCHANGE] (aiohttp's request keys),
        # which a unit test's mocked aiohttp request also answers.
        exchange = self.exchange
        if exchange is None:
            raise KeyError(key)
        return exchange

    def __setitem__(self, key: Any, value: Exchange) -> None:
        self.exchange = value

    # -- what the forwarder uses --------------------------------------------------------

    def send_continue(self) -> None:
        """``100 Continue``: the client may send the body it held back."""
        if self.conn is not None:
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
