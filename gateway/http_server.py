"""aiohttp's low-level server, with the gateway's rules for what it refuses.

The gateway uses ``web.Server`` (no ``Application``, no URL dispatcher): routing is
its own, and skipping aiohttp's router and middleware machinery is measurably cheaper
per request. Two things are adjusted:

- requests the HTTP parser refuses (ambiguous framing, bad bytes, oversized fields)
  are answered as ``application/problem+json`` like every other gateway error, and
  logged without a traceback, because they are the client's fault, not ours;
- the parser's per-field limits follow ``server.max_header_size``.
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from collections.abc import Callable
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.problem import problem_response
from gateway.rate_limited_log import RateLimitedLog

__all__ = ["EdgeServer", "require_c_parser", "ParserUnavailable"]

log = logging.getLogger("gateway.http")


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


class _EdgeRequestHandler(RequestHandler):
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

    ``on_refused(status)`` is told of every request the parser refused, so that they
    are counted like any other answer; ``refusal_log`` writes a sample of them.
    """

    def __init__(self, handler: Any, *, on_refused: Callable[[int], None] | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.on_refused = on_refused
        self.refusal_log = RateLimitedLog(log)

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _EdgeRequestHandler(self, loop=self._loop, **kwargs)
