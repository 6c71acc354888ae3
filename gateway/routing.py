"""Route choice (SPEC §3): the longest matching segment-aware path prefix wins;
among equals, a route with a host beats one without, a route that lists methods beats
one that does not; then file order. No route -> 404; a path that matches only routes
that refuse the method -> 405 with ``Allow``.

Compiled once into a dict from prefix to candidates, so a lookup walks the request
path's own prefixes from the longest down (one dict probe per segment, bounded by the
deepest configured prefix) instead of testing every route.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.config.models import RouteConfig

if TYPE_CHECKING:
    from gateway.pipeline import Chain

__all__ = ["CompiledRoute", "Router", "RouteMatch"]


@dataclass(eq=False)
class CompiledRoute:
    config: RouteConfig
    index: int
    name: str
    prefix: str
    methods: frozenset[str] | None
    host: str | None
    handler: Chain | None = None
    """The route's compiled stage chain, filled in by the pipeline builder."""
    cache_bypass: Any = None
    """Set when the route has ``cache``: its ``gateway_cache_requests_total{result=
    "bypass"}`` child. Every answer of a cached route carries X-Cache, so the edge
    marks refusals made before the cache stage BYPASS and counts them here."""
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: CompiledRoute | None
    allow: tuple[str, ...] = ()
    """When ``route`` is None and this is not empty: the path exists, the method does not (405)."""


def _host_of(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


class Router:
    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes: list[CompiledRoute] = [
            CompiledRoute(
                config=r,
                index=i,
                name=r.name,
                prefix=r.match.path,
                methods=frozenset(r.match.methods) if r.match.methods else None,
                host=r.match.host,
            )
            for i, r in enumerate(routes)
        ]
        table: dict[str, list[CompiledRoute]] = {}
        for route in self.routes:
            table.setdefault(route.prefix, []).append(route)
        for candidates in table.values():
            candidates.sort(key=lambda r: (r.host is None, r.methods is None, r.index))
        self._table = {prefix: tuple(c) for prefix, c in table.items()}
        self._max_depth = max(p.count("/") for p in self._table) if self._table else 0
        self._uses_host = any(r.host for r in self.routes)

    def _candidates_for(self, path: str) -> Iterator[tuple[CompiledRoute, ...]]:
        # Trim to the deepest configured prefix: a 1000-segment path costs no more.
        if path.count("/") > self._max_depth:
            path = "/".join(path.split("/", self._max_depth + 1)[: self._max_depth + 1])
        candidate = path.rstrip("/") or "/"
        table = self._table
        while True:
            routes = table.get(candidate)
            if routes is not None:
                yield routes
            if candidate == "/":
                return
            candidate = candidate[: candidate.rfind("/")] or "/"

    def match(self, method: str, host_header: str | None, path: str) -> RouteMatch:
        host_name = host_full = None
        if self._uses_host and host_header:
            host_full = host_header.strip().lower()
            host_name = _host_of(host_full)
        allow: set[str] = set()
        for routes in self._candidates_for(path):
            for route in routes:
                if route.host is not None and route.host != host_name and route.host != host_full:
                    continue
                if route.methods is None or method in route.methods:
                    return RouteMatch(route)
                allow |= route.methods
        return RouteMatch(None, tuple(sorted(allow)))
