"""A configuration compiled for serving: router, per-route chains, upstream pools.

Built once at start-up and again on reload; the edge handler holds one reference and
a reload swaps it, so a request runs start to finish under the runtime it began with.
Nothing here is mutated per request except counters on targets.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.client_ip import ClientIPResolver
from gateway.config.models import GatewayConfig
from gateway.headers import RequestHeaderFilter
from gateway.metrics import Metrics
from gateway.pipeline import StageDeps, StageFactory, build_chain
from gateway.routing import Router
from gateway.stages import STAGES
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
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.resolver = ClientIPResolver(trusted_proxies=config.server.trusted_proxies)
        self.header_filter = RequestHeaderFilter(identity_headers=identity_headers)
        self.upstreams = {name: Upstream(name, up, metrics=metrics) for name, up in config.upstreams.items()}
        self.router = Router(config.routes)
        self.max_body_size = config.server.max_body_size
        self.max_header_size = config.server.max_header_size
        deps = StageDeps(config=config, metrics=metrics, upstreams=self.upstreams)
        self.route_stages: dict[str, tuple[str, ...]] = {}
        for route in self.router.routes:
            forwarder = Forwarder(
                upstream=self.upstreams[route.config.upstream],
                route_name=route.name,
                strip_prefix=route.prefix if route.config.strip_prefix else None,
                header_filter=self.header_filter,
                max_body_size=self.max_body_size,
            )
            route.handler, self.route_stages[route.name] = build_chain(route.config, deps, registry, forwarder)

    async def start(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.start()

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()
