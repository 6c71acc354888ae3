"""A route's caching rules, compiled once: which requests look up, which answers store.

Requests (SPEC §4): only GET and HEAD are looked up. A request bypasses the cache
(answered by the upstream, nothing stored, ``X-Cache: BYPASS``) when something that
could change the answer is not in the key:

- ``Authorization`` on a route without ``per_user`` (with it, the verified subject
  is in the key; an unverified token never gets this far: it is a 401);
- ``Cookie``: a session can personalise any answer and no origin sends ``Vary:
  Cookie`` reliably (Varnish's built-in policy passes these too);
- a body on a GET, ``Range``, and the preconditions a cache cannot evaluate
  (``If-Match``, ``If-Unmodified-Since``, ``If-Range``).

Client ``Cache-Control`` / ``Pragma`` are not obeyed for lookups: a client must not
be able to send every request to the origin (nginx and Varnish ignore them too); the
origin's own directives decide what is stored and for how long.

Responses are stored only when all of these hold: the request was a GET (a HEAD miss
never stores a body-less entry); the status is 200, 203, 204, 301, 404 or 410; no
``Set-Cookie``; no ``no-store``, ``private`` or ``no-cache``; no ``Vary: *`` and no
``Vary`` naming a header outside the route's ``vary`` list (the key could not tell
those variants apart); a freshness lifetime above zero. The lifetime is the route's
``ttl`` shortened by the origin's ``s-maxage`` (else ``max-age``, else ``Expires``).
Stale windows are the longer of the route's and the origin's
(``stale-while-revalidate=N``, ``stale-if-error=N``), and none at all with
``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (which implies
proxy-revalidate for a shared cache, RFC 9111 §5.2.2.10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from gateway.cache.control import ResponseDirectives, parse_response_directives
from gateway.config.cache import RouteCacheConfig

__all__ = ["RoutePolicy", "Freshness", "STORABLE_STATUSES", "BYPASS_HEADERS"]

STORABLE_STATUSES = frozenset({200, 203, 204, 301, 404, 410})
BYPASS_HEADERS = ("Cookie", "Range", "If-Match", "If-Unmodified-Since", "If-Range")


@dataclass(frozen=True, slots=True)
class Freshness:
    fresh_for: float
    stale_while_revalidate: float
    stale_if_error: float
    must_revalidate: bool


def _http_date(value: bytes) -> float | None:
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class RoutePolicy:
    """One route's ``cache:`` compiled: the stage asks it, per request, only lookups."""

    __slots__ = ("ttl", "vary", "vary_bytes", "ignore_params", "per_user", "stale_if_error", "stale_while_revalidate")

    def __init__(self, config: RouteCacheConfig) -> None:
        self.ttl = config.ttl
        self.vary: tuple[str, ...] = config.vary
        self.vary_bytes = frozenset(name.encode("ascii") for name in config.vary)
        self.ignore_params = frozenset(config.ignore_params)
        self.per_user = config.per_user
        self.stale_if_error = config.stale_if_error
        self.stale_while_revalidate = config.stale_while_revalidate

    def unkeyed_vary(self, values: Sequence[bytes]) -> bool:
        """The response varies on something the key does not hold (or on ``*``)."""
        for value in values:
            for name in value.split(b","):
                name = name.strip().lower()
                if name and (name == b"*" or name not in self.vary_bytes):
                    return True
        return False

    def freshness(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], *, now: float
    ) -> Freshness | str:
        """How long this response may be served, or why it may not be stored."""
        if status not in STORABLE_STATUSES:
            return f"status {status}"
        cache_control: list[bytes] = []
        vary: list[bytes] = []
        date = expires = None
        for name, value in headers:
            lower = name.lower()
            if lower == b"cache-control":
                cache_control.append(value)
            elif lower == b"set-cookie":
                return "set-cookie"
            elif lower == b"vary":
                vary.append(value)
            elif lower == b"expires":
                expires = value
            elif lower == b"date":
                date = value
        directives: ResponseDirectives = parse_response_directives(cache_control)
        if directives.no_store:
            return "no-store"
        if directives.private:
            return "private"
        if directives.no_cache:
            return "no-cache"
        if vary and self.unkeyed_vary(vary):
            return "vary"
        fresh_for = self.ttl
        if directives.s_maxage is not None:
            fresh_for = min(fresh_for, directives.s_maxage)
        elif directives.max_age is not None:
            fresh_for = min(fresh_for, directives.max_age)
        elif expires is not None:
            # RFC 9111 §4.2.1: Expires minus Date; an unreadable Expires is in the past.
            expiry = _http_date(expires)
            base = _http_date(date) if date is not None else now
            fresh_for = min(fresh_for, (expiry - (base or now)) if expiry is not None else 0.0)
        if fresh_for <= 0:
            return "expired"
        if directives.must_revalidate or directives.s_maxage is not None:
            # RFC 9111 §5.2.2.10: s-maxage carries proxy-revalidate's meaning for a
            # shared cache: once stale, never served without asking the origin.
            return Freshness(fresh_for, 0.0, 0.0, True)
        return Freshness(
            fresh_for,
            max(self.stale_while_revalidate, directives.stale_while_revalidate or 0.0),
            max(self.stale_if_error, directives.stale_if_error or 0.0),
            False,
        )
