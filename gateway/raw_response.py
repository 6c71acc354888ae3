"""A proxied response whose head is written as the bytes the upstream sent.

The common case of a proxy is a small, complete upstream response to an HTTP/1.1
client. Through ``web.Response`` it would be decoded into a ``CIMultiDict``, given a
``Content-Type: application/octet-stream`` and a ``Server: Python/aiohttp`` banner
the upstream never sent, and serialised again. Here the upstream's header lines pass
through as bytes (minus hop-by-hop ones), the gateway's own headers are appended,
and head and body leave in one write.

Stages may still add headers with ``response.headers[...] = ...`` until it is
prepared; they are appended after the upstream's. Everything else about the
response (status, keep-alive, the prepared/eof life cycle the server protocol
relies on) is the ordinary ``StreamResponse``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time

from gateway.headers import merge_vary

__all__ = ["RawResponse", "SKIPPED_RESPONSE_HEADERS"]

SKIPPED_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
    }
)


class RawResponse(web.StreamResponse):
    def __init__(
        self,
        *,
        status: int,
        reason: str,
        raw_headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        send_body: bool = True,
        with_length: bool = True,
    ) -> None:
        """``send_body=False`` answers a HEAD (the length of ``body`` is announced,
        the body is not sent); ``with_length=False`` too, for a 304."""
        super().__init__(status=status, reason=reason or None)
        self.raw_headers = raw_headers
        self.body = body
        self.send_body = send_body
        self.with_length = with_length

    def _head(self, keep_alive: bool) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason.encode("latin-1"))]
        named: frozenset[bytes] | None = None
        has_date = has_server = False
        added = self.headers
        # A header the gateway sets replaces the upstream's, except Vary, which is
        # merged into one list (CORS adding Origin must keep the upstream's names).
        replaced = frozenset(n.lower().encode("latin-1") for n in added) if added else ()
        vary = added.get("Vary") if added else None
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower in SKIPPED_RESPONSE_HEADERS or lower in replaced:
                if lower == b"connection":
                    named = frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
                elif lower == b"vary" and vary is not None:
                    vary = merge_vary(value.decode("latin-1"), vary)
                continue
            if lower == b"date":
                has_date = True
            elif lower == b"server":
                has_server = True
            lines.append(name + b": " + value + b"\r\n")
        if named:
            lines = [lines[0]] + [line for line in lines[1:] if line.split(b":", 1)[0].lower() not in named]
        if not has_date:
            lines.append(b"Date: " + rfc822_formatted_time().encode("ascii") + b"\r\n")
        if not has_server:
            lines.append(b"Server: gateway\r\n")
        for name, value in added.items():
            if name.lower() == "vary":
                value = vary or value
            lines.append(name.encode("latin-1") + b": " + value.encode("utf-8") + b"\r\n")
        if self.with_length:
            lines.append(b"Content-Length: %d\r\n" % len(self.body))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        self._req = request
        writer = self._payload_writer = request._payload_writer
        keep_alive = self._keep_alive if self._keep_alive is not None else request.keep_alive
        self._keep_alive = keep_alive
        head = self._head(keep_alive)
        writer._write(head + self.body if self.send_body else head)  # type: ignore[attr-defined]
        await writer.drain()
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        self._eof_sent = True
