"""Which headers cross the gateway, in each direction.

Request side: hop-by-hop headers (RFC 9110 §7.6.1) and every header the client's
``Connection`` names are connection-scoped and never forwarded. Headers the gateway
itself sets (forwarding, request id, identity claims) are removed from the client's
request first in every spelling a backend might fold together: WSGI/CGI turns both
``X-User-Id`` and ``X_User.Id`` into ``HTTP_X_USER_ID``, so a client sending the
second must not be able to pose as the first.

The filter works on the raw header bytes the HTTP parser saw, so what is forwarded
is byte-for-byte what the client sent, with no decode/encode round trip.

Response side: ``raw_response.encode_head`` drops hop-by-hop headers and those the
upstream's ``Connection`` names; everything else passes as the upstream sent it
(including ``Content-Encoding``: the gateway never decompresses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multidict import CIMultiDict

__all__ = [
    "HOP_BY_HOP",
    "GATEWAY_SET",
    "canonical_name",
    "connection_tokens",
    "RequestHeaderFilter",
    "add_response_headers",
    "merge_vary",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

# Set (or deliberately decided) by the gateway itself; a client's copy is never forwarded.
GATEWAY_SET = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-real-ip",
        "x-client-ip",
        "forwarded",
        "x-request-id",
        # Host and Content-Length are set by the forwarder from what it decided.
        "host",
        "content-length",
        # Expect is answered by the gateway (100-continue) and never forwarded.
        "expect",
        # Method overrides: the gateway routes, authorises and throttles on the request
        # method; a backend that honoured one of these would run a DELETE the gateway
        # let through as a GET.
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        # Path overrides, for the same reason about the path: IIS URL Rewrite and some
        # PHP frameworks serve X-Original-URL / X-Rewrite-URL instead of the request
        # line, which would bypass routing and the firewall, and poison cached entries
        # keyed on the real path.
        "x-original-url",
        "x-rewrite-url",
    }
)

_CACHE_LIMIT = 4096


def canonical_name(name: str) -> str:
    """The spelling a CGI-style backend folds a header name to: lower case, '-' only."""
    return name.lower().replace("_", "-").replace(".", "-")


def connection_tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    """Header names listed in ``Connection`` values (raw bytes), lower-cased."""
    return frozenset(t.strip().lower() for v in values for t in v.split(b",") if t.strip())


class RequestHeaderFilter:
    """Compiled once per configuration: decides which client headers go upstream.

    The verdict for each raw header name is memoised (clients send the same few
    names over and over), so the per-request cost is one dict lookup per header.
    """

    __slots__ = ("_strip", "_verdicts")

    def __init__(self, *, identity_headers: Iterable[str] = ()) -> None:
        self._strip = frozenset(GATEWAY_SET | {canonical_name(h) for h in identity_headers})
        self._verdicts: dict[bytes, bool] = {}

    def _decide(self, name: bytes) -> bool:
        text = name.decode("latin-1")
        lower = text.lower()
        keep = not (lower in HOP_BY_HOP or lower.startswith("proxy-") or canonical_name(text) in self._strip)
        if len(self._verdicts) >= _CACHE_LIMIT:
            self._verdicts.clear()
        self._verdicts[name] = keep
        return keep

    def keeps(self, name: str) -> bool:
        """Whether a header of this name would be forwarded (for tests and docs)."""
        return self._decide(name.encode("latin-1"))

    def forward(
        self,
        raw_headers: Sequence[tuple[bytes, bytes]],
        out: list[bytes],
        named: frozenset[bytes] = frozenset(),
    ) -> None:
        """Append ``name: value\\r\\n`` lines of the forwardable client headers to ``out``.

        ``named`` holds the header names the client's ``Connection`` header lists.
        """
        verdicts = self._verdicts
        for name, value in raw_headers:
            keep = verdicts.get(name)
            if keep is None:
                keep = self._decide(name)
            if keep and not (named and name.lower() in named):
                out.append(name + b": " + value + b"\r\n")


def add_response_headers(headers: CIMultiDict[str], extra: Iterable[tuple[str, str]]) -> None:
    """Put the gateway's own response headers (``Exchange.extra_response_headers``) on
    a response: each replaces the upstream's header of that name, except ``Vary``,
    which is merged -- CORS adding ``Origin`` must not erase the upstream's
    ``Vary: Accept-Encoding`` (a cache would then mix encodings)."""
    for name, value in extra:
        if name == "Vary":
            current = headers.get("Vary")
            if current:
                value = merge_vary(current, value)
        headers[name] = value


def merge_vary(current: str, extra: str) -> str:
    """``current`` plus the names in ``extra`` it does not list yet (``*`` absorbs all)."""
    if current.strip() == "*":
        return current
    have = {v.strip().lower() for v in current.split(",")}
    more = [v.strip() for v in extra.split(",") if v.strip() and v.strip().lower() not in have]
    return ", ".join([current, *more]) if more else current
