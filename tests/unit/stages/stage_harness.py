"""Run one stage in isolation: a parsed config, its deps, a mocked request, and a
terminal handler that records whether the request got through (the "upstream")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.auth.verifier import JwtAuthenticator
from gateway.config import GatewayConfig, parse_config
from gateway.edge_request import EdgeRequest
from gateway.exchange import EXCHANGE, Exchange
from gateway.headers import add_response_headers
from gateway.metrics import Metrics
from gateway.pipeline import Chain, Stage, StageDeps, compose, is_wrapper
from gateway.problem import Problem

__all__ = ["config_with", "deps_for", "Upstream", "call", "chain", "metric"]

UPSTREAMS = {"app": {"targets": ["http://127.0.0.1:9"]}}


def config_with(*, route: Mapping[str, Any] | None = None, **sections: Any) -> GatewayConfig:
    """A config with one catch-all route ``r`` (``route`` adds keys to it)."""
    return parse_config(
        {
            **sections,
            "upstreams": UPSTREAMS,
            "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "app", **(route or {})}],
        }
    )


def deps_for(config: GatewayConfig, *, clock: Callable[[], float] | None = None) -> StageDeps:
    authenticator = None
    if config.auth.jwt is not None:
        authenticator = JwtAuthenticator(config.auth.jwt, **({"clock": clock} if clock else {}))
    return StageDeps(config=config, metrics=Metrics(), upstreams={}, authenticator=authenticator)


class Upstream:
    """The terminal handler: counts the requests that reached it."""

    def __init__(self) -> None:
        self.calls: list[web.BaseRequest] = []

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self.calls.append(request)
        return web.Response(status=200, text="upstream")


async def call(
    stage: Stage | tuple[Stage, ...],
    *,
    method: str = "GET",
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
    client_ip: str = "192.0.2.10",
    upstream: Upstream | None = None,
) -> tuple[web.StreamResponse, Exchange]:
    """Run ``stage``; a raised :class:`Problem` is rendered as the edge would."""
    given = CIMultiDict(headers or {})
    try:
        raw = [(n.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for n, v in given.items()]
    except UnicodeEncodeError:
        raw = None
    request = EdgeRequest(
        conn=None, method=method, version=(1, 1), raw_path="/", raw_headers=raw or [], remote="192.0.2.10", keep_alive=True
    )
    if raw is None:
        # A value no client bytes decode to (a lone surrogate outside surrogateescape's
        # range): the stage must still cope with it, so set the mapping directly.
        request._headers = CIMultiDictProxy(given)
        request.authorization = given.get("Authorization")
    ex = Exchange(request_id="test", started=0.0, client_ip=client_ip)
    request[EXCHANGE] = ex
    terminal = upstream or Upstream()
    stages = stage if isinstance(stage, tuple) else (stage,)
    gates = [s for s in stages if not is_wrapper(s)]
    wrappers = [s for s in stages if is_wrapper(s)]
    try:
        response = await Chain(gates, compose(wrappers, terminal)).run(request, ex)  # type: ignore[arg-type]
    except Problem as problem:
        response = problem.response()
        add_response_headers(response.headers, ex.extra_response_headers)
    return response, ex


def chain(*stages: Stage | None) -> tuple[Stage, ...] | None:
    """Stages run in order as one (``None`` when none is in the chain), for stages that
    share one job, like ``authenticate`` + ``authorize``."""
    present = tuple(stage for stage in stages if stage is not None)
    return present or None


def metric(deps: StageDeps, name: str, **labels: str) -> float:
    value = deps.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
