"""Run one stage in isolation: a parsed config, its deps, a mocked request, and a
terminal handler that records whether the request got through (the "upstream")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.auth.verifier import JwtAuthenticator
from gateway.config import GatewayConfig, parse_config
from gateway.exchange import EXCHANGE, Exchange
from gateway.headers import add_response_headers
from gateway.metrics import Metrics
from gateway.pipeline import Stage, StageDeps, compose
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
    stage: Stage,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
    client_ip: str = "192.0.2.10",
    upstream: Upstream | None = None,
) -> tuple[web.StreamResponse, Exchange]:
    """Run ``stage``; a raised :class:`Problem` is rendered as the edge would."""
    given = CIMultiDict(headers or {})
    try:
        request = make_mocked_request(method, "/", headers=given)
    except UnicodeEncodeError:
        # aiohttp's parser decodes header bytes with surrogateescape, so such values
        # are real input; the mock cannot build raw bytes from them, so set them after.
        request = make_mocked_request(method, "/")
        request._headers = CIMultiDictProxy(given)  # type: ignore[attr-defined]
    ex = Exchange(request_id="test", started=0.0, client_ip=client_ip)
    request[EXCHANGE] = ex
    try:
        response = await stage(request, upstream or Upstream())
    except Problem as problem:
        response = problem.response()
        add_response_headers(response.headers, ex.extra_response_headers)
    return response, ex


def chain(*stages: Stage | None) -> Stage | None:
    """Stages run in order as one (``None`` when none is in the chain), for stages that
    share one job, like ``authenticate`` + ``authorize``."""
    present = [stage for stage in stages if stage is not None]
    if not present:
        return None

    async def chained(request: web.BaseRequest, handler: Any) -> web.StreamResponse:
        return await compose(present, handler)(request)

    return chained


def metric(deps: StageDeps, name: str, **labels: str) -> float:
    value = deps.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
