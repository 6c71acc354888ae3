"""Responses as the bytes the proxy port writes.

The common case of a proxy is a small, complete upstream response to an HTTP/1.1
client. Its header lines pass through as the bytes the upstream sent (minus
hop-by-hop ones and those its ``Connection`` names), the gateway's own headers are
appended, and head and body leave in one write: no decode into a mapping and
serialise again, no ``Content-Type: application/octet-stream`` or aiohttp banner the
upstream never sent.

:func:`encode_head` is that one head encoder; every answer on the proxy port goes
through it: a relayed upstream response (:class:`RawResponse`, or the head of a
streamed one), a cache entry (also a :class:`RawResponse`), a problem document
(:func:`encode_problem`), and the few plain responses stages build with aiohttp's
``web.Response`` (a CORS preflight: :func:`encode_web_response`). A header the gateway
adds replaces the upstream's of that name, except ``Vary``, which is merged (CORS
adding ``Origin`` must keep the upstream's names).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web
from multidict import CIMultiDict

from gateway.headers import merge_vary
from gateway.problem import PROBLEM_CONTENT_TYPE, Problem, problem_body

__all__ = [
    "RawResponse",
    "Streamed",
    "SKIPPED_RESPONSE_HEADERS",
    "encode_head",
    "encode_problem",
    "encode_web_response",
    "http_date",
]

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

_K = TypeVar("_K")
_V = TypeVar("_V")

_PHRASES = {status.value: status.phrase.encode("latin-1") for status in HTTPStatus}

_NO_BODY = frozenset({204, 304})

# Per-name and per-value work on the response path is memoised: upstreams and stages
# send the same few header names, Connection values and reason phrases over and over,
# so after the first time each costs one dict lookup. Every memo is bounded (cleared
# when full), like the request side's header filter, so odd input cannot grow them.
_MEMO_LIMIT = 4096


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


# What an upstream header line is to the head encoder, by its raw name.
_PASS, _SKIP, _CONNECTION, _VARY, _DATE, _SERVER = range(6)
_DROPPED_ANYWAY = SKIPPED_RESPONSE_HEADERS | {b"close", b""}
_KINDS: dict[bytes, tuple[int, bytes]] = {}
_NAMED: dict[bytes, frozenset[bytes]] = {}
_REASON_BYTES: dict[str, bytes] = {}
_ADDED_NAMES: dict[str, tuple[bytes, bytes]] = {}


def _kind(name: bytes) -> tuple[int, bytes]:
    lower = name.lower()
    if lower == b"connection":
        kind = _CONNECTION
    elif lower == b"vary":
        kind = _VARY
    elif lower in SKIPPED_RESPONSE_HEADERS:
        kind = _SKIP
    elif lower == b"date":
        kind = _DATE
    elif lower == b"server":
        kind = _SERVER
    else:
        kind = _PASS
    return _remember(_KINDS, name, (kind, lower))


def _connection_names(value: bytes) -> frozenset[bytes]:
    """The header names a response's ``Connection`` value drops, beyond those dropped
    anyway ("keep-alive" and "close" are the usual values: nothing more)."""
    named = _NAMED.get(value)
    if named is None:
        named = _remember(_NAMED, value, frozenset(t.strip().lower() for t in value.split(b",")) - _DROPPED_ANYWAY)
    return named


def _reason_bytes(reason: str) -> bytes:
    return _remember(_REASON_BYTES, reason, reason.encode("latin-1", "replace"))


_date_second = -1
_date_line = b""


def http_date() -> bytes:
    """``Date: ...\r\n`` for now, formatted once per second (not per response)."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    return _date_line


def _merged(added: Sequence[tuple[str, str]]) -> dict[bytes, tuple[bytes, str]]:
    """The gateway's headers by lower-cased name: a later one replaces an earlier one
    of the same name, except Vary, which merges."""
    out: dict[bytes, tuple[bytes, str]] = {}
    names = _ADDED_NAMES
    for name, value in added:
        encoded = names.get(name)
        if encoded is None:
            encoded = _remember(names, name, (name.lower().encode("latin-1"), name.encode("latin-1")))
        key, raw = encoded
        if key == b"vary" and key in out:
            value = merge_vary(out[key][1], value)
        out[key] = (raw, value)
    return out


