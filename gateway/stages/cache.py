"""Response caching: the last stage of a cached route, between the checks and the forwarder.

It sits after authorize (SPEC §1: firewall, auth and throttling apply to hits too,
so a cache can never become a way around them) and drives the forwarder's two
halves itself: :meth:`Forwarder.fetch` for an upstream result, then
:meth:`Forwarder.render` to relay it while a :class:`BodyTee` keeps a copy. A hit
never touches the upstream machinery: it is one store lookup and one write of the
stored head and body.

What it answers (every answer of the route carries ``X-Cache`` and an RFC 9211
``Cache-Status``):

- ``HIT``: a fresh entry (``Age`` says how old); a client's ``If-None-Match`` /
  ``If-Modified-Since`` that matches it is answered 304 from the entry.
- ``STALE``: an expired entry, inside ``stale_while_revalidate`` (one background
  request refreshes it) or inside ``stale_if_error`` while the upstream fails.
  Entries marked ``must-revalidate``/``proxy-revalidate`` are never served stale.
- ``MISS``: the upstream was asked. An expired entry with a validator is revalidated
  with a conditional request; a 304 freshens it without the body crossing again
  (served as ``HIT``, ``Cache-Status: ...; fwd=stale; fwd-status=304``).
  Concurrent misses for one key wait for the first one (``collapsed``).
- ``BYPASS``: the request could not be answered from the cache (see
  :mod:`gateway.cache.policy`), or the store is unreachable.

Which answers are stored, and the key, are in :mod:`gateway.cache.policy` and
:mod:`gateway.cache.key`; the store protocol in :mod:`gateway.cache.store`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any
from email.utils import parsedate_to_datetime

from gateway.cache.coalescing import Coalescer
from gateway.cache.entry import Entry
from gateway.cache.key import CacheKey, canonical_query, make_key
from gateway.cache.policy import BYPASS_HEADERS, Freshness, RoutePolicy
from gateway.cache.response_cache import ResponseCache
from gateway.cache.store import CacheStoreError
from gateway.config.models import RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import EXCHANGE, Exchange
from gateway.pipeline import Answer, Handler, Stage, StageDeps
from gateway.problem import Problem
from gateway.raw_response import SKIPPED_RESPONSE_HEADERS, RawResponse
from gateway.upstream.connection import ResponseHead
from gateway.upstream.forwarder import BodyTee, Forwarder, UpstreamResult, forwarded_host_proto

__all__ = ["build", "CacheStage"]

log = logging.getLogger("gateway.cache")

_UPSTREAM_FAILED = frozenset({500, 502, 503, 504})
# Not stored: the gateway writes these itself when it answers from an entry.
_NOT_STORED = SKIPPED_RESPONSE_HEADERS | {b"age", b"x-cache", b"cache-status", b"x-request-id"}
# What a 304 carries from the entry (RFC 9110 §15.4.5).
_NOT_MODIFIED_HEADERS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)
_REMOTE_POLL = 0.025


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    if route.cache is None:
        return None
    assert deps.cache is not None, "the runtime creates the response cache when a route caches"
    forwarder = deps.forwarders[route.name]
    return CacheStage(route.name, RoutePolicy(route.cache), deps.cache, forwarder, deps.metrics.cache_results(route.name))


def _stored_headers(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tuple((n, v) for n, v in headers if n.lower() not in _NOT_STORED and n.lower() not in named)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _http_date(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _initial_age(headers: Sequence[tuple[bytes, bytes]], sent_at: float, now: float) -> float:
    """RFC 9111 §4.2.3 ``corrected_initial_age``. ``Date`` has a resolution of one
    second, so up to a second of apparent age is only its rounding: it is not counted
    (else a 1 s ttl would be spent before the answer is stored)."""
    age_header = _header(headers, b"age")
    age_value = float(int(age_header)) if age_header is not None and age_header.strip().isdigit() else 0.0
    date_value = _http_date(_header(headers, b"date"))
    apparent_age = max(0.0, now - date_value - 1.0) if date_value is not None else 0.0
    corrected_age_value = age_value + max(0.0, now - sent_at)
    return max(apparent_age, corrected_age_value)


def _freshness_fields(
    headers: tuple[tuple[bytes, bytes], ...],
    head: ResponseHead,
    sent_at: float,
    now: float,
    freshness: Freshness,
    generation: int,
) -> dict[str, Any]:
    """What a new answer (or a 304 freshening an entry) sets on an :class:`Entry`:
    the headers kept, its age and freshness now, its validators, the generation."""
    return {
        "headers": headers,
        "response_time": now,
        "initial_age": _initial_age(head.headers, sent_at, now),
        "fresh_for": freshness.fresh_for,
        "stale_while_revalidate": freshness.stale_while_revalidate,
        "stale_if_error": freshness.stale_if_error,
        "must_revalidate": freshness.must_revalidate,
        "etag": _header(headers, b"etag"),
        "last_modified": _header(headers, b"last-modified"),
        "generation": generation,
    }


def _etags(value: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def _not_modified(request: EdgeRequest, entry: Entry) -> bool:
    """The client's own validators match the entry (RFC 9110 §13.1.2/§13.1.3; weak
    comparison for If-None-Match, which takes precedence over If-Modified-Since).
    Only a 2xx entry is ever "not modified": preconditions are ignored for any other
    answer (RFC 9110 §13.2.1), and Django puts ETags on its 404s too."""
    if not 200 <= entry.status < 300:
        return False
    headers = request.headers
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if entry.etag is None:
            return False
        tags = _etags(if_none_match)
        return "*" in tags or entry.etag.decode("latin-1").strip().removeprefix("W/") in tags
    if_modified_since = headers.get("If-Modified-Since")
    if if_modified_since is not None and entry.last_modified is not None:
        since = _http_date(if_modified_since)
        modified = _http_date(entry.last_modified)
        return since is not None and modified is not None and modified <= since
    return False


class CacheStage:
    __slots__ = ("route", "policy", "cache", "forwarder", "results", "wait")

    wraps = True
    """A wrapping stage (gateway/pipeline.py): it drives the forwarder itself."""

    def __init__(
        self, route: str, policy: RoutePolicy, cache: ResponseCache, forwarder: Forwarder, results: dict[str, object]
    ) -> None:
        self.route = route
        self.policy = policy
        self.cache = cache
        self.forwarder = forwarder
        self.results = results
        self.wait = forwarder.upstream.response_timeout
        """How long a collapsed request waits for the one filling its key."""

    # -- per request ----------------------------------------------------------------------

    async def __call__(self, request: EdgeRequest, handler: Handler) -> Answer:
        ex = request[EXCHANGE]
        method = request.method
        if method != "GET" and method != "HEAD":
            self._mark(ex, "bypass", "BYPASS", "gateway; fwd=bypass; detail=method")
            return await handler(request)
        reason = self._bypass_reason(request, ex)
        if reason is not None:
            self._mark(ex, "bypass", "BYPASS", f"gateway; fwd=bypass; detail={reason}")
            return await handler(request)
        key = self._key(request, ex)
        cache = self.cache
        try:
            entry = await cache.store.get(key)
        except CacheStoreError as exc:
            cache.failed("cache_get", exc)
            self._mark(ex, "bypass", "BYPASS", "gateway; fwd=bypass; detail=store-unavailable")
            return await handler(request)
        now = cache.clock()
        if entry is not None:
            if entry.is_fresh(now):
                ttl = int(entry.fresh_for - entry.age(now))
                self._mark(ex, "hit", "HIT", f"gateway; hit; ttl={ttl}")
                return self._answer(request, entry, now)
            if not entry.must_revalidate and entry.staleness(now) < entry.stale_while_revalidate:
                self._refresh_later(request, ex, key, entry)
                ttl = int(entry.fresh_for - entry.age(now))
                self._mark(ex, "stale", "STALE", f"gateway; fwd=stale; ttl={ttl}")
                return self._answer(request, entry, now)
        if method == "HEAD":
            # A HEAD miss is forwarded as it is and never stores a body-less entry; an
            # expired entry may still answer it while the upstream fails.
            if entry is not None and entry.stale_if_error and not entry.must_revalidate:
                return await self._head_or_stale(request, ex, entry)
            self._mark(ex, "miss", "MISS", "gateway; fwd=miss")
            return await handler(request)
        return await self._fill(request, ex, key, entry)

    async def _head_or_stale(self, request: EdgeRequest, ex: Exchange, stale: Entry) -> Answer:
        forwarder = self.forwarder
        try:
            result = await forwarder.fetch(request, ex)
        except Problem as problem:
            if self._stale_on_error(stale, problem.status):
                return self._serve_stale(request, ex, stale, f"fwd-status={problem.status}")
            self._mark(ex, "miss", "MISS", "gateway; fwd=miss")
            raise
        try:
            status = result.head.status
            if status in _UPSTREAM_FAILED and self._stale_on_error(stale, status):
                return self._serve_stale(request, ex, stale, f"fwd-status={status}")
            self._mark(ex, "miss", "MISS", "gateway; fwd=miss")
            return await forwarder.render(request, ex, result)
        finally:
            forwarder.finish(result)

    def _bypass_reason(self, request: EdgeRequest, ex: Exchange) -> str | None:
        headers = request.headers
        if "Authorization" in headers and (not self.policy.per_user or ex.subject is None):
            return "authorization"
        for name in BYPASS_HEADERS:
            if name in headers:
                return name.lower()
        if request.body_exists:
            return "body"
        return None

    def _key(self, request: EdgeRequest, ex: Exchange) -> CacheKey:
        headers = request.headers
        host, proto = forwarded_host_proto(request, ex)
        vary: list[str | None] = []
        for name in self.policy.vary:
            values = headers.getall(name, ())
            vary.append(", ".join(values) if values else None)
        return make_key(
            route=self.route,
            host=host,
            proto=proto,
            path=ex.path,
            query=canonical_query(ex.query[1:], self.policy.ignore_params),
            vary=vary,
            subject=ex.subject if self.policy.per_user else None,
        )

    def _mark(self, ex: Exchange, result: str, x_cache: str, cache_status: str) -> None:
        self.results[result].inc()  # type: ignore[attr-defined]
        ex.cache_status = x_cache
        ex.extra_response_headers.append(("X-Cache", x_cache))
        ex.extra_response_headers.append(("Cache-Status", cache_status))

    def _answer(
        self, request: EdgeRequest, entry: Entry, now: float, *, fresh_from: ResponseHead | None = None
    ) -> Answer:
        """An answer made from an entry: the stored head and body in one write.

        ``fresh_from``: the entry was just made from this upstream answer, which this
        request itself fetched: it carries no ``Age`` of ours (RFC 9111 §5.1: an Age
        says the origin was not asked for this request), only the upstream's own."""
        if _not_modified(request, entry):
            headers = tuple((n, v) for n, v in entry.headers if n.lower() in _NOT_MODIFIED_HEADERS)
            response = RawResponse(status=304, reason="Not Modified", raw_headers=headers, body=b"", with_length=False)
        else:
            response = RawResponse(
                status=entry.status,
                reason=entry.reason,
                raw_headers=entry.headers,
                body=entry.body,
                send_body=request.method != "HEAD",
                with_length=entry.status != 204,
            )
        if fresh_from is None:
            response.headers["Age"] = str(int(entry.age(now)))
        else:
            upstream_age = _header(fresh_from.headers, b"age")
            if upstream_age is not None:
                response.headers["Age"] = upstream_age.decode("latin-1")
        return response

    # -- misses ---------------------------------------------------------------------------

    async def _fill(self, request: EdgeRequest, ex: Exchange, key: CacheKey, stale: Entry | None) -> Answer:
        cache = self.cache
        coalescer = cache.coalescer
        flight = coalescer.follow(key.variant)
        if flight is not None:
            entry = await Coalescer.wait(flight, self.wait)
            if entry is not None:
                self._mark(ex, "miss", "MISS", "gateway; fwd=miss; collapsed")
                return self._answer(request, entry, cache.clock())
            response, _ = await self._fetch(request, ex, key, stale)
            return response
        coalescer.lead(key.variant)
        landed: Entry | None = None
        leased = False
        try:
            store = cache.store
            if store.shared:
                held_elsewhere = False
                try:
                    leased = await store.lease(key, self.wait)
                    held_elsewhere = not leased
                except CacheStoreError as exc:
                    # The store is failing: fetch at once, without waiting on it.
                    cache.failed("cache_get", exc)
                if held_elsewhere:
                    entry, leased = await self._remote_fill(key)
                    if entry is not None:
                        landed = entry
                        self._mark(ex, "miss", "MISS", "gateway; fwd=miss; collapsed")
                        return self._answer(request, entry, cache.clock())
            response, landed = await self._fetch(request, ex, key, stale)
            return response
        finally:
            coalescer.land(key.variant, landed)
            if leased:
                try:
                    await cache.store.release(key)
                except CacheStoreError as exc:
                    cache.failed("cache_put", exc)

    async def _remote_fill(self, key: CacheKey) -> tuple[Entry | None, bool]:
        """Another instance holds the fill lease: wait for its entry (bounded), or fetch
        ourselves when it never comes (the holder died, or its answer was not
        storable). Returns the entry, or None and whether we now hold the lease: the
        first waiter to find the lease free keeps it and fills for everyone, so the
        other instances go on waiting for its entry instead of all fetching at once."""
        cache = self.cache
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while loop.time() < deadline:
            await asyncio.sleep(_REMOTE_POLL)
            try:
                entry = await cache.store.get(key)
            except CacheStoreError as exc:
                cache.failed("cache_get", exc)
                return None, False
            if entry is not None and entry.is_fresh(cache.clock()):
                return entry, False
            try:
                if await cache.store.lease(key, self.wait):
                    return None, True  # the holder is gone: we fill, under our own lease
            except CacheStoreError as exc:
                cache.failed("cache_get", exc)
                return None, False
        return None, False

    async def _fetch(
        self, request: EdgeRequest, ex: Exchange, key: CacheKey, stale: Entry | None
    ) -> tuple[Answer, Entry | None]:
        """Ask the upstream (conditionally when ``stale`` has a validator), relay the
        answer, and store it when it may be."""
        cache = self.cache
        forwarder = self.forwarder
        generation = await self._generation(key)
        # A fill asks unconditionally (the client's preconditions are dropped, as nginx
        # does), so what comes back is a whole answer worth storing; a revalidation asks
        # with the entry's own validators.
        conditional = self._validators(stale) or []
        sent_at = cache.clock()
        try:
            result = await forwarder.fetch(request, ex, conditional=conditional)
        except Problem as problem:
            if self._stale_on_error(stale, problem.status):
                assert stale is not None
                return self._serve_stale(request, ex, stale, f"fwd-status={problem.status}"), None
            self._mark(ex, "miss", "MISS", "gateway; fwd=miss")
            raise
        try:
            head = result.head
            now = cache.clock()
            if stale is not None and conditional and head.status == 304:
                entry = self._freshened(stale, head, sent_at, now, generation)
                if entry is not None:
                    await self._put(key, entry, now, sent_at)
                    self._mark(ex, "hit", "HIT", "gateway; fwd=stale; fwd-status=304; stored")
                    return self._answer(request, entry, now), entry
                self._mark(ex, "miss", "MISS", "gateway; fwd=stale; fwd-status=304")
                return self._answer(request, stale, now), None
            if head.status in _UPSTREAM_FAILED and self._stale_on_error(stale, head.status):
                assert stale is not None
                return self._serve_stale(request, ex, stale, f"fwd-status={head.status}"), None
            verdict = (
                self.policy.freshness(head.status, head.headers, now=now) if generation is not None else "store-unavailable"
            )
            if not isinstance(verdict, Freshness):
                self._mark(ex, "miss", "MISS", f"gateway; fwd=miss; detail={verdict}")
                return await forwarder.render(request, ex, result), None
            limit = cache.max_entry_size
            conn = result.conn
            if conn.body_ready() and conn.buffered <= limit and generation is not None:
                # The whole answer is here already (the common case): store it and answer
                # from the entry, which also answers a client's matching precondition
                # with a 304 (the fill itself asked unconditionally).
                entry = self._entry(head, conn.take_body(), ex.path, sent_at, now, verdict, generation)
                stored = await self._put(key, entry, now, sent_at)
                self._mark(ex, "miss", "MISS", "gateway; fwd=miss; stored" if stored else "gateway; fwd=miss")
                return self._answer(request, entry, now, fresh_from=head), entry if stored else None
            # Still arriving: relay it as it comes and keep a copy. Whether it will be
            # stored is not known before the head leaves, so Cache-Status does not claim it.
            self._mark(ex, "miss", "MISS", "gateway; fwd=miss")
            tee = BodyTee(limit)
            response = await forwarder.render(request, ex, result, tee=tee)
            body = tee.body
            if body is None or generation is None:
                return response, None
            entry = self._entry(head, body, ex.path, sent_at, now, verdict, generation)
            stored = await self._put(key, entry, now, sent_at)
            return response, entry if stored else None
        finally:
            forwarder.finish(result)

    def _serve_stale(self, request: EdgeRequest, ex: Exchange, stale: Entry, detail: str) -> Answer:
        now = self.cache.clock()
        ttl = int(stale.fresh_for - stale.age(now))
        self._mark(ex, "stale", "STALE", f"gateway; fwd=stale; {detail}; ttl={ttl}")
        return self._answer(request, stale, now)

    def _stale_on_error(self, stale: Entry | None, status: int) -> bool:
        if stale is None or stale.must_revalidate or status not in _UPSTREAM_FAILED:
            return False
        return stale.staleness(self.cache.clock()) < stale.stale_if_error

    async def _generation(self, key: CacheKey) -> int | None:
        """The path's generation before the request leaves; None: do not store."""
        try:
            return await self.cache.store.generation(key.path)
        except CacheStoreError as exc:
            self.cache.failed("cache_get", exc)
            return None

    async def _put(self, key: CacheKey, entry: Entry, now: float, sent_at: float) -> bool:
        """Store it, unless a purge covering its path came after its request was sent
        (what it fetched predates the purge)."""
        cache = self.cache
        if cache.purged_since(entry.path, sent_at):
            return False
        try:
            await cache.store.put(key, entry, now)
        except CacheStoreError as exc:
            cache.failed("cache_put", exc)
            return False
        cache.stored()
        return True

    @staticmethod
    def _validators(stale: Entry | None) -> list[tuple[bytes, bytes]] | None:
        if stale is None or (stale.etag is None and stale.last_modified is None):
            return None
        conditional = []
        if stale.etag is not None:
            conditional.append((b"If-None-Match", stale.etag))
        if stale.last_modified is not None:
            conditional.append((b"If-Modified-Since", stale.last_modified))
        return conditional

    def _entry(
        self,
        head: ResponseHead,
        body: bytes,
        path: str,
        sent_at: float,
        now: float,
        freshness: Freshness,
        generation: int,
    ) -> Entry:
        headers = _stored_headers(head.headers)
        return Entry(
            status=head.status,
            reason=head.reason,
            body=body,
            path=path,
            **_freshness_fields(headers, head, sent_at, now, freshness, generation),
        )

    def _freshened(
        self, stale: Entry, head: ResponseHead, sent_at: float, now: float, generation: int | None
    ) -> Entry | None:
        """RFC 9111 §4.3.4: the stored entry with the 304's header fields in place of its
        own, fresh again; None when the new headers no longer allow storing it."""
        if generation is None:
            return None
        update = _stored_headers(head.headers)
        replaced = {n.lower() for n, _ in update}
        headers = tuple((n, v) for n, v in stale.headers if n.lower() not in replaced) + update
        verdict = self.policy.freshness(stale.status, headers, now=now)
        if not isinstance(verdict, Freshness):
            return None
        return dataclasses.replace(
            stale, size=0, **_freshness_fields(headers, head, sent_at, now, verdict, generation)
        )

    # -- stale-while-revalidate -------------------------------------------------------------

    def _refresh_later(self, request: EdgeRequest, ex: Exchange, key: CacheKey, entry: Entry) -> None:
        cache = self.cache
        if key.variant in cache.refreshing or cache.coalescer.follow(key.variant) is not None:
            return  # one refresh at a time per key
        cache.refreshing.add(key.variant)
        # Its own exchange: the refresh must not write into the client's answer.
        background = dataclasses.replace(ex, upstream_headers=list(ex.upstream_headers), extra_response_headers=[])
        cache.spawn(self._refresh(request, background, key, entry))

    async def _refresh(self, request: EdgeRequest, ex: Exchange, key: CacheKey, stale: Entry) -> None:
        cache = self.cache
        forwarder = self.forwarder
        leased = False
        try:
            if cache.store.shared:
                leased = await cache.store.lease(key, self.wait)
                if not leased:
                    return  # another instance is refreshing it
            generation = await self._generation(key)
            if generation is None:
                return
            conditional = self._validators(stale) or []  # never the client's preconditions
            sent_at = cache.clock()
            result: UpstreamResult = await forwarder.fetch(request, ex, method="GET", conditional=conditional)
            try:
                head = result.head
                now = cache.clock()
                if conditional and head.status == 304:
                    entry = self._freshened(stale, head, sent_at, now, generation)
                else:
                    verdict = self.policy.freshness(head.status, head.headers, now=now)
                    entry = None
                    if isinstance(verdict, Freshness):
                        body = await forwarder.collect(result, cache.max_entry_size)
                        if body is not None:
                            entry = self._entry(head, body, ex.path, sent_at, now, verdict, generation)
                if entry is not None:
                    await self._put(key, entry, now, sent_at)
            finally:
                forwarder.finish(result)
        except Problem as problem:
            log.info("background refresh of %s failed: %s", ex.path, problem.detail)
        except CacheStoreError as exc:
            cache.failed("cache_put", exc)
        finally:
            cache.refreshing.discard(key.variant)
            if leased:
                try:
                    await cache.store.release(key)
                except CacheStoreError as exc:
                    cache.failed("cache_put", exc)
