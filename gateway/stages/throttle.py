"""Throttling: a token bucket per (route, caller class, caller) (SPEC §3 ``throttle``,
§4a "One caller").

Sits after ``authenticate`` and before ``authorize``: it needs the verified subject,
and it must also see the requests whose token failed verification -- those are
401s, but they still cost their client IP's anonymous bucket, so guessing tokens is
throttled like any other anonymous traffic. The key is only ever what the gateway
verified itself: ``ex.subject`` (set by ``authenticate`` from a token whose signature
and claims checked out) or ``ex.client_ip`` (the peer, or what a trusted proxy
says), an IPv6 client by its /64 since one host usually holds a whole /64. A token's
unverified claims, or an ``X-Forwarded-For`` from an untrusted peer, never are.

Every response of a throttled route carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the bucket is full
again), put on ``ex.extra_response_headers`` so the edge and the forwarder add them
to whatever answers: upstream responses (streamed or not) and the gateway's own
errors. A refusal is 429 with ``Retry-After`` (whole seconds, at least 1) and is never
cached (the cache stage comes after this one, and the answer says ``no-store``).
While a Redis store is unreachable, ``store.on_error: deny`` makes this a 503.

A class without a rate on this route is not throttled and gets no headers.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable
from dataclasses import dataclass

from gateway.config.models import RouteConfig
from gateway.config.throttle import CALLER_CLASSES, Limits, effective_throttle
from gateway.config.units import Rate
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.metrics_families import CounterChild
from gateway.pipeline import Stage, StageDeps
from gateway.problem import Problem
from gateway.store.base import BucketPolicy, Decision, StoreUnavailable

__all__ = ["build", "caller_ip_key"]

_NO_STORE = "no-store"


def caller_ip_key(client_ip: str) -> str:
    """The anonymous bucket's caller: an IPv4 address as it is, an IPv6 one by its
    /64 (``2001:db8:1:2::/64``), anything unparseable (a Unix socket peer) as given."""
    if ":" not in client_ip:
        return client_ip
    try:
        address = ipaddress.IPv6Address(client_ip.partition("%")[0])
    except ValueError:
        return client_ip
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


@dataclass(frozen=True, slots=True)
class _ClassBucket:
    """One caller class on one route, compiled at build time."""

    policy: BucketPolicy
    prefix: str
    """``route|class|``: the caller is appended per request."""
    limit: str
    """The ``RateLimit-Limit`` value."""
    refused: CounterChild


def _class_bucket(
    route: str, caller: str, rate: Rate | None, limits: Limits, refused: CounterChild
) -> _ClassBucket | None:
    if rate is None:
        return None
    capacity = limits.capacity(rate)
    return _ClassBucket(
        policy=BucketPolicy(capacity=capacity, refill_per_second=rate.per_second),
        prefix=f"{route}|{caller}|",
        limit=str(capacity),
        refused=refused,
    )


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    limits = effective_throttle(deps.config.throttle, route.throttle)
    if limits is None:
        return None
    store = deps.store
    if store is None:  # the runtime always passes one; a hand-built StageDeps may not
        raise ValueError(f"route {route.name!r} is throttled, but there is no store")
    counters = deps.metrics.throttled(route.name, CALLER_CLASSES)
    anonymous = _class_bucket(route.name, "anonymous", limits.anonymous, limits, counters["anonymous"])
    authenticated = _class_bucket(route.name, "authenticated", limits.authenticated, limits, counters["authenticated"])

    def apply(ex: Exchange, bucket: _ClassBucket, decision: Decision) -> None:
        ex.extra_response_headers += (
            ("RateLimit-Limit", bucket.limit),
            ("RateLimit-Remaining", str(decision.remaining)),
            ("RateLimit-Reset", str(math.ceil(decision.reset))),
        )
        if not decision.allowed:
            bucket.refused.inc()
            raise Problem(
                429,
                "too many requests; retry after the time in Retry-After",
                headers={"Retry-After": str(max(1, math.ceil(decision.retry_after))), "Cache-Control": _NO_STORE},
            )

    async def decide_remotely(ex: Exchange, bucket: _ClassBucket, key: str) -> None:
        try:
            decision = await store.take(key, bucket.policy)
        except StoreUnavailable as exc:
            raise Problem(
                503,
                "rate limiting is unavailable, try again shortly",
                headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
            ) from None
        apply(ex, bucket, decision)

    # The memory store decides synchronously: no await on the common path. A shared
    # store (Redis) is a round trip, the one case where this stage awaits.
    take_now = getattr(store, "take_now", None)

    def throttle(request: EdgeRequest, ex: Exchange) -> Awaitable[None] | None:
        subject = ex.subject
        if subject is None:
            bucket = anonymous
            if bucket is None:
                return None
            key = bucket.prefix + caller_ip_key(ex.client_ip)
        else:
            bucket = authenticated
            if bucket is None:
                return None
            key = bucket.prefix + subject
        if take_now is None:
            return decide_remotely(ex, bucket, key)
        apply(ex, bucket, take_now(key, bucket.policy))
        return None

    return throttle
