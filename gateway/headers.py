"""Which headers cross the gateway, in each direction.

Request side: hop-by-hop headers (RFC 9110 §7.6.1) and every header the client's
``Connection`` names are connection-scoped and never forwarded. Headers the gateway
itself sets (forwarding, request id, identity claims) are removed from the client's
request first in every spelling a backend might fold together: WSGI/CGI turns both
``X-User-Id`` and ``X_User.Id`` into ``HTTP_X_USER_ID``, so a client sending the
second must not be able to pose as the first.

Response side: hop-by-hop headers are dropped; everything else passes as the upstream
sent it (including ``Content-Encoding``: the gateway never decompresses).
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["HOP_BY_HOP", "canonical_name", "connection_tokens", "RequestHeaderFilter", "response_headers"]

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

# Set by the gateway itself; a client's copy is never forwarded.
GATEWAY_SET = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
        "x-request-id",
        # Expect is answered by the gateway (100-continue) and never forwarded.
        "expect",
    }
)

_CACHE_LIMIT = 2048


def canonical_name(name: str) -> str:
    """The spelling a CGI-style backend folds a header name to: lower case, '-' only."""
    return name.lower().replace("_", "-").replace(".", "-")


def connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


class RequestHeaderFilter:
    """Compiled once per configuration: decides which client headers go upstream.

    The verdict for each raw header name is memoised (clients send the same few
    names over and over), so the per-request cost is one dict lookup per header.
    """

    __slots__ = ("_strip", "_verdicts")

    def __init__(self, *, identity_headers: Iterable[str] = ()) -> None:
        self._strip = frozenset(GATEWAY_SET | {canonical_name(h) for h in identity_headers})
        self._verdicts: dict[str, bool] = {}

    def _decide(self, name: str) -> bool:
        lower = name.lower()
        keep = not (
            lower in HOP_BY_HOP
            or lower.startswith("proxy-")
            or lower == "host"
            or lower == "content-length"
            or canonical_name(name) in self._strip
        )
        if len(self._verdicts) >= _CACHE_LIMIT:
            self._verdicts.clear()
        self._verdicts[name] = keep
        return keep

    def forwardable(self, headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
        """The client's headers that may be forwarded (Host and Content-Length excluded:
        the forwarder sets those deliberately)."""
        out: CIMultiDict[str] = CIMultiDict()
        verdicts = self._verdicts
        named = connection_tokens(headers) if "Connection" in headers else None
        for name, value in headers.items():
            keep = verdicts.get(name)
            if keep is None:
                keep = self._decide(name)
            if keep and (named is None or name.lower() not in named):
                out.add(name, value)
        return out


def response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The upstream's response headers minus hop-by-hop ones and Content-Length
    (set again by the gateway from the body it actually sends)."""
    out: CIMultiDict[str] = CIMultiDict()
    named = connection_tokens(headers) if "Connection" in headers else None
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower == "content-length":
            continue
        if named is not None and lower in named:
            continue
        out.add(name, value)
    return out
