"""Stages and how a route's chain is built from them.

A stage has aiohttp's middleware shape, ``async def stage(request, handler)``: it may
answer itself (raise :class:`~gateway.problem.Problem` or return a response) or call
``handler(request)`` to go on. Each stage module exports ``build(route, deps)`` which
validates and compiles its config once and returns the stage, or ``None`` when the
route does not use it. The chain of a route is composed once, at start-up or reload,
in the order of :data:`gateway.stages.STAGES`, ending in the route's forwarder.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from gateway.config.models import GatewayConfig, RouteConfig
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.auth.verifier import JwtAuthenticator
    from gateway.cache.response_cache import ResponseCache
    from gateway.upstream.forwarder import Forwarder
    from gateway.store.base import Store
    from gateway.upstream import Upstream

__all__ = ["Handler", "Stage", "StageFactory", "StageDeps", "compose", "build_chain"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Stage(Protocol):
    def __call__(self, request: web.BaseRequest, handler: Handler) -> Awaitable[web.StreamResponse]: ...


@dataclass(frozen=True, slots=True)
class StageDeps:
    """What stage factories may use: the whole config and the process's shared objects."""

    config: GatewayConfig
    metrics: Metrics
    upstreams: Mapping[str, Upstream]
    authenticator: JwtAuthenticator | None = None
    """The runtime's one JWT verifier (keys, JWKS fetcher, token cache), shared by every route."""
    store: Store | None = None
    """The process's one store (``store.kind``): throttle buckets, shared by every route."""
    cache: ResponseCache | None = None
    """The process's response cache, when any route caches."""
    forwarders: Mapping[str, Forwarder] = dataclasses.field(default_factory=dict)
    """Each route's forwarder by route name (the cache stage drives fetch and render)."""


StageFactory = Callable[[RouteConfig, StageDeps], "Stage | None"]


def compose(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Nest ``stages`` around ``terminal``; the first stage runs first.

    ``functools.partial`` binds each stage to its successor without an extra
    coroutine frame per stage on every request.
    """
    handler: Handler = terminal
    for stage in reversed(stages):
        handler = functools.partial(stage, handler=handler)
    return handler


def build_chain(
    route: RouteConfig, deps: StageDeps, registry: Mapping[str, StageFactory], terminal: Handler
) -> tuple[Handler, tuple[str, ...]]:
    """Compile one route's chain; returns it with the names of the stages it uses."""
    stages: list[Stage] = []
    names: list[str] = []
    for name, factory in registry.items():
        stage = factory(route, deps)
        if stage is not None:
            stages.append(stage)
            names.append(name)
    return compose(stages, terminal), tuple(names)
