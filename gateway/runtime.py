"""A configuration compiled for serving: router, per-route chains, upstream pools.

Built once at start-up and again on reload; the edge handler holds one reference and
a reload swaps it, so a request runs start to finish under the runtime it began with.
Nothing here is mutated per request except counters on targets.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.auth.verifier import JwtAuthenticator
from gateway.cache import create_cache
from gateway.cache.generations import Generations
from gateway.cache.response_cache import ResponseCache
from gateway.client_ip import ClientIPResolver
from gateway.config.cors import effective_cors
from gateway.config.models import GatewayConfig
from gateway.headers import RequestHeaderFilter
from gateway.metrics import Metrics
from gateway.pipeline import StageDeps, StageFactory, build_chain
from gateway.routing import Router
from gateway.stages import STAGES
from gateway.store import Store, create_store
from gateway.upstream import Upstream
from gateway.upstream.forwarder import Forwarder

__all__ = ["Runtime"]


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        metrics: Metrics,
        registry: Mapping[str, StageFactory] = STAGES,
        identity_headers: tuple[str, ...] = (),
        previous: Runtime | None = None,
        generations: Generations | None = None,
    ) -> None:
        """``generations``: the process's invalidation counters (shared with sibling
        workers); a private table when not given."""
        self.config = config
        self.metrics = metrics
        self.resolver = ClientIPResolver(
            trusted_proxies=config.server.trusted_proxies, header=config.server.client_ip_header
        )
        jwt = config.auth.jwt
        # The claim headers the gateway sets are stripped from every client request,
        # in every spelling, on every route (a client can never forge identity).
        claim_headers = tuple(jwt.forward_claims.values()) if jwt is not None else ()
        self.header_filter = RequestHeaderFilter(identity_headers=(*identity_headers, *claim_headers))
        self.authenticator: JwtAuthenticator | None = None
        if jwt is not None:
            # One verifier for every route; a reload hands over the remote keys it knew.
            self.authenticator = JwtAuthenticator(jwt, previous=previous.authenticator if previous else None)
        # One store per process. A reload whose ``store:`` section is unchanged keeps
        # it (its connections, and the buckets in a memory store: a reload does not
        # hand every caller a fresh budget); otherwise the old one closes with the
        # old runtime.
        self._store_created = previous is None or previous.config.store != config.store
        self._store_handed_over = False
        if self._store_created:
            self.store: Store = create_store(config.store, metrics=metrics)
        else:
            assert previous is not None
            self.store = previous.store
            previous._store_handed_over = True
        # The response cache, when a route caches; like the store, a reload with the
        # same ``store`` and ``cache`` sections keeps it (and its entries).
        self.cache: ResponseCache | None = None
        self._cache_created = False
        self._cache_handed_over = False
        if any(r.cache is not None for r in config.routes):
            kept = previous.cache if previous is not None else None
            if kept is not None and previous is not None and (previous.config.store, previous.config.cache) == (
                config.store,
                config.cache,
            ):
                self.cache = kept
                previous._cache_handed_over = True
            else:
                self.cache = create_cache(config, metrics=metrics, generations=generations or Generations())
                self._cache_created = True
        self.preflight_routes = frozenset(
            r.name for r in config.routes if effective_cors(config.cors, r.cors) is not None
        )
        """Routes whose chain answers CORS preflights: the edge routes those by the
        method the preflight asks about (see edge.py)."""
        # A reload keeps an upstream whose config is unchanged (its pools, health state
        # and ejections) instead of starting it cold; the old runtime then leaves it open.
        self.upstreams: dict[str, Upstream] = {}
        self._created: set[str] = set()
        self._handed_over: set[str] = set()
        for name, up in config.upstreams.items():
            kept = previous.upstreams.get(name) if previous is not None else None
            if kept is not None and kept.config == up:
                self.upstreams[name] = kept
                previous._handed_over.add(name)  # type: ignore[union-attr]
            else:
                self.upstreams[name] = Upstream(name, up, metrics=metrics)
                self._created.add(name)
        self.router = Router(config.routes)
        self.max_body_size = config.server.max_body_size
        self.max_header_size = config.server.max_header_size
        forwarders: dict[str, Forwarder] = {}
        for route in self.router.routes:
            forwarder = forwarders[route.name] = Forwarder(
                upstream=self.upstreams[route.config.upstream],
                strip_prefix=route.prefix if route.config.strip_prefix else None,
                header_filter=self.header_filter,
                max_body_size=self.max_body_size,
                body_timeout=config.server.body_timeout,
            )
            if self.cache is not None:
                # Writes invalidate on every route, cached or not (SPEC §4).
                forwarder.on_write = self.cache.on_write
        deps = StageDeps(
            config=config,
            metrics=metrics,
            upstreams=self.upstreams,
            authenticator=self.authenticator,
            store=self.store,
            cache=self.cache,
            forwarders=forwarders,
        )
        self.route_stages: dict[str, tuple[str, ...]] = {}
        for route in self.router.routes:
            route.handler, self.route_stages[route.name] = build_chain(
                route.config, deps, registry, forwarders[route.name]
            )
            if route.config.cache is not None:
                route.cache_bypass = metrics.cache_results(route.name)["bypass"]

    async def start(self) -> None:
        for name in self._created:
            await self.upstreams[name].start()
        if self.authenticator is not None:
            await self.authenticator.start()
        if self._store_created:
            await self.store.start()
        if self._cache_created:
            assert self.cache is not None
            await self.cache.start()

    async def close(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.close()
        if not self._store_handed_over:
            await self.store.close()
        if self.cache is not None and self._cache_created and not self._cache_handed_over:
            await self.cache.close()
        for name, upstream in self.upstreams.items():
            if name not in self._handed_over:
                await upstream.close()

    async def quiesce(self) -> None:
        """Called when a reload swaps this runtime out: stop what reports health for
        upstreams the successor did not keep. Pools stay open for requests in flight."""
        for name, upstream in self.upstreams.items():
            if name not in self._handed_over:
                await upstream.stop_health_checks()

    def status(self) -> dict[str, object]:
        """What /status shows: routes with their stages, upstreams with their targets."""
        return {
            "routes": [
                {
                    "name": r.name,
                    "path": r.prefix,
                    "methods": sorted(r.methods) if r.methods else None,
                    "host": r.host,
                    "upstream": r.config.upstream,
                    "stages": list(self.route_stages[r.name]),
                }
                for r in self.router.routes
            ],
            "upstreams": {name: upstream.status() for name, upstream in self.upstreams.items()},
            "store": self.store.status(),
            "cache": self.cache.status() if self.cache is not None else None,
        }

    def readiness(self) -> list[str]:
        """Reasons the gateway is not ready; empty when it is."""
        return [
            f"upstream {name!r} has no healthy target"
            for name, upstream in self.upstreams.items()
            if not upstream.available
        ]