def encode_head(
    status: int,
    reason: str | bytes | None,
    raw_headers: Sequence[tuple[bytes, bytes]],
    added: Sequence[tuple[str, str]],
    *,
    length: int | None,
    chunked: bool = False,
    keep_alive: bool = True,
) -> bytes:
    """The response head: the upstream's lines, the gateway's ``added`` ones, and the
    framing: ``Content-Length: length`` (None: none, e.g. a 304 or a close-delimited
    body), or ``Transfer-Encoding: chunked``."""
    if not reason:
        phrase = _PHRASES.get(status, b"Unknown")
    elif isinstance(reason, str):
        phrase = _REASON_BYTES.get(reason) or _reason_bytes(reason)
    else:
        phrase = reason
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    ours = _merged(added)
    named: frozenset[bytes] | None = None
    has_date = has_server = False
    vary = ours.get(b"vary")
    vary_value = vary[1] if vary is not None else None
    kinds = _KINDS
    for name, value in raw_headers:
        verdict = kinds.get(name)
        if verdict is None:
            verdict = _kind(name)
        kind, lower = verdict
        if kind == _PASS:
            if lower in ours:
                continue
        elif kind == _SKIP:
            continue
        elif kind == _CONNECTION:
            named = _connection_names(value)
            continue
        elif kind == _VARY:
            if vary_value is not None:
                vary_value = merge_vary(value.decode("latin-1"), vary_value)
                continue
        elif lower in ours:
            continue
        elif kind == _DATE:
            has_date = True
        else:
            has_server = True
        lines.append(name + b": " + value + b"\r\n")
    if named:
        lines = [lines[0]] + [line for line in lines[1:] if line.split(b":", 1)[0].lower() not in named]
    if not has_date:
        lines.append(http_date())
    if not has_server and b"server" not in ours:
        lines.append(b"Server: gateway\r\n")
    for key, (name, value) in ours.items():
        if key == b"vary" and vary_value is not None:
            value = vary_value
        lines.append(name + b": " + value.encode("utf-8", "surrogateescape") + b"\r\n")
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    elif chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class RawResponse:
    """A complete response whose head is the upstream's (or a cache entry's) header
    bytes. Stages may add headers with ``response.headers[...] = ...``."""

    __slots__ = ("status", "reason", "raw_headers", "body", "send_body", "with_length", "keep_alive", "_headers")

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
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.body = body
        self.send_body = send_body
        self.with_length = with_length
        self.keep_alive: bool | None = None
        self._headers: CIMultiDict[str] | None = None

    @property
    def headers(self) -> CIMultiDict[str]:
        """Headers a stage adds; they replace the upstream's of the same name."""
        if self._headers is None:
            self._headers = CIMultiDict()
        return self._headers

    def force_close(self) -> None:
        self.keep_alive = False

    def head(self, keep_alive: bool, added: Sequence[tuple[str, str]] = ()) -> bytes:
        """The head, with the stages' headers, then ``added`` (the edge's)."""
        if self._headers:
            added = [*self._headers.items(), *added]
        return encode_head(
            self.status,
            self.reason,
            self.raw_headers,
            added,
            length=len(self.body) if self.with_length else None,
            keep_alive=keep_alive,
        )

    def encode(self, keep_alive: bool, added: Sequence[tuple[str, str]] = ()) -> bytes:
        head = self.head(keep_alive, added)
        return head + self.body if self.send_body else head


class Streamed:
    """A response the forwarder already wrote (streamed, or a body-less HEAD/204/304
    answer): the edge only records it."""

    __slots__ = ("status", "keep_alive")

    def __init__(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive


def encode_problem(
    problem: Problem, added: Sequence[tuple[str, str]], *, keep_alive: bool, head_only: bool = False
) -> bytes:
    """A problem document (RFC 9457) as a complete response."""
    body = problem_body(problem.status, problem.detail, title=problem.title)
    raw = [(b"Content-Type", PROBLEM_CONTENT_TYPE.encode("ascii"))]
    if problem.headers:
        raw.extend((n.encode("latin-1"), v.encode("utf-8")) for n, v in problem.headers.items())
    head = encode_head(problem.status, None, raw, added, length=len(body), keep_alive=keep_alive)
    return head if head_only else head + body


def encode_web_response(
    response: web.Response, added: Sequence[tuple[str, str]], *, keep_alive: bool, head_only: bool = False
) -> bytes:
    """A plain aiohttp ``web.Response`` a stage built (a CORS preflight)."""
    body = response.body if isinstance(response.body, bytes) else b""
    raw = [
        (n.encode("latin-1"), v.encode("utf-8"))
        for n, v in response.headers.items()
        if n.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    status = response.status
    length = None if status in _NO_BODY or status < 200 else len(body)
    head = encode_head(status, response.reason, raw, added, length=length, keep_alive=keep_alive)
    return head if head_only or length is None else head + body
