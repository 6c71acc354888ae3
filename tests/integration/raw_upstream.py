"""A recording upstream that frames what it receives itself, with strict llhttp.

The aiohttp stub in ``conftest.py`` sees requests the way aiohttp chose to parse
them, one at a time; a smuggled request would reach it as just another request.
This one is a plain socket server: every connection's byte stream is kept as
received and split into requests by httptools' ``HttpRequestParser`` (llhttp, no
leniencies), so a test can ask exactly how many requests the gateway's bytes
delimit, with which method, target, headers and body, and show the raw bytes when
the answer is wrong.

Every complete request is answered with a small fixed ``200`` that carries
``X-Raw-Upstream: <index>``, the index of the request in :attr:`RawUpstream.requests`,
so a client can tell which upstream request produced the answer it got.

``keep_alive=False`` (the default) answers only the first request of a connection,
with ``Connection: close``, then half-closes but keeps reading until the gateway
closes: whatever else the gateway writes on that connection (the tail of a body that
was longer than its Content-Length, a second request) is still parsed and recorded,
while no connection outlives one exchange, so consecutive test examples cannot leak
into each other through the gateway's keep-alive pool. ``keep_alive=True`` answers
every request and leaves the connection open, as a real backend does.

The server runs on its own threads, so it serves sync and async tests alike.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import httptools

__all__ = ["MARKER", "RawUpstream", "RecordedRequest", "RecordedConnection"]

MARKER = "X-Raw-Upstream"
_BODY = b"ok\n"


@dataclass
class RecordedRequest:
    """One request as the upstream's own parser delimited it."""

    index: int
    connection: int
    method: bytes = b""
    target: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    """False: the connection ended (or broke) before this request's end."""

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (case-insensitive), in the order received."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def __str__(self) -> str:
        state = "" if self.complete else " (incomplete)"
        return f"#{self.index} on conn {self.connection}: {self.method!r} {self.target!r} body={self.body!r}{state}"


@dataclass
class RecordedConnection:
    """The raw bytes one accepted connection delivered, and how parsing ended."""

    index: int
    raw: bytearray = field(default_factory=bytearray)
    error: str | None = None
    """The strict parser's complaint, if the stream stopped being HTTP."""
    open: bool = True


class _Parsing:
    """httptools callbacks for one connection: builds :class:`RecordedRequest` objects."""

    def __init__(self, server: RawUpstream, conn: RecordedConnection, sock: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.sock = sock
        self.parser = httptools.HttpRequestParser(self)
        self.current: RecordedRequest | None = None
        self.target = bytearray()
        self.body = bytearray()
        self.answered = 0

    def on_message_begin(self) -> None:
        self.current = self.server._new_request(self.conn.index)
        self.target.clear()
        self.body.clear()

    def on_url(self, url: bytes) -> None:
        self.target += url  # llhttp may deliver the target in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.method = self.parser.get_method()
        self.current.target = bytes(self.target)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        request = self.current
        assert request is not None
        request.body = bytes(self.body)
        request.complete = True
        self.current = None
        self.server._changed()
        if self.server.keep_alive or self.answered == 0:
            self.answer(request)

    def answer(self, request: RecordedRequest) -> None:
        close = not self.server.keep_alive
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(_BODY)}\r\n"
            f"{MARKER}: {request.index}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        self.answered += 1
        try:
            self.sock.sendall(head.encode("ascii") + _BODY)
            if close:
                # Half-close: the gateway learns the exchange is over, and anything it
                # still sends on this connection is read and recorded below.
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway already went away; what it sent is recorded anyway

    def eof(self) -> None:
        """The connection ended: a request still being received is kept, incomplete."""
        request = self.current
        if request is not None:
            if not request.method:
                try:
                    request.method = self.parser.get_method()
                except httptools.HttpParserError:
                    request.method = b""  # the stream ended inside the request line
                request.target = bytes(self.target)
            request.body = bytes(self.body)
            self.current = None


class RawUpstream:
    """``with RawUpstream() as upstream:`` or ``start()`` / ``stop()``; see the module doc."""

    def __init__(self, *, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._state = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._connections: list[RecordedConnection] = []
        self._sockets: set[socket.socket] = set()
        self._accepting: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> RawUpstream:
        self._accepting = threading.Thread(target=self._accept_loop, name="raw-upstream-accept", daemon=True)
        self._accepting.start()
        return self

    def stop(self) -> None:
        with self._state:
            self._stopped = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        _shutdown(self._listener)
        self._listener.close()
        if self._accepting is not None:
            self._accepting.join(10)

    # -- what the tests read --------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state:
            return list(self._requests)

    @property
    def connections(self) -> list[RecordedConnection]:
        with self._state:
            return list(self._connections)

    def reset(self) -> None:
        """Forget what was recorded (the numbering starts again at 0)."""
        with self._state:
            self._requests.clear()
            self._connections.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted connection has been closed by the gateway."""
        deadline = time.monotonic() + timeout
        with self._state:
            while any(conn.open for conn in self._connections):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
        return True

    def describe(self, limit: int = 4000) -> str:
        """The raw bytes of every connection and the requests they held, for a failure message."""
        with self._state:
            lines = [f"upstream connections: {len(self._connections)}"]
            for conn in self._connections:
                raw = bytes(conn.raw)
                shown = repr(raw[:limit]) + ("..." if len(raw) > limit else "")
                lines.append(f"  conn {conn.index}: {len(raw)} bytes{' parse error: ' + conn.error if conn.error else ''}")
                lines.append(f"    {shown}")
            lines.append(f"upstream requests: {len(self._requests)}")
            lines.extend(f"  {request}" for request in self._requests)
        return "\n".join(lines)

    # -- serving --------------------------------------------------------------------

    def _new_request(self, connection: int) -> RecordedRequest:
        with self._state:
            request = RecordedRequest(index=len(self._requests), connection=connection)
            self._requests.append(request)
            return request

    def _changed(self) -> None:
        with self._state:
            self._state.notify_all()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._state:
                if self._stopped:
                    sock.close()
                    return
                conn = RecordedConnection(index=len(self._connections))
                self._connections.append(conn)
                self._sockets.add(sock)
            threading.Thread(target=self._serve, args=(sock, conn), name=f"raw-upstream-{conn.index}", daemon=True).start()

    def _serve(self, sock: socket.socket, conn: RecordedConnection) -> None:
        parsing = _Parsing(self, conn, sock)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break  # reset by the gateway: as final as EOF
                if not data:
                    break
                with self._state:
                    conn.raw += data
                if conn.error is not None:
                    continue  # no longer HTTP; keep recording until the gateway closes
                try:
                    parsing.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    conn.error = "unexpected protocol upgrade"
                except httptools.HttpParserError as exc:
                    conn.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._state:
                parsing.eof()
                conn.open = False
                self._sockets.discard(sock)
                self._state.notify_all()
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
