"""aiohttp's low-level server, with the gateway's rules for what it refuses.

The gateway uses ``web.Server`` (no ``Application``, no URL dispatcher): routing is
its own, and skipping aiohttp's router and middleware machinery is measurably cheaper
per request. Three things are adjusted:

- requests the HTTP parser refuses (ambiguous framing, bad bytes, oversized fields)
  are answered as ``application/problem+json`` like every other gateway error, and
  logged without a traceback (and only a sample of them), because they are the
  client's fault, not ours;
- the parser's per-field limits follow ``server.max_header_size``, also after a
  reload (for connections accepted from then on: a parser is made per connection);
- a request head must arrive within ``server.header_timeout`` (slowloris). aiohttp
  has no such timer: a client that never finishes its head would be held for the
  keep-alive timeout.

The header timer starts when a connection is accepted, and again when a keep-alive
connection receives the first byte of its next request; it stops when the parser
produces the message (the head is complete). An idle keep-alive connection, between
requests and silent, is left to the keep-alive timeout. Rather than one timer per
request, the connections awaiting a head sit in one dict that a single callback
sweeps (at most once a second, and only while the dict is not empty).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway.problem import PROBLEM_CONTENT_TYPE, problem_body, problem_response
from gateway.rate_limited_log import RateLimitedLog

__all__ = ["EdgeServer", "require_c_parser", "ParserUnavailable"]

log = logging.getLogger("gateway.http")

_MAX_SWEEP_INTERVAL = 1.0


class ParserUnavailable(RuntimeError):
    """aiohttp's C HTTP parser is not in use (AIOHTTP_NO_EXTENSIONS, or a build without it)."""


def require_c_parser() -> None:
    """Refuse to serve with the pure-Python parser: it is slower and has historically
    been more lenient with ambiguous framing than llhttp."""
    c_parser = getattr(aiohttp.http_parser, "HttpRequestParserC", None)
    in_use = getattr(aiohttp.web_protocol, "HttpRequestParser", None)
    if c_parser is None or in_use is not c_parser:
        raise ParserUnavailable(
            "aiohttp's C HTTP parser is not in use (is AIOHTTP_NO_EXTENSIONS set, or aiohttp "
            "installed without its compiled extensions?); refusing to start"
        )


