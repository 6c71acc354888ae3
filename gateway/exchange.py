"""The per-request context that every stage reads and fills in.

One small slotted object is created per request by the edge handler and hung off the
aiohttp request under :data:`EXCHANGE`; stages never re-derive what an earlier
stage decided (the normalised path, the route, the client IP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.problem import Problem
    from gateway.routing import CompiledRoute

__all__ = ["Exchange", "EXCHANGE"]


@dataclass(slots=True, eq=False)
class Exchange:
    request_id: str
    started: float
    client_ip: str = ""
    forwarded_for: str = ""
    """The ``X-Forwarded-For`` value to send upstream: client first, trusted hops after."""
    trusted_peer: bool = False
    """The TCP peer is a trusted proxy, so its forwarding headers are believed."""
    path: str = ""
    """The normalised path: routed on, and sent upstream."""
    query: str = ""
    """The raw query string including its leading ``?`` (empty when absent)."""
    route: CompiledRoute | None = None
    target: str | None = None
    """The upstream target that answered (for logs)."""
    subject: str | None = None
    """The verified caller identity, set by the auth stage when a token verifies."""
    claims: dict[str, Any] | None = None
    auth_problem: Problem | None = None
    """The 401 the authenticate stage decided on (missing or invalid token). It is
    raised by the authorize stage, after throttling has counted the request against
    its client IP's anonymous bucket."""
    upstream_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers stages want sent upstream (identity claims), set after the client's are filtered."""
    extra_response_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers later stages want on the response, whoever builds it."""
    cache_status: str | None = None
    """``X-Cache`` as the cache stage decided it; None when it did not run (the edge
    then marks a cached route's refusals BYPASS)."""


EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("gateway.exchange", Exchange)
