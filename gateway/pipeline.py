"""Stages and how a route's chain is built from them.

Two shapes of stage, both compiled once per route by ``build(route, deps)`` (which
returns ``None`` when the route does not use it):

- a **gate**, ``gate(request, ex)``: decides without awaiting and returns ``None``
  to go on; it refuses by raising :class:`~gateway.problem.Problem`, or answers
  itself by returning an :data:`Answer` (a CORS preflight). Only when a decision
  needs I/O (a JWKS miss, a Redis throttle decision) does it return an awaitable of
  the same verdict instead. Firewall, CORS, authenticate, throttle and authorize
  are gates: on the common path a request passes them all as plain calls, with no
  coroutine frame per stage;
- a **wrapper**, ``async def stage(request, handler)`` (marked ``wraps = True``):
  drives what comes after it itself. The cache is one: it answers from an entry, or
  calls the forwarder's fetch and render around storing.

A route's chain is its gates, in the order of :data:`gateway.stages.STAGES`, then
its wrappers nested around its forwarder (:class:`Chain`); the edge runs it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Union

from aiohttp import web

from gateway.config.models import GatewayConfig, RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.raw_response import RawResponse, Streamed

if TYPE_CHECKING:
    from gateway.auth.verifier import JwtAuthenticator
    from gateway.cache.response_cache import ResponseCache
    from gateway.upstream.forwarder import Forwarder
    from gateway.store.base import Store
    from gateway.upstream import Upstream

__all__ = [
    "Answer", "Verdict", "Gate", "Handler", "Stage", "StageFactory", "StageDeps", "Chain", "compose", "build_chain",
    "is_wrapper",
]

Answer = RawResponse | Streamed | web.Response
_ANSWERS = (RawResponse, Streamed, web.Response)
"""What a chain returns: a complete response for the edge to write, one the forwarder
already wrote (streamed), or a plain aiohttp response a stage built (a CORS preflight)."""

Handler = Callable[[EdgeRequest], Awaitable[Answer]]

Verdict = Union[Answer, None]
"""A gate's decision: ``None`` goes on, an answer ends the chain (refusals raise)."""

Gate = Callable[[EdgeRequest, Exchange], "Verdict | Awaitable[Verdict]"]


class Wrapper(Protocol):
    wraps: bool

    def __call__(self, request: EdgeRequest, handler: Handler) -> Awaitable[Answer]: ...


Stage = Union[Gate, Wrapper]


def is_wrapper(stage: Stage) -> bool:
    return getattr(stage, "wraps", False) is True


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


def compose(stages: Sequence[Wrapper], terminal: Handler) -> Handler:
    """Nest wrapping ``stages`` around ``terminal``; the first stage runs first.

    ``functools.partial`` binds each stage to its successor without an extra
    coroutine frame per stage on every request.
    """
    handler: Handler = terminal
    for stage in reversed(stages):
        handler = functools.partial(stage, handler=handler)
    return handler


class Chain:
    """One route's compiled chain: its gates, then its handler (wrappers around the
    forwarder). The edge runs it for every routed request (``edge.py``)."""

    __slots__ = ("gates", "handler")

    def __init__(self, gates: Sequence[Gate], handler: Handler) -> None:
        self.gates = tuple(gates)
        self.handler = handler

    async def run(self, request: EdgeRequest, ex: Exchange) -> Answer:
        for gate in self.gates:
            verdict = gate(request, ex)
            if verdict is not None:
                # An answer ends the chain; anything else is the awaitable of a gate
                # that had to wait (a JWKS fetch, a Redis throttle decision).
                if not isinstance(verdict, _ANSWERS):
                    verdict = await verdict
                    if verdict is None:
                        continue
                return verdict  # type: ignore[return-value]
        return await self.handler(request)


def build_chain(
    route: RouteConfig, deps: StageDeps, registry: Mapping[str, StageFactory], terminal: Handler
) -> tuple[Chain, tuple[str, ...]]:
    """Compile one route's chain; returns it with the names of the stages it uses."""
    gates: list[Gate] = []
    wrappers: list[Wrapper] = []
    names: list[str] = []
    for name, factory in registry.items():
        stage = factory(route, deps)
        if stage is None:
            continue
        if is_wrapper(stage):
            wrappers.append(stage)  # type: ignore[arg-type]
        elif wrappers:
            # A gate after a wrapper would run inside it (after a cache hit was served).
            raise ValueError(f"stage {name!r} is a gate but comes after a wrapping stage")
        else:
            gates.append(stage)  # type: ignore[arg-type]
        names.append(name)
    return Chain(gates, compose(wrappers, terminal)), tuple(names)