def _head_timeout_answer(timeout: float) -> bytes:
    """A complete 408 problem response, written straight to the transport: there is
    no request object (the head never arrived) to hang an aiohttp response on."""
    body = problem_body(408, f"the request head did not arrive within {timeout:g}s")
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Server: gateway\r\n"
        f"X-Request-ID: {os.urandom(16).hex()}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _EdgeRequestHandler(RequestHandler):
    """One client connection. Relies on a few of ``RequestHandler``'s private
    attributes (``_messages``, ``_request_count``, ``_request_in_progress``): the
    header timer needs to know when a head starts and when the parser completed it."""

    __slots__ = ("_head_bytes", "_last_payload")

    def __init__(self, manager: EdgeServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_bytes = False
        """Some byte of the awaited head has arrived (so a timeout is answered 408)."""
        self._last_payload: StreamReader | None = None
        """The body of the last parsed request: bytes before its end are body, not head."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        manager = self._manager
        if isinstance(manager, EdgeServer):
            manager.start_head_timer(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        manager = self._manager
        if isinstance(manager, EdgeServer):
            manager.stop_head_timer(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        manager = self._manager
        if not isinstance(manager, EdgeServer) or self._force_close or self._close:
            super().data_received(data)
            return
        last = self._last_payload
        if data and not self._request_in_progress and not self._messages and (last is None or last.is_eof()):
            # Between requests: this byte starts (or continues) a head.
            manager.start_head_timer(self)
            self._head_bytes = True
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            # The parser produced a message (or a refusal): the head is complete.
            manager.stop_head_timer(self)
            self._head_bytes = False
            self._last_payload = self._messages[-1][1] if self._messages else None

    def head_timed_out(self, timeout: float) -> None:
        """Called by the sweep: this connection's head is late. Answer 408 if the
        client sent part of one (a silent connection is just closed, as nginx does)."""
        transport = self.transport
        manager = self._manager
        if transport is None or self._force_close or not isinstance(manager, EdgeServer):
            return
        if self._head_bytes:
            transport.write(_head_timeout_answer(timeout))
            if manager.on_refused is not None:
                manager.on_refused(408)
        manager.slow_head_log.log(
            "closed a connection from %s: no complete request head within %gs", self.peername, timeout
        )
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        manager = self._manager
        if status >= 500:
            log.error("error handling request from %s", request.remote, exc_info=exc)
        elif isinstance(manager, EdgeServer):
            # The client's doing, and a client can do it as fast as it likes: counted
            # (on_refused), but only sampled in the log.
            manager.refusal_log.log("refused request from %s: %s %s", request.remote, status, message or exc)
        else:
            log.info("refused request from %s: %s %s", request.remote, status, message or exc)
        if isinstance(manager, EdgeServer) and manager.on_refused is not None:
            manager.on_refused(status)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        detail = "malformed HTTP request" if status == 400 else HTTPStatus(status).description
        # Every response carries a request id, even one for a request we could not parse.
        response = problem_response(status, detail, headers={"X-Request-ID": os.urandom(16).hex()})
        response.force_close()
        return response


class EdgeServer(web.Server):
    """``web.Server`` whose connections use :class:`_EdgeRequestHandler`.

    ``on_refused(status)`` is told of every request the parser refused and of every
    head that timed out after its first byte, so that they are counted like any other
    answer; ``refusal_log`` and ``slow_head_log`` write a sample of them.
    """

    def __init__(
        self,
        handler: Any,
        *,
        on_refused: Callable[[int], None] | None = None,
        header_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.on_refused = on_refused
        self.header_timeout = header_timeout
        self.refusal_log = RateLimitedLog(log)
        self.slow_head_log = RateLimitedLog(log)
        self._awaiting_head: dict[_EdgeRequestHandler, float] = {}
        """Connections whose request head has not arrived yet, with their deadline."""
        self._sweep_handle: Any = None

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _EdgeRequestHandler(self, loop=self._loop, **kwargs)

    def apply_limits(self, *, max_header_size: int, header_timeout: float) -> None:
        """Take ``server.max_header_size`` and ``server.header_timeout`` (at start-up
        and on every reload). The parser limits are handler arguments, read when a
        connection is accepted, so they apply to every connection accepted after this."""
        kwargs: dict[str, Any] = self._kwargs
        # A request line is not a header: keep aiohttp's own 8190 floor for it.
        kwargs["max_line_size"] = max(8190, max_header_size)
        kwargs["max_field_size"] = max_header_size
        self.header_timeout = header_timeout

    def start_head_timer(self, handler: _EdgeRequestHandler) -> None:
        """Start ``handler``'s head timer unless it is already running."""
        if handler in self._awaiting_head:
            return
        self._awaiting_head[handler] = self._loop.time() + self.header_timeout
        if self._sweep_handle is None:
            self._sweep_handle = self._loop.call_later(self._sweep_interval(), self._sweep)

    def stop_head_timer(self, handler: _EdgeRequestHandler) -> None:
        self._awaiting_head.pop(handler, None)

    def _sweep_interval(self) -> float:
        # Late by at most one interval: a second, or less for a test's tiny timeout.
        return min(_MAX_SWEEP_INTERVAL, self.header_timeout / 2)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self._loop.time()
        late = [handler for handler, deadline in self._awaiting_head.items() if deadline <= now]
        for handler in late:
            del self._awaiting_head[handler]
            handler.head_timed_out(self.header_timeout)
        if self._awaiting_head:
            self._sweep_handle = self._loop.call_later(self._sweep_interval(), self._sweep)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._awaiting_head.clear()
        await super().shutdown(timeout)
